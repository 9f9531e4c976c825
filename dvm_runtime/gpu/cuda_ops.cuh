/* The DVM's compute forms on tile registers in shared memory (included first by vm.py; see cuda_vm.cu). */
/* The DVM interpreter for NVIDIA GPUs (isa.py's execution model). vm.py prepends the header generated from
 * isa.py, so opcode numbers cannot drift from Python. The host validated the program before launch: nothing
 * here checks bounds again. Each block copies the bytecode into shared memory, thread 0 decodes it once
 * (adding a barrier flag where one thread reads what another wrote), then the block loops over tiles;
 * tile registers live in shared memory. Thread t owns elements (k*NT + t)*4 .. +3 of FULL registers and
 * rows t + k*NT of ROW registers, so chains of elementwise instructions need no barrier at all. */
#define NT 256
#define VEC 4
#define REDUCE_GROUPS (NT / DVM_REDUCE_LANES)

struct Ins {
    unsigned char op, dt, flags, form, sync;
    unsigned short d, a, b, c;
    long long off;
    long long s[4];
    unsigned long long imm;
};

static_assert(sizeof(Ins) == 64, "vm.py sizes shared memory with 64-byte instructions");

struct Ctx {
    char *regs;
    char *scratch;                  /* reductions' chunk results: tr * chunks * DVM_REDUCE_LANES elements */
    long long *idx;                 /* d0, d1, d2 of each tile row: idx[k * tr + i] */
    unsigned long long *bufs;
    long long rows, cols, r0, c0, tr;
    unsigned regstride;
    int nr, nc, n, t;
};

/* ---- scalar semantics (match pyvm.py / vm_kernels.c) ---- */
template <class T> struct IsF { static const bool v = false; };
template <> struct IsF<float> { static const bool v = true; };
template <class T> struct U_ { typedef unsigned int t; };
template <> struct U_<long long> { typedef unsigned long long t; };

__device__ __forceinline__ float f_max(float x, float y) { return (x >= y || x != x) ? x : y; }
__device__ __forceinline__ float f_min(float x, float y) { return (x <= y || x != x) ? x : y; }
__device__ __forceinline__ float f_mod(float x, float y) {
    float r = fmodf(x, y);
    return r != 0.0f ? (((r < 0.0f) != (y < 0.0f)) ? r + y : r) : copysignf(0.0f, y);
}

template <class T, int OP> __device__ __forceinline__ T arith(T x, T y) {
    if constexpr (IsF<T>::v) {
        if constexpr (OP == DVM_OP_ADD) return x + y;
        else if constexpr (OP == DVM_OP_SUB) return x - y;
        else if constexpr (OP == DVM_OP_MUL) return x * y;
        else if constexpr (OP == DVM_OP_DIV) return x / y;
        else if constexpr (OP == DVM_OP_POW) return powf(x, y);
        else if constexpr (OP == DVM_OP_MAX) return f_max(x, y);
        else if constexpr (OP == DVM_OP_MIN) return f_min(x, y);
        else if constexpr (OP == DVM_OP_MOD) return f_mod(x, y);
        else if constexpr (OP == DVM_OP_FMOD) return fmodf(x, y);
        else return x;
    } else {
        typedef typename U_<T>::t U;
        if constexpr (OP == DVM_OP_ADD) return (T)((U)x + (U)y);
        else if constexpr (OP == DVM_OP_SUB) return (T)((U)x - (U)y);
        else if constexpr (OP == DVM_OP_MUL) return (T)((U)x * (U)y);
        else if constexpr (OP == DVM_OP_DIV) {
            T ys = (y == 0 || y == -1) ? (T)1 : y, q = x / ys;
            return y == 0 ? (T)0 : (y == -1 ? (T)(0 - (U)x) : q);
        } else if constexpr (OP == DVM_OP_MOD) {
            T ys = (y == 0 || y == -1) ? (T)1 : y, r = x % ys;
            r = (r != 0 && ((r < 0) != (y < 0))) ? (T)((U)r + (U)y) : r;
            return (y == 0 || y == -1) ? (T)0 : r;
        } else if constexpr (OP == DVM_OP_MAX) return x >= y ? x : y;
        else if constexpr (OP == DVM_OP_MIN) return x <= y ? x : y;
        else if constexpr (OP == DVM_OP_AND) return x & y;
        else if constexpr (OP == DVM_OP_OR) return x | y;
        else if constexpr (OP == DVM_OP_XOR) return x ^ y;
        else return x;
    }
}

