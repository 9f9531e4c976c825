/* The chain interpreter: programs whose every instruction is elementwise float32 (chain.py decides and
 * writes the step table). Each thread runs the whole program on CHAIN_W float4s of the space at a time, its
 * registers in a per-thread array, so a program's loads, compute and stores for those elements follow each
 * other with no barrier and no tile in shared memory. The tiled kernel (cuda_vm.cu) makes each instruction a
 * pass over a shared-memory tile, which long programs pay per instruction (Nsight on the Adam step, 29
 * instructions: 24.5% occupancy, DRAM 13.7% busy); chain.py sends only long programs here. Same arithmetic
 * as the tiled kernel (arith / funary, compiled with --fmad=false), so results are bit-identical to it. */
#define CHAIN_REGS 16
#define CHAIN_MAX_STEPS 256
/* float4s per thread and step: a step's dispatch (its table entry, the switch) and the latency of its
 * register traffic are paid once for 4 * CHAIN_W elements */
#ifndef CHAIN_W
#define CHAIN_W 4
#endif

struct CStep {   /* chain.py's STEP_WORDS words; the layout is checked there against this struct */
    unsigned char kind, op, d, a, b, buf, rev, pad;
    unsigned imm, pad2;
    long long off, s[4];
};
static_assert(sizeof(CStep) == 56, "chain.py writes 7 words per step");

enum { K_LOAD, K_SCALAR, K_VIEW, K_STORE, K_CONST, K_UNARY, K_BINARY, K_BINARY_IMM };

typedef float Vec[CHAIN_W][4];   /* a register: CHAIN_W float4s, NT * 4 elements apart */

/* r = op(x) (MOV: a copy); the switch outside the element loops */
__device__ __forceinline__ void chain_unary(int op, Vec &r, const Vec &x) {
    switch (op) {
#define UN(O) case DVM_OP_##O:                                                                          \
        for (int q = 0; q < CHAIN_W; q++) for (int j = 0; j < 4; j++) r[q][j] = funary<DVM_OP_##O>(x[q][j]); \
        return;
    UN(EXP) UN(LOG) UN(SQRT) UN(RSQRT) UN(TANH) UN(ERF) UN(SIGMOID) UN(ABS) UN(NEG) UN(RECIP) UN(FLOOR)
    UN(CEIL) UN(ROUND)
#undef UN
    default: for (int q = 0; q < CHAIN_W; q++) for (int j = 0; j < 4; j++) r[q][j] = x[q][j];
    }
}

/* r = x op y, elementwise */
__device__ __forceinline__ void chain_binary(int op, Vec &r, const Vec &x, const Vec &y) {
    switch (op) {
#define AR(O) case DVM_OP_##O:                                                                          \
        for (int q = 0; q < CHAIN_W; q++)                                                               \
            for (int j = 0; j < 4; j++) r[q][j] = arith<float, DVM_OP_##O>(x[q][j], y[q][j]);             \
        return;
    AR(ADD) AR(SUB) AR(MUL) AR(DIV) AR(POW) AR(MAX) AR(MIN) AR(MOD) AR(FMOD)
#undef AR
    }
}

__device__ __forceinline__ bool whole4(const float *p, int cnt) {
    return cnt == 4 && ((unsigned long long)p & 15) == 0;
}

