/* Decoding and validation of DVM programs: everything isa.py's VALIDATION paragraph lists is checked here,
 * before any instruction runs, so the executor can trust every index, dtype, class and address. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vm.h"
#include "vm_kernels.h"

#define FULL 0
#define ROW 1
#define LIMIT62 ((int64_t)1 << 62)

typedef struct { uint8_t written, dt, cls; } reg_state_t;

static const int REG_SIZE[6] = {0, 4, 4, 4, 8, 1};   /* register element size by compute dtype */

static int fail(char *err, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return VM_INVALID;
}

static int is_compute(unsigned dt) {
    return dt == DVM_DT_F32 || dt == DVM_DT_I32 || dt == DVM_DT_I64 || dt == DVM_DT_BOOL;
}

/* min/max address of a view over the whole iteration space, in checked 64-bit arithmetic. */
static int view_range(const vm_prog_t *p, int64_t off, const int64_t *s, int ndims, int64_t *lo,
                      int64_t *hi) {
    int64_t a = off, b = off;
    for (int k = 0; k < ndims; k++) {
        int64_t span;
        if (__builtin_mul_overflow(s[k], p->dims[k] - 1, &span)) return -1;
        if (__builtin_add_overflow(span < 0 ? a : b, span, span < 0 ? &a : &b)) return -1;
    }
    *lo = a;
    *hi = b;
    return 0;
}

static int64_t stream_bytes;   /* 0: not chosen yet */

static int64_t default_stream_bytes(void) {
    const char *text = getenv("MSGX_STREAM_BYTES");
    if (text && *text) {
        long long v = strtoll(text, NULL, 10);
        if (v > 0) return (int64_t)v;
    }
    long long llc = 0;
#ifdef _SC_LEVEL3_CACHE_SIZE
    llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
    if (llc <= 0) {   /* sysfs's "307200K" where the C library does not know */
        FILE *f = fopen("/sys/devices/system/cpu/cpu0/cache/index3/size", "r");
        char unit = 0;
        if (f) {
            if (fscanf(f, "%lld%c", &llc, &unit) < 1) llc = 0;
            fclose(f);
        }
        llc *= unit == 'K' ? 1024 : unit == 'M' ? 1 << 20 : 1;
    }
    int64_t at_least = (int64_t)16 << 20;
    return llc / 2 > at_least ? llc / 2 : at_least;
}

/* Bytes of all of a program's buffers, what one run touches (INT64_MAX past it: a table may declare up to
 * 2^62 elements per buffer) */
static int64_t program_bytes(const vm_prog_t *p) {
    int64_t total = 0, bytes;
    for (int b = 0; b < p->n_bufs; b++)
        if (__builtin_mul_overflow(p->buf_n[b], (int64_t)DVM_DTYPE_SIZE[p->buf_dt[b]], &bytes) ||
            __builtin_add_overflow(total, bytes, &total))
            return INT64_MAX;
    return total;
}

int64_t vm_stream_bytes(void) {
    if (stream_bytes <= 0) stream_bytes = default_stream_bytes();
    return stream_bytes;
}

void vm_set_stream_bytes(int64_t bytes) { stream_bytes = bytes > 0 ? bytes : default_stream_bytes(); }

static int check_header(const uint64_t *w, int64_t nw, vm_prog_t *p, char *err, size_t en) {
    if (nw < DVM_HEADER_WORDS) return fail(err, en, "program has %lld words, the header alone needs %d",
                                           (long long)nw, DVM_HEADER_WORDS);
    if (w[DVM_H_MAGIC] != DVM_MAGIC) return fail(err, en, "bad magic 0x%016llx", (unsigned long long)w[0]);
    if (w[DVM_H_VERSION] != DVM_VERSION)
        return fail(err, en, "unsupported version %llu (this VM runs %d)", (unsigned long long)w[1],
                    DVM_VERSION);
    if (w[DVM_H_N_WORDS] != (uint64_t)nw)
        return fail(err, en, "header n_words %llu != program length %lld", (unsigned long long)w[2],
                    (long long)nw);
    for (int i = DVM_H_RESERVED12; i <= DVM_H_RESERVED15; i++)
        if (w[i]) return fail(err, en, "reserved header word %d is not 0", i);
    if (w[DVM_H_N_REGS] < 1 || w[DVM_H_N_REGS] > DVM_MAX_REGS)
        return fail(err, en, "n_regs %llu out of [1, %d]", (unsigned long long)w[DVM_H_N_REGS], DVM_MAX_REGS);
    if (w[DVM_H_N_BUFFERS] > DVM_MAX_BUFFERS)
        return fail(err, en, "n_buffers %llu > %d", (unsigned long long)w[DVM_H_N_BUFFERS], DVM_MAX_BUFFERS);
    p->n_regs = (int)w[DVM_H_N_REGS];
    p->n_bufs = (int)w[DVM_H_N_BUFFERS];
    for (int k = 0; k < 4; k++) {
        p->dims[k] = (int64_t)w[DVM_H_D0 + k];
        if (p->dims[k] < 0) return fail(err, en, "dim d%d = %lld is negative", k, (long long)p->dims[k]);
    }
    int64_t rows, total;
    if (__builtin_mul_overflow(p->dims[0], p->dims[1], &rows)
        || __builtin_mul_overflow(rows, p->dims[2], &rows)
        || __builtin_mul_overflow(rows, p->dims[3], &total) || total >= LIMIT62)
        return fail(err, en, "iteration space too large (ROWS*COLS must be < 2**62)");
    p->rows = rows;
    p->cols = p->dims[3];
    p->tr = (int64_t)w[DVM_H_TILE_ROWS];
    p->tc = (int64_t)w[DVM_H_TILE_COLS];
    if (p->tr < 1 || p->tc < 1) return fail(err, en, "tile_rows/tile_cols must be >= 1");
    if (p->tr > DVM_MAX_TILE_ELEMS || p->tc > DVM_MAX_TILE_ELEMS || p->tr * p->tc > DVM_MAX_TILE_ELEMS)
        return fail(err, en, "tile %lldx%lld exceeds %d elements", (long long)p->tr, (long long)p->tc,
                    DVM_MAX_TILE_ELEMS);
    if (total > 0 && p->tc > p->cols)
        return fail(err, en, "tile_cols %lld > COLS %lld", (long long)p->tc, (long long)p->cols);
    if (total > 0 && p->tr != 1 && p->tc != p->cols)
        return fail(err, en, "tiles must be one row (tile_rows == 1) or whole rows (tile_cols == COLS)");
    if (total > 0) {
        int64_t rb = (p->rows + p->tr - 1) / p->tr;
        p->cb = (p->cols + p->tc - 1) / p->tc;
        if (__builtin_mul_overflow(rb, p->cb, &p->ntiles)) return fail(err, en, "too many tiles");
    }
    return VM_OK;
}

