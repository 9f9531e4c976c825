/* A persistent pthread pool that runs one parallel-for over tiles at a time, plus per-thread arenas. */
#ifndef DVM_VM_POOL_H
#define DVM_VM_POOL_H
#include <stddef.h>
#include <stdint.h>

#define VM_MAX_THREADS 256

/* Runs fn(ctx, tid, arena, tile) for every tile in [0, ntiles); tid < nthreads, each with its own 64-byte
 * aligned arena of arena_bytes. Returns 0, or -1 when memory for the arenas or threads ran out. Tiles are
 * handed out dynamically, up to `chunk` consecutive ones at a time (a thread then streams through contiguous
 * memory, which the hardware prefetchers follow), so fn must not depend on which thread runs which tile.
 * Each thread ends its part with a store fence, so fn may leave non-temporal stores unfenced. */
typedef void (*vm_tile_fn)(void *ctx, int tid, void *arena, int64_t tile);
int vm_parallel_for(int nthreads, int64_t ntiles, int64_t chunk, size_t arena_bytes, vm_tile_fn fn, void *ctx);
typedef int (*vm_parallel_for_fn)(int, int64_t, int64_t, size_t, vm_tile_fn, void *);
/* The capsule dvm_runtime._cvm exports vm_parallel_for under, so other extensions share its workers. */
#define VM_POOL_CAPSULE "dvm_runtime._cvm._parallel_for"

int vm_cpu_count(void);
#endif
