/* The CUDA DVM interpreter: memory forms, the decoder and the kernel. vm.py builds the source as isa.py's
 * generated header + cuda_ops.cuh + this file. */
/* ---- memory forms ---- */
template <class R, int BT> __device__ __forceinline__ R ld(const char *buf, long long g) {
    if constexpr (BT == DVM_DT_F32) return __ldg((const float *)buf + g);
    else if constexpr (BT == DVM_DT_F16) return half_bits_to_f(__ldg((const unsigned short *)buf + g));
    else if constexpr (BT == DVM_DT_I32) return __ldg((const int *)buf + g);
    else if constexpr (BT == DVM_DT_I64) return __ldg((const long long *)buf + g);
    else return __ldg((const unsigned char *)buf + g) != 0;
}

template <class R, int BT> __device__ __forceinline__ void st(char *buf, long long g, R v) {
    if constexpr (BT == DVM_DT_F32) ((float *)buf)[g] = v;
    else if constexpr (BT == DVM_DT_F16) ((unsigned short *)buf)[g] = f_to_half_bits(v);
    else if constexpr (BT == DVM_DT_I32) ((int *)buf)[g] = v;
    else if constexpr (BT == DVM_DT_I64) ((long long *)buf)[g] = v;
    else ((unsigned char *)buf)[g] = v != 0;
}

__device__ __forceinline__ long long row_base(const Ctx &c, const Ins &in, int i) {
    return in.off + c.idx[i] * in.s[0] + c.idx[c.tr + i] * in.s[1] + c.idx[2 * c.tr + i] * in.s[2];
}

/* Buffers may be views at any offset: 16-byte accesses only where the address allows them. */
__device__ __forceinline__ bool aligned16(const char *buf, long long g) {
    return (((unsigned long long)buf + 4ull * (unsigned long long)g) & 15ull) == 0;
}

template <class R, int BT> __device__ void mem(const Ctx &c, const Ins &in) {
    const int load = in.op == DVM_OP_LOAD || in.op == DVM_OP_LOAD_VIEW || in.op == DVM_OP_LOAD_ROW;
    char *buf = (char *)c.bufs[load ? in.a : in.d];
    R *r = reg<R>(c, load ? in.d : in.a);
    const bool wide = BT == DVM_DT_F32 || BT == DVM_DT_I32;   /* 16-byte accesses where aligned */
    if (in.op == DVM_OP_LOAD_ROW || in.op == DVM_OP_STORE_ROW) {
        FOR_ROWS(c, i) {
            long long g = row_base(c, in, i);
            if (load) r[i] = ld<R, BT>(buf, g); else st<R, BT>(buf, g, r[i]);
        }
        return;
    }
    /* One run: element e of the tile at g0 + e * step (contiguous forms, and views of one-row tiles). */
    long long g0 = 0, step = 0;
    bool run = in.op == DVM_OP_LOAD || in.op == DVM_OP_STORE;
    if (run) {
        g0 = in.off + c.r0 * c.cols + c.c0;
        step = 1;
    } else if (c.nr == 1) {
        g0 = row_base(c, in, 0) + c.c0 * in.s[3];
        step = in.s[3];
        run = true;
    }
    if (run) {
        if (step == 0 && load) {   /* a broadcast value: one read per tile */
            R v4[4];
            v4[0] = v4[1] = v4[2] = v4[3] = ld<R, BT>(buf, g0);
            FOR_ELEMS(c, { (void)i0; (void)j0; put4(r, e0, cnt, v4); })
            return;
        }
        if (step == 1 && wide && aligned16(buf, g0)) {
            /* batches of 4 x 16 bytes per thread in flight: global reads first, shared writes after */
            for (int b = c.t * VEC; b < c.n; b += 4 * NT * VEC) {
                uint4 v[4];
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    int e0 = b + q * NT * VEC;
                    if (e0 + VEC <= c.n)
                        v[q] = load ? __ldg((const uint4 *)(buf + 4 * (g0 + e0))) : *(const uint4 *)(r + e0);
                }
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    int e0 = b + q * NT * VEC;
                    if (e0 + VEC <= c.n) {
                        if (load) *(uint4 *)(r + e0) = v[q]; else *(uint4 *)(buf + 4 * (g0 + e0)) = v[q];
                    } else {
                        for (int e = e0; e < c.n; e++) {
                            if (load) r[e] = ld<R, BT>(buf, g0 + e); else st<R, BT>(buf, g0 + e, r[e]);
                        }
                    }
                }
            }
            return;
        }
        FOR_ELEMS(c, {   /* other strides and dtypes: element by element, same owners as compute */
            (void)i0; (void)j0;
            for (int k = 0; k < cnt; k++) {
                long long g = g0 + (long long)(e0 + k) * step;
                if (load) r[e0 + k] = ld<R, BT>(buf, g); else st<R, BT>(buf, g, r[e0 + k]);
            }
        })
        return;
    }
    FOR_ELEMS(c, {   /* views: (i, j) at off + d0*s0 + d1*s1 + d2*s2 + (c0 + j)*s3 */
        long long g = row_base(c, in, i0) + (c.c0 + j0) * in.s[3];
        if (wide && cnt == 4 && in.s[3] == 1 && j0 + 3 < c.nc && aligned16(buf, g)) {
            if (load) *(uint4 *)(r + e0) = __ldg((const uint4 *)(buf + 4 * g));
            else *(uint4 *)(buf + 4 * g) = *(const uint4 *)(r + e0);
        } else {
            int i = i0, j = j0;
            for (int k = 0; k < cnt; k++) {
                long long gk = row_base(c, in, i) + (c.c0 + j) * in.s[3];
                if (load) r[e0 + k] = ld<R, BT>(buf, gk); else st<R, BT>(buf, gk, r[e0 + k]);
                if (++j == c.nc) { j = 0; i++; }
            }
        }
    })
}

