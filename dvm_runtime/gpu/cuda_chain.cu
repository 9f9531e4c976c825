/* The chain interpreter: programs whose every instruction is elementwise float32 (chain.py decides and
 * writes the step table). Each thread runs the whole program on CHAIN_W float4s of the space at a time, so a
 * program's loads, compute and stores for those elements follow each other with no barrier and no tile in
 * shared memory. The tiled kernel (cuda_vm.cu) makes each instruction a pass over a shared-memory tile, which
 * costs per instruction (Nsight on the Adam step, 29 instructions: 24.5% occupancy, DRAM 13.7% busy).
 *
 * The program's registers are the thread's own: R0 .. R(CHAIN_REGS-1) are named variables and a step picks
 * one by a switch on its (warp-uniform) index. An array indexed by the step's register number put them in
 * local memory (1 KiB a thread at CHAIN_W 4: Adam over 8192x8192 reached 24% of the copy bandwidth). A load
 * writes its register inside the switch's case, so the loads of successive steps are all in flight before
 * anything reads them. Same arithmetic as the tiled kernel (arith / funary, compiled with --fmad=false), so
 * results are bit-identical to it. */
#ifndef CHAIN_REGS
#define CHAIN_REGS 8
#endif
#define CHAIN_MAX_STEPS 256
/* float4s per thread and step: a step's dispatch (its table entry, the switches) is paid once for
 * 4 * CHAIN_W elements; threads per block: chain.py's CHAIN_NT */
#ifndef CHAIN_W
#define CHAIN_W 1
#endif
#ifndef CHAIN_NT
#define CHAIN_NT 128
#endif

struct CStep {   /* chain.py's STEP_WORDS words; the layout is checked there against this struct */
    unsigned char kind, op, d, a, b, buf, rev, pad;
    unsigned imm, pad2;
    long long off, s[4];
};
static_assert(sizeof(CStep) == 56, "chain.py writes 7 words per step");

enum { K_LOAD, K_SCALAR, K_VIEW, K_STORE, K_CONST, K_UNARY, K_BINARY, K_BINARY_IMM };

struct Vec { float f[CHAIN_W][4]; };   /* a register: CHAIN_W float4s, CHAIN_NT * 4 elements apart */

/* where a thread's CHAIN_W float4s lie: first element, how many of its 4 are in the space, and for views
 * the element's (d0, d1, d2, column) */
struct Place {
    long long e[CHAIN_W], col[CHAIN_W], d0[CHAIN_W], d1[CHAIN_W], d2[CHAIN_W];
    int cnt[CHAIN_W];
};

__device__ __forceinline__ Vec splat(float v) {
    Vec r;
#pragma unroll
    for (int q = 0; q < CHAIN_W; q++) r.f[q][0] = r.f[q][1] = r.f[q][2] = r.f[q][3] = v;
    return r;
}

/* r = op(x) (MOV: a copy); the switch outside the element loops */
__device__ __forceinline__ Vec chain_unary(int op, const Vec &x) {
    Vec r;
    switch (op) {
#define UN(O) case DVM_OP_##O:                                                                           \
        _Pragma("unroll") for (int q = 0; q < CHAIN_W; q++)                                              \
            _Pragma("unroll") for (int j = 0; j < 4; j++) r.f[q][j] = funary<DVM_OP_##O>(x.f[q][j]);     \
        return r;
    UN(EXP) UN(LOG) UN(SQRT) UN(RSQRT) UN(TANH) UN(ERF) UN(SIGMOID) UN(ABS) UN(NEG) UN(RECIP) UN(FLOOR)
    UN(CEIL) UN(ROUND)
#undef UN
    default: return x;
    }
}

/* x op y, elementwise */
__device__ __forceinline__ Vec chain_binary(int op, const Vec &x, const Vec &y) {
    Vec r = x;
    switch (op) {
#define AR(O) case DVM_OP_##O:                                                                           \
        _Pragma("unroll") for (int q = 0; q < CHAIN_W; q++)                                              \
            _Pragma("unroll") for (int j = 0; j < 4; j++) r.f[q][j] = arith<float, DVM_OP_##O>(x.f[q][j], y.f[q][j]); \
        break;
    AR(ADD) AR(SUB) AR(MUL) AR(DIV) AR(POW) AR(MAX) AR(MIN) AR(MOD) AR(FMOD)
#undef AR
    }
    return r;
}