template <class T, int OP> __device__ __forceinline__ int compare(T x, T y) {
    if constexpr (OP == DVM_OP_EQ) return x == y;
    else if constexpr (OP == DVM_OP_NE) return x != y;
    else if constexpr (OP == DVM_OP_LT) return x < y;
    else if constexpr (OP == DVM_OP_LE) return x <= y;
    else if constexpr (OP == DVM_OP_GT) return x > y;
    else return x >= y;
}

__device__ __forceinline__ float erf_fit(float x) {
    float xf = x < -4.0f ? -4.0f : (x > 4.0f ? 4.0f : x);   /* NaN stays NaN */
    float z = xf * xf;   /* compiled with --fmad=false: no contraction, as the ISA says */
    float p = DVM_ERF_P[0], q = DVM_ERF_Q[0];
#pragma unroll
    for (int k = 1; k < 7; k++) p = p * z + DVM_ERF_P[k];
#pragma unroll
    for (int k = 1; k < 5; k++) q = q * z + DVM_ERF_Q[k];
    return (xf * p) / q;
}

template <int OP> __device__ __forceinline__ float funary(float x) {
    if constexpr (OP == DVM_OP_EXP) return expf(x);
    else if constexpr (OP == DVM_OP_LOG) return logf(x);
    else if constexpr (OP == DVM_OP_SQRT) return sqrtf(x);
    else if constexpr (OP == DVM_OP_RSQRT) return 1.0f / sqrtf(x);
    else if constexpr (OP == DVM_OP_TANH) return tanhf(x);
    else if constexpr (OP == DVM_OP_ERF) return erf_fit(x);
    else if constexpr (OP == DVM_OP_SIGMOID) return 1.0f / (1.0f + expf(-x));
    else if constexpr (OP == DVM_OP_ABS) return fabsf(x);
    else if constexpr (OP == DVM_OP_NEG) return -x;
    else if constexpr (OP == DVM_OP_RECIP) return 1.0f / x;
    else if constexpr (OP == DVM_OP_FLOOR) return floorf(x);
    else if constexpr (OP == DVM_OP_CEIL) return ceilf(x);
    else if constexpr (OP == DVM_OP_ROUND) return rintf(x);
    else return x;
}

