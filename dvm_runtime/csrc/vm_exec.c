/* The dispatch loop: runs a decoded, validated program once per tile (isa.py's execution model). Nothing
 * here checks bounds again: vm_decode proved every index, class and address in range. */
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "vm.h"
#include "vm_kernels.h"
#include "vm_pool.h"

typedef struct {
    const vm_prog_t *p;
    char *const *bufs;
    vm_row_pass_fn row_pass[VM_FUSE_SCALE_SHIFT];   /* by VM_FUSE_* kind */
    vm_chain_fn chain;
    vm_softmax_fn softmax;
} exec_ctx_t;

static const int REG_SIZE[VM_NDT] = {0, 4, 4, 4, 8, 1};   /* register element size by compute dtype */

static void fill(void *d, const void *v, int64_t n, int sz) {
    if (sz == 1) { memset(d, *(const uint8_t *)v, (size_t)n); return; }
    if (sz == 4) { uint32_t x; memcpy(&x, v,
                                      4); uint32_t *o = d; for (int64_t i = 0; i < n; i++) o[i] = x; return; }
    uint64_t x; memcpy(&x, v, 8); uint64_t *o = d; for (int64_t i = 0; i < n; i++) o[i] = x;
}

static void imm_scalar(uint64_t w, int dt, void *out) {
    if (dt == DVM_DT_I64) { memcpy(out, &w, 8); return; }
    if (dt == DVM_DT_BOOL) { *(uint8_t *)out = (uint8_t)(w & 1); return; }
    uint32_t lo = (uint32_t)w;
    memcpy(out, &lo, 4);
}

typedef struct {
    int64_t r0, c0, nr, nc;
    const int64_t *d0, *d1, *d2;
} tile_t;

/* Offset (elements) of tile row i's first column in a view. */
static inline int64_t row_base(const vm_ins_t *in, const tile_t *t, int64_t i) {
    return in->off + t->d0[i] * in->s[0] + t->d1[i] * in->s[1] + t->d2[i] * in->s[2] + t->c0 * in->s[3];
}

/* Copies n bytes with non-temporal stores where 16-byte aligned (no read of the destination lines, no
 * eviction of cached data); vm_execute's callers see the data after the pool's fence at the end of the job. */
static void stream_copy(char *dst, const char *src, size_t n) {
#if defined(__SSE2__)
    size_t head = (16 - ((uintptr_t)dst & 15)) & 15;
    if (head > n) head = n;
    memcpy(dst, src, head);
    size_t i = head;
    for (; i + 16 <= n; i += 16)
        _mm_stream_si128((__m128i *)(dst + i), _mm_loadu_si128((const __m128i *)(src + i)));
    memcpy(dst + i, src + i, n - i);
#else
    memcpy(dst, src, n);
#endif
}

/* Copies n x nc elements of an sz-byte type, row i of d (nc apart) from s + i + j * stride (elements): the
 * columns of a run of tile rows that start at consecutive elements. In blocks of 16 columns, so each source
 * line brings in the elements of every row it holds and each destination row gets whole lines. */
#define GATHER_COLS(T)                                                                                 \
    static void gather_cols_##T(T *d, const T *s, int64_t n, int64_t nc, int64_t stride) {             \
        for (int64_t j0 = 0; j0 < nc; j0 += 16) {                                                      \
            int64_t j1 = j0 + 16 < nc ? j0 + 16 : nc;                                                  \
            for (int64_t i = 0; i < n; i++)                                                            \
                for (int64_t j = j0; j < j1; j++) d[i * nc + j] = s[i + j * stride];                   \
        }                                                                                              \
    }
GATHER_COLS(uint32_t)
GATHER_COLS(uint64_t)

/* A strided LOAD_VIEW (a reduction along an outer axis: tile rows are columns of the buffer): a tile row by
 * itself reads one element per cache line, 8 rows x 4096 of a column sum in 1.5 ns an element. Rows that start
 * at consecutive elements are read together, a column at a time (a no-conversion load: the register type is
 * the buffer's); a row that starts a run of its own reads as before. */
static void gather_strided(char *reg, char *buf, const vm_ins_t *in, const tile_t *t, vm_mem_fn fn, int sz) {
    int64_t nc = t->nc;
    for (int64_t i = 0; i < t->nr;) {
        int64_t b0 = row_base(in, t, i), n = 1;
        while (i + n < t->nr && row_base(in, t, i + n) == b0 + n) n++;
        char *d = reg + i * nc * sz, *s = buf + b0 * sz;
        if (n == 1 || (sz != 4 && sz != 8)) {
            for (int64_t k = 0; k < n; k++) fn(d + k * nc * sz, s + k * sz, in->s[3], nc);
        } else if (sz == 4) {
            gather_cols_uint32_t((uint32_t *)d, (const uint32_t *)s, n, nc, in->s[3]);
        } else {
            gather_cols_uint64_t((uint64_t *)d, (const uint64_t *)s, n, nc, in->s[3]);
        }
        i += n;
    }
}