__device__ __forceinline__ bool whole4(const float *p, int cnt) {
    return cnt == 4 && ((unsigned long long)p & 15) == 0;
}

/* r = the buffer's elements at the thread's places (contiguous) */
__device__ __forceinline__ void load_run(Vec &r, const float *base, const Place &pl) {
#pragma unroll
    for (int q = 0; q < CHAIN_W; q++) {
        const float *p = base + pl.e[q];
        if (whole4(p, pl.cnt[q])) {
            float4 v = __ldg((const float4 *)p);
            r.f[q][0] = v.x; r.f[q][1] = v.y; r.f[q][2] = v.z; r.f[q][3] = v.w;
        } else {
            for (int j = 0; j < 4; j++) r.f[q][j] = j < pl.cnt[q] ? __ldg(p + j) : 0.0f;
        }
    }
}

/* r = element (d0, d1, d2, col) at off + d0*s0 + d1*s1 + d2*s2 + col*s3 for each of the thread's places */
__device__ __forceinline__ void load_view(Vec &r, const float *base, const CStep &s, const Place &pl,
                                          long long cols, long long D1, long long D2) {
#pragma unroll
    for (int q = 0; q < CHAIN_W; q++) {
        const float *p = base + pl.d0[q] * s.s[0] + pl.d1[q] * s.s[1] + pl.d2[q] * s.s[2] + pl.col[q] * s.s[3];
        if (s.s[3] == 1 && pl.col[q] + 4 <= cols && whole4(p, pl.cnt[q])) {   /* 4 columns of a row */
            float4 v = __ldg((const float4 *)p);
            r.f[q][0] = v.x; r.f[q][1] = v.y; r.f[q][2] = v.z; r.f[q][3] = v.w;
            continue;
        }
        long long a0 = pl.d0[q], a1 = pl.d1[q], a2 = pl.d2[q], c = pl.col[q];
        for (int j = 0; j < 4; j++) {
            r.f[q][j] = j < pl.cnt[q] ? __ldg(base + a0 * s.s[0] + a1 * s.s[1] + a2 * s.s[2] + c * s.s[3]) : 0.0f;
            if (++c == cols) { c = 0; if (++a2 == D2) { a2 = 0; if (++a1 == D1) { a1 = 0; a0++; } } }
        }
    }
}

#if CHAIN_REGS == 16
#define CHAIN_REG_LIST(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)
#elif CHAIN_REGS == 8
#define CHAIN_REG_LIST(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#else
#error "CHAIN_REGS is 8 or 16"
#endif
#define GET_CASE(k) case k: v = R##k; break;
#define PUT_CASE(k) case k: R##k = v; break;
#define GET(dst, i) do { Vec v = R0; switch (i) { CHAIN_REG_LIST(GET_CASE) } dst = v; } while (0)
#define PUT(i, val) do { const Vec v = (val); switch (i) { CHAIN_REG_LIST(PUT_CASE) } } while (0)
/* STMT with `reg` standing for the step's destination register, in each register's case */
#define WITH_DEST_CASE(k) case k: { Vec &reg = R##k; DEST_STMT; } break;