__device__ void exec_mem(const Ctx &c, const Ins &in) {
    switch (in.dt) {
    case DVM_DT_F32: mem<float, DVM_DT_F32>(c, in); break;
    case DVM_DT_F16: mem<float, DVM_DT_F16>(c, in); break;
    case DVM_DT_I32: mem<int, DVM_DT_I32>(c, in); break;
    case DVM_DT_I64: mem<long long, DVM_DT_I64>(c, in); break;
    case DVM_DT_BOOL: mem<int, DVM_DT_BOOL>(c, in); break;
    }
}

#define BY_DTYPE(dt, F, ...)                                                 \
    switch (dt) {                                                            \
    case DVM_DT_F32: F<float>(__VA_ARGS__); break;                           \
    case DVM_DT_I32: case DVM_DT_BOOL: F<int>(__VA_ARGS__); break;           \
    case DVM_DT_I64: F<long long>(__VA_ARGS__); break;                       \
    }

/* By value: a copy in registers, which stores to shared memory cannot alias (through references every loop
 * would re-read the context and the instruction after each store). */
__device__ void exec(const Ctx c, const Ins in) {
    switch (in.form) {
    case DVM_FORM_LOAD: case DVM_FORM_STORE: case DVM_FORM_VIEW: exec_mem(c, in); break;
    case DVM_FORM_CONST: BY_DTYPE(in.dt, exec_const, c, in) break;
    case DVM_FORM_UNARY: BY_DTYPE(in.dt, exec_unary, c, in) break;
    case DVM_FORM_CAST: BY_DTYPE(in.b, exec_cast, c, in) break;
    case DVM_FORM_BINARY: case DVM_FORM_BINARY_IMM: BY_DTYPE(in.dt, exec_binary, c, in) break;
    case DVM_FORM_SELECT:
        if (in.dt == DVM_DT_I64) exec_select<long long>(c, in); else exec_select<int>(c, in);
        break;
    case DVM_FORM_REDUCE: BY_DTYPE(in.dt, exec_reduce, c, in) break;
    }
}

/* ---- decode (thread 0): instructions, and where a barrier must precede one ---- */
/* Who touches which bytes of a register: element owners (4- or 8-byte elements own different bytes, so a
 * register reused at another size is another mapping), row owners, reduction lanes, or anyone (CROSS). */
enum { M_ELEM = 1, M_ROW = 2, M_RED = 4, M_CROSS = 8, M_ELEM8 = 16, M_ROW8 = 32 };

__device__ __forceinline__ int sized(int m, int dt) {
    if (dt != DVM_DT_I64) return m;
    return m == M_ELEM ? M_ELEM8 : (m == M_ROW ? M_ROW8 : m);
}

__device__ __forceinline__ int is_compare(int op) {
    int base = op >= DVM_OP_EQ + DVM_IMM_DELTA ? op - DVM_IMM_DELTA : op;
    return base >= DVM_OP_EQ && base <= DVM_OP_GE;
}