/* rp[r]: where register r's elements are this tile (its arena slot, or the input buffer a LOAD aliased). */
static void memory(const vm_prog_t *p, const vm_ins_t *in, char *const *bufs, char *regs, char **rp,
                   const tile_t *t) {
    int load = in->op == DVM_OP_LOAD || in->op == DVM_OP_LOAD_VIEW || in->op == DVM_OP_LOAD_ROW;
    char *buf = bufs[load ? in->a : in->d];
    char *reg = load ? regs + (size_t)in->d * p->reg_stride : rp[in->a];
    vm_mem_fn fn = load ? vm_load[in->dt] : vm_store[in->dt];
    int bsz = DVM_DTYPE_SIZE[in->dt], rsz = REG_SIZE[DVM_DTYPE_COMPUTE[in->dt]];
    if (load) rp[in->d] = reg;
    if (in->op == DVM_OP_LOAD || in->op == DVM_OP_STORE) {
        /* whole rows or one row piece: the tile is one contiguous run of the buffer */
        char *run = buf + (in->off + t->r0 * p->cols + t->c0) * bsz;
        if (in->alias) rp[in->d] = run;
        else if (in->stream) stream_copy(run, reg, (size_t)(t->nr * t->nc) * bsz);
        else fn(reg, run, 1, t->nr * t->nc);
    } else if (in->op == DVM_OP_LOAD_ROW || in->op == DVM_OP_STORE_ROW) {
        for (int64_t i = 0; i < t->nr; i++) fn(reg + i * rsz, buf + row_base(in, t, i) * bsz, 1, 1);
    } else if (in->scalar) {
        rp[in->d] = buf + in->off * bsz;   /* the one element every tile element reads */
    } else if (in->row_view) {
        rp[in->d] = buf + (in->off + t->c0) * bsz;   /* the one row every tile row reads */
    } else if (load && bsz == rsz && in->s[3] != 0 && in->s[3] != 1) {
        gather_strided(reg, buf, in, t, fn, bsz);
    } else {
        for (int64_t i = 0; i < t->nr; i++)
            fn(reg + i * t->nc * rsz, buf + row_base(in, t, i) * bsz, in->s[3], t->nc);
    }
}

/* Where a direct result goes: the contiguous destination of the STORE st that follows it. */
static inline char *direct_dest(const vm_prog_t *p, const vm_ins_t *st, char *const *bufs, const tile_t *t) {
    return bufs[st->d] + (st->off + t->r0 * p->cols + t->c0) * DVM_DTYPE_SIZE[st->dt];
}

/* Copies repeated-row sources out to nr packed rows in their arena slots (vm_decode chose which). */
static void expand_rows(const vm_prog_t *p, const vm_ins_t *in, char *regs, char **rp, const tile_t *t) {
    unsigned src[3] = {in->a, in->b, in->c};
    size_t row = (size_t)t->nc * in->expand_size;
    for (int j = 0; j < 3; j++) {
        if (!(in->expand >> j & 1)) continue;
        char *slot = regs + (size_t)src[j] * p->reg_stride;
        for (int64_t i = 0; i < t->nr; i++) memcpy(slot + i * row, rp[src[j]], row);
        rp[src[j]] = slot;
    }
}

/* Fills scalar sources out to the whole tile in their arena slots (vm_decode chose which). */
static void expand_scalars(const vm_prog_t *p, const vm_ins_t *in, char *regs, char **rp, const tile_t *t) {
    unsigned src[3] = {in->a, in->b, in->c};
    for (int j = 0; j < 3; j++) {
        if (!(in->expand_scalar >> j & 1)) continue;
        char *slot = regs + (size_t)src[j] * p->reg_stride;
        fill(slot, rp[src[j]], t->nr * t->nc, in->expand_scalar_size);
        rp[src[j]] = slot;
    }
}