extern "C" __global__ void __launch_bounds__(NT)
dvm_chain(const CStep *__restrict__ steps, int n_steps, int n_bufs, long long total, long long cols,
          long long D1, long long D2, int views, const unsigned long long *__restrict__ table,
          unsigned long long p0, unsigned long long p1, unsigned long long p2, unsigned long long p3,
          unsigned long long p4, unsigned long long p5, unsigned long long p6, unsigned long long p7,
          unsigned long long p8, unsigned long long p9, unsigned long long p10, unsigned long long p11,
          unsigned long long p12, unsigned long long p13, unsigned long long p14, unsigned long long p15) {
    __shared__ CStep st[CHAIN_MAX_STEPS];
    __shared__ float *bufs[DVM_MAX_BUFFERS];
    const int t = threadIdx.x;
    for (int k = t; k < n_steps; k += NT) st[k] = steps[k];
    const unsigned long long inl[16] = {p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13, p14, p15};
    for (int k = t; k < n_bufs; k += NT) bufs[k] = (float *)(k < 16 ? inl[k] : table[k - 16]);
    __syncthreads();
    Vec R[CHAIN_REGS];
    const long long span = (long long)NT * 4 * CHAIN_W;   /* elements of one block's group */
    for (long long base = (long long)blockIdx.x * span + 4 * t; base - 4 * t < total;
         base += (long long)gridDim.x * span) {
        long long e[CHAIN_W];   /* first element of each float4; cnt: how many of its 4 are in the space */
        int cnt[CHAIN_W];
        long long col[CHAIN_W], d0[CHAIN_W], d1[CHAIN_W], d2[CHAIN_W];
#pragma unroll
        for (int q = 0; q < CHAIN_W; q++) {
            e[q] = base + (long long)q * NT * 4;
            long long left = total - e[q];
            cnt[q] = left >= 4 ? 4 : left > 0 ? (int)left : 0;
            col[q] = d0[q] = d1[q] = d2[q] = 0;
            if (views && cnt[q]) {   /* (d0, d1, d2, column); 32-bit division where it fits */
                if (total <= 0xffffffffLL) {
                    unsigned x = (unsigned)e[q], c = (unsigned)cols, r = x / c, z2 = (unsigned)D2, z1 = (unsigned)D1;
                    col[q] = x - r * c; d2[q] = r % z2; unsigned w = r / z2; d1[q] = w % z1; d0[q] = w / z1;
                } else {
                    long long r = e[q] / cols; col[q] = e[q] - r * cols;
                    d2[q] = r % D2; long long w = r / D2; d1[q] = w % D1; d0[q] = w / D1;
                }
            }
        }
        for (int k = 0; k < n_steps; k++) {
            const CStep s = st[k];
            Vec &r = R[s.d];
            switch (s.kind) {
            case K_LOAD:
#pragma unroll
                for (int q = 0; q < CHAIN_W; q++) {
                    const float *p = bufs[s.buf] + s.off + e[q];
                    if (whole4(p, cnt[q])) {
                        float4 v = __ldg((const float4 *)p);
                        r[q][0] = v.x; r[q][1] = v.y; r[q][2] = v.z; r[q][3] = v.w;
                    } else {
                        for (int j = 0; j < 4; j++) r[q][j] = j < cnt[q] ? __ldg(p + j) : 0.0f;
                    }
                }
                break;
            case K_SCALAR: {
                float v = __ldg(bufs[s.buf] + s.off);
#pragma unroll
                for (int q = 0; q < CHAIN_W; q++) r[q][0] = r[q][1] = r[q][2] = r[q][3] = v;
                break;
            }
            case K_VIEW:   /* element (d0, d1, d2, col) at off + d0*s0 + d1*s1 + d2*s2 + col*s3 */
#pragma unroll
                for (int q = 0; q < CHAIN_W; q++) {
                    const float *p = bufs[s.buf] + s.off + d0[q] * s.s[0] + d1[q] * s.s[1] + d2[q] * s.s[2] +
                                     col[q] * s.s[3];
                    if (s.s[3] == 1 && col[q] + 4 <= cols && whole4(p, cnt[q])) {   /* 4 columns of a row */
                        float4 v = __ldg((const float4 *)p);
                        r[q][0] = v.x; r[q][1] = v.y; r[q][2] = v.z; r[q][3] = v.w;
                        continue;
                    }
                    long long a0 = d0[q], a1 = d1[q], a2 = d2[q], c = col[q];
                    for (int j = 0; j < 4; j++) {
                        r[q][j] = j < cnt[q] ? __ldg(bufs[s.buf] + s.off + a0 * s.s[0] + a1 * s.s[1] +
                                                     a2 * s.s[2] + c * s.s[3]) : 0.0f;
                        if (++c == cols) { c = 0; if (++a2 == D2) { a2 = 0; if (++a1 == D1) { a1 = 0; a0++; } } }
                    }
                }
                break;
            case K_STORE: {
                const Vec &v = R[s.a];
#pragma unroll
                for (int q = 0; q < CHAIN_W; q++) {
                    float *p = bufs[s.buf] + s.off + e[q];
                    if (whole4(p, cnt[q])) *(float4 *)p = make_float4(v[q][0], v[q][1], v[q][2], v[q][3]);
                    else for (int j = 0; j < cnt[q]; j++) p[j] = v[q][j];
                }
                break;
            }
            case K_CONST:
#pragma unroll
                for (int q = 0; q < CHAIN_W; q++) r[q][0] = r[q][1] = r[q][2] = r[q][3] = __uint_as_float(s.imm);
                break;
            case K_UNARY: {
                Vec x;
#pragma unroll
                for (int q = 0; q < CHAIN_W; q++) for (int j = 0; j < 4; j++) x[q][j] = R[s.a][q][j];
                chain_unary(s.op, r, x);
                break;
            }
            case K_BINARY: {
                Vec x, y;
#pragma unroll
                for (int q = 0; q < CHAIN_W; q++)
                    for (int j = 0; j < 4; j++) { x[q][j] = R[s.a][q][j]; y[q][j] = R[s.b][q][j]; }
                chain_binary(s.op, r, x, y);
                break;
            }
            case K_BINARY_IMM: {   /* rev: the immediate is the left operand */
                Vec x, y;
#pragma unroll
                for (int q = 0; q < CHAIN_W; q++)
                    for (int j = 0; j < 4; j++) { x[q][j] = R[s.a][q][j]; y[q][j] = __uint_as_float(s.imm); }
                if (s.rev) chain_binary(s.op, r, y, x); else chain_binary(s.op, r, x, y);
                break;
            }
            }
        }
    }
}
