/* Thread pool for the DVM VM and (through the capsule cvm_module.c exports) framework._ckernels' GEMM.
 * Between jobs a worker polls for the next one for $MSGX_POOL_SPIN_US microseconds (DEFAULT_SPIN_US; 0
 * turns polling off), then sleeps on a condition variable. The caller thread works as thread 0 and waits at
 * the end only for the workers that joined. A second concurrent caller (another Python thread, GIL released)
 * does not wait for the pool: it runs its job alone with private arenas. After fork() the child starts with
 * an empty pool. */
#include "vm_pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

typedef struct {
    vm_tile_fn fn;
    void *ctx;
    int64_t ntiles, chunk;
    int nthreads;
    _Atomic int64_t next;
} job_t;

/* Kernels of a model run follow each other within microseconds, while a sleeping worker took longer to wake
 * than a small kernel takes to run (a 65536-element softmax: 38-42 us on 2 threads with sleeping workers, 30
 * on 1 thread, 21 on 2 polling). 50 us of polling after the last kernel costs an idle core little. */
#define DEFAULT_SPIN_US 50
static pthread_mutex_t busy = PTHREAD_MUTEX_INITIALIZER;   /* held by the caller owning the pool */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER, done_cv = PTHREAD_COND_INITIALIZER;
static int nworkers;                 /* started workers: tids 1..nworkers */
static uint64_t generation;
static int active;                   /* workers running tiles of the current job */
static job_t *cur;
static uint64_t start_gen[VM_MAX_THREADS];   /* generation a worker was created in: jobs after it are its */
static void *arenas[VM_MAX_THREADS];
static size_t arena_size[VM_MAX_THREADS];

static uint64_t spin_ns;   /* how long an idle worker polls for the next job before it sleeps */

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__SSE2__)
    _mm_pause();
#endif
}

/* Claims of `chunk` tiles while many are left, shrinking towards one tile at the end (guided), so a thread
 * that loses its core in the middle of a claim holds up little. */
static void run_tiles(job_t *job, int tid, void *arena) {
    for (;;) {
        int64_t t = atomic_load_explicit(&job->next, memory_order_relaxed), n;
        do {
            if (t >= job->ntiles) {
#if defined(__SSE2__)
                /* tiles may end in non-temporal stores: order them before the job is seen done. Once per
                 * thread, not per tile: a fence per tile waited for each tile's stores to reach memory, so
                 * computing never overlapped writing (bias_gelu 8192x1024, one thread: 11.0 -> 8.8 ms) */
                _mm_sfence();
#endif
                return;
            }
            int64_t share = (job->ntiles - t) / (2 * job->nthreads);
            n = share < 1 ? 1 : share < job->chunk ? share : job->chunk;
        } while (!atomic_compare_exchange_weak_explicit(&job->next, &t, t + n, memory_order_relaxed,
                                                        memory_order_relaxed));
        for (int64_t end = t + n; t < end; t++) job->fn(job->ctx, tid, arena, t);
    }
}

static void *worker(void *arg) {
    int tid = (int)(intptr_t)arg;
    pthread_mutex_lock(&mu);
    uint64_t seen = start_gen[tid];
    for (;;) {
        if (generation == seen && spin_ns > 0) {
            /* the next kernel usually follows within microseconds: a worker that waits on the condition
             * variable has to be woken by the kernel, and on a virtual machine an idle vCPU takes about as long
             * to wake as a small kernel takes to run */
            pthread_mutex_unlock(&mu);
            uint64_t until = now_ns() + spin_ns;
            while (__atomic_load_n(&generation, __ATOMIC_ACQUIRE) == seen) {
                for (int i = 0; i < 16; i++) cpu_relax();
                if (now_ns() > until) break;
            }
            pthread_mutex_lock(&mu);
        }
        while (generation == seen) pthread_cond_wait(&wake, &mu);
        seen = generation;
        job_t *job = cur;
        if (job == NULL || tid >= job->nthreads) continue;   /* woke after its job ended: nothing to do */
        __atomic_add_fetch(&active, 1, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&mu);
        run_tiles(job, tid, arenas[tid]);
        pthread_mutex_lock(&mu);
        if (__atomic_sub_fetch(&active, 1, __ATOMIC_RELEASE) == 0) pthread_cond_signal(&done_cv);
    }
    return NULL;
}