static int check_buffers(const uint64_t *w, int64_t nw, vm_prog_t *p, char *err, size_t en) {
    if ((int64_t)(DVM_CODE_START + DVM_BUF_WORDS * p->n_bufs) > nw)
        return fail(err, en, "buffer table of %d slots runs past the program end", p->n_bufs);
    for (int i = 0; i < p->n_bufs; i++) {
        uint64_t desc = w[DVM_CODE_START + DVM_BUF_WORDS * i];
        int64_t n = (int64_t)w[DVM_CODE_START + DVM_BUF_WORDS * i + 1];
        unsigned dt = desc & 0xff, role = (desc >> 8) & 0xff;
        if (desc >> 16) return fail(err, en, "buffer %d: descriptor has bits above dtype and role set", i);
        if (dt < 1 || dt > DVM_DT_BOOL) return fail(err, en, "buffer %d: unknown dtype %u", i, dt);
        if (role < DVM_ROLE_INPUT || role > DVM_ROLE_SCRATCH)
            return fail(err, en, "buffer %d: unknown role %u", i, role);
        if (n < 0 || n >= LIMIT62)
            return fail(err, en, "buffer %d: n_elems %lld out of range", i, (long long)n);
        p->buf_dt[i] = (uint8_t)dt;
        p->buf_role[i] = (uint8_t)role;
        p->buf_n[i] = n;
    }
    return VM_OK;
}

/* Checks a register source: written earlier in the body with the expected dtype and class. */
static int need_reg(const vm_prog_t *p, const reg_state_t *rs, int idx, unsigned reg, unsigned dt,
                    unsigned cls, char *err, size_t en) {
    if (reg >= (unsigned)p->n_regs)
        return fail(err, en, "instruction %d: register %u >= n_regs %d", idx, reg, p->n_regs);
    if (!rs[reg].written)
        return fail(err, en, "instruction %d: register %u read before it is written", idx, reg);
    if (rs[reg].dt != dt || rs[reg].cls != cls)
        return fail(err, en, "instruction %d: register %u holds dtype %u %s, expected dtype %u %s", idx, reg,
                    rs[reg].dt, rs[reg].cls ? "ROW" : "FULL", dt, cls ? "ROW" : "FULL");
    return VM_OK;
}

static int memory_ins(vm_prog_t *p, reg_state_t *rs, int idx, vm_ins_t *in, const uint64_t *iw, char *err,
                      size_t en) {
    int load = in->op == DVM_OP_LOAD || in->op == DVM_OP_LOAD_VIEW || in->op == DVM_OP_LOAD_ROW;
    int row = in->op == DVM_OP_LOAD_ROW || in->op == DVM_OP_STORE_ROW;
    unsigned buf = load ? in->a : in->d, reg = load ? in->d : in->a;
    if (in->b) return fail(err, en, "instruction %d: unused field B is not 0", idx);
    if (buf >= (unsigned)p->n_bufs)
        return fail(err, en, "instruction %d: buffer %u >= n_buffers %d", idx, buf, p->n_bufs);
    if (in->dt != p->buf_dt[buf])
        return fail(err, en, "instruction %d: dtype %u differs from buffer %u's dtype %u", idx, in->dt, buf,
                    p->buf_dt[buf]);
    if (!load && p->buf_role[buf] == DVM_ROLE_INPUT)
        return fail(err, en, "instruction %d: store to INPUT buffer %u", idx, buf);
    unsigned cdt = DVM_DTYPE_COMPUTE[in->dt];
    in->off = (int64_t)iw[1];
    if (in->form == DVM_FORM_VIEW) {
        for (int k = 0; k < 4; k++) in->s[k] = (int64_t)iw[2 + k];
    } else {
        /* implied row-major strides; unsigned products: they may wrap only when the space is empty */
        in->s[3] = 1;
        in->s[2] = p->dims[3];
        in->s[1] = (int64_t)((uint64_t)p->dims[2] * (uint64_t)p->dims[3]);
        in->s[0] = (int64_t)((uint64_t)p->dims[1] * (uint64_t)in->s[1]);
    }
    if (row && in->s[3]) return fail(err, en, "instruction %d: ROW view needs stride s3 == 0", idx);
    if (p->rows * p->cols > 0) {
        int64_t lo, hi;
        if (view_range(p, in->off, in->s, row ? 3 : 4, &lo, &hi))
            return fail(err, en, "instruction %d: view address arithmetic overflows", idx);
        if (lo < 0 || hi >= p->buf_n[buf])
            return fail(err, en, "instruction %d: view reaches [%lld, %lld] outside buffer %u of %lld "
                        "elements", idx, (long long)lo, (long long)hi, buf, (long long)p->buf_n[buf]);
    }
    /* buffer and register elements are alike (no conversion) for these dtypes */
    int same_layout = in->dt == DVM_DT_F32 || in->dt == DVM_DT_I32 || in->dt == DVM_DT_I64;
    if (load) {
        if (reg >= (unsigned)p->n_regs)
            return fail(err, en, "instruction %d: register %u >= n_regs %d", idx, reg, p->n_regs);
        rs[reg] = (reg_state_t){1, (uint8_t)cdt, (uint8_t)row};
        /* only INPUT buffers: nothing stores to them while the program runs */
        in->alias = in->op == DVM_OP_LOAD && same_layout && p->buf_role[buf] == DVM_ROLE_INPUT;
        in->row_view = in->op == DVM_OP_LOAD_VIEW && same_layout && p->buf_role[buf] == DVM_ROLE_INPUT &&
                       in->s[0] == 0 && in->s[1] == 0 && in->s[2] == 0 && in->s[3] == 1;
        in->scalar = in->op == DVM_OP_LOAD_VIEW && same_layout && p->buf_role[buf] == DVM_ROLE_INPUT &&
                     in->s[0] == 0 && in->s[1] == 0 && in->s[2] == 0 && in->s[3] == 0;
        return VM_OK;
    }
    in->stream = in->op == DVM_OP_STORE && same_layout &&
                 p->buf_n[buf] >= vm_stream_bytes() / 8 / DVM_DTYPE_SIZE[in->dt] &&
                 program_bytes(p) >= vm_stream_bytes();
    return need_reg(p, rs, idx, reg, cdt, row, err, en);
}

