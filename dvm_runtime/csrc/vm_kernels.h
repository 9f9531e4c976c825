/* Tile kernels of the DVM VM, one loop each, looked up by (opcode, dtype). */
#ifndef DVM_VM_KERNELS_H
#define DVM_VM_KERNELS_H
#include <stdint.h>

#include "dvm_isa.h"

typedef void (*vm_un_fn)(void *d, const void *a, int64_t n);
/* vv: d = a op b elementwise; vs: b is one scalar; sv: a is one scalar. */
typedef void (*vm_bin_fn)(void *d, const void *a, const void *b, int64_t n);
typedef struct { vm_bin_fn vv, vs, sv; } vm_bin_set_t;
typedef void (*vm_red_fn)(void *d, const void *a, int64_t nr, int64_t nc);
typedef void (*vm_sel_fn)(void *d, const void *c, const void *a, const void *b, int64_t n);
typedef void (*vm_sel_scalar_fn)(void *d, const void *c, const void *a, const void *b, int64_t n, int a_scalar);
/* Buffer <-> register element conversion with a stride (in elements) on the buffer side. */
typedef void (*vm_mem_fn)(void *reg, void *buf, int64_t stride, int64_t n);

#define VM_NDT 6
extern vm_un_fn vm_unary[DVM_N_OPCODES][VM_NDT];
extern vm_bin_set_t vm_binary[DVM_N_OPCODES][VM_NDT];   /* indexed by the register-register opcode */
extern vm_un_fn vm_cast[VM_NDT][VM_NDT];                 /* [destination dtype][source dtype] */
extern vm_red_fn vm_reduce[DVM_N_OPCODES][VM_NDT];
extern vm_sel_fn vm_select[9];                            /* by element size 1, 4, 8 */
extern vm_sel_scalar_fn vm_select_scalar[9];              /* a (a_scalar) or b is one value: *a or *b */
extern vm_mem_fn vm_load[VM_NDT], vm_store[VM_NDT];       /* by buffer dtype */

/* Row passes: three instructions over a tile as one kernel with the same bits. d = a - row[i] (a ROW operand),
 * then EXP of it (SUB_EXP_RSUM, kept in d instead) or a square (SUB_SQUARE_RSUM, d keeps the difference);
 * sums[i] = the RSUM of row i of the EXP or square. NULL where the machine has no AVX-512 (the three
 * instructions then run one by one). */
enum { VM_FUSE_NONE, VM_FUSE_SUB_EXP_RSUM, VM_FUSE_SUB_SQUARE_RSUM, VM_FUSE_SCALE_SHIFT, VM_FUSE_CHAIN,
       VM_FUSE_SOFTMAX };
typedef void (*vm_row_pass_fn)(float *d, float *sums, const float *a, const float *row, int64_t nr, int64_t nc);
vm_row_pass_fn vm_row_pass(int kind);

/* Softmax over nr rows of nc, a row at a time: RMAX of x, the SUB-EXP-RSUM pass, RECIP of the sums and MUL of
 * the values by them (y must not overlap x), with the instructions' bits; with `stream`, y's rows are
 * 64-byte aligned whole vectors written with non-temporal stores, tmp holding a row first. NULL without
 * AVX-512. */
typedef void (*vm_softmax_fn)(float *y, float *tmp, const float *x, int64_t nr, int64_t nc, int stream);
vm_softmax_fn vm_softmax_kernel(void);

/* d = ((a * row[i]) * scale[j]) + shift[j] over nr rows of nc: MUL by a ROW operand, MUL and ADD of repeated
 * rows (LayerNorm's affine end) in one pass, with the three instructions' roundings. */
typedef void (*vm_scale_shift_fn)(float *d, const float *a, const float *row, const float *scale,
                                  const float *shift, int64_t nr, int64_t nc);
extern vm_scale_shift_fn vm_scale_shift;

/* Elementwise chains (vm_validate.c finds them): consecutive FULL float32 instructions run as one pass over
 * strips of 128 elements, each result kept in vector registers while the next instruction reads it, in a
 * per-strip slot when a later one does, and written to its tile register only when something after the
 * chain reads it. Every step rounds as its instruction's own kernel does, so the bits are the same. */
enum { VM_SRC_ACC, VM_SRC_SLOT, VM_SRC_PACKED, VM_SRC_ROWREP, VM_SRC_BCAST };
enum { VM_OUT_NONE, VM_OUT_STORE, VM_OUT_STREAM };
#define VM_CHAIN_MAX 32
typedef struct {
    uint8_t op;          /* a unary or register-register binary opcode, or STORE (passes operand 0 on) */
    uint8_t nsrc;
    uint8_t src[2];      /* VM_SRC_*: ACC the previous step's result, SLOT an earlier step's (slot[j]) */
    uint8_t slot[2];
    uint8_t to_slot;     /* a later step reads this result from its slot */
    uint8_t out;         /* VM_OUT_*: also write the result to d, nr rows of nc */
    const float *p[2];   /* PACKED: nr rows of nc; ROWREP: one row of nc every row reads; BCAST: one value */
    float *d;
    /* decoder's notes for run_tile, which fills p and d per tile */
    uint16_t ins;        /* the instruction this step runs */
    uint16_t reg[2];     /* register of each PACKED/ROWREP/BCAST source (BCAST of an immediate: none) */
    uint8_t imm_src;     /* bit j: source j is the instruction's immediate, kept in imm */
    float imm;
} vm_chain_step_t;
typedef struct {
    int span;            /* instructions from the head on that the chain covers (steps, their direct STOREs,
                            and LOADs that only point a register at a buffer) */
    int n;
    vm_chain_step_t step[VM_CHAIN_MAX];
} vm_chain_t;
typedef void (*vm_chain_fn)(const vm_chain_step_t *s, int n, int64_t nr, int64_t nc);
vm_chain_fn vm_chain_kernel(void);   /* NULL where the machine has no AVX-512 (no chains are formed) */
/* Whether a chain step may run this register-register opcode (float32; the chain kernel has its vector form). */
int vm_chain_op(int op);

/* Every (opcode, dtype) the ISA allows has a kernel; returns the first missing one as op*16+dt, or -1. */
int vm_kernels_missing(void);
#endif