static void *grow(void **slot, size_t *have, size_t need) {
    if (*have >= need && *slot) return *slot;
    free(*slot);
    *slot = NULL;
    *have = 0;
    size_t sz = (need + 63) & ~(size_t)63;
    void *p = NULL;
    if (posix_memalign(&p, 64, sz ? sz : 64) != 0) return NULL;
    *slot = p;
    *have = sz;
    return p;
}

static void child_after_fork(void) {
    /* Worker threads do not survive fork; start over with fresh locks (arenas stay allocated). */
    pthread_mutex_init(&busy, NULL);
    pthread_mutex_init(&mu, NULL);
    pthread_cond_init(&wake, NULL);
    pthread_cond_init(&done_cv, NULL);
    nworkers = 0;
    active = 0;
    cur = NULL;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void init_once(void) {
    pthread_atfork(NULL, NULL, child_after_fork);
    const char *text = getenv("MSGX_POOL_SPIN_US");
    long us = text && *text ? strtol(text, NULL, 10) : DEFAULT_SPIN_US;
    spin_ns = us > 0 ? (uint64_t)us * 1000u : 0;
}

static int run_private(int64_t ntiles, size_t arena_bytes, vm_tile_fn fn, void *ctx) {
    void *arena = NULL;
    size_t have = 0;
    if (!grow(&arena, &have, arena_bytes)) return -1;
    job_t job = {fn, ctx, ntiles, ntiles, 1, 0};
    run_tiles(&job, 0, arena);
    free(arena);
    return 0;
}

int vm_parallel_for(int nthreads, int64_t ntiles, int64_t chunk, size_t arena_bytes, vm_tile_fn fn, void *ctx) {
    pthread_once(&once, init_once);
    if (ntiles <= 0) return 0;
    if (nthreads < 1) nthreads = 1;
    if (nthreads > VM_MAX_THREADS) nthreads = VM_MAX_THREADS;
    if (nthreads > ntiles) nthreads = (int)ntiles;
    if (pthread_mutex_trylock(&busy) != 0) return run_private(ntiles, arena_bytes, fn, ctx);
    int rc = 0;
    for (int t = 0; t < nthreads; t++)
        if (!grow(&arenas[t], &arena_size[t], arena_bytes)) { rc = -1; goto out; }
    pthread_mutex_lock(&mu);
    while (nworkers < nthreads - 1) {
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        start_gen[nworkers + 1] = generation;
        int err = pthread_create(&th, &attr, worker, (void *)(intptr_t)(nworkers + 1));
        pthread_attr_destroy(&attr);
        if (err) break;
        nworkers++;
    }
    if (nthreads > nworkers + 1) nthreads = nworkers + 1;   /* could not start all: use what we have */
    if (chunk < 1) chunk = 1;
    job_t job = {fn, ctx, ntiles, chunk, nthreads, 0};
    if (nthreads > 1) {
        cur = &job;
        __atomic_store_n(&generation, generation + 1, __ATOMIC_RELEASE);
        pthread_cond_broadcast(&wake);
    }
    pthread_mutex_unlock(&mu);
    run_tiles(&job, 0, arenas[0]);
    if (nthreads > 1) {
        /* wait for the workers that joined only: one whose core was busy and that has not woken yet
         * finds no job when it does (waiting for it cost up to a scheduler tick per call on a shared
         * machine) */
        pthread_mutex_lock(&mu);
        cur = NULL;
        pthread_mutex_unlock(&mu);
        /* the workers' last tiles usually end within microseconds: poll for them first (a caller that
         * sleeps on done_cv takes as long to wake as a worker does; a 256x1024 softmax in 16 chunks on 2
         * threads: 103 -> 78 us) */
        uint64_t until = spin_ns > 0 ? now_ns() + spin_ns : 0;
        while (__atomic_load_n(&active, __ATOMIC_ACQUIRE) > 0 && until > 0) {
            for (int i = 0; i < 16; i++) cpu_relax();
            if (now_ns() > until) break;
        }
        pthread_mutex_lock(&mu);
        while (active > 0) pthread_cond_wait(&done_cv, &mu);
        pthread_mutex_unlock(&mu);
    }
out:
    pthread_mutex_unlock(&busy);
    return rc;
}

/* Read once: glibc's sysconf(_SC_NPROCESSORS_ONLN) opens and parses /sys/devices/system/cpu/online, which
 * took longer (~8 us) than running a small program. */
int vm_cpu_count(void) {
    static _Atomic int cached;
    int n = atomic_load_explicit(&cached, memory_order_relaxed);
    if (n == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
        atomic_store_explicit(&cached, n, memory_order_relaxed);
    }
    return n;
}