__device__ __forceinline__ float half_bits_to_f(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ unsigned short f_to_half_bits(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

template <class T> __device__ __forceinline__ T from_bits(unsigned u) {
    if constexpr (IsF<T>::v) return __uint_as_float(u);
    else return (T)(int)u;
}
template <class T> __device__ __forceinline__ unsigned to_bits(T v) {
    if constexpr (IsF<T>::v) return __float_as_uint(v);
    else return (unsigned)v;
}
template <class T> __device__ __forceinline__ T imm_of(const Ins &in) {
    if constexpr (IsF<T>::v) return __uint_as_float((unsigned)(in.imm & 0xffffffffull));
    else if constexpr (sizeof(T) == 8) return (T)in.imm;
    else return in.dt == DVM_DT_BOOL ? (T)(in.imm & 1) : (T)(int)(unsigned)(in.imm & 0xffffffffull);
}

/* ---- register access ---- */
template <class T> __device__ __forceinline__ T *reg(const Ctx &c, int r) {
    return (T *)(c.regs + (size_t)r * c.regstride);
}

/* An operand of a FULL-result instruction: FULL register, ROW register broadcast along rows, or immediate. */
template <class T> struct Opnd {
    const T *p;
    T imm;
    int mode;   /* 0 FULL, 1 ROW, 2 immediate */
};

template <class T> __device__ __forceinline__ Opnd<T> opnd(const Ctx &c, int r, int row) {
    Opnd<T> o;
    o.p = reg<T>(c, r);
    o.mode = row ? 1 : 0;
    o.imm = (T)0;
    return o;
}

template <class T> __device__ __forceinline__ T at_row(const Opnd<T> &o, int i) {
    return o.mode == 2 ? o.imm : o.p[i];
}

/* Elements e0..e0+cnt-1 of an operand; (i0, j0) is e0's tile row and column. */
template <class T>
__device__ __forceinline__ void get4(const Ctx &c, const Opnd<T> &o, int e0, int cnt, int i0, int j0,
                                     T v[4]) {
    if (o.mode == 0) {
        if (sizeof(T) == 4 && cnt == 4) {
            uint4 w = *(const uint4 *)(o.p + e0);
            v[0] = from_bits<T>(w.x); v[1] = from_bits<T>(w.y);
            v[2] = from_bits<T>(w.z); v[3] = from_bits<T>(w.w);
        } else {
#pragma unroll
            for (int k = 0; k < 4; k++) v[k] = k < cnt ? o.p[e0 + k] : (T)0;
        }
    } else if (o.mode == 1) {
        int i = i0, j = j0;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            v[k] = k < cnt ? o.p[i] : (T)0;
            if (++j == c.nc) { j = 0; i++; }
        }
    } else {
#pragma unroll
        for (int k = 0; k < 4; k++) v[k] = o.imm;
    }
}

template <class T> __device__ __forceinline__ void put4(T *d, int e0, int cnt, const T v[4]) {
    if (sizeof(T) == 4 && cnt == 4) {
        *(uint4 *)(d + e0) =
            make_uint4(to_bits<T>(v[0]), to_bits<T>(v[1]), to_bits<T>(v[2]), to_bits<T>(v[3]));
    } else {
#pragma unroll
        for (int k = 0; k < 4; k++)
            if (k < cnt) d[e0 + k] = v[k];
    }
}

/* The loop over this thread's elements of a FULL result: body(e0, cnt, i0, j0). */
#define FOR_ELEMS(c, ...)                                                                  \
    for (int e0 = (c).t * VEC; e0 < (c).n; e0 += NT * VEC) {                               \
        int cnt = (c).n - e0 < VEC ? (c).n - e0 : VEC;                                     \
        int i0 = (c).nr == 1 ? 0 : e0 / (c).nc, j0 = e0 - i0 * (c).nc;                     \
        __VA_ARGS__                                                                        \
    }
#define FOR_ROWS(c, i) for (int i = (c).t; i < (c).nr; i += NT)

/* ---- compute forms ---- */
template <class T, class TD, int OP, bool CMP>
__device__ void bin(const Ctx &c, const Ins &in, const Opnd<T> &A, const Opnd<T> &B) {
    TD *d = reg<TD>(c, in.d);
    if (in.flags & DVM_F_ROW) {
        FOR_ROWS(c, i) {
            T x = at_row(A, i), y = at_row(B, i);
            if constexpr (CMP) d[i] = compare<T, OP>(x, y); else d[i] = arith<T, OP>(x, y);
        }
        return;
    }
    FOR_ELEMS(c, {
        T a[4], b[4];
        TD r[4];
        get4(c, A, e0, cnt, i0, j0, a);
        get4(c, B, e0, cnt, i0, j0, b);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            if constexpr (CMP) r[k] = compare<T, OP>(a[k], b[k]); else r[k] = arith<T, OP>(a[k], b[k]);
        }
        put4(d, e0, cnt, r);
    })
}

template <class T> __device__ void exec_binary(const Ctx &c, const Ins &in) {
    int imm = in.form == DVM_FORM_BINARY_IMM;
    int op = imm ? in.op - DVM_IMM_DELTA : in.op;
    Opnd<T> A = opnd<T>(c, in.a, in.flags & DVM_F_A_ROW), B;
    if (imm) {
        B.p = 0; B.mode = 2; B.imm = imm_of<T>(in);
        if (in.b == 1) { Opnd<T> s = A; A = B; B = s; }
    } else {
        B = opnd<T>(c, in.b, in.flags & DVM_F_B_ROW);
    }
    switch (op) {
#define AR(O) case DVM_OP_##O: bin<T, T, DVM_OP_##O, false>(c, in, A, B); break;
#define CM(O) case DVM_OP_##O: bin<T, int, DVM_OP_##O, true>(c, in, A, B); break;
    AR(ADD) AR(SUB) AR(MUL) AR(DIV) AR(MAX) AR(MIN) AR(MOD)
    CM(EQ) CM(NE) CM(LT) CM(LE) CM(GT) CM(GE)
    default:
        if constexpr (IsF<T>::v) {
            if (op == DVM_OP_POW) bin<T, T, DVM_OP_POW, false>(c, in, A, B);
            else if (op == DVM_OP_FMOD) bin<T, T, DVM_OP_FMOD, false>(c, in, A, B);
        } else if constexpr (sizeof(T) == 4) {
            if (op == DVM_OP_AND) bin<T, T, DVM_OP_AND, false>(c, in, A, B);
            else if (op == DVM_OP_OR) bin<T, T, DVM_OP_OR, false>(c, in, A, B);
            else if (op == DVM_OP_XOR) bin<T, T, DVM_OP_XOR, false>(c, in, A, B);
        }
    }
#undef AR
#undef CM
}