static int write_reg(const vm_prog_t *p, reg_state_t *rs, int idx, unsigned reg, unsigned dt, unsigned cls,
                     char *err, size_t en) {
    if (reg >= (unsigned)p->n_regs)
        return fail(err, en, "instruction %d: register %u >= n_regs %d", idx, reg, p->n_regs);
    rs[reg] = (reg_state_t){1, (uint8_t)dt, (uint8_t)cls};
    return VM_OK;
}

static int is_compare(unsigned op) {
    unsigned base = op >= DVM_OP_ADD_IMM ? op - DVM_IMM_DELTA : op;
    return base >= DVM_OP_EQ && base <= DVM_OP_GE;
}

/* Register-only forms: flags, unused fields, sources, then the destination's new state. */
static int compute_ins(vm_prog_t *p, reg_state_t *rs, int idx, vm_ins_t *in, const uint64_t *iw, char *err,
                       size_t en) {
    unsigned f = in->flags, frow = f & DVM_F_ROW, op = in->op, dt = in->dt;
    unsigned ca = (f & DVM_F_A_ROW) ? 1 : 0, cb = (f & DVM_F_B_ROW) ? 1 : 0, cc = (f & DVM_F_C_ROW) ? 1 : 0;
    unsigned rcls = frow ? 1 : 0;
    int e;
    switch (in->form) {
    case DVM_FORM_CONST:
        if (in->a || in->b) return fail(err, en, "instruction %d: CONST fields A and B must be 0", idx);
        in->imm = iw[1];
        return write_reg(p, rs, idx, in->d, dt, rcls, err, en);
    case DVM_FORM_UNARY:
    case DVM_FORM_CAST:
        if (op == DVM_OP_BCAST_ROW ? f != DVM_F_A_ROW : ca != rcls)
            return fail(err, en, "instruction %d: flags 0x%x not allowed for opcode 0x%02x", idx, f, op);
        if (in->form == DVM_FORM_UNARY && in->b)
            return fail(err, en, "instruction %d: unused field B is not 0", idx);
        if (in->form == DVM_FORM_CAST) {
            if (!is_compute(in->b))
                return fail(err, en, "instruction %d: CAST source dtype %u is not a compute dtype", idx,
                            in->b);
            if ((e = need_reg(p, rs, idx, in->a, in->b, ca, err, en))) return e;
            return write_reg(p, rs, idx, in->d, DVM_DTYPE_COMPUTE[dt], rcls, err, en);
        }
        if ((e = need_reg(p, rs, idx, in->a, dt, ca, err, en))) return e;
        return write_reg(p, rs, idx, in->d, (op == DVM_OP_ISNAN || op == DVM_OP_ISINF) ? DVM_DT_BOOL : dt,
                         op == DVM_OP_BCAST_ROW ? 0 : rcls, err, en);
    case DVM_FORM_BINARY:
        if (frow && !(ca && cb)) return fail(err, en, "instruction %d: a ROW result needs ROW sources", idx);
        if ((e = need_reg(p, rs, idx, in->a, dt, ca, err, en))) return e;
        if ((e = need_reg(p, rs, idx, in->b, dt, cb, err, en))) return e;
        return write_reg(p, rs, idx, in->d, is_compare(op) ? DVM_DT_BOOL : dt, rcls, err, en);
    case DVM_FORM_BINARY_IMM:
        if (frow && !ca) return fail(err, en, "instruction %d: a ROW result needs ROW sources", idx);
        if (in->b > 1) return fail(err, en, "instruction %d: immediate side B must be 0 or 1", idx);
        in->imm = iw[1];
        if ((e = need_reg(p, rs, idx, in->a, dt, ca, err, en))) return e;
        return write_reg(p, rs, idx, in->d, is_compare(op) ? DVM_DT_BOOL : dt, rcls, err, en);
    case DVM_FORM_SELECT:
        if (frow && !(ca && cb && cc)) return fail(err, en,
                                                   "instruction %d: a ROW result needs ROW sources", idx);
        if (iw[1] >> 16) return fail(err, en, "instruction %d: SELECT's C word has high bits set", idx);
        in->c = (uint16_t)iw[1];
        if ((e = need_reg(p, rs, idx, in->a, DVM_DT_BOOL, ca, err, en))) return e;
        if ((e = need_reg(p, rs, idx, in->b, dt, cb, err, en))) return e;
        if ((e = need_reg(p, rs, idx, in->c, dt, cc, err, en))) return e;
        return write_reg(p, rs, idx, in->d, dt, rcls, err, en);
    case DVM_FORM_REDUCE:
        if (f != DVM_F_ROW) return fail(err, en,
                                        "instruction %d: a reduction's flags must be exactly F_ROW", idx);
        if (in->b) return fail(err, en, "instruction %d: unused field B is not 0", idx);
        if (p->tc != p->cols) return fail(err, en, "instruction %d: reductions need tile_cols == COLS", idx);
        if ((e = need_reg(p, rs, idx, in->a, dt, 0, err, en))) return e;
        return write_reg(p, rs, idx, in->d, dt, 1, err, en);
    }
    return fail(err, en, "instruction %d: unknown form", idx);
}

static int reads_reg(const vm_ins_t *in, unsigned r) {
    switch (in->form) {
    case DVM_FORM_STORE: case DVM_FORM_UNARY: case DVM_FORM_CAST: case DVM_FORM_BINARY_IMM:
    case DVM_FORM_REDUCE:
        return in->a == r;
    case DVM_FORM_VIEW:   /* a store's register source; a load's A is a buffer */
        return (in->op == DVM_OP_STORE_VIEW || in->op == DVM_OP_STORE_ROW) && in->a == r;
    case DVM_FORM_BINARY:
        return in->a == r || in->b == r;
    case DVM_FORM_SELECT:
        return in->a == r || in->b == r || in->c == r;
    default:
        return 0;
    }
}

/* How many of A, B, C are register sources of the instruction: a check of B or C by reads_reg alone would
 * count a field that is not a source (an immediate form's B flag, an unused C of 0) whenever it happens to
 * name the register A reads. */
static int n_sources(const vm_ins_t *in) {
    switch (in->form) {
    case DVM_FORM_BINARY: return 2;
    case DVM_FORM_SELECT: return 3;
    case DVM_FORM_VIEW: return in->op == DVM_OP_STORE_VIEW || in->op == DVM_OP_STORE_ROW;
    case DVM_FORM_STORE: case DVM_FORM_UNARY: case DVM_FORM_CAST: case DVM_FORM_BINARY_IMM:
    case DVM_FORM_REDUCE:
        return 1;
    default:
        return 0;
    }
}

