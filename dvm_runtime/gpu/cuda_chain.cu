/* The chain interpreter: programs whose every instruction is elementwise float32 (chain.py decides and
 * writes the step table). Each thread runs the whole program on CHAIN_W float4s of the space at a time, so a
 * program's loads, compute and stores for those elements follow each other with no barrier and no tile.
 *
 * Per element group a thread first issues the program's loads, CHAIN_BATCH at a time into registers (all
 * in flight together) and then into its slots, before any arithmetic; then it runs the main steps (`body`)
 * on slots. A slot is CHAIN_W float4s of dynamic shared memory that only its thread touches (slot s, float4 q of
 * thread t at (s * CHAIN_W + q) * CHAIN_NT + t: conflict-free 16-byte accesses): a step names its slots by
 * number, where a register file of named variables needed a switch per operand (that design spent more
 * instructions choosing registers than computing). Values that are one number for the whole space (0-d
 * inputs, constants, arithmetic on them) are computed once per block by thread 0 into `uni`. Same arithmetic
 * as the tiled kernel (arith / funary, compiled with --fmad=false): results are bit-identical to it. */
#define CHAIN_MAX_STEPS 256
#define CHAIN_MAX_SLOTS 24
#define CHAIN_MAX_UNI 64
#define CHAIN_BATCH 4
/* float4s per thread and step: a step's dispatch is paid once for 4 * CHAIN_W elements; threads per block:
 * chain.py's CHAIN_NT */
#ifndef CHAIN_W
#define CHAIN_W 2
#endif
#ifndef CHAIN_NT
#define CHAIN_NT 128
#endif

struct CStep {   /* chain.py's STEP_WORDS words; the layout is checked there against this struct */
    unsigned char kind, op, d, a, b, buf, flags, pad;
    unsigned imm, pad2;
    long long off, s[4];
};
static_assert(sizeof(CStep) == 56, "chain.py writes 7 words per step");

enum { K_LOAD, K_SCALAR, K_VIEW, K_STORE, K_CONST, K_UNARY, K_BINARY, K_BINARY_IMM };
enum { F_REV = 1, F_A_UNI = 2, F_B_UNI = 4 };

/* where a thread's CHAIN_W float4s lie: first element, how many of its 4 are in the space, and for views
 * the element's (d0, d1, d2, column) */
struct Place {
    long long e[CHAIN_W], col[CHAIN_W], d0[CHAIN_W], d1[CHAIN_W], d2[CHAIN_W];
    int cnt[CHAIN_W];
};

__device__ __forceinline__ float4 splat4(float v) { return make_float4(v, v, v, v); }

__device__ __forceinline__ float scalar_unary(int op, float x) {
    switch (op) {
#define UN(O) case DVM_OP_##O: return funary<DVM_OP_##O>(x);
    UN(EXP) UN(LOG) UN(SQRT) UN(RSQRT) UN(TANH) UN(ERF) UN(SIGMOID) UN(ABS) UN(NEG) UN(RECIP) UN(FLOOR)
    UN(CEIL) UN(ROUND)
#undef UN
    default: return x;   /* MOV */
    }
}

__device__ __forceinline__ float scalar_binary(int op, float x, float y) {
    switch (op) {
#define AR(O) case DVM_OP_##O: return arith<float, DVM_OP_##O>(x, y);
    AR(ADD) AR(SUB) AR(MUL) AR(DIV) AR(POW) AR(MAX) AR(MIN) AR(MOD) AR(FMOD)
#undef AR
    default: return x;
    }
}