template <class T, class TD, int OP> __device__ __forceinline__ TD un1(T x) {
    if constexpr (OP == DVM_OP_ISNAN) return x != x;
    else if constexpr (OP == DVM_OP_ISINF) return isinf(x) ? 1 : 0;
    else if constexpr (IsF<T>::v) return funary<OP>(x);
    else {
        typedef typename U_<T>::t U;
        if constexpr (OP == DVM_OP_NEG) return (T)(0 - (U)x);
        else if constexpr (OP == DVM_OP_ABS) return x < 0 ? (T)(0 - (U)x) : x;
        else if constexpr (OP == DVM_OP_NOT) return x == 0;
        else return x;
    }
}

template <class T, class TD, int OP> __device__ void un(const Ctx &c, const Ins &in) {
    Opnd<T> A = opnd<T>(c, in.a, in.flags & DVM_F_A_ROW);
    TD *d = reg<TD>(c, in.d);
    if (in.flags & DVM_F_ROW) {
        FOR_ROWS(c, i) d[i] = un1<T, TD, OP>(A.p[i]);
        return;
    }
    FOR_ELEMS(c, {
        T a[4];
        TD r[4];
        get4(c, A, e0, cnt, i0, j0, a);
#pragma unroll
        for (int k = 0; k < 4; k++) r[k] = un1<T, TD, OP>(a[k]);
        put4(d, e0, cnt, r);
    })
}

template <class T> __device__ void bcast_row(const Ctx &c, const Ins &in) {
    Opnd<T> A = opnd<T>(c, in.a, 1);
    T *d = reg<T>(c, in.d);
    FOR_ELEMS(c, {
        T a[4];
        get4(c, A, e0, cnt, i0, j0, a);
        put4(d, e0, cnt, a);
    })
}

template <class T> __device__ void exec_unary(const Ctx &c, const Ins &in) {
    if (in.op == DVM_OP_BCAST_ROW) { bcast_row<T>(c, in); return; }
    if constexpr (IsF<T>::v) {
        switch (in.op) {
#define UF(O) case DVM_OP_##O: un<float, float, DVM_OP_##O>(c, in); break;
        UF(MOV) UF(EXP) UF(LOG) UF(SQRT) UF(RSQRT) UF(TANH) UF(ERF) UF(SIGMOID) UF(ABS) UF(NEG) UF(RECIP)
        UF(FLOOR) UF(CEIL) UF(ROUND)
#undef UF
        case DVM_OP_ISNAN: un<float, int, DVM_OP_ISNAN>(c, in); break;
        case DVM_OP_ISINF: un<float, int, DVM_OP_ISINF>(c, in); break;
        }
    } else {
        switch (in.op) {
        case DVM_OP_MOV: un<T, T, DVM_OP_MOV>(c, in); break;
        case DVM_OP_NEG: un<T, T, DVM_OP_NEG>(c, in); break;
        case DVM_OP_ABS: un<T, T, DVM_OP_ABS>(c, in); break;
        case DVM_OP_NOT: un<T, T, DVM_OP_NOT>(c, in); break;
        }
    }
}