static void binary(const vm_ins_t *in, char *d, const char *a, const char *b, const tile_t *t, int imm) {
    int op = imm ? in->op - DVM_IMM_DELTA : in->op;
    const vm_bin_set_t *k = &vm_binary[op][in->dt];
    int sz = REG_SIZE[in->dt], dsz = (op >= DVM_OP_EQ && op <= DVM_OP_GE) ? 1 : sz;
    int arow = (in->flags & DVM_F_A_ROW) != 0, brow = imm || (in->flags & DVM_F_B_ROW) != 0;
    int64_t nr = t->nr, nc = t->nc, as = sz, bs = sz;   /* step between rows' values of a ROW operand */
    if (imm) {   /* the immediate is a ROW-like scalar with step 0; B == 1 puts it on the left */
        if (in->b == 1) { const char *r = a; a = b; b = r; brow = arow; arow = 1; as = 0; }
        else bs = 0;
    }
    if (in->flags & DVM_F_ROW) {
        if (!imm) k->vv(d, a, b, nr);
        else if (in->b) k->sv(d, a, b, nr);
        else k->vs(d, a, b, nr);
        return;
    }
    if (!imm && (in->scal_a || in->scal_b)) {   /* a scalar source: one element for the whole tile */
        int64_t n = in->scalar ? 1 : nr * nc;
        if (in->scal_b) k->vs(d, a, b, n);
        else k->sv(d, a, b, n);
        return;
    }
    if (in->rep_a || in->rep_b) {   /* a repeated row: the same nc elements for every row */
        for (int64_t i = 0; i < nr; i++)
            k->vv(d + i * nc * dsz, in->rep_a ? a : a + i * nc * sz, in->rep_b ? b : b + i * nc * sz, nc);
        return;
    }
    if (!arow && !brow) { k->vv(d, a, b, nr * nc); return; }
    /* A ROW source broadcasts along FULL rows; going from the last row up keeps D == source safe. */
    for (int64_t i = nr - 1; i >= 0; i--) {
        char *dr = d + i * nc * dsz;
        if (arow && brow) {
            uint64_t s;
            k->vv(&s, a + i * as, b + i * bs, 1);
            fill(dr, &s, nc, dsz);
        } else if (arow) {
            k->sv(dr, a + i * as, b + i * nc * sz, nc);
        } else {
            k->vs(dr, a + i * nc * sz, b + i * bs, nc);
        }
    }
}

static void select_op(const vm_ins_t *in, char *d, char *const *rp, char *tmp, const tile_t *t) {
    int sz = REG_SIZE[in->dt];
    const char *c = rp[in->a], *a = rp[in->b], *b = rp[in->c];
    int f = in->flags, any_row = f & (DVM_F_A_ROW | DVM_F_B_ROW | DVM_F_C_ROW);
    if (f & DVM_F_ROW) { vm_select[sz](d, c, a, b, t->nr); return; }
    if (!any_row) { vm_select[sz](d, c, a, b, t->nr * t->nc); return; }
    int64_t nc = t->nc;
    if (!(f & DVM_F_A_ROW) && ((f & DVM_F_B_ROW) != 0) != ((f & DVM_F_C_ROW) != 0)) {  /* a row's scalar */
        int a_row = (f & DVM_F_B_ROW) != 0;
        for (int64_t i = t->nr - 1; i >= 0; i--)   /* last to first: d may be a ROW source, as below */
            vm_select_scalar[sz](d + i * nc * sz, c + i * nc, a + i * (a_row ? 1 : nc) * sz,
                                 b + i * (a_row ? nc : 1) * sz, nc, a_row);
        return;
    }
    char *tc = tmp, *ta = tmp + nc * 8, *tb = tmp + 2 * nc * 8;
    for (int64_t i = t->nr - 1; i >= 0; i--) {
        const char *cr = c + i * nc, *ar = a + i * nc * sz, *br = b + i * nc * sz;
        if (f & DVM_F_A_ROW) { fill(tc, c + i, nc, 1); cr = tc; }
        if (f & DVM_F_B_ROW) { fill(ta, a + i * sz, nc, sz); ar = ta; }
        if (f & DVM_F_C_ROW) { fill(tb, b + i * sz, nc, sz); br = tb; }
        vm_select[sz](d + i * nc * sz, cr, ar, br, nc);
    }
}

/* Runs the chain headed by instruction k over tile t: its pointer LOADs and the steps' addresses in program
 * order (so each source is where rp says at that point), then one pass of the chain kernel. */