__device__ void decode(const unsigned long long *w, int nb, int n_instr, Ins *ins, unsigned char *rd,
                       unsigned char *wr, int n_regs, int *flags) {
    int pc = DVM_CODE_START + DVM_BUF_WORDS * nb, uses_idx = 0, any_sync = 0;
    for (int k = 0; k < n_regs; k++) rd[k] = wr[k] = 0;
    for (int k = 0; k < n_instr; k++) {
        unsigned long long w0 = w[pc];
        Ins in;
        in.op = w0 & 0xff; in.dt = (w0 >> 8) & 0xf; in.flags = (w0 >> 12) & 0xf;
        in.d = (w0 >> 16) & 0xffff; in.a = (w0 >> 32) & 0xffff; in.b = (w0 >> 48) & 0xffff; in.c = 0;
        in.form = DVM_OPCODE_FORM[in.op];
        in.off = 0; in.s[0] = in.s[1] = in.s[2] = in.s[3] = 0; in.imm = 0; in.sync = 0;
        int row = in.flags & DVM_F_ROW;
        int rr[3], rm[3], nrd = 0, wreg = -1, wm = 0;
        switch (in.form) {
        case DVM_FORM_LOAD: case DVM_FORM_STORE: case DVM_FORM_VIEW: {
            in.off = (long long)w[pc + 1];
            if (in.form == DVM_FORM_VIEW) {
                for (int q = 0; q < 4; q++) in.s[q] = (long long)w[pc + 2 + q];
                uses_idx = 1;
            }
            int is_row = in.op == DVM_OP_LOAD_ROW || in.op == DVM_OP_STORE_ROW;
            int load = in.op == DVM_OP_LOAD || in.op == DVM_OP_LOAD_VIEW || in.op == DVM_OP_LOAD_ROW;
            if (load) { wreg = in.d; wm = sized(is_row ? M_ROW : M_ELEM, in.dt); }
            else { rr[nrd] = in.a; rm[nrd++] = sized(is_row ? M_ROW : M_ELEM, in.dt); }
            break;
        }
        case DVM_FORM_CONST:
            in.imm = w[pc + 1];
            wreg = in.d; wm = sized(row ? M_ROW : M_ELEM, in.dt);
            break;
        case DVM_FORM_UNARY: case DVM_FORM_CAST: {
            int sdt = in.form == DVM_FORM_CAST ? in.b : in.dt;
            int ddt = (in.op == DVM_OP_ISNAN || in.op == DVM_OP_ISINF) ? DVM_DT_BOOL : in.dt;
            if (in.op == DVM_OP_BCAST_ROW) {
                rr[nrd] = in.a; rm[nrd++] = M_CROSS; wreg = in.d; wm = sized(M_ELEM, ddt);
            } else {
                rr[nrd] = in.a; rm[nrd++] = sized(row ? M_ROW : M_ELEM, sdt);
                wreg = in.d; wm = sized(row ? M_ROW : M_ELEM, ddt);
            }
            break;
        }
        case DVM_FORM_BINARY: case DVM_FORM_BINARY_IMM: case DVM_FORM_SELECT: {
            int srcs = in.form == DVM_FORM_BINARY ? 2 : in.form == DVM_FORM_SELECT ? 3 : 1;
            if (in.form == DVM_FORM_BINARY_IMM) in.imm = w[pc + 1];
            if (in.form == DVM_FORM_SELECT) in.c = w[pc + 1] & 0xffff;
            int regs3[3] = {in.a, in.b, in.c};
            for (int q = 0; q < srcs; q++) {
                int src_row = in.flags & (DVM_F_A_ROW << q);
                rr[nrd] = regs3[q];
                int sdt = (in.form == DVM_FORM_SELECT && q == 0) ? DVM_DT_BOOL : in.dt;
                rm[nrd++] = row ? sized(M_ROW, sdt) : (src_row ? M_CROSS : sized(M_ELEM, sdt));
            }
            wreg = in.d; wm = sized(row ? M_ROW : M_ELEM, is_compare(in.op) ? DVM_DT_BOOL : in.dt);
            break;
        }
        case DVM_FORM_REDUCE:
            rr[nrd] = in.a; rm[nrd++] = M_CROSS; wreg = in.d; wm = M_RED;
            break;
        }
        int need = 0;
        for (int q = 0; q < nrd; q++) {
            unsigned char wbits = wr[rr[q]];
            if (rm[q] == M_CROSS ? wbits != 0 : (wbits & ~rm[q]) != 0) need = 1;
        }
        if (wreg >= 0 && ((rd[wreg] | wr[wreg]) & ~wm)) need = 1;
        if (need) {
            for (int q = 0; q < n_regs; q++) rd[q] = wr[q] = 0;
            in.sync = 1;
            any_sync = 1;
        }
        for (int q = 0; q < nrd; q++) rd[rr[q]] |= rm[q];
        if (wreg >= 0) wr[wreg] |= wm;
        ins[k] = in;
        pc += DVM_OPCODE_WORDS[in.op];
    }
    flags[0] = uses_idx;
    flags[1] = any_sync || uses_idx;   /* a barrier between tiles */
}