/* CAST to K (0 F32, 1 F16 held as F32, 2 I32, 3 I64, 4 BOOL) from compute type S. */
template <class S, class D, int K> __device__ __forceinline__ D cvt(S x) {
    if constexpr (K == 4) return x != 0 ? 1 : 0;
    else if constexpr (K == 0) return (float)x;
    else if constexpr (K == 1) return half_bits_to_f(f_to_half_bits((float)x));
    else if constexpr (IsF<S>::v) {
        const float lim = K == 2 ? 2147483648.0f : 9223372036854775808.0f;
        const D mn = K == 2 ? (D)(-2147483647 - 1) : (D)(-9223372036854775807ll - 1);
        return (x >= -lim && x < lim) ? (D)x : mn;
    } else {
        return (D)x;   /* int -> int wraps (two's complement) */
    }
}

template <class S, class D, int K> __device__ void cast_loop(const Ctx &c, const Ins &in) {
    Opnd<S> A = opnd<S>(c, in.a, in.flags & DVM_F_A_ROW);
    D *d = reg<D>(c, in.d);
    if (in.flags & DVM_F_ROW) {
        FOR_ROWS(c, i) d[i] = cvt<S, D, K>(A.p[i]);
        return;
    }
    FOR_ELEMS(c, {
        S a[4];
        D r[4];
        get4(c, A, e0, cnt, i0, j0, a);
#pragma unroll
        for (int k = 0; k < 4; k++) r[k] = cvt<S, D, K>(a[k]);
        put4(d, e0, cnt, r);
    })
}

template <class S> __device__ void exec_cast(const Ctx &c, const Ins &in) {
    switch (in.dt) {
    case DVM_DT_F32: cast_loop<S, float, 0>(c, in); break;
    case DVM_DT_F16: cast_loop<S, float, 1>(c, in); break;
    case DVM_DT_I32: cast_loop<S, int, 2>(c, in); break;
    case DVM_DT_I64: cast_loop<S, long long, 3>(c, in); break;
    case DVM_DT_BOOL: cast_loop<S, int, 4>(c, in); break;
    }
}

template <class T> __device__ void exec_select(const Ctx &c, const Ins &in) {
    Opnd<int> C = opnd<int>(c, in.a, in.flags & DVM_F_A_ROW);
    Opnd<T> A = opnd<T>(c, in.b, in.flags & DVM_F_B_ROW), B = opnd<T>(c, in.c, in.flags & DVM_F_C_ROW);
    T *d = reg<T>(c, in.d);
    if (in.flags & DVM_F_ROW) {
        FOR_ROWS(c, i) d[i] = C.p[i] ? A.p[i] : B.p[i];
        return;
    }
    FOR_ELEMS(c, {
        int q[4];
        T a[4], b[4], r[4];
        get4(c, C, e0, cnt, i0, j0, q);
        get4(c, A, e0, cnt, i0, j0, a);
        get4(c, B, e0, cnt, i0, j0, b);
#pragma unroll
        for (int k = 0; k < 4; k++) r[k] = q[k] ? a[k] : b[k];
        put4(d, e0, cnt, r);
    })
}

template <class T> __device__ void exec_const(const Ctx &c, const Ins &in) {
    T v = imm_of<T>(in), *d = reg<T>(c, in.d);
    if (in.flags & DVM_F_ROW) {
        FOR_ROWS(c, i) d[i] = v;
        return;
    }
    T r[4] = {v, v, v, v};
    FOR_ELEMS(c, { put4(d, e0, cnt, r); })
}

/* Row reductions in the ISA's order (isa.py). Rows of one chunk: 8 threads per row, lane l sums elements l,
 * l+8, ... in order. Longer rows: every (row, chunk, lane) is a chain of its own, spread over all threads into
 * c.scratch (a 1-row tile of 8192 has 512 chains where 8 threads would each add 1024 elements in turn); then
 * the row's 8 threads combine their lane's chunk results in chunk order. Last the fixed tree
 * ((l0 op l4) op (l2 op l6)) op ((l1 op l5) op (l3 op l7)) through shuffles, lower lane left. */
template <class T, int OP> __device__ __forceinline__ T red1(T a, T b) {
    if constexpr (OP == DVM_OP_RSUM) return arith<T, DVM_OP_ADD>(a, b);
    else if constexpr (OP == DVM_OP_RPROD) return arith<T, DVM_OP_MUL>(a, b);
    else if constexpr (OP == DVM_OP_RMAX) return arith<T, DVM_OP_MAX>(a, b);
    else return arith<T, DVM_OP_MIN>(a, b);
}