/* r[q] = op(x[q]) for the thread's CHAIN_W float4s; the switch outside the element loops */
__device__ __forceinline__ void vec_unary(int op, const float4 *x, float4 *r) {
    switch (op) {
#define UN(O) case DVM_OP_##O:                                                                           \
        _Pragma("unroll") for (int q = 0; q < CHAIN_W; q++)                                              \
            r[q] = make_float4(funary<DVM_OP_##O>(x[q].x), funary<DVM_OP_##O>(x[q].y),                   \
                               funary<DVM_OP_##O>(x[q].z), funary<DVM_OP_##O>(x[q].w));                  \
        return;
    UN(EXP) UN(LOG) UN(SQRT) UN(RSQRT) UN(TANH) UN(ERF) UN(SIGMOID) UN(ABS) UN(NEG) UN(RECIP) UN(FLOOR)
    UN(CEIL) UN(ROUND)
#undef UN
    default:
#pragma unroll
        for (int q = 0; q < CHAIN_W; q++) r[q] = x[q];
    }
}

__device__ __forceinline__ void vec_binary(int op, const float4 *x, const float4 *y, float4 *r) {
    switch (op) {
#define AR(O) case DVM_OP_##O:                                                                           \
        _Pragma("unroll") for (int q = 0; q < CHAIN_W; q++)                                              \
            r[q] = make_float4(arith<float, DVM_OP_##O>(x[q].x, y[q].x),                                 \
                               arith<float, DVM_OP_##O>(x[q].y, y[q].y),                                 \
                               arith<float, DVM_OP_##O>(x[q].z, y[q].z),                                 \
                               arith<float, DVM_OP_##O>(x[q].w, y[q].w));                                \
        return;
    AR(ADD) AR(SUB) AR(MUL) AR(DIV) AR(POW) AR(MAX) AR(MIN) AR(MOD) AR(FMOD)
#undef AR
    default:
#pragma unroll
        for (int q = 0; q < CHAIN_W; q++) r[q] = x[q];
    }
}

__device__ __forceinline__ bool whole4(const float *p, int cnt) {
    return cnt == 4 && ((unsigned long long)p & 15) == 0;
}

/* r = the buffer's elements at the thread's places (contiguous) */
__device__ __forceinline__ void load_run(float4 *r, const float *base, const Place &pl) {
#pragma unroll
    for (int q = 0; q < CHAIN_W; q++) {
        const float *p = base + pl.e[q];
        if (whole4(p, pl.cnt[q])) {
            r[q] = __ldg((const float4 *)p);
        } else {
            float v[4];
            for (int j = 0; j < 4; j++) v[j] = j < pl.cnt[q] ? __ldg(p + j) : 0.0f;
            r[q] = make_float4(v[0], v[1], v[2], v[3]);
        }
    }
}

/* r = element (d0, d1, d2, col) at off + d0*s0 + d1*s1 + d2*s2 + col*s3 for each of the thread's places */
__device__ __forceinline__ void load_view(float4 *r, const float *base, const CStep &s, const Place &pl,
                                          long long cols, long long D1, long long D2) {
#pragma unroll
    for (int q = 0; q < CHAIN_W; q++) {
        const float *p = base + pl.d0[q] * s.s[0] + pl.d1[q] * s.s[1] + pl.d2[q] * s.s[2]
                         + pl.col[q] * s.s[3];
        if (s.s[3] == 1 && pl.col[q] + 4 <= cols && whole4(p, pl.cnt[q])) {   /* 4 columns of a row */
            r[q] = __ldg((const float4 *)p);
            continue;
        }
        long long a0 = pl.d0[q], a1 = pl.d1[q], a2 = pl.d2[q], c = pl.col[q];
        float v[4];
        for (int j = 0; j < 4; j++) {
            v[j] = j < pl.cnt[q] ? __ldg(base + a0 * s.s[0] + a1 * s.s[1] + a2 * s.s[2] + c * s.s[3]) : 0.0f;
            if (++c == cols) { c = 0; if (++a2 == D2) { a2 = 0; if (++a1 == D1) { a1 = 0; a0++; } } }
        }
        r[q] = make_float4(v[0], v[1], v[2], v[3]);
    }
}

/* dynamic shared memory: the step table, then n_slots slots (vm.py's chain_shared_bytes) */
extern "C" __global__ void __launch_bounds__(CHAIN_NT)
dvm_chain(const CStep *__restrict__ steps, int n_uni, int n_loads, int n_main, int n_slots, int n_bufs,
          long long total, long long cols, long long D1, long long D2, int views,
          DVM_BUFFER_PARAMS) {
    extern __shared__ __align__(16) unsigned char chain_smem[];
    __shared__ float *bufs[DVM_MAX_BUFFERS];
    __shared__ float uni[CHAIN_MAX_UNI];
    const int t = threadIdx.x, n_steps = n_uni + n_loads + n_main;
    CStep *st = (CStep *)chain_smem;
    float4 *slots = (float4 *)(chain_smem + ((n_steps * sizeof(CStep) + 15) & ~(size_t)15));
    for (int k = t; k < n_steps; k += CHAIN_NT) st[k] = steps[k];
    const unsigned long long inl[16] = DVM_INLINE_POINTERS;
    for (int k = t; k < n_bufs; k += CHAIN_NT) bufs[k] = (float *)(k < 16 ? inl[k] : table[k - 16]);
    __syncthreads();
    if (t == 0) {   /* the uniform values, once per block */
        for (int k = 0; k < n_uni; k++) {
            const CStep &s = st[k];
            float x = uni[s.a], imm = __uint_as_float(s.imm);
            switch (s.kind) {
            case K_SCALAR: uni[s.d] = __ldg(bufs[s.buf] + s.off); break;
            case K_CONST: uni[s.d] = imm; break;
            case K_UNARY: uni[s.d] = scalar_unary(s.op, x); break;
            case K_BINARY: uni[s.d] = scalar_binary(s.op, x, uni[s.b]); break;
            case K_BINARY_IMM:
                uni[s.d] = (s.flags & F_REV) ? scalar_binary(s.op, imm, x) : scalar_binary(s.op, x, imm);
                break;
            }
        }
    }
    __syncthreads();
    const CStep *loads = st + n_uni, *body = loads + n_loads;
    float4 *mine = slots + t;   /* slot s, float4 q: mine[(s * CHAIN_W + q) * CHAIN_NT] */
#define SLOT(s, q) mine[((s) * CHAIN_W + (q)) * CHAIN_NT]
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
                    unsigned x = (unsigned)e, c = (unsigned)cols, r = x / c;
                    unsigned z2 = (unsigned)D2, z1 = (unsigned)D1;
                    pl.col[q] = x - r * c; pl.d2[q] = r % z2; unsigned w = r / z2; pl.d1[q] = w % z1;
                    pl.d0[q] = w / z1;
                } else {
                    long long r = e / cols; pl.col[q] = e - r * cols;
                    pl.d2[q] = r % D2; long long w = r / D2; pl.d1[q] = w % D1; pl.d0[q] = w / D1;
                }
            }
        }
        for (int k0 = 0; k0 < n_loads; k0 += CHAIN_BATCH) {   /* CHAIN_BATCH loads in flight, then slots */
            float4 v[CHAIN_BATCH][CHAIN_W];
#pragma unroll
            for (int j = 0; j < CHAIN_BATCH; j++) {
                if (k0 + j >= n_loads) break;
                const CStep &s = loads[k0 + j];
                const float *src = bufs[s.buf] + s.off;
                if (s.kind == K_LOAD) load_run(v[j], src, pl);
                else load_view(v[j], src, s, pl, cols, D1, D2);
            }
#pragma unroll
            for (int j = 0; j < CHAIN_BATCH; j++) {
                if (k0 + j >= n_loads) break;
#pragma unroll
                for (int q = 0; q < CHAIN_W; q++) SLOT(loads[k0 + j].d, q) = v[j][q];
            }
        }
        for (int k = 0; k < n_main; k++) {
            const CStep &s = body[k];
            float4 x[CHAIN_W], y[CHAIN_W], r[CHAIN_W];
#pragma unroll
            for (int q = 0; q < CHAIN_W; q++) x[q] = (s.flags & F_A_UNI) ? splat4(uni[s.a]) : SLOT(s.a, q);
            if (s.kind == K_STORE) {
#pragma unroll
                for (int q = 0; q < CHAIN_W; q++) {
                    float *p = bufs[s.buf] + s.off + pl.e[q];
                    if (whole4(p, pl.cnt[q])) *(float4 *)p = x[q];
                    else {
                        const float v[4] = {x[q].x, x[q].y, x[q].z, x[q].w};
                        for (int j = 0; j < pl.cnt[q]; j++) p[j] = v[j];
                    }
                }
                continue;
            }
            if (s.kind == K_UNARY) {
                vec_unary(s.op, x, r);
            } else {
#pragma unroll
                for (int q = 0; q < CHAIN_W; q++)
                    y[q] = s.kind == K_BINARY_IMM ? splat4(__uint_as_float(s.imm))
                         : (s.flags & F_B_UNI) ? splat4(uni[s.b]) : SLOT(s.b, q);
                if (s.flags & F_REV) vec_binary(s.op, y, x, r);
                else vec_binary(s.op, x, y, r);
            }
#pragma unroll
            for (int q = 0; q < CHAIN_W; q++) SLOT(s.d, q) = r[q];
        }
    }
#undef SLOT
}