static int writes_reg(const vm_ins_t *in, unsigned r) {
    int store = in->op == DVM_OP_STORE || in->op == DVM_OP_STORE_VIEW || in->op == DVM_OP_STORE_ROW;
    return in->op != DVM_OP_END && !store && in->d == r;
}

/* A FULL compute result whose next instruction is a cached contiguous STORE of a same-layout dtype is
 * computed straight into the store's destination: one pass over the tile fewer. Later readers of the
 * register read it there (run_tile points the register at the destination), still in cache. */
static void direct_stores(vm_prog_t *p) {
    for (int k = 1; k < p->n_ins; k++) {
        vm_ins_t *st = &p->ins[k], *pr = &p->ins[k - 1];
        int same_layout = st->dt == DVM_DT_F32 || st->dt == DVM_DT_I32 || st->dt == DVM_DT_I64;
        int compute = pr->form == DVM_FORM_CONST || pr->form == DVM_FORM_UNARY || pr->form == DVM_FORM_CAST ||
                      pr->form == DVM_FORM_BINARY || pr->form == DVM_FORM_BINARY_IMM ||
                      pr->form == DVM_FORM_SELECT;
        if (st->op == DVM_OP_STORE && !st->stream && same_layout && compute && pr->d == st->a &&
            !pr->via_tmp && !(pr->flags & DVM_F_ROW))
            pr->direct = st->skip = 1;
    }
}

static int read_before_written(const vm_prog_t *p, int from, unsigned r) {
    for (int m = from; m < p->n_ins; m++) {
        if (reads_reg(&p->ins[m], r)) return 1;
        if (writes_reg(&p->ins[m], r)) return 0;
    }
    return 0;
}

/* Whether an instruction reads or makes a scalar register (the fused kernels take packed registers only). */
static int broadcast(const vm_ins_t *in) {
    return in->scalar || in->scal_a || in->scal_b || in->expand_scalar;
}

/* SUB (FULL minus ROW), then EXP of its result or its square (MUL of it by itself), then RSUM of that: one
 * pass over the tile instead of three (softmax's middle, LayerNorm's variance). The value the pass does not
 * keep (SUB's result beside an EXP, the square) must be dead after the RSUM. The kernel runs rows last to
 * first, so the kept value may overwrite the ROW register; run_tile copies the sums in afterwards. */
static void fuse_row_passes(vm_prog_t *p) {
    for (int k = 0; k + 2 < p->n_ins; k++) {
        vm_ins_t *s = &p->ins[k], *m = s + 1, *r = s + 2;
        int plain = !s->expand && !s->via_tmp && !s->direct && !m->expand && !m->via_tmp && !m->direct &&
                    !r->expand && !r->via_tmp && !broadcast(s) && !broadcast(m) && !broadcast(r);
        if (!plain || s->op != DVM_OP_SUB || s->dt != DVM_DT_F32 || s->flags != DVM_F_B_ROW ||
            m->dt != DVM_DT_F32 || m->flags || m->a != s->d || r->op != DVM_OP_RSUM || r->dt != DVM_DT_F32 ||
            r->a != m->d)
            continue;
        int kind = m->op == DVM_OP_EXP ? VM_FUSE_SUB_EXP_RSUM
                   : (m->op == DVM_OP_MUL && m->b == s->d && m->d != s->d) ? VM_FUSE_SUB_SQUARE_RSUM : 0;
        unsigned dropped = kind == VM_FUSE_SUB_EXP_RSUM ? s->d : m->d;
        if (!kind || !vm_row_pass(kind) ||
            (dropped != (kind == VM_FUSE_SUB_EXP_RSUM ? m->d : s->d) && dropped != r->d &&
             read_before_written(p, k + 3, dropped)))
            continue;
        s->fused = (uint8_t)kind;
        m->skip = r->skip = 1;
        k += 2;
    }
}

/* Whether any instruction but `except` loads or stores buffer b. */
static int buffer_used(const vm_prog_t *p, unsigned b, int except) {
    for (int k = 0; k < p->n_ins; k++) {
        const vm_ins_t *in = &p->ins[k];
        int load = in->op == DVM_OP_LOAD || in->op == DVM_OP_LOAD_VIEW || in->op == DVM_OP_LOAD_ROW;
        int store = in->op == DVM_OP_STORE || in->op == DVM_OP_STORE_VIEW || in->op == DVM_OP_STORE_ROW;
        if (k != except && ((load && in->a == b) || (store && in->d == b))) return 1;
    }
    return 0;
}

/* softmax's end: when the one reader of a SUB-EXP-RSUM pass's values is a BINARY by a ROW (the division by the
 * row sums) that goes straight to a STORE, the pass writes the values into that STORE's destination and the
 * BINARY rescales them in place: the output's lines are fetched while the pass computes exponentials, not
 * during the last pass, which did nothing else (ONNX Runtime's softmax does the same). Only ROW instructions
 * may come between, the values must be dead after, and nothing else may touch the output buffer. */
static void row_pass_outputs(vm_prog_t *p) {
    for (int k = 0; k + 3 < p->n_ins && p->n_ins <= UINT16_MAX; k++) {
        vm_ins_t *s = &p->ins[k];
        if (s->fused != VM_FUSE_SUB_EXP_RSUM) continue;
        unsigned kept = p->ins[k + 1].d;
        int x = k + 3;
        while (x < p->n_ins && (p->ins[x].flags & DVM_F_ROW) && p->ins[x].form != DVM_FORM_VIEW &&
               p->ins[x].form != DVM_FORM_LOAD && p->ins[x].form != DVM_FORM_STORE && !reads_reg(&p->ins[x], kept) &&
               !writes_reg(&p->ins[x], kept))
            x++;
        if (x + 1 >= p->n_ins) continue;
        const vm_ins_t *b = &p->ins[x], *st = b + 1;
        if (b->form != DVM_FORM_BINARY || b->flags != DVM_F_B_ROW || b->a != kept || b->b == kept || !b->direct ||
            b->skip || b->fused || b->expand || b->expand_scalar || b->via_tmp ||
            read_before_written(p, x + 1, kept) || buffer_used(p, st->d, x + 1))
            continue;
        s->kept_to = (uint16_t)(x + 1);
    }
}