static void run_chain(const exec_ctx_t *ex, int k, char *regs, char **rp, const tile_t *t) {
    const vm_prog_t *p = ex->p;
    const vm_chain_t *ch = &p->chains[p->ins[k].chain];
    vm_chain_step_t st[VM_CHAIN_MAX];
    int s = 0;
    for (int m = k; m < k + ch->span; m++) {
        const vm_ins_t *in = &p->ins[m];
        if (s == ch->n || ch->step[s].ins != m) {   /* a pointer LOAD, or the STORE a direct step made */
            if (in->op == DVM_OP_LOAD || in->op == DVM_OP_LOAD_VIEW) memory(p, in, ex->bufs, regs, rp, t);
            continue;
        }
        vm_chain_step_t *o = &st[s];
        *o = ch->step[s++];
        for (int j = 0; j < o->nsrc; j++)
            o->p[j] = (o->imm_src >> j & 1) ? &o->imm : (const float *)rp[o->reg[j]];
        if (in->op == DVM_OP_STORE) {
            o->d = (float *)direct_dest(p, in, ex->bufs, t);
            if (in->stream && ((uintptr_t)o->d & 63) == 0 && t->nc % 16 == 0) o->out = VM_OUT_STREAM;
            continue;
        }
        char *d = in->direct ? direct_dest(p, in + 1, ex->bufs, t) : regs + (size_t)in->d * p->reg_stride;
        o->d = (float *)d;
        rp[in->d] = d;
    }
    ex->chain(st, ch->n, t->nr, t->nc);
}

static void run_tile(void *ctx, int tid, void *arena, int64_t tile) {
    (void)tid;
    const exec_ctx_t *ex = ctx;
    const vm_prog_t *p = ex->p;
    char *regs = arena;
    int64_t *idx = (int64_t *)((char *)arena + p->idx_offset);
    char *tmp = (char *)arena + p->tmp_offset;
    char **rp = (char **)((char *)arena + p->ptr_offset);   /* every source is written earlier this tile */
    tile_t t;
    int64_t rb = tile / p->cb, cb = tile % p->cb;
    t.r0 = rb * p->tr;
    t.c0 = cb * p->tc;
    t.nr = p->rows - t.r0 < p->tr ? p->rows - t.r0 : p->tr;
    t.nc = p->cols - t.c0 < p->tc ? p->cols - t.c0 : p->tc;
    t.d0 = idx;
    t.d1 = idx + p->tr;
    t.d2 = idx + 2 * p->tr;
    tile_t one = t;
    one.nr = one.nc = 1;
    int have_idx = 0;
    for (int k = 0; k < p->n_ins; k++) {
        const vm_ins_t *in = &p->ins[k];
        if (in->skip) continue;
        char *a = rp[in->a];
        if (in->rare) {
            if (in->expand) expand_rows(p, in, regs, rp, &t);
            if (in->expand_scalar) expand_scalars(p, in, regs, rp, &t);
            a = rp[in->a];
            if (in->fused == VM_FUSE_CHAIN) {
                run_chain(ex, k, regs, rp, &t);
                continue;
            }
            if (in->fused == VM_FUSE_SOFTMAX) {   /* RMAX .. MUL (vm_decode checked), into the MUL's place */
                const vm_ins_t *mul = in + 5;
                char *y = in->kept_to ? direct_dest(p, &p->ins[in->kept_to], ex->bufs, &t)
                                      : regs + (size_t)mul->d * p->reg_stride;
                int stream = !mul->direct && in->kept_to && ((uintptr_t)y & 63) == 0 && t.nc % 16 == 0;
                ex->softmax((float *)y, (float *)tmp, (const float *)a, t.nr, t.nc, stream);
                rp[mul->d] = y;
                continue;
            }
            if (in->fused == VM_FUSE_SCALE_SHIFT) {   /* MUL, LOAD_VIEW, MUL, LOAD_VIEW, ADD (vm_decode checked) */
                const vm_ins_t *l1 = in + 1, *m2 = in + 2, *l2 = in + 3, *m3 = in + 4;
                const char *row = rp[in->b];
                memory(p, l1, ex->bufs, regs, rp, &t);   /* row views: they only set rp */
                memory(p, l2, ex->bufs, regs, rp, &t);
                char *out = m3->direct ? direct_dest(p, m3 + 1, ex->bufs, &t)
                                       : regs + (size_t)m3->d * p->reg_stride;
                vm_scale_shift((float *)out, (const float *)a, (const float *)row, (const float *)rp[m2->b],
                               (const float *)rp[m3->b], t.nr, t.nc);
                rp[m3->d] = out;
                continue;
            }
            if (in->fused) {   /* SUB, then EXP or a square, then RSUM (vm_decode checked the pattern) */
                const vm_ins_t *m = in + 1, *r = in + 2;
                unsigned kept = in->fused == VM_FUSE_SUB_EXP_RSUM ? m->d : in->d;
                char *kd = in->kept_to ? direct_dest(p, &p->ins[in->kept_to], ex->bufs, &t)
                                       : regs + (size_t)kept * p->reg_stride;
                char *rd = regs + (size_t)r->d * p->reg_stride;
                float *sums = (float *)((char *)arena + p->out_offset);
                ex->row_pass[in->fused]((float *)kd, sums, (const float *)a, (const float *)rp[in->b], t.nr,
                                        t.nc);
                memcpy(rd, sums, (size_t)t.nr * sizeof(float));
                rp[kept] = kd;
                rp[r->d] = rd;
                continue;
            }
        }
        const tile_t *tt = in->scalar ? &one : &t;   /* a scalar result: one element */
        int64_t n = in->scalar ? 1 : (in->flags & DVM_F_ROW) ? t.nr : t.nr * t.nc;
        char *d = regs + (size_t)in->d * p->reg_stride;
        if (in->direct) d = direct_dest(p, in + 1, ex->bufs, &t);
        char *dreal = d;
        if (in->via_tmp) d = (char *)arena + p->out_offset;
        switch (in->form) {
        case DVM_FORM_END:   /* the pool fences non-temporal stores once per thread and job */
            return;
        case DVM_FORM_VIEW:
            if (!have_idx) {   /* decompose each tile row r into (d0, d1, d2) once per tile */
                int64_t D1 = p->dims[1], D2 = p->dims[2];
                int64_t d2 = t.r0 % D2, q = t.r0 / D2, d1 = q % D1, d0 = q / D1;
                for (int64_t i = 0; i < t.nr; i++) {
                    idx[i] = d0; idx[p->tr + i] = d1; idx[2 * p->tr + i] = d2;
                    if (++d2 == D2) { d2 = 0; if (++d1 == D1) { d1 = 0; d0++; } }
                }
                have_idx = 1;
            }
            /* fall through */
        case DVM_FORM_LOAD:
        case DVM_FORM_STORE:
            memory(p, in, ex->bufs, regs, rp, &t);
            continue;   /* memory() set rp for a load; a store writes no register */
        case DVM_FORM_CONST: {
            uint64_t v;
            imm_scalar(in->imm, in->dt, &v);
            fill(d, &v, n, REG_SIZE[in->dt]);
            break;
        }
        case DVM_FORM_UNARY:
            if (in->op == DVM_OP_BCAST_ROW) {
                int sz = REG_SIZE[in->dt];
                for (int64_t i = t.nr - 1; i >= 0; i--) fill(d + i * t.nc * sz, a + i * sz, t.nc, sz);
            } else {
                vm_unary[in->op][in->dt](d, a, n);
            }
            break;
        case DVM_FORM_CAST:
            vm_cast[in->dt][in->b](d, a, n);
            break;
        case DVM_FORM_BINARY:
            binary(in, d, a, rp[in->b], tt, 0);
            break;
        case DVM_FORM_BINARY_IMM: {
            uint64_t v;
            imm_scalar(in->imm, in->dt, &v);
            binary(in, d, a, (const char *)&v, tt, 1);
            break;
        }
        case DVM_FORM_SELECT:
            select_op(in, d, rp, tmp, &t);
            break;
        case DVM_FORM_REDUCE:
            vm_reduce[in->op][in->dt](d, a, t.nr, t.nc);
            break;
        }
        if (in->via_tmp) memcpy(dreal, d, (size_t)n * 8);   /* n elements of at most 8 bytes */
        rp[in->d] = dreal;
    }
}

