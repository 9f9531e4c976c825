/* The row interpreter: programs that reduce along rows (rows.py decides and writes the table; it explains
 * why element values are recomputed per pass instead of kept). A block runs ROWS_NT / group rows at once,
 * `group` threads each. Per row, the segments of the table run in order: row steps (one thread of the row,
 * into the row's `rowv`), then passes over the row, each a chain (cuda_chain.cu's loads, slots and
 * arithmetic) over CHAIN_W float4s at a time; a reduction pass folds its values into lanes and writes a row
 * value.
 *
 * Reduction order (the ISA's): a row is cut into chunks of `per` elements; lane l (0-7) of chunk k adds the
 * chunk's elements l, l + 8, ... in order; then each lane's chunk results in chunk order; then a fixed tree
 * over the eight lanes. A thread's unit of work is half a chunk: lanes 4h..4h+3 of chunk k, so step s of
 * the unit is the float4 at k * per + 8 s + 4 h, four lanes advanced at once, each in order. */
#ifndef ROWS_NT
#define ROWS_NT 128
#endif
enum { K_ROW_LOAD = 8, K_ROW_STORE, K_ROWS, K_PASS };

__device__ __forceinline__ float red_identity_f(int op) {
    switch (op) {
    case DVM_OP_RMAX: return red_identity<float, DVM_OP_RMAX>();
    case DVM_OP_RMIN: return red_identity<float, DVM_OP_RMIN>();
    case DVM_OP_RPROD: return red_identity<float, DVM_OP_RPROD>();
    default: return red_identity<float, DVM_OP_RSUM>();
    }
}

__device__ __forceinline__ float red_f(int op, float a, float b) {
    switch (op) {
    case DVM_OP_RMAX: return red1<float, DVM_OP_RMAX>(a, b);
    case DVM_OP_RMIN: return red1<float, DVM_OP_RMIN>(a, b);
    case DVM_OP_RPROD: return red1<float, DVM_OP_RPROD>(a, b);
    default: return red1<float, DVM_OP_RSUM>(a, b);
    }
}

/* acc[j] op= element j of each of the thread's float4s, in order, for the elements in the row */
template <int OP> __device__ __forceinline__ void fold(float *acc, const float4 *x, const Place &pl) {
#pragma unroll
    for (int q = 0; q < CHAIN_W; q++) {
        const float v[4] = {x[q].x, x[q].y, x[q].z, x[q].w};
#pragma unroll
        for (int j = 0; j < 4; j++)
            if (j < pl.cnt[q]) acc[j] = red1<float, OP>(acc[j], v[j]);
    }
}

/* The row's values: one thread per row runs these on its row's `rowv` */
__device__ void row_steps(const CStep *s, int n, float *rowv, float *const *bufs, long long d0, long long d1,
                          long long d2) {
    for (int k = 0; k < n; k++) {
        const CStep &x = s[k];
        const float a = rowv[x.a], imm = __uint_as_float(x.imm);
        const long long at = x.off + d0 * x.s[0] + d1 * x.s[1] + d2 * x.s[2];
        switch (x.kind) {
        case K_ROW_LOAD: rowv[x.d] = __ldg(bufs[x.buf] + at); break;
        case K_ROW_STORE: bufs[x.buf][at] = a; break;
        case K_CONST: rowv[x.d] = imm; break;
        case K_UNARY: rowv[x.d] = scalar_unary(x.op, a); break;
        case K_BINARY: rowv[x.d] = scalar_binary(x.op, a, rowv[x.b]); break;
        case K_BINARY_IMM:
            rowv[x.d] = (x.flags & F_REV) ? scalar_binary(x.op, imm, a) : scalar_binary(x.op, a, imm);
            break;
        }
    }
}