/* Softmax as the encoder writes it: RMAX of x, the fused SUB-EXP-RSUM pass over x and that max, RECIP of the
 * sums, MUL of the values by the reciprocals: one kernel that takes each row through all four while it is in
 * L1 (vm_softmax_kernel). The max, the values, the sums and their reciprocals must be dead after the MUL,
 * whose result may not share x's register; it goes to the register, or where the MUL is direct or a
 * streamed STORE of it follows (the result dead after), to that STORE's destination (kept_to). */
static void fuse_softmax(vm_prog_t *p) {
    if (!vm_softmax_kernel() || p->n_ins > UINT16_MAX) return;
    for (int k = 0; k + 5 < p->n_ins; k++) {
        vm_ins_t *mx = &p->ins[k], *s = mx + 1, *c = mx + 4, *m = mx + 5;
        unsigned kept = p->ins[k + 2].d, sums = p->ins[k + 3].d;
        int max = mx->op == DVM_OP_RMAX && mx->dt == DVM_DT_F32 && !mx->skip && !mx->fused && !mx->expand &&
                  !mx->via_tmp && !broadcast(mx);
        int pass = s->fused == VM_FUSE_SUB_EXP_RSUM && s->a == mx->a && s->b == mx->d;
        int recip = c->op == DVM_OP_RECIP && c->form == DVM_FORM_UNARY && c->dt == DVM_DT_F32 &&
                    c->flags == (DVM_F_ROW | DVM_F_A_ROW) && c->a == sums && !c->skip && !c->fused &&
                    !c->expand && !c->via_tmp && !c->direct && !broadcast(c);
        int mul = m->op == DVM_OP_MUL && m->form == DVM_FORM_BINARY && m->dt == DVM_DT_F32 &&
                  m->flags == DVM_F_B_ROW && m->a == kept && m->b == c->d && m->d != mx->a && !m->skip &&
                  !m->fused && !m->expand && !m->via_tmp && !broadcast(m) && !m->rep_a && !m->rep_b;
        if (!max || !pass || !recip || !mul) continue;
        unsigned dead[4] = {mx->d, kept, sums, c->d};
        int live = 0;
        for (int j = 0; j < 4; j++) live |= dead[j] != m->d && read_before_written(p, k + 6, dead[j]);
        if (live) continue;
        const vm_ins_t *st = k + 6 < p->n_ins ? &p->ins[k + 6] : NULL;
        if (m->direct)
            mx->kept_to = (uint16_t)(k + 6);
        else if (st && st->op == DVM_OP_STORE && st->stream && st->a == m->d &&
                 !read_before_written(p, k + 7, m->d)) {
            mx->kept_to = (uint16_t)(k + 6);
            p->ins[k + 6].skip = 1;
        }
        mx->fused = VM_FUSE_SOFTMAX;
        s->fused = 0;
        for (int j = 1; j <= 5; j++) p->ins[k + j].skip = 1;
        k += 5;
    }
}

/* MUL by a ROW, then MUL and ADD of rows that every tile row reads, each LOAD_VIEW of one right before its
 * use (LayerNorm's scale and shift): one pass instead of three; the two products must be dead after it. */
static void fuse_scale_shift(vm_prog_t *p) {
    for (int k = 0; k + 4 < p->n_ins; k++) {
        vm_ins_t *m1 = &p->ins[k], *l1 = m1 + 1, *m2 = m1 + 2, *l2 = m1 + 3, *m3 = m1 + 4;
        int plain = !m1->fused && !m1->skip && !m1->expand && !m1->via_tmp && !m1->direct && !m2->expand &&
                    !m2->via_tmp && !m2->direct && !m3->expand && !m3->via_tmp && !broadcast(m1) &&
                    !broadcast(m2) && !broadcast(m3);
        int loads = l1->op == DVM_OP_LOAD_VIEW && l1->row_view && l1->dt == DVM_DT_F32 &&
                    l2->op == DVM_OP_LOAD_VIEW && l2->row_view && l2->dt == DVM_DT_F32;
        if (!plain || !loads || m1->op != DVM_OP_MUL || m1->dt != DVM_DT_F32 || m1->flags != DVM_F_B_ROW ||
            m2->op != DVM_OP_MUL || m2->dt != DVM_DT_F32 || m2->flags || m2->a != m1->d || m2->b != l1->d ||
            !m2->rep_b || m2->rep_a || m3->op != DVM_OP_ADD || m3->dt != DVM_DT_F32 || m3->flags ||
            m3->a != m2->d || m3->b != l2->d || !m3->rep_b || m3->rep_a || l1->d == m1->d || l2->d == m2->d)
            continue;
        if ((m1->d != m2->d && read_before_written(p, k + 3, m1->d)) ||
            (m2->d != m3->d && read_before_written(p, k + 5, m2->d)))
            continue;
        m1->fused = VM_FUSE_SCALE_SHIFT;
        l1->skip = m2->skip = l2->skip = m3->skip = 1;
        k += 4;
    }
}

/* The register-register opcode a chain step runs for this instruction, or -1 when it cannot be one: FULL
 * float32 results of FULL (packed, repeated-row or scalar) sources, nothing to expand or fuse first. */
static int chain_step_op(const vm_ins_t *in) {
    if (in->dt != DVM_DT_F32 || in->flags || in->skip || in->fused || in->expand || in->expand_scalar ||
        in->via_tmp || in->scalar)
        return -1;
    int op = in->form == DVM_FORM_BINARY_IMM ? in->op - DVM_IMM_DELTA : in->op;
    int ok = in->form == DVM_FORM_UNARY || in->form == DVM_FORM_BINARY || in->form == DVM_FORM_BINARY_IMM;
    return ok && vm_chain_op(op) ? op : -1;
}

/* LOADs that only point their register at a buffer (run_tile's memory() copies nothing for them). */
static int pointer_load(const vm_ins_t *in) {
    return (in->op == DVM_OP_LOAD && in->alias) || (in->op == DVM_OP_LOAD_VIEW && (in->row_view || in->scalar));
}

/* A source register of step k: the previous step's result (ACC), an earlier step's (SLOT), or memory. */
static void chain_source(vm_chain_t *ch, const int *writer, int k, int j, unsigned reg, int rep, int scal) {
    vm_chain_step_t *st = &ch->step[k];
    int w = writer[reg];
    st->reg[j] = (uint16_t)reg;
    if (w >= 0) {
        st->src[j] = w == k - 1 ? VM_SRC_ACC : VM_SRC_SLOT;
        st->slot[j] = (uint8_t)w;
        ch->step[w].to_slot |= w != k - 1;
    } else {
        st->src[j] = rep ? VM_SRC_ROWREP : scal ? VM_SRC_BCAST : VM_SRC_PACKED;
    }
}