extern "C" __global__ void __launch_bounds__(CHAIN_NT)
dvm_chain(const CStep *__restrict__ steps, int n_steps, int n_bufs, long long total, long long cols,
          long long D1, long long D2, int views, const unsigned long long *__restrict__ table,
          unsigned long long p0, unsigned long long p1, unsigned long long p2, unsigned long long p3,
          unsigned long long p4, unsigned long long p5, unsigned long long p6, unsigned long long p7,
          unsigned long long p8, unsigned long long p9, unsigned long long p10, unsigned long long p11,
          unsigned long long p12, unsigned long long p13, unsigned long long p14, unsigned long long p15) {
    __shared__ CStep st[CHAIN_MAX_STEPS];
    __shared__ float *bufs[DVM_MAX_BUFFERS];
    const int t = threadIdx.x;
    for (int k = t; k < n_steps; k += CHAIN_NT) st[k] = steps[k];
    const unsigned long long inl[16] = {p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13, p14, p15};
    for (int k = t; k < n_bufs; k += CHAIN_NT) bufs[k] = (float *)(k < 16 ? inl[k] : table[k - 16]);
    __syncthreads();
#define DECLARE(k) Vec R##k = splat(0.0f);
    CHAIN_REG_LIST(DECLARE)
#undef DECLARE
    const long long span = (long long)CHAIN_NT * 4 * CHAIN_W;   /* elements of one block's group */
    for (long long base = (long long)blockIdx.x * span + 4 * t; base - 4 * t < total;
         base += (long long)gridDim.x * span) {
        Place pl;
#pragma unroll
        for (int q = 0; q < CHAIN_W; q++) {
            long long e = base + (long long)q * CHAIN_NT * 4, left = total - e;
            pl.e[q] = e;
            pl.cnt[q] = left >= 4 ? 4 : left > 0 ? (int)left : 0;
            pl.col[q] = pl.d0[q] = pl.d1[q] = pl.d2[q] = 0;
            if (views && pl.cnt[q]) {   /* (d0, d1, d2, column); 32-bit division where it fits */
                if (total <= 0xffffffffLL) {
                    unsigned x = (unsigned)e, c = (unsigned)cols, r = x / c, z2 = (unsigned)D2, z1 = (unsigned)D1;
                    pl.col[q] = x - r * c; pl.d2[q] = r % z2; unsigned w = r / z2; pl.d1[q] = w % z1;
                    pl.d0[q] = w / z1;
                } else {
                    long long r = e / cols; pl.col[q] = e - r * cols;
                    pl.d2[q] = r % D2; long long w = r / D2; pl.d1[q] = w % D1; pl.d0[q] = w / D1;
                }
            }
        }
        for (int k = 0; k < n_steps; k++) {
            const CStep s = st[k];
            switch (s.kind) {
            case K_LOAD: {
                const float *src = bufs[s.buf] + s.off;
#define DEST_STMT load_run(reg, src, pl)
                switch (s.d) { CHAIN_REG_LIST(WITH_DEST_CASE) }
#undef DEST_STMT
                break;
            }
            case K_VIEW: {
                const float *src = bufs[s.buf] + s.off;
#define DEST_STMT load_view(reg, src, s, pl, cols, D1, D2)
                switch (s.d) { CHAIN_REG_LIST(WITH_DEST_CASE) }
#undef DEST_STMT
                break;
            }
            case K_SCALAR:
                PUT(s.d, splat(__ldg(bufs[s.buf] + s.off)));
                break;
            case K_CONST:
                PUT(s.d, splat(__uint_as_float(s.imm)));
                break;
            case K_STORE: {
                Vec x;
                GET(x, s.a);
#pragma unroll
                for (int q = 0; q < CHAIN_W; q++) {
                    float *p = bufs[s.buf] + s.off + pl.e[q];
                    if (whole4(p, pl.cnt[q])) *(float4 *)p = make_float4(x.f[q][0], x.f[q][1], x.f[q][2], x.f[q][3]);
                    else for (int j = 0; j < pl.cnt[q]; j++) p[j] = x.f[q][j];
                }
                break;
            }
            case K_UNARY: {
                Vec x;
                GET(x, s.a);
                PUT(s.d, chain_unary(s.op, x));
                break;
            }
            case K_BINARY: {
                Vec x, y;
                GET(x, s.a);
                GET(y, s.b);
                PUT(s.d, chain_binary(s.op, x, y));
                break;
            }
            case K_BINARY_IMM: {   /* rev: the immediate is the left operand */
                Vec x;
                GET(x, s.a);
                const Vec y = splat(__uint_as_float(s.imm));
                PUT(s.d, s.rev ? chain_binary(s.op, y, x) : chain_binary(s.op, x, y));
                break;
            }
            }
        }
    }
}