/* r = a view's elements at the thread's places: base is the row's part of the address (off + d0 s0 + ...) */
__device__ __forceinline__ void row_view(float4 *r, const float *base, long long s3, const Place &pl) {
#pragma unroll
    for (int q = 0; q < CHAIN_W; q++) {
        const float *p = base + pl.e[q] * s3;
        if (s3 == 1 && whole4(p, pl.cnt[q])) {
            r[q] = __ldg((const float4 *)p);
            continue;
        }
        float v[4];
        for (int j = 0; j < 4; j++) v[j] = j < pl.cnt[q] ? __ldg(p + j * s3) : 0.0f;
        r[q] = make_float4(v[0], v[1], v[2], v[3]);
    }
}

/* dynamic shared memory: the table, the slots, then per row of the block its row values, its chunk results
 * (nch * 8) and its 8 lane results (vm.py's rows_shared_bytes) */
extern "C" __global__ void __launch_bounds__(ROWS_NT)
dvm_rows(const CStep *__restrict__ steps, int n_steps, int n_slots, int n_rowv, int n_bufs, long long rows,
         long long cols, long long D1, long long D2, int per, int nch, int group,
         DVM_BUFFER_PARAMS) {
    extern __shared__ __align__(16) unsigned char rows_smem[];
    __shared__ float *bufs[DVM_MAX_BUFFERS];
    const int t = threadIdx.x, g = t % group, rl = t / group, rpb = ROWS_NT / group;
    CStep *st = (CStep *)rows_smem;
    size_t o = (n_steps * sizeof(CStep) + 15) & ~(size_t)15;
    float4 *slots = (float4 *)(rows_smem + o);
    o += (size_t)n_slots * CHAIN_W * ROWS_NT * 16;
    float *rowv = (float *)(rows_smem + o) + (size_t)rl * n_rowv;
    o += (size_t)rpb * n_rowv * 4;
    float *part = (float *)(rows_smem + o) + (size_t)rl * nch * DVM_REDUCE_LANES;
    o += (size_t)rpb * nch * DVM_REDUCE_LANES * 4;
    float *lanes = (float *)(rows_smem + o) + (size_t)rl * DVM_REDUCE_LANES;
    for (int k = t; k < n_steps; k += ROWS_NT) st[k] = steps[k];
    const unsigned long long inl[16] = DVM_INLINE_POINTERS;
    for (int k = t; k < n_bufs; k += ROWS_NT) bufs[k] = (float *)(k < 16 ? inl[k] : table[k - 16]);
    __syncthreads();
    float4 *mine = slots + t;   /* slot s, float4 q: mine[(s * CHAIN_W + q) * ROWS_NT] */
#define SLOT(s, q) mine[((s) * CHAIN_W + (q)) * ROWS_NT]
    const int halves = 2 * nch, n_s = per / 8;
    for (long long rb = blockIdx.x; rb * rpb < rows; rb += gridDim.x) {
        const long long row = rb * rpb + rl;
        const bool live = row < rows;
        long long d0 = 0, d1 = 0, d2 = 0;
        if (live) {
            d2 = row % D2;
            const long long q = row / D2;
            d1 = q % D1;
            d0 = q / D1;
        }
        for (int pc = 0; pc < n_steps;) {
            const CStep &h = st[pc];
            if (h.kind == K_ROWS) {
                if (live && g == 0) row_steps(st + pc + 1, (int)h.imm, rowv, bufs, d0, d1, d2);
                pc += 1 + (int)h.imm;
                __syncthreads();
                continue;
            }
            const int n_loads = (int)h.imm, n_main = (int)h.off, op = h.op;
            const CStep *loads = st + pc + 1, *body = loads + n_loads;
            for (int i = g; i < halves; i += group) {
                const long long first = (long long)(i >> 1) * per + 4 * (i & 1);
                float acc[4];
                const float id = red_identity_f(op);
#pragma unroll
                for (int j = 0; j < 4; j++) acc[j] = id;
                for (int s0 = 0; s0 < n_s; s0 += CHAIN_W) {
                    Place pl;
#pragma unroll
                    for (int q = 0; q < CHAIN_W; q++) {
                        const long long e = first + 8LL * (s0 + q), left = cols - e;
                        pl.e[q] = e;
                        pl.cnt[q] = (!live || s0 + q >= n_s) ? 0 : left >= 4 ? 4 : left > 0 ? (int)left : 0;
                    }
                    for (int k0 = 0; k0 < n_loads; k0 += CHAIN_BATCH) {   /* loads in flight together */
                        float4 v[CHAIN_BATCH][CHAIN_W];
#pragma unroll
                        for (int j = 0; j < CHAIN_BATCH; j++) {
                            if (k0 + j >= n_loads) break;
                            const CStep &s = loads[k0 + j];
                            const float *src = bufs[s.buf] + s.off;
                            if (s.kind == K_LOAD) load_run(v[j], src + row * cols, pl);
                            else row_view(v[j], src + d0 * s.s[0] + d1 * s.s[1] + d2 * s.s[2], s.s[3], pl);
                        }
#pragma unroll
                        for (int j = 0; j < CHAIN_BATCH; j++) {
                            if (k0 + j >= n_loads) break;
#pragma unroll
                            for (int q = 0; q < CHAIN_W; q++) SLOT(loads[k0 + j].d, q) = v[j][q];
                        }
                    }
                    /* cuda_chain.cu's loads and steps on the row's elements, written out again here: sharing
                     * them as a function changed the chain kernel's code (96 registers instead of 118 with
                     * nvcc 13), whose timings were measured as it is */
                    for (int k = 0; k < n_main; k++) {
                        const CStep &s = body[k];
                        float4 x[CHAIN_W], y[CHAIN_W], r[CHAIN_W];
#pragma unroll
                        for (int q = 0; q < CHAIN_W; q++)
                            x[q] = (s.flags & F_A_UNI) ? splat4(rowv[s.a]) : SLOT(s.a, q);
                        if (s.kind == K_STORE) {
#pragma unroll
                            for (int q = 0; q < CHAIN_W; q++) {
                                float *p = bufs[s.buf] + s.off + row * cols + pl.e[q];
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
                                     : (s.flags & F_B_UNI) ? splat4(rowv[s.b]) : SLOT(s.b, q);
                            if (s.flags & F_REV) vec_binary(s.op, y, x, r);
                            else vec_binary(s.op, x, y, r);
                        }
#pragma unroll
                        for (int q = 0; q < CHAIN_W; q++) SLOT(s.d, q) = r[q];
                    }
                    if (op) {
                        float4 x[CHAIN_W];
#pragma unroll
                        for (int q = 0; q < CHAIN_W; q++)
                            x[q] = (h.flags & F_A_UNI) ? splat4(rowv[h.a]) : SLOT(h.a, q);
                        switch (op) {
                        case DVM_OP_RMAX: fold<DVM_OP_RMAX>(acc, x, pl); break;
                        case DVM_OP_RMIN: fold<DVM_OP_RMIN>(acc, x, pl); break;
                        case DVM_OP_RPROD: fold<DVM_OP_RPROD>(acc, x, pl); break;
                        default: fold<DVM_OP_RSUM>(acc, x, pl); break;
                        }
                    }
                }
                if (op && live) {
#pragma unroll
                    for (int j = 0; j < 4; j++) part[(i >> 1) * DVM_REDUCE_LANES + 4 * (i & 1) + j] = acc[j];
                }
            }
            pc += 1 + n_loads + n_main;
            if (!op) continue;
            __syncthreads();
            if (live) {   /* each lane's chunk results in chunk order, then the lane tree */
                for (int l = g; l < DVM_REDUCE_LANES; l += group) {
                    float a = red_identity_f(op);
                    for (int k = 0; k < nch; k++) a = red_f(op, a, part[k * DVM_REDUCE_LANES + l]);
                    lanes[l] = a;
                }
            }
            __syncthreads();
            if (live && g == 0) {
                const float *L = lanes;
                rowv[h.d] = red_f(op, red_f(op, red_f(op, L[0], L[4]), red_f(op, L[2], L[6])),
                                  red_f(op, red_f(op, L[1], L[5]), red_f(op, L[3], L[7])));
            }
            __syncthreads();
        }
        __syncthreads();   /* the next rows reuse rowv, part and lanes */
    }
#undef SLOT
}