__device__ __forceinline__ size_t align16(size_t x) { return (x + 15) & ~(size_t)15; }

/* Every kernel's last parameters: the buffer pointers, 16 inline (vm.py's INLINE_PTRS) and the rest in a
 * device table; vm.py passes them in this order */
#define DVM_BUFFER_PARAMS                                                                                  \
    const unsigned long long *__restrict__ table, unsigned long long p0, unsigned long long p1,            \
        unsigned long long p2, unsigned long long p3, unsigned long long p4, unsigned long long p5,        \
        unsigned long long p6, unsigned long long p7, unsigned long long p8, unsigned long long p9,        \
        unsigned long long p10, unsigned long long p11, unsigned long long p12, unsigned long long p13,    \
        unsigned long long p14, unsigned long long p15
#define DVM_INLINE_POINTERS {p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13, p14, p15}

extern "C" __global__ void __launch_bounds__(NT)
dvm_vm(const unsigned long long *__restrict__ code, int n_words, int reg_bytes,
       DVM_BUFFER_PARAMS) {
    extern __shared__ __align__(16) unsigned char sm[];
    __shared__ int s_flags[2];
    const int t = threadIdx.x;
    unsigned long long *w = (unsigned long long *)sm;
    for (int k = t; k < n_words; k += NT) w[k] = code[k];
    __syncthreads();
    const int nb = (int)w[DVM_H_N_BUFFERS], n_instr = (int)w[DVM_H_N_INSTR], n_regs = (int)w[DVM_H_N_REGS];
    const long long tr = (long long)w[DVM_H_TILE_ROWS], tc = (long long)w[DVM_H_TILE_COLS];
    const long long D1 = (long long)w[DVM_H_D1], D2 = (long long)w[DVM_H_D2];
    const long long rows = (long long)w[DVM_H_D0] * D1 * D2, cols = (long long)w[DVM_H_D3];
    size_t o_ins = align16((size_t)n_words * 8), o_bufs = o_ins + (size_t)n_instr * sizeof(Ins);
    size_t o_idx = align16(o_bufs + (size_t)nb * 8), o_regs = align16(o_idx + 3 * (size_t)tr * 8);
    Ins *ins = (Ins *)(sm + o_ins);
    Ctx c;
    c.bufs = (unsigned long long *)(sm + o_bufs);
    c.idx = (long long *)(sm + o_idx);
    c.regs = (char *)(sm + o_regs);
    c.regstride = (unsigned)align16((size_t)(tr * tc) * reg_bytes);
    c.scratch = c.regs + (size_t)n_regs * c.regstride;   /* after the registers (vm.py's shared_bytes) */
    c.rows = rows; c.cols = cols; c.tr = tr; c.t = t;
    if (t < nb) {
        const unsigned long long inl[16] = DVM_INLINE_POINTERS;
        c.bufs[t] = t < 16 ? inl[t] : table[t - 16];
    }
    if (t == 0)   /* the register area holds decode's bookkeeping until the first tile */
        decode(w, nb, n_instr, ins, (unsigned char *)c.regs, (unsigned char *)c.regs + n_regs, n_regs,
               s_flags);
    __syncthreads();
    const int uses_idx = s_flags[0], tile_sync = s_flags[1];
    if (rows * cols == 0) return;
    const long long cb = (cols + tc - 1) / tc, ntiles = ((rows + tr - 1) / tr) * cb;
    for (long long tile = blockIdx.x; tile < ntiles; tile += gridDim.x) {
        c.r0 = (tile / cb) * tr;
        c.c0 = (tile % cb) * tc;
        c.nr = (int)(rows - c.r0 < tr ? rows - c.r0 : tr);
        c.nc = (int)(cols - c.c0 < tc ? cols - c.c0 : tc);
        c.n = c.nr * c.nc;
        if (uses_idx) {
            for (int i = t; i < c.nr; i += NT) {
                long long r = c.r0 + i, d2 = r % D2, q = r / D2;
                c.idx[i] = q / D1; c.idx[tr + i] = q % D1; c.idx[2 * tr + i] = d2;
            }
            __syncthreads();
        }
        for (int k = 0; k < n_instr; k++) {
            if (ins[k].sync) __syncthreads();
            if (ins[k].op == DVM_OP_END) break;
            exec(c, ins[k]);
        }
        if (tile_sync) __syncthreads();
    }
}