/* Elementwise chains: from each chainable instruction on, the longest run of chain steps, STOREs of their
 * results and pointer LOADs; kept when it has two compute steps or more. Each step's result goes to its
 * tile register only when an instruction after the chain reads it (or a STORE skipped for it needs it). */
static int fuse_chains(vm_prog_t *p) {
    if (!vm_chain_kernel() || p->n_ins > UINT16_MAX) return VM_OK;   /* steps and heads keep 16-bit indices */
    int *writer = malloc((size_t)p->n_regs * sizeof *writer);   /* step that last wrote each register */
    if (!writer) return VM_NOMEM;
    int rc = VM_OK;
    for (int k = 0; k < p->n_ins; k++) {
        if (chain_step_op(&p->ins[k]) < 0) continue;
        vm_chain_t ch;
        memset(&ch, 0, sizeof ch);
        for (int r = 0; r < p->n_regs; r++) writer[r] = -1;
        int m = k, end = k, compute = 0;
        for (; m < p->n_ins && ch.n < VM_CHAIN_MAX; m++) {
            vm_ins_t *in = &p->ins[m];
            int op = chain_step_op(in);
            if (op >= 0) {
                vm_chain_step_t *st = &ch.step[ch.n];
                st->op = (uint8_t)op;
                st->ins = (uint16_t)m;
                if (in->form == DVM_FORM_UNARY) {
                    st->nsrc = 1;
                    chain_source(&ch, writer, ch.n, 0, in->a, 0, 0);
                } else if (in->form == DVM_FORM_BINARY) {
                    st->nsrc = 2;
                    chain_source(&ch, writer, ch.n, 0, in->a, in->rep_a, in->scal_a);
                    chain_source(&ch, writer, ch.n, 1, in->b, in->rep_b, in->scal_b);
                } else {   /* the immediate is B, or A when field B is 1 */
                    int j = in->b == 1 ? 0 : 1;
                    st->nsrc = 2;
                    chain_source(&ch, writer, ch.n, 1 - j, in->a, 0, 0);
                    st->src[j] = VM_SRC_BCAST;
                    st->imm_src = (uint8_t)(1 << j);
                    uint32_t bits = (uint32_t)in->imm;
                    memcpy(&st->imm, &bits, 4);
                }
                st->out = in->direct ? VM_OUT_STORE : VM_OUT_NONE;
                writer[in->d] = ch.n++;
                compute++;
                end = m + 1 + in->direct;   /* a direct result's STORE is skipped: it belongs to the chain */
            } else if (pointer_load(in)) {
                writer[in->d] = -1;
            } else if (in->op == DVM_OP_STORE && in->skip && m > k && p->ins[m - 1].direct) {
                continue;
            } else if (in->op == DVM_OP_STORE && !in->skip && in->dt == DVM_DT_F32 && writer[in->a] >= 0) {
                vm_chain_step_t *st = &ch.step[ch.n];
                st->op = DVM_OP_STORE;
                st->ins = (uint16_t)m;
                st->nsrc = 1;
                chain_source(&ch, writer, ch.n, 0, in->a, 0, 0);
                st->out = VM_OUT_STORE;   /* run_tile streams it where the STORE streams and it is aligned */
                ch.n++;
                end = m + 1;
            } else {
                break;
            }
        }
        if (compute < 2) continue;
        for (int r = 0; r < p->n_regs; r++)   /* trailing pointer LOADs past end only ever reset writer[r] */
            if (writer[r] >= 0 && read_before_written(p, end, (unsigned)r)) ch.step[writer[r]].out = VM_OUT_STORE;
        vm_chain_t *grown = realloc(p->chains, (size_t)(p->n_chains + 1) * sizeof *grown);
        if (!grown) { rc = VM_NOMEM; break; }
        p->chains = grown;
        ch.span = end - k;
        p->chains[p->n_chains] = ch;
        p->ins[k].fused = VM_FUSE_CHAIN;
        p->ins[k].chain = (uint16_t)p->n_chains++;
        for (int q = k + 1; q < end; q++) p->ins[q].skip = 1;
        k = end - 1;
    }
    free(writer);
    return rc;
}

/* Which registers hold a repeated row (rep[r]: its element size) at each instruction is known statically
 * (straight-line code): a
 * LOAD_VIEW whose rows all read the same contiguous input row makes one; plain BINARY instructions read it
 * row by row; any other reader first expands it to nr packed rows (after which it is an ordinary
 * register). */
static int repeated_rows(vm_prog_t *p) {
    uint8_t *rep = calloc((size_t)p->n_regs, 1);
    if (!rep) return VM_NOMEM;
    for (int k = 0; k < p->n_ins; k++) {
        vm_ins_t *in = &p->ins[k];
        int plain_binary = in->form == DVM_FORM_BINARY &&
                           !(in->flags & (DVM_F_ROW | DVM_F_A_ROW | DVM_F_B_ROW));
        if (plain_binary) {
            in->rep_a = rep[in->a];
            in->rep_b = rep[in->b];
        } else {
            unsigned src[3] = {in->a, in->b, in->c};
            for (int j = 0; j < n_sources(in); j++)
                if (src[j] < (unsigned)p->n_regs && rep[src[j]]) {
                    in->expand |= (uint8_t)(1 << j);
                    in->expand_size = rep[src[j]];   /* one dtype: a CAST has one source, SELECT's agree */
                    rep[src[j]] = 0;
                }
        }
        if (writes_reg(in, in->d)) rep[in->d] = in->row_view ? DVM_DTYPE_SIZE[in->dt] : 0;
    }
    free(rep);
    return VM_OK;
}

/* Element size of a compute instruction's result. */
static int result_size(const vm_ins_t *in) {
    int op = in->form == DVM_FORM_BINARY_IMM ? in->op - DVM_IMM_DELTA : in->op;
    int cmp = (in->form == DVM_FORM_BINARY || in->form == DVM_FORM_BINARY_IMM) && op >= DVM_OP_EQ &&
              op <= DVM_OP_GE;
    int test = in->form == DVM_FORM_UNARY && (op == DVM_OP_ISNAN || op == DVM_OP_ISINF);
    return cmp || test ? 1 : REG_SIZE[in->dt];
}