template <class T, int OP> __device__ __forceinline__ T red_identity() {
    if constexpr (IsF<T>::v) {
        if constexpr (OP == DVM_OP_RSUM) return -0.0f;
        else if constexpr (OP == DVM_OP_RPROD) return 1.0f;
        else if constexpr (OP == DVM_OP_RMAX) return -__int_as_float(0x7f800000);
        else return __int_as_float(0x7f800000);
    } else if constexpr (sizeof(T) == 8) {
        if constexpr (OP == DVM_OP_RSUM) return 0;
        else if constexpr (OP == DVM_OP_RPROD) return 1;
        else if constexpr (OP == DVM_OP_RMAX) return (T)(-9223372036854775807ll - 1);
        else return (T)9223372036854775807ll;
    } else {
        if constexpr (OP == DVM_OP_RSUM) return 0;
        else if constexpr (OP == DVM_OP_RPROD) return 1;
        else if constexpr (OP == DVM_OP_RMAX) return (T)(-2147483647 - 1);
        else return (T)2147483647;
    }
}

#define PER_CHAIN (DVM_REDUCE_CHUNK / DVM_REDUCE_LANES)

template <class T, int OP> __device__ void reduce(const Ctx &c, const Ins &in) {
    const T *a = reg<T>(c, in.a);
    T *d = reg<T>(c, in.d), *part = (T *)c.scratch;
    const int nch = (c.nc + DVM_REDUCE_CHUNK - 1) / DVM_REDUCE_CHUNK;
    if (nch > 1) {
        for (int q = c.t; q < c.nr * nch * DVM_REDUCE_LANES; q += NT) {
            const int l = q % DVM_REDUCE_LANES, rk = q / DVM_REDUCE_LANES, i = rk / nch, k = rk - i * nch;
            const T *x = a + (size_t)i * c.nc + k * DVM_REDUCE_CHUNK + l;
            const int n = min(c.nc - k * DVM_REDUCE_CHUNK - l, DVM_REDUCE_CHUNK - l);  /* elements past l */
            /* a warp holds four chunks at the same banks: each starts 0-3 steps late (no conflicts) */
            const int late = rk & 3;
            T acc = red_identity<T, OP>();
#pragma unroll
            for (int it = 0; it < PER_CHAIN + 3; it++) {
                const int s = (it - late) * DVM_REDUCE_LANES;
                if (s >= 0 && s < n) acc = red1<T, OP>(acc, x[s]);
            }
            part[q] = acc;
        }
        __syncthreads();
    }
    int g = c.t / DVM_REDUCE_LANES, l = c.t % DVM_REDUCE_LANES;
    for (int base = 0; base < c.nr; base += REDUCE_GROUPS) {
        int i = base + g;
        T acc = red_identity<T, OP>();
        if (i < c.nr && nch > 1) {
            const T *p = part + (size_t)i * nch * DVM_REDUCE_LANES + l;
#pragma unroll 8
            for (int k = 0; k < nch; k++) acc = red1<T, OP>(acc, p[k * DVM_REDUCE_LANES]);
        } else if (i < c.nr) {
            const T *row = a + (size_t)i * c.nc;
#pragma unroll 8
            for (int j = l; j < c.nc; j += DVM_REDUCE_LANES) acc = red1<T, OP>(acc, row[j]);
        }
#pragma unroll
        for (int m = 4; m >= 1; m >>= 1) {
            T o = __shfl_xor_sync(0xffffffffu, acc, m);
            acc = (l & m) ? red1<T, OP>(o, acc) : red1<T, OP>(acc, o);
        }
        if (i < c.nr && l == 0) d[i] = acc;
    }
    if (nch > 1) __syncthreads();   /* the next reduction writes c.scratch again */
}

template <class T> __device__ void exec_reduce(const Ctx &c, const Ins &in) {
    switch (in.op) {
    case DVM_OP_RSUM: reduce<T, DVM_OP_RSUM>(c, in); break;
    case DVM_OP_RPROD: reduce<T, DVM_OP_RPROD>(c, in); break;
    case DVM_OP_RMAX: reduce<T, DVM_OP_RMAX>(c, in); break;
    case DVM_OP_RMIN: reduce<T, DVM_OP_RMIN>(c, in); break;
    }
}

