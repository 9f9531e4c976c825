/* The decoded, validated form of a DVM program (see dvm_runtime/isa.py for the execution model). */
#ifndef DVM_VM_H
#define DVM_VM_H
#include <stddef.h>
#include <stdint.h>

#include "dvm_isa.h"

typedef struct {
    uint8_t op, dt, flags, form;
    uint8_t via_tmp;       /* D aliases a source of another element size: compute into scratch, then copy */
    uint16_t d, a, b, c;   /* D/A/B fields; c = SELECT's third register */
    int64_t off;           /* memory forms: view offset */
    int64_t s[4];          /* memory forms: strides s0..s3 in elements */
    uint64_t imm;          /* CONST and *_IMM */
} vm_ins_t;

typedef struct {
    int64_t dims[4];
    int64_t rows, cols, tr, tc, cb, ntiles;
    int n_regs, n_bufs, n_ins;
    uint8_t buf_dt[DVM_MAX_BUFFERS], buf_role[DVM_MAX_BUFFERS];
    int64_t buf_n[DVM_MAX_BUFFERS];
    vm_ins_t *ins;         /* n_ins decoded instructions, END last */
    size_t reg_stride;     /* bytes per register, a multiple of 64 */
    size_t idx_offset;     /* arena layout per thread: registers actually used, */
    size_t tmp_offset;     /* then d0/d1/d2 of each tile row, then 3 rows of broadcast scratch, */
    size_t out_offset;     /* then one scratch register for via_tmp instructions */
    size_t arena_bytes;
} vm_prog_t;

enum { VM_OK = 0, VM_INVALID = -1, VM_NOMEM = -2 };

/* Validates the whole program and fills *p; on VM_INVALID, err holds the reason. */
int vm_decode(const uint64_t *w, int64_t nw, vm_prog_t *p, char *err, size_t errlen);
void vm_prog_free(vm_prog_t *p);

/* Runs a decoded program; bufs[i] points at n_elems elements of the table's dtype. VM_OK or VM_NOMEM. */
int vm_execute(const vm_prog_t *p, char *const *bufs, int nthreads);
#endif