/* Scalar registers, known statically like repeated rows: a LOAD_VIEW of one element for the whole tile (a
 * 0-d input such as an optimizer's learning rate) points its register at that element; plain BINARY
 * instructions read it through their vs/sv kernels, and a plain BINARY of two scalars, a BINARY_IMM or a
 * UNARY of one computes one element (1 - beta once per tile, not once per element). Any other reader,
 * or a result that goes straight to a STORE, first fills the register out to the whole tile. */
static int scalar_registers(vm_prog_t *p) {
    uint8_t *sc = calloc((size_t)p->n_regs, 1);   /* element size of a scalar register, else 0 */
    if (!sc) return VM_NOMEM;
    for (int k = 0; k < p->n_ins; k++) {
        vm_ins_t *in = &p->ins[k];
        int plain = !(in->flags & (DVM_F_ROW | DVM_F_A_ROW | DVM_F_B_ROW)) && !in->expand && !in->via_tmp;
        int same = in->form != DVM_FORM_STORE && in->form != DVM_FORM_VIEW && in->form != DVM_FORM_LOAD &&
                   in->form != DVM_FORM_END && result_size(in) == REG_SIZE[in->dt];
        unsigned src[3] = {in->a, in->b, in->c};
        int keep = 0;   /* bits of the scalar sources the instruction reads as they are */
        if (plain && in->form == DVM_FORM_BINARY && !in->rep_a && !in->rep_b && (sc[in->a] || sc[in->b]) &&
            !(in->direct && sc[in->a] && sc[in->b])) {
            in->scal_a = sc[in->a] != 0;
            in->scal_b = sc[in->b] != 0 && !(in->scal_a && !same);   /* a compare of two: B filled out */
            in->scalar = in->scal_a && in->scal_b;
            keep = in->scal_a | in->scal_b << 1;
        } else if (plain && !in->direct && same && sc[in->a] &&
                   (in->form == DVM_FORM_BINARY_IMM ||
                    (in->form == DVM_FORM_UNARY && in->op != DVM_OP_BCAST_ROW))) {
            in->scalar = 1;
            keep = 1;
        }
        for (int j = 0; j < n_sources(in); j++)
            if (!(keep >> j & 1) && src[j] < (unsigned)p->n_regs && sc[src[j]]) {
                in->expand_scalar |= (uint8_t)(1 << j);
                in->expand_scalar_size = sc[src[j]];
                sc[src[j]] = 0;
            }
        if (writes_reg(in, in->d))
            sc[in->d] = in->scalar ? (uint8_t)(in->form == DVM_FORM_VIEW ? DVM_DTYPE_SIZE[in->dt] : result_size(in))
                                   : 0;
    }
    free(sc);
    return VM_OK;
}

/* A cost per element of the space: each instruction that runs per element counts 1, a transcendental
 * function or a division 8 (measured: an exp or tanh element costs about as much as 8 adds). */
static int64_t program_work(const vm_prog_t *p) {
    int64_t work = 1;
    for (int k = 0; k < p->n_ins; k++) {
        const vm_ins_t *in = &p->ins[k];
        if (in->scalar || in->op == DVM_OP_END) continue;   /* skipped ones run inside a fused one */
        switch (in->op) {
        case DVM_OP_EXP: case DVM_OP_LOG: case DVM_OP_TANH: case DVM_OP_ERF: case DVM_OP_SIGMOID:
        case DVM_OP_POW: case DVM_OP_POW_IMM: case DVM_OP_DIV: case DVM_OP_SQRT: case DVM_OP_RSQRT:
            work += 8;
            break;
        default:
            work += 1;
        }
    }
    return work;
}

/* The encoder sizes an elementwise tile so its registers fit L1, each instruction being a pass over them. When
 * elementwise chains cover every instruction that runs over the tile (the rest only point registers at
 * buffers or compute one element), values stay in vector registers and a bigger tile only saves the per-tile
 * work (the chain's step table, the dispatch): tiles of full rows of up to VM_CHAIN_TILE_ELEMS. Measured on 2
 * threads, 8192x1024: bias+GELU 2.26 -> 1.86 ms, the 6-op chain 2.77 -> 2.38, SiLU-gated product 1.67 -> 1.48.
 * A tile holds no more than one thread's share (VM_THREAD_WORK), so a program vm_execute would split still
 * has a tile per thread (Adam over 64x256 ran on one thread in one tile: 18 -> 25 us). */
#define VM_CHAIN_TILE_ELEMS ((int64_t)1 << 14)
static void coarsen_chain_tiles(vm_prog_t *p) {
    if (p->n_chains == 0 || p->rows * p->cols == 0 || (p->tc != p->cols && p->tr != 1)) return;
    for (int k = 0; k < p->n_ins; k++) {
        const vm_ins_t *in = &p->ins[k];
        int in_registers = in->skip || in->fused == VM_FUSE_CHAIN || pointer_load(in) || in->scalar;
        if (!in_registers && in->op != DVM_OP_END) return;
    }
    int64_t most = VM_THREAD_WORK / p->work + 1;
    if (most > VM_CHAIN_TILE_ELEMS) most = VM_CHAIN_TILE_ELEMS;
    /* rows longer than that (the encoder flattens an elementwise space into one row): equal pieces of at
     * most `most` elements, multiples of 64 as the encoder's (aligned for streaming stores). The 6-op chain
     * over 8192x1024 as one row on 2 threads, 1x512 tiles: 2.6-3.0 ms, 1x16384: 2.1-2.4. */
    int64_t pieces = (p->cols + most - 1) / most, piece = ((p->cols + pieces - 1) / pieces + 63) / 64 * 64;
    int64_t tc = p->cols <= most ? p->cols : piece < p->cols ? piece : p->cols;
    int64_t tr = tc == p->cols ? most / tc : 1;
    if (tr > p->rows) tr = p->rows;
    if (tr < 1) tr = 1;
    if (tr * tc <= p->tr * p->tc) return;
    p->tr = tr;
    p->tc = tc;
    p->cb = (p->cols + tc - 1) / tc;
    p->ntiles = (p->rows + tr - 1) / tr * p->cb;
}