#define VM_CLAIM_ELEMS ((int64_t)1 << 16)

int vm_execute(const vm_prog_t *p, char *const *bufs, int nthreads) {
    if (p->rows * p->cols == 0) return VM_OK;
    /* handing work to a worker costs microseconds: each thread gets at least VM_THREAD_WORK of estimated
     * work (vm_prog_t.work per element), so small or cheap programs run on the caller's thread alone */
    int64_t per_thread = VM_THREAD_WORK / p->work + 1;
    int64_t want = (p->rows * p->cols + per_thread - 1) / per_thread;
    if (nthreads > want) nthreads = (int)want;
    exec_ctx_t ctx = {p, bufs, {0, vm_row_pass(VM_FUSE_SUB_EXP_RSUM), vm_row_pass(VM_FUSE_SUB_SQUARE_RSUM)},
                      vm_chain_kernel(), vm_softmax_kernel()};
    /* A thread claims tiles of up to VM_CLAIM_ELEMS elements at a time: one tile each made the two threads'
     * tiles alternate, and prefetchers following those gapped streams halved the memory bandwidth. */
    int64_t tile = p->tr * p->tc, chunk = (VM_CLAIM_ELEMS + tile - 1) / tile;
    return vm_parallel_for(nthreads, p->ntiles, chunk, p->arena_bytes, run_tile, &ctx) ? VM_NOMEM : VM_OK;
}
