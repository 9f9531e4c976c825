/* The decoded, validated form of a DVM program (see dvm_runtime/isa.py for the execution model). */
#ifndef DVM_VM_H
#define DVM_VM_H
#include <stddef.h>
#include <stdint.h>

#include "dvm_isa.h"
#include "vm_kernels.h"

typedef struct {
    uint8_t op, dt, flags, form;
    uint8_t via_tmp;       /* D aliases a source of another element size: compute into scratch, then copy */
    uint8_t alias;         /* LOAD of a dtype whose register layout is the buffer's: the register points
                            into the buffer instead of holding a copy */
    uint8_t stream;        /* STORE to a buffer too big to stay cached: non-temporal stores */
    uint8_t direct;        /* the result goes straight to the next instruction's STORE destination */
    uint8_t skip;          /* a STORE whose value the previous instruction wrote in place, or an
                            instruction a fused one before it already ran */
    uint8_t fused;         /* a VM_FUSE_* kind: SUB of a ROW that runs with the next two instructions as one
                            row-pass kernel, or the head of an elementwise chain (vm_kernels.h) */
    uint8_t row_view;      /* LOAD_VIEW reading the same contiguous row for every tile row: the register
                            points at that one row (a "repeated row") instead of nr copies */
    uint8_t rep_a, rep_b;  /* BINARY sources that are repeated rows (read row by row) */
    uint8_t expand;        /* bits 0-2: sources A, B, C to copy out to nr rows first (repeated rows
                            read by an instruction that takes only packed registers), of expand_size bytes
                            per element */
    uint8_t expand_size;
    uint8_t scalar;        /* a LOAD_VIEW reading one element for the whole tile (all strides 0), or a
                            compute result of scalar sources: one element stands for every tile element */
    uint8_t scal_a, scal_b;   /* plain BINARY sources that are scalars (read by the vs/sv kernels) */
    uint8_t expand_scalar; /* bits 0-2: sources A, B, C to fill out to the whole tile first, of
                            expand_scalar_size bytes per element */
    uint8_t expand_scalar_size;
    uint8_t rare;          /* expand, expand_scalar or fused is set: one test on the common path */
    uint16_t chain;        /* fused == VM_FUSE_CHAIN: the chain this instruction heads (vm_prog_t.chains) */
    uint16_t kept_to;      /* fused == VM_FUSE_SUB_EXP_RSUM: 0, or the STORE whose destination the pass writes
                            its kept values to (the one later reader scales them there in place) */
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
    vm_chain_t *chains;    /* n_chains elementwise chains (VM_FUSE_CHAIN heads index them) */
    int n_chains;
    size_t reg_stride;     /* bytes per register, a multiple of 64 */
    size_t idx_offset;     /* arena layout per thread: registers actually used, */
    size_t tmp_offset;     /* then d0/d1/d2 of each tile row, then 3 rows of broadcast scratch, */
    size_t out_offset;     /* then one scratch register for via_tmp instructions, */
    size_t ptr_offset;     /* then where each register's elements are (its arena slot or an aliased buffer) */
    size_t arena_bytes;
    int n_named;           /* registers the program names: 0 .. n_named - 1 */
    int64_t work;          /* estimated cost per element of the space (vm_execute's thread count) */
} vm_prog_t;

enum { VM_OK = 0, VM_INVALID = -1, VM_NOMEM = -2 };

/* A program whose buffers together hold at least this many bytes cannot keep them in the cache from one run
 * to the next (the last-level cache is shared with the rest of the process and other processes): its
 * contiguous STOREs into buffers of at least 1/8 of it bypass the caches (non-temporal stores), where
 * writing through them would read every line first and evict the program's own inputs. Smaller programs
 * keep their outputs cached for the kernel that reads them next. By default half the last-level cache, at
 * least 16 MiB. Measured on this 300 MiB L3 (ops suite, 8192x1024, 2 threads): streaming the 32 MiB
 * outputs made LayerNorm (64 MiB in all) 1.40-1.50 -> 1.62 ms, softmax (64 MiB) 1.19-1.23 -> 1.38-1.43 and
 * the SiLU-gated product (96 MiB) 1.89-1.96 -> 2.08 slower, and the Adam step (224 MiB) 5.8-6.0 -> 4.1-4.2
 * faster (torch.compile 4.6-5.0); the former rule, one buffer of 3/4 of the cache, streamed none of them.
 * $MSGX_STREAM_BYTES sets it; vm_set_stream_bytes changes it for programs decoded later (<= 0: default). */
int64_t vm_stream_bytes(void);
void vm_set_stream_bytes(int64_t bytes);

/* Estimated work (vm_prog_t.work per element) that makes handing a share of a program to another thread pay:
 * vm_execute gives each thread at least this much. Measured inside a model, not on one kernel in a loop: the
 * bundled transformer (best of 60x100 calls, processes alternating) at seq 64 / 128 / 256 took 289 / 601 / 951-963 us with 2^19, 290 / 605 / 972-985 with
 * the former 16384 elements per thread, 312 / 621-685 / 974 with 2^16-2^18 and 294 / 593 / 1213-1239 on one
 * thread. Alone in a loop, smaller programs gained from a second thread (6-op chain with a tanh, 16384
 * elements: 12.9 -> 8.1 us), but between a model's other work they lost. */
#define VM_THREAD_WORK ((int64_t)1 << 19)

/* Validates the whole program and fills *p; on VM_INVALID, err holds the reason. */
int vm_decode(const uint64_t *w, int64_t nw, vm_prog_t *p, char *err, size_t errlen);
void vm_prog_free(vm_prog_t *p);

/* Runs a decoded program; bufs[i] points at n_elems elements of the table's dtype. VM_OK or VM_NOMEM. */
int vm_execute(const vm_prog_t *p, char *const *bufs, int nthreads);
#endif