int vm_decode(const uint64_t *w, int64_t nw, vm_prog_t *p, char *err, size_t en) {
    memset(p, 0, sizeof *p);
    int e;
    if ((e = check_header(w, nw, p, err, en)) || (e = check_buffers(w, nw, p, err, en))) return e;
    int64_t pc = DVM_CODE_START + (int64_t)DVM_BUF_WORDS * p->n_bufs;
    uint64_t n_instr = w[DVM_H_N_INSTR];
    if (n_instr < 1 || n_instr > (uint64_t)(nw - pc))
        return fail(err, en, "n_instr %llu does not fit the %lld code words", (unsigned long long)n_instr,
                    (long long)(nw - pc));
    p->ins = calloc(n_instr, sizeof *p->ins);
    reg_state_t *rs = calloc((size_t)p->n_regs, sizeof *rs);
    if (!p->ins || !rs) { free(rs); vm_prog_free(p); return VM_NOMEM; }
    int max_reg = 0;
    for (uint64_t i = 0; i < n_instr; i++) {
        int idx = (int)i;
        if (pc >= nw) { e = fail(err, en, "instruction %d starts past the program end", idx); goto bad; }
        uint64_t w0 = w[pc];
        vm_ins_t *in = &p->ins[i];
        unsigned op = w0 & 0xff;
        in->op = (uint8_t)op;
        in->dt = (w0 >> 8) & 0xf;
        in->flags = (w0 >> 12) & 0xf;
        in->d = (w0 >> 16) & 0xffff;
        in->a = (w0 >> 32) & 0xffff;
        in->b = (w0 >> 48) & 0xffff;
        if (op >= DVM_N_OPCODES || !DVM_OPCODE_WORDS[op]) {
            e = fail(err, en, "instruction %d: unknown opcode 0x%02x", idx, op); goto bad;
        }
        int nwords = DVM_OPCODE_WORDS[op];
        if (pc + nwords > nw) {
            e = fail(err, en, "instruction %d runs past the program end", idx);
            goto bad;
        }
        in->form = (uint8_t)DVM_OPCODE_FORM[op];
        if (!(DVM_OPCODE_DTYPES[op] >> in->dt & 1)) {
            e = fail(err, en, "instruction %d: dtype %u not allowed for opcode 0x%02x", idx, in->dt, op);
            goto bad;
        }
        if (in->flags & ~DVM_FORM_FLAGS[in->form]) {
            e = fail(err, en, "instruction %d: flags 0x%x not allowed for opcode 0x%02x", idx, in->flags, op);
            goto bad;
        }
        if ((op == DVM_OP_END) != (i == n_instr - 1)) {
            e = fail(err, en, op == DVM_OP_END ? "instruction %d: END before the last instruction"
                                               : "instruction %d: the last instruction is not END", idx);
            goto bad;
        }
        const uint64_t *iw = w + pc;
        pc += nwords;
        if (op == DVM_OP_END) {
            if (in->d || in->a || in->b) {
                e = fail(err, en, "instruction %d: END fields must be 0", idx);
                goto bad;
            }
            continue;
        }
        int mem = in->form == DVM_FORM_LOAD || in->form == DVM_FORM_STORE || in->form == DVM_FORM_VIEW;
        /* element sizes of the sources, read before compute_ins overwrites D's state */
        int ssz[3] = {0, 0, 0};
        if (!mem && in->form != DVM_FORM_CONST) {
            unsigned srcs[3] = {in->a, in->b,
                in->form == DVM_FORM_SELECT ? (unsigned)(iw[1] & 0xffff) : 0xffffu};
            int nsrc = in->form == DVM_FORM_BINARY ? 2 : in->form == DVM_FORM_SELECT ? 3 : 1;
            for (int k = 0; k < nsrc; k++)
                if (srcs[k] == in->d && srcs[k] < (unsigned)p->n_regs && rs[srcs[k]].written)
                    ssz[k] = REG_SIZE[rs[srcs[k]].dt];
        }
        e = mem ? memory_ins(p, rs, idx, in, iw, err, en) : compute_ins(p, rs, idx, in, iw, err, en);
        if (e) goto bad;
        if (!mem && in->form != DVM_FORM_CONST) {
            int dsz = REG_SIZE[rs[in->d].dt];
            for (int k = 0; k < 3; k++) in->via_tmp |= ssz[k] && ssz[k] != dsz;
        }
        /* the arena only needs room up to the highest register the program names */
        int store = mem && (op == DVM_OP_STORE || op == DVM_OP_STORE_VIEW || op == DVM_OP_STORE_ROW);
        int load = mem && !store;
        int regs[4] = {store ? 0 : in->d, load ? 0 : in->a,
                       (in->form == DVM_FORM_BINARY || in->form == DVM_FORM_SELECT) ? in->b : 0, in->c};
        for (int k = 0; k < 4; k++)
            if (regs[k] > max_reg) max_reg = regs[k];
    }
    if (pc != nw) { e = fail(err, en, "%lld words after the last instruction",
                             (long long)(nw - pc)); goto bad; }
    free(rs);
    p->n_ins = (int)n_instr;
    direct_stores(p);
    if (repeated_rows(p) != VM_OK || scalar_registers(p) != VM_OK) { vm_prog_free(p); return VM_NOMEM; }
    fuse_row_passes(p);
    fuse_softmax(p);
    row_pass_outputs(p);
    fuse_scale_shift(p);
    if (fuse_chains(p) != VM_OK) { vm_prog_free(p); return VM_NOMEM; }
    for (int k = 0; k < p->n_ins; k++) p->ins[k].rare = p->ins[k].expand || p->ins[k].expand_scalar || p->ins[k].fused;
    p->work = program_work(p);
    coarsen_chain_tiles(p);
    p->reg_stride = ((size_t)(p->tr * p->tc) * 8 + 63) & ~(size_t)63;
    /* registers a multiple of 4 KiB apart would put element i of every register at the same 4 KiB offset,
     * where loads wait on unrelated stores (4K aliasing); three cache lines more staggers them */
    if (p->reg_stride % 4096 == 0) p->reg_stride += 192;
    p->n_named = max_reg + 1;
    p->idx_offset = (size_t)p->n_named * p->reg_stride;
    p->tmp_offset = p->idx_offset + ((3 * (size_t)p->tr * sizeof(int64_t) + 63) & ~(size_t)63);
    p->out_offset = p->tmp_offset + ((3 * (size_t)p->tc * 8 + 63) & ~(size_t)63);
    p->ptr_offset = p->out_offset + p->reg_stride;
    p->arena_bytes = p->ptr_offset + (size_t)p->n_named * sizeof(char *);
    return VM_OK;
bad:
    free(rs);
    vm_prog_free(p);
    return e;
}

void vm_prog_free(vm_prog_t *p) {
    free(p->ins);
    p->ins = NULL;
    free(p->chains);
    p->chains = NULL;
    p->n_chains = 0;
}
