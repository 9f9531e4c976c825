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
/* Buffer <-> register element conversion with a stride (in elements) on the buffer side. */
typedef void (*vm_mem_fn)(void *reg, void *buf, int64_t stride, int64_t n);

#define VM_NDT 6
extern vm_un_fn vm_unary[DVM_N_OPCODES][VM_NDT];
extern vm_bin_set_t vm_binary[DVM_N_OPCODES][VM_NDT];   /* indexed by the register-register opcode */
extern vm_un_fn vm_cast[VM_NDT][VM_NDT];                 /* [destination dtype][source dtype] */
extern vm_red_fn vm_reduce[DVM_N_OPCODES][VM_NDT];
extern vm_sel_fn vm_select[9];                            /* by element size 1, 4, 8 */
extern vm_mem_fn vm_load[VM_NDT], vm_store[VM_NDT];       /* by buffer dtype */

/* Every (opcode, dtype) the ISA allows has a kernel; returns the first missing one as op*16+dt, or -1. */
int vm_kernels_missing(void);
#endif
