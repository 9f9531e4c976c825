"""isl AST -> C: statements become macros over their iterators, loops come from the schedule; the outermost
loop that carries no dependence runs its iterations on a thread pool, and `omp simd` marks innermost
dependence-free loops."""
from __future__ import annotations

import math
import re

import islpy as isl

from . import contract, privatize, regtile
from .lower import EXPENSIVE
from .scheduler import Result
from .stmt import _ASSIGN, Scop, ScopError, accesses

PRELUDE = """#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#define floord(n, d) (((n) < 0) ? -((-(n) + (d) - 1) / (d)) : (n) / (d))
#define min(a, b) ((a) < (b) ? (a) : (b))
#define max(a, b) ((a) > (b) ? (a) : (b))
/* NaN-propagating, as numpy's maximum/minimum and ONNX Relu/Max/Min are (fmaxf drops NaN). Written as
   the max instruction's own select (b > a ? b : a keeps a NaN a) then b where b is NaN: three vector
   instructions; the one-condition form (a != a || a > b) compiled to two compares, an or and a blend
   (softmax 256x1024 on one thread: 5% slower). */
static inline __attribute__((always_inline)) float msgx_max(float a, float b) {
  float m = b > a ? b : a;
  return b != b ? b : m;
}
static inline __attribute__((always_inline)) float msgx_min(float a, float b) {
  float m = b < a ? b : a;
  return b != b ? b : m;
}
/* b where b > a, else a: a max that passes over a NaN b (a softmax's row max, lower.py) */
static inline __attribute__((always_inline)) float msgx_max_any(float a, float b) { return b > a ? b : a; }
static inline __attribute__((always_inline)) float msgx_relu(float a) { return a < 0.0f ? 0.0f : a; }
/* Branch-free exp/erf/tanh (libm's are calls that block vectorisation): exp by 2^n * polynomial on
   [-ln2/2, ln2/2] (rel. error ~2e-7); erf by Eigen's rational function on [-4, 4] (odd degree-13 over
   even degree-8 polynomial: one division, no exp; rel. error < 5e-7, where Abramowitz-Stegun 7.1.26's
   1 - p(t) exp(-x^2) lost digits near 0 and cost an exp and two divisions). */
/* 2^n p(r), r = c - n ln2, as 2^(n-1) (2 p(r)): the factor 2 rides in the polynomial's coefficients, so
   2^(n-1)'s exponent bits stay in range up to n = 128 (c = 88.72, where exp overflows) without an upper
   clamp. The callers clamp c below at -87.5: there n = -126 and 2^(n-1)'s bits are 0, so exp is 0 from
   2^-126.5 down (flushed like a denormal). n = rint(c log2 e) comes as the low bits of t: adding 1.5 * 2^23
   rounds to an integer, and the 126 of 2^(n-1)'s biased exponent rides along, so its bits are t's shifted
   left by 23 (the bits above shift out): a multiply, a round, a conversion and an add fewer (exp of softmax
   256x1024, one thread: 5% faster). The explicit fmas keep ln2's two parts apart (-fassociative-math merged
   them: |n| ulps of error in r). Rel. error ~2e-7; a NaN c gives NaN. */
static inline __attribute__((always_inline)) float msgx_exp_clamped(float c) {
  float t = __builtin_fmaf(c, 1.44269504088896341f, 12583038.0f);
  float n = t - 12583038.0f;
  float r = __builtin_fmaf(n, -0.693145751953125f, c);
  r = __builtin_fmaf(n, -1.428606765330187e-06f, r);
  float p = 2.0f + r * (2.0f + r * (1.0f + r * (0.333333343267f + r * (0.0833329707384f
            + r * (0.0166667215526f + r * 0.0027860871f)))));
  unsigned bits;
  __builtin_memcpy(&bits, &t, sizeof bits);
  bits <<= 23;
  float scale;
  __builtin_memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}
static inline __attribute__((always_inline)) float msgx_expf(float x) {
  /* x clamped below on its bits (as unsigned, negative floats order by magnitude above every positive one:
     one integer min, where a float clamp vectorised as a compare and a blend); one select at the end gives
     NaN for NaN (a negative one was clamped) and inf above 88.72 */
  unsigned u;
  __builtin_memcpy(&u, &x, sizeof u);
  u = u < 0xC2AF0000u ? u : 0xC2AF0000u;  /* -87.5f */
  float c;
  __builtin_memcpy(&c, &u, sizeof c);
  return !(x <= 88.72f) ? x + INFINITY : msgx_exp_clamped(c);
}
/* exp of an x known <= 0 or NaN (x - max(x) over axes that hold x: softmax's, lower.py): no overflow to
   select, and the clamp `lo > x ? lo : x` is the max instruction's own select, which passes a NaN of either
   sign: two vector operations of 17 fewer. gcc vectorises it as one max only where lo is not a constant
   (a constant became a compare and a blend): a `used` variable may change behind its back. */
static float msgx_exp_lo __attribute__((used)) = -87.5f;
static inline __attribute__((always_inline)) float msgx_expf_nonpos(float x) {
  float lo = msgx_exp_lo;
  return msgx_exp_clamped(lo > x ? lo : x);
}
static inline __attribute__((always_inline)) float msgx_erff(float x) {
  float c = x < -4.0f ? -4.0f : (x > 4.0f ? 4.0f : x), c2 = c * c;
  float p = c * (-1.60960333262415e-02f + c2 * (-2.95459980854025e-03f + c2 * (-7.34990630326855e-04f
            + c2 * (-5.69250639462346e-05f + c2 * (-2.10102402082508e-06f + c2 * (2.77068142495902e-08f
            + c2 * -2.72614225801306e-10f))))));
  float q = -1.42647390514189e-02f + c2 * (-7.37332916720468e-03f + c2 * (-1.68282697438203e-03f
            + c2 * (-2.13374055278905e-04f + c2 * -1.45660718464996e-05f)));
  return x != x ? x : p / q;
}
static inline __attribute__((always_inline)) float msgx_tanhf(float x) {
  float a = x < 0.0f ? -x : x;
  float y = a < 0.0004f ? a : 1.0f - 2.0f / (msgx_expf(2.0f * a) + 1.0f);
  return x < 0.0f ? -y : y;
}
/* The thread pool of this library's parallel loops. The caller claims chunks too and waits only for
   workers that joined the job: a worker that is slow to wake (its core is busy with BLAS, the DVM pool or
   another process) costs nothing, where an OpenMP region's join barrier waits for every thread (on a shared
   2-core VM that made 2 threads up to 30x slower than 1). Workers spin briefly after a job, so the next
   job of a time loop finds them awake, then sleep on a condition variable. */
typedef void (*msgx_chunk_fn)(void *ctx, long lo, long hi);
/* Chunks left are [front, back) packed in `left`; the caller takes them from the front and workers from the
   back, so each thread gets the same part of the data at every step of a time loop (it stays in its core's
   cache) unless another is late. */
typedef struct { msgx_chunk_fn fn; void *ctx; long n, chunks; unsigned long long left; } msgx_job;
static pthread_mutex_t msgx_mu = PTHREAD_MUTEX_INITIALIZER, msgx_busy = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t msgx_wake = PTHREAD_COND_INITIALIZER;
static msgx_job *msgx_cur;      /* the job workers may join, NULL between jobs (under msgx_mu) */
static unsigned long msgx_gen;  /* bumped for every job */
static int msgx_started, msgx_inside, msgx_threads = 1;  /* msgx_inside: workers running the job */
#define MSGX_SPIN 2000          /* pause instructions a worker spins through before it sleeps */

static void msgx_run_chunks(msgx_job *j, int from_back) {
  unsigned long long s = __atomic_load_n(&j->left, __ATOMIC_RELAXED), t;
  for (;;) {
    long front = (long)(s >> 32), back = (long)(s & 0xffffffffu), c = from_back ? back - 1 : front;
    if (front >= back) return;
    t = from_back ? s - 1 : s + (1ull << 32);
    if (__atomic_compare_exchange_n(&j->left, &s, t, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
      j->fn(j->ctx, c * j->n / j->chunks, (c + 1) * j->n / j->chunks);
      s = __atomic_load_n(&j->left, __ATOMIC_RELAXED);
    }
  }
}
static void *msgx_worker(void *arg) {
  unsigned long seen = 0;
  (void)arg;
  pthread_mutex_lock(&msgx_mu);
  for (;;) {
    if (msgx_gen == seen) {
      pthread_mutex_unlock(&msgx_mu);
      for (int s = 0; s < MSGX_SPIN && __atomic_load_n(&msgx_gen, __ATOMIC_ACQUIRE) == seen; s++) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      }
      pthread_mutex_lock(&msgx_mu);
    }
    while (msgx_gen == seen) pthread_cond_wait(&msgx_wake, &msgx_mu);
    seen = msgx_gen;
    msgx_job *j = msgx_cur;
    if (j == NULL) continue;
    __atomic_add_fetch(&msgx_inside, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&msgx_mu);
    msgx_run_chunks(j, 1);
    __atomic_sub_fetch(&msgx_inside, 1, __ATOMIC_RELEASE);
    pthread_mutex_lock(&msgx_mu);
  }
  return NULL;
}
/* A forked child has none of the workers and may have copied a held lock: it starts over. */
static void msgx_after_fork(void) {
  pthread_mutex_init(&msgx_mu, NULL);
  pthread_mutex_init(&msgx_busy, NULL);
  pthread_cond_init(&msgx_wake, NULL);
  msgx_cur = NULL;
  msgx_started = msgx_inside = 0;
}
static pthread_once_t msgx_once = PTHREAD_ONCE_INIT;
static void msgx_init(void) { pthread_atfork(NULL, NULL, msgx_after_fork); }
/* In a model session the loops run on the pool of dvm_runtime._cvm (its vm_parallel_for, set by
   msgx_poly_use_pool), where the session's GEMMs and DVM kernels run: a second pool's polling workers would
   compete with that one's for the same cores, and its sleeping ones wake late. */
typedef void (*msgx_tile_fn)(void *ctx, int tid, void *arena, int64_t tile);
typedef int (*msgx_pool_fn)(int nthreads, int64_t ntiles, int64_t chunk, size_t arena, msgx_tile_fn fn,
                            void *ctx);
static msgx_pool_fn msgx_pool;
void msgx_poly_use_pool(void *parallel_for) { msgx_pool = (msgx_pool_fn)parallel_for; }
static void msgx_pool_tile(void *ctx, int tid, void *arena, int64_t c) {
  msgx_job *j = ctx;
  (void)tid, (void)arena;
  j->fn(j->ctx, c * j->n / j->chunks, (c + 1) * j->n / j->chunks);
}
/* The chunks msgx_parallel cuts n iterations into, chunk c is [c n / C, (c+1) n / C): eight per thread on
   this library's pool (a late worker leaves little behind), two on the DVM's, which hands them out one at a
   time (with eight, a thread's rows were seldom consecutive; with two, on 2 threads, alternating runs:
   softmax 256x1024 38.0-38.2 -> 34.2-34.6 us, transpose+reduce 10.7-10.8 -> 7.8-7.9, static tiny_gpt at O1
   poly 1.09-1.14 -> 1.01-1.05 ms) */
static long msgx_chunks(long n) {
  long per = msgx_pool != NULL ? 2 : 8;
  return n < per * msgx_threads ? n : per * msgx_threads;
}
/* fn(ctx, lo, hi) over [0, n) in chunks (handed out dynamically) */
static void msgx_parallel(msgx_chunk_fn fn, void *ctx, long n) {
  long chunks = msgx_chunks(n);
  msgx_job job = {fn, ctx, n, chunks, (unsigned long long)chunks};
  pthread_once(&msgx_once, msgx_init);
  /* the shared pool fails (-1) only before it runs a chunk: its memory ran out; the loop then runs here */
  if (msgx_pool != NULL && msgx_threads > 1 && n > 1 && msgx_pool(msgx_threads, chunks, 1, 0, msgx_pool_tile,
                                                                    &job) == 0)
    return;
  if (msgx_pool != NULL || msgx_threads < 2 || n < 2 || pthread_mutex_trylock(&msgx_busy) != 0) {
    if (n > 0) fn(ctx, 0, n);  /* one thread, or another caller has the pool */
    return;
  }
  pthread_mutex_lock(&msgx_mu);
  while (msgx_started < msgx_threads - 1) {
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int err = pthread_create(&t, &attr, msgx_worker, NULL);
    pthread_attr_destroy(&attr);
    if (err) break;
    msgx_started++;
  }
  msgx_cur = &job;
  __atomic_add_fetch(&msgx_gen, 1, __ATOMIC_RELEASE);
  pthread_cond_broadcast(&msgx_wake);
  pthread_mutex_unlock(&msgx_mu);
  msgx_run_chunks(&job, 0);
  pthread_mutex_lock(&msgx_mu);
  msgx_cur = NULL;  /* late workers no longer join; wait (spinning: a sleep costs a wake-up) for those in */
  pthread_mutex_unlock(&msgx_mu);
  for (long s = 0; __atomic_load_n(&msgx_inside, __ATOMIC_ACQUIRE) > 0; s++) {
    if (s > MSGX_SPIN) sched_yield();
#if defined(__x86_64__) || defined(__i386__)
    else __builtin_ia32_pause();
#endif
  }
  pthread_mutex_unlock(&msgx_busy);
}
void msgx_poly_threads(int n) {
  msgx_threads = n < 1 ? 1 : n;
#ifdef _OPENMP
  omp_set_num_threads(n);  /* for code that uses OpenMP itself (Polly's) */
#endif
}
"""
# an element of bias+GELU (one erf) took 0.5 ns, a plain elementwise op 0.05-0.1 ns: instances with such
# calls count this many times towards Config.min_parallel_work
CALL_COST = 8
# a loop's chunks get copies of the arrays it accumulates into (privatize.py) only where this many copies
# cost at most the loop's work and one copy fits an L2 (covariance's 16 MB `cov` over its k loop: 8 copies to
# zero and add made it 3x slower)
PRIVATE_CHUNKS_MAX = 64
PRIVATE_BYTES_MAX = 256 << 10
# partial results of a split reduction (float; half for double): 4 AVX-512 or 8 AVX2 registers
SPLIT_LANES = 64
_NAME = re.compile(r"^[A-Za-z_]\w*$")


def _ast(scop: Scop, binding: dict, res: Result) -> isl.AstNode:
    params = f"[{', '.join(scop.params)}] -> " if scop.params else ""
    ctx = " and ".join(f"{p} = {int(binding[p])}" for p in scop.params)
    build = isl.AstBuild.from_context(isl.Set(f"{params}{{ : {ctx} }}" if ctx else "{ : }"))
    return build.node_from_schedule_map(res.schedule)


def _children(node: isl.AstNode) -> list:
    lst = node.block_get_children()
    return [lst.get_at(k) for k in range(lst.n_ast_node())]


def _sequence(node: isl.AstNode) -> list:
    """A block's statements with nested blocks spliced in (isl nests a sequence of n as blocks of two)."""
    out = []
    for c in _children(node):
        out += _sequence(c) if c.get_type() == isl.ast_node_type.block else [c]
    return out


def _has_loop(node: isl.AstNode) -> bool:
    t = node.get_type()
    if t == isl.ast_node_type.for_:
        return True
    if t == isl.ast_node_type.block:
        return any(_has_loop(c) for c in _children(node))
    if t == isl.ast_node_type.if_:
        return _has_loop(node.if_get_then()) or (node.if_has_else() and _has_loop(node.if_get_else()))
    if t == isl.ast_node_type.mark:
        return _has_loop(node.mark_get_node())
    return False


def _reduction(st) -> tuple[str, str, str] | None:
    """(target, accumulate-into-`acc` expression, OpenMP reduction op or "") when the body updates its
    target from itself and reads its array nowhere else; the loop can then keep the target in a register."""
    m = _ASSIGN.match(st.body.rstrip().rstrip(";"))
    if not m:
        return None
    lhs, op, rhs = (x.strip() for x in m.groups())
    arr = lhs.split("[")[0].strip()
    if rhs.count(f"{arr}[") != rhs.count(lhs) or (op == "=" and lhs not in rhs):
        return None
    if op in ("+=", "-=", "*=", "/="):
        expr, red = f"acc {op[0]} ({rhs})", {"+=": "+", "*=": "*"}.get(op, "")
    else:
        expr = rhs.replace(lhs, "acc")
        red = "+" if expr.startswith("acc + ") else "max" if expr.startswith("msgx_max(acc,") else \
            "min" if expr.startswith("msgx_min(acc,") else "max_any" if expr.startswith("msgx_max_any(acc,") \
            else ""
    return lhs, expr, red


def _loop_reduction(node, stmts: dict, it: str) -> tuple[str, str, str] | None:
    """(target, accumulate-into-`acc` expression, OpenMP reduction op or "") of a loop whose body is one
    statement accumulating into an element the loop iterator does not index; else None."""
    body = node.for_get_body()
    if body.get_type() != isl.ast_node_type.user:
        return None
    call = body.user_get_expr()
    st = stmts.get(call.get_op_arg(0).get_id().get_name())
    red = _reduction(st) if st else None
    if red is None:
        return None
    args = [call.get_op_arg(k).to_C_str() for k in range(1, call.get_op_n_arg())]
    target = _subst(red[0], st.iters, args)
    if re.search(rf"\b{re.escape(it)}\b", target):
        return None
    return target, _subst(red[1], st.iters, args), red[2]


def _subst(text: str, iters, args) -> str:
    for it, a in zip(iters, args):
        text = re.sub(rf"\b{re.escape(it)}\b", f"({a})", text)
    return text


def _calls(node: isl.AstNode) -> set[str]:
    """Names of the statements under an AST node."""
    t = node.get_type()
    if t == isl.ast_node_type.user:
        return {node.user_get_expr().get_op_arg(0).get_id().get_name()}
    if t == isl.ast_node_type.block:
        return set().union(*(_calls(c) for c in _children(node)))
    if t == isl.ast_node_type.for_:
        return _calls(node.for_get_body())
    if t == isl.ast_node_type.if_:
        return _calls(node.if_get_then()) | (_calls(node.if_get_else()) if node.if_has_else() else set())
    if t == isl.ast_node_type.mark:
        return _calls(node.mark_get_node())
    return set()


class _Printer:
    """Emits the AST as C lines. A loop that runs on threads becomes a helper of its own, called by the pool
    with a range of its iterations; the helper takes the arrays as restrict parameters (each thread works
    on disjoint iterations), so its loops vectorise as the kernel function's do."""

    def __init__(self, res: Result, scop: Scop, binding: dict, fn: str, rows: dict, ast: isl.AstNode):
        self.res, self.scop, self.binding, self.fn = res, scop, binding, fn
        self.rows = rows  # contracted scratch arrays (contract.private_rows)
        self.everywhere = contract.user_calls(ast) if rows else None
        self.lines: list[str] = []
        self.helpers: list[str] = []  # C text of the parallel loops' helpers, emitted before `fn`
        self.loops = 0  # enclosing non-degenerate loops
        self.bound: list[str] = []  # iterators bound by enclosing loops (passed to a helper)
        self.stmts = {st.name: st for st in scop.statements}
        self.dtype = scop.dtype
        self.par: tuple[str, str, int] | None = None  # (iterator, increment, loop depth) of the parallel loop
        self.fetches: list[int] = []  # lines of self.lines that prefetch rows (_split_accumulators)

    def _scalar_reduction(self, node, it, init, pad, pre_call=None) -> bool:
        """An innermost loop whose one statement accumulates into an element it does not index: emit it
        with the element in a local (vectorisable reduction) instead of a load/store per iteration.
        `pre_call`: a statement call run first in each iteration (a producer fused into the loop). A max or
        min is never under `omp simd reduction(max/min)` alone: OpenMP combines its lanes with a max that
        drops NaN (a row max of [1, NaN] came out 1); split, it checks its partial results for NaN
        (_split_accumulators), else it stays a scalar loop."""
        red = _loop_reduction(node, self.stmts, it)
        if red is None:
            return False
        target, expr, op = red
        pre = f"{pre_call.to_C_str()}; " if pre_call is not None else ""
        cond, inc = node.for_get_cond().to_C_str(), node.for_get_inc().to_C_str()
        self.lines.append(f"{pad}{{ {self.dtype} acc = {target};")
        if self.res.config.vectorize and op and inc == "1" and _upper_bound(node):
            calls = [node.for_get_body().user_get_expr(), *([pre_call] if pre_call is not None else [])]
            self._split_accumulators(node, it, init, expr, op, pad, pre, self._next_rows(calls, it))
            if op in ("max", "min", "max_any"):
                self.lines.append(f"{pad}  {target} = acc; }}")
                return True
            init = "msgx_b"
        self.lines.append(f"{pad}  for (long {it} = {init}; {cond}; {it} += {inc}) {{ {pre}acc = {expr}; }}")
        self.lines.append(f"{pad}  {target} = acc; }}")
        return True

    def _producer_into_reduction(self, kids: list, k: int, depth: int, in_par: bool) -> int:
        """Fuses an elementwise loop into the reduction loop after it when the reduction reads, of what the
        loop writes, only the element written in the same iteration (softmax: t = exp(x - max) then sum(t)
        over the row): one pass over the row instead of two. Statements between them must not touch the
        loop's arrays; they run before the fused loop. Returns the children consumed (0: not this case).
        Off with `vectorize=False` (the `original` baseline keeps its loops as written)."""
        if not self.res.config.vectorize or kids[k].get_type() != isl.ast_node_type.for_:
            return 0
        mid = k + 1
        while mid < len(kids) and kids[mid].get_type() == isl.ast_node_type.user:
            mid += 1
        if mid >= len(kids) or kids[mid].get_type() != isl.ast_node_type.for_:
            return 0
        prod, red_loop = kids[k], kids[mid]
        it = prod.for_get_iterator().get_id().get_name()
        same_range = all(f(prod).to_C_str() == f(red_loop).to_C_str() for f in (
            isl.AstNode.for_get_init, isl.AstNode.for_get_cond, isl.AstNode.for_get_inc))
        if prod.for_is_degenerate() or red_loop.for_get_iterator().get_id().get_name() != it or \
                not same_range or self._wants_threads(prod, in_par) or self._wants_threads(red_loop, in_par):
            return 0
        body = prod.for_get_body()
        if body.get_type() != isl.ast_node_type.user:
            return 0
        p_call = body.user_get_expr()
        p_st = self.stmts[p_call.get_op_arg(0).get_id().get_name()]
        red = _loop_reduction(red_loop, self.stmts, it)
        if red is None or _reduction(p_st) is not None:
            return 0
        p_args = [p_call.get_op_arg(j).to_C_str() for j in range(1, p_call.get_op_n_arg())]
        (x, x_subs), p_reads = accesses(self.scop, p_st)
        written = _subst(f"{x}[{']['.join(x_subs)}]", p_st.iters, p_args)
        if not re.search(rf"\b{re.escape(it)}\b", written) or any(a == x for a, _ in p_reads):
            return 0
        r_call = red_loop.for_get_body().user_get_expr()
        r_st = self.stmts[r_call.get_op_arg(0).get_id().get_name()]
        r_args = [r_call.get_op_arg(j).to_C_str() for j in range(1, r_call.get_op_n_arg())]
        (t, _), r_reads = accesses(self.scop, r_st)
        if any(a == x and _subst(f"{a}[{']['.join(subs)}]", r_st.iters, r_args) != written
               for a, subs in r_reads) or t in {a for a, _ in p_reads}:
            return 0
        p_arrays = {x} | {a for a, _ in p_reads}
        for u in kids[k + 1:mid]:  # hoisted above the fused loop: none may touch the producer's arrays
            (w, _), reads = accesses(self.scop, self.stmts[u.user_get_expr().get_op_arg(0).get_id().get_name()])
            if w in p_arrays or x in {a for a, _ in reads}:
                return 0
        for u in kids[k + 1:mid]:
            self.emit(u, depth, in_par)
        self._scalar_reduction(red_loop, it, red_loop.for_get_init().to_C_str(), "  " * depth, p_call)
        return mid - k + 1

    def _next_rows(self, calls: list, it: str) -> list[str]:
        """Where the next iteration of the parallel loop reads its rows of the inputs that `calls` read here
        along `it`: accesses whose first subscript is the parallel iterator and last is `it` (a softmax's or
        LayerNorm's x[i][j]), as C addresses with the parallel iterator one step on and `it` left as
        `msgx_b + msgx_q`. None outside a parallel loop's own body (a loop nested deeper would fetch the
        same row again on every pass of the loops between)."""
        if self.par is None or self.loops != self.par[2]:
            return []
        par, inc, _ = self.par
        rows = []
        for call in calls:
            st = self.stmts[call.get_op_arg(0).get_id().get_name()]
            args = [call.get_op_arg(k).to_C_str() for k in range(1, call.get_op_n_arg())]
            for a, subs in accesses(self.scop, st)[1]:
                s = [_subst(x, st.iters, args).replace(" ", "") for x in subs]
                if self.scop.array(a).role != "in" or len(s) < 2 or s[0] != f"({par})" or s[-1] != f"({it})" \
                        or any(re.search(rf"\b{re.escape(x)}\b", m) for m in s[1:-1] for x in (par, it)):
                    continue
                row = f"&{a}[({par})+({inc})]" + "".join(f"[{m}]" for m in s[1:-1]) + "[msgx_b+msgx_q]"
                if row not in rows:
                    rows.append(row)
        return rows

    def _split_accumulators(self, node, it, init, expr, op, pad, pre: str = "", rows: list[str] = ()) -> None:
        """The bulk of a reduction loop into SPLIT_LANES partial results, folded into `acc` after; the caller
        emits a sum's remainder from `msgx_b`. gcc vectorises a reduction into one vector register, so each
        iteration waits for the previous one's add (or compare and select): with several registers the
        adds overlap (a 256x1024 softmax: 127 -> 105 us on one thread). A max or min takes its remainder
        into the partial results too (elementwise: no pragma), then folds them under the reduction pragma
        with a NaN check of its own (the pragma's lane combine drops NaN).

        Each block of the loop prefetches a block of the `rows` (_next_rows): the next iteration of the
        parallel loop starts on a row that is then in cache, where a row of 4 KiB is a page of its own that
        the hardware's prefetchers start on late. The first such loop of an iteration fetches into L2, the
        later ones (the row is wanted soon) into L1: a 256x1024 softmax on one thread 71 -> 61 us. _parallel
        keeps them only where an iteration makes two passes or more (atax's one pass over its rows of 16 KB
        streams anyway: 3-5% slower with them)."""
        lanes = SPLIT_LANES if self.dtype == "float" else SPLIT_LANES // 2
        cmp, bound = _upper_bound(node)
        identity = {"+": "0", "*": "1"}.get(op, "acc")  # max/min: acc itself is neutral
        part = re.sub(r"\bacc\b", "msgx_part[msgx_k]", expr)
        self.lines += [
            f"{pad}  {self.dtype} msgx_part[{lanes}];",
            f"{pad}  for (long msgx_k = 0; msgx_k < {lanes}; msgx_k++) msgx_part[msgx_k] = {identity};",
            f"{pad}  long msgx_b = {init};",
            f"{pad}  for (; msgx_b + {lanes - 1} {cmp} {bound}; msgx_b += {lanes}) {{"]
        if rows:
            hint, step = (3 if self.fetches else 2), 64 // (4 if self.dtype == "float" else 8)
            self.fetches.append(len(self.lines))
            self.lines.append(f"{pad}    for (long msgx_q = 0; msgx_q < {lanes}; msgx_q += {step}) "
                              + " ".join(f"__builtin_prefetch({r}, 0, {hint});" for r in rows))
        self.lines += [
            f"{pad}    for (long msgx_k = 0; msgx_k < {lanes}; msgx_k++) {{",
            f"{pad}      const long {it} = msgx_b + msgx_k;",
            f"{pad}      {pre}msgx_part[msgx_k] = {part};",
            f"{pad}    }}",
            f"{pad}  }}"]
        if op in ("max", "min", "max_any"):
            self.lines += [
                f"{pad}  for (long {it} = msgx_b; {it} {cmp} {bound}; {it}++) {{",
                f"{pad}    const long msgx_k = {it} - msgx_b;",
                f"{pad}    {pre}msgx_part[msgx_k] = {part};",
                f"{pad}  }}"]
            # the pragma's lane combine may drop a NaN: a NaN partial result (the initial acc's among them)
            # is looked for apart, an or-reduction gcc vectorises (halving folds through memory: 8% slower)
            nan = op != "max_any"
            self.lines += [
                *[f"{pad}  int msgx_nan = 0;",
                  f"{pad}  for (long msgx_k = 0; msgx_k < {lanes}; msgx_k++) "
                  f"msgx_nan |= msgx_part[msgx_k] != msgx_part[msgx_k];"] * nan,
                f"{pad}  #pragma omp simd reduction({op[:3]}:acc)",
                f"{pad}  for (long msgx_k = 0; msgx_k < {lanes}; msgx_k++) acc = msgx_{op}(acc, msgx_part[msgx_k]);",
                *[f"{pad}  if (msgx_nan) acc = NAN;"] * nan]
            return
        fold = {"+": "acc + msgx_part[msgx_k]", "*": "acc * msgx_part[msgx_k]"}[op]
        self.lines.append(f"{pad}  for (long msgx_k = 0; msgx_k < {lanes}; msgx_k++) acc = {fold};")

    def _fused_reductions(self, node, it, init, pad) -> bool:
        """An innermost loop over several statements, some of which accumulate into an element they do not
        index (bicg: s[j] += r[i]*A[i][j] beside q[i] += A[i][j]*p[j]): those sums go to locals, and the loop
        is vectorised with them as reductions when the other statements carry no dependence on it. Each
        sum's array is touched by no other statement of the loop, so moving its element to a local keeps
        every value the other statements see. Off with `vectorize=False` (the `original` baseline)."""
        body = node.for_get_body()
        if body.get_type() != isl.ast_node_type.block or not self.res.config.vectorize:
            return False  # (the `original` baseline keeps its loops as written)
        users = _children(body)
        if any(u.get_type() != isl.ast_node_type.user for u in users):
            return False
        parts, sums, others = [], [], []
        for u in users:
            call = u.user_get_expr()
            st = self.stmts[call.get_op_arg(0).get_id().get_name()]
            args = [call.get_op_arg(k).to_C_str() for k in range(1, call.get_op_n_arg())]
            red = _reduction(st)
            target = _subst(red[0], st.iters, args) if red else ""
            if red and red[2] and not re.search(rf"\b{re.escape(it)}\b", target):
                local = f"msgx_acc{len(sums)}"
                update = re.sub(r"\bacc\b", local, _subst(red[1], st.iters, args))
                sums.append((st, target, update, red[2]))
                parts.append(f"{local} = {update};")
            else:
                others.append(st)
                parts.append(f"{call.to_C_str()};")
        if not sums:
            return False
        arrays = {st.name: {a for a, _ in [accesses(self.scop, st)[0], *accesses(self.scop, st)[1]]}
                  for st in self.stmts.values()}
        names = [st.name for st, *_ in sums] + [st.name for st in others]
        for k, (st, *_r) in enumerate(sums):
            target_array = accesses(self.scop, st)[0][0]
            if any(target_array in arrays[n] for j, n in enumerate(names) if j != k):
                return False
        dim = int(it[1:]) if it[1:].isdigit() else -1
        simd = dim >= 0 and self.res.loop_parallel(dim, frozenset(st.name for st in others))
        cond, inc = node.for_get_cond().to_C_str(), node.for_get_inc().to_C_str()
        self.lines.append(f"{pad}{{ " + " ".join(f"{self.dtype} msgx_acc{k} = {t};"
                                                  for k, (_, t, _e, _o) in enumerate(sums)))
        ops = {op for *_r, op in sums}
        # gcc vectorises sums without the pragma, and slower with it; max and min stay scalar here (their
        # pragma's lane combine drops NaN: _scalar_reduction)
        if simd and "*" in ops and not ops & {"max", "min"}:
            self.lines.append(f"{pad}  #pragma omp simd reduction(*:" + ", ".join(
                f"msgx_acc{k}" for k, (*_r, op) in enumerate(sums) if op == "*") + ")")
        self.lines.append(f"{pad}  for (long {it} = {init}; {cond}; {it} += {inc}) {{")
        self.lines += [f"{pad}    {x}" for x in parts]
        self.lines.append(f"{pad}  }}")
        stores = " ".join(f"{t} = msgx_acc{k};" for k, (_, t, _e, _o) in enumerate(sums))
        self.lines.append(f"{pad}  {stores} }}")
        return True

    def emit(self, node: isl.AstNode, depth: int, in_par: bool) -> None:
        pad = "  " * depth
        t = node.get_type()
        if t == isl.ast_node_type.block:
            kids, k = _sequence(node), 0
            while k < len(kids):
                fused = self._producer_into_reduction(kids, k, depth, in_par)
                if not fused:
                    self.emit(kids[k], depth, in_par)
                k += fused or 1
        elif t == isl.ast_node_type.user:
            self.lines.append(f"{pad}{node.user_get_expr().to_C_str()};")
        elif t == isl.ast_node_type.if_:
            self.lines.append(f"{pad}if ({node.if_get_cond().to_C_str()}) {{")
            self.emit(node.if_get_then(), depth + 1, in_par)
            if node.if_has_else():
                self.lines.append(f"{pad}}} else {{")
                self.emit(node.if_get_else(), depth + 1, in_par)
            self.lines.append(f"{pad}}}")
        elif t == isl.ast_node_type.mark:
            self.emit(node.mark_get_node(), depth, in_par)
        elif t == isl.ast_node_type.for_:
            self._for(node, depth, in_par)
        else:
            raise ScopError(f"unexpected isl AST node {t}")

    def _wants_threads(self, node, in_par: bool) -> bool:
        return self._threading(node, in_par) is not None

    def _threading(self, node, in_par: bool) -> frozenset | None:
        """None where the loop stays serial, else the arrays its chunks accumulate into copies of
        (privatize.py; usually none). Threads only on loops at most one sequential loop deep (a time loop)
        that hold a loop nest or are outermost, with enough statement instances per entry (a job costs a
        few microseconds) and a bound of the form `it <= e` or `it < e`, which the helper narrows to its
        range."""
        it = node.for_get_iterator().get_id().get_name()
        body = node.for_get_body()
        dim = int(it[1:]) if it[1:].isdigit() else -1
        nested = self.loops > 1 or (not _has_loop(body) and self.loops > 0)
        if in_par or nested or not self.res.config.parallel or _upper_bound(node) is None or dim < 0:
            return None
        calls = frozenset(_calls(body))
        cost = max(_instance_cost(self.stmts[c]) for c in calls)
        work = self.res.work_per_entry(dim, calls)
        if work * cost < self.res.config.min_parallel_work:
            return None
        if self.res.loop_parallel(dim, calls):
            return frozenset()
        if not _has_loop(body) or any(d.kind in ("serial", "reduce") for d in self.res.config.directives):
            return None
        priv = privatize.arrays(self.scop, self.binding, self.res.schedule, dim, calls)
        elems = sum(math.prod(self.scop.shape(a, self.binding)) for a in priv)
        item = 8 if self.dtype == "double" else 4
        small = elems * PRIVATE_CHUNKS_MAX <= work and elems * item <= PRIVATE_BYTES_MAX
        return priv if priv and small else None

    def _row_buffers(self, node, dim: int) -> list[str]:
        """Declarations of the row buffers this loop owns (contract.py), for the top of its body."""
        if not self.rows:
            return []
        return contract.declarations(self.scop, self.binding, self.rows, node, dim, self.everywhere)

    def _parallel(self, node, depth: int, simd: bool, rows: list[str], private: frozenset) -> None:
        """The loop as helper `fn_par<k>(arrays..., outer iterators..., lo, hi)` over its iterations
        [lo, hi), and here a `msgx_parallel` call over all of them; each chunk of it accumulates into its own
        zeroed copy of the `private` arrays, added to them after the loop in chunk order (privatize.py)."""
        name = f"{self.fn}_par{len(self.helpers)}"
        it = node.for_get_iterator().get_id().get_name()
        init, inc = node.for_get_init().to_C_str(), node.for_get_inc().to_C_str()
        op, bound = _upper_bound(node)
        last = f"({bound}) - 1" if op == "<" else f"({bound})"
        outer, saved = self.bound[:], self.lines
        self.lines = [f"  for (long {it} = ({init}) + msgx_lo * ({inc}); "
                      f"{it} <= min({last}, ({init}) + (msgx_hi - 1) * ({inc})); {it} += {inc}) {{"]
        self.lines += [f"    {d}" for d in rows]
        if simd:
            self.lines.insert(0, "  #pragma omp simd")
        self.bound.append(it)
        loops, self.loops = self.loops, self.loops + 1
        self.par, self.fetches = (it, inc, self.loops), []
        self.emit(node.for_get_body(), 2, True)
        self.loops, self.par = loops, None
        for k in reversed(self.fetches if len(self.fetches) < 2 else []):   # one pass (_split_accumulators)
            del self.lines[k]
        self.bound.pop()
        body, self.lines = self.lines + ["  }"], saved
        ptrs = [f"{self.dtype} *{a.name}_" for a in self.scop.arrays]
        fields = ptrs + [f"{self.dtype} {x}" for x in self.scop.scalars] + [f"long {b}" for b in outer]
        names = [f"{a.name}_" for a in self.scop.arrays] + list(self.scop.scalars) + outer
        params = [f"{self.dtype} *restrict {a.name}_" for a in self.scop.arrays]
        params += [f"{self.dtype} {x}" for x in self.scop.scalars] + [f"long {b}" for b in outer]
        size = {a: math.prod(self.scop.shape(a, self.binding)) for a in sorted(private)}
        passed = [f"msgx_a->{x}" for x in names]
        if private:  # the chunk's copies in place of the arrays (msgx_parallel's chunk c is [c n / C, ..))
            fields += ["long msgx_n", "long msgx_chunks"]
            passed = [f"msgx_a->{a.name}_ + msgx_c * {size[a.name]}L" if a.name in size else p
                      for a, p in zip(self.scop.arrays, passed)] + passed[len(self.scop.arrays):]
        chunk = ["  long msgx_c = (msgx_lo * msgx_a->msgx_chunks + msgx_a->msgx_n - 1) / msgx_a->msgx_n;"] \
            if private else []
        self.helpers.append("\n".join(
            [f"typedef struct {{ {' '.join(f + ';' for f in fields)} }} {name}_args;",
             f"static void {name}_range({', '.join(params + ['long msgx_lo', 'long msgx_hi'])}) {{"]
            + _prologue(self.scop, self.binding) + body + ["}",
             f"static void {name}(void *msgx_p, long msgx_lo, long msgx_hi) {{",
             f"  {name}_args *msgx_a = msgx_p;"] + chunk +
            [f"  {name}_range({', '.join(passed + ['msgx_lo', 'msgx_hi'])});", "}"])
            + "\n")
        pad = "  " * depth
        trips = f"{last} >= ({init}) ? ({last} - ({init})) / ({inc}) + 1 : 0"
        if not private:
            self.lines.append(f"{pad}{{ {name}_args msgx_a = {{{', '.join(names)}}};")
            self.lines.append(f"{pad}  msgx_parallel({name}, &msgx_a, {trips}); }}")
            return
        self._private_call(name, names, size, trips, pad)

    def _private_call(self, name: str, names: list[str], size: dict, trips: str, pad: str) -> None:
        """The call of a parallel helper whose chunks take copies of the arrays in `size` (their element
        counts): zeroed copies, the pool over the chunks, then the copies added in chunk order. One chunk, or
        no memory for the copies: the loop runs in order on the arrays themselves."""
        t, offset, copies = self.dtype, 0, []
        for a, n in size.items():
            copies.append(f"{pad}    {t} *msgx_{a} = msgx_priv + {offset}L * msgx_ch;")
            offset += n
        args = [f"msgx_{x[:-1]}" if x[:-1] in size else x for x in names]
        self.lines += [
            f"{pad}{{ const long msgx_n = {trips}, msgx_ch = msgx_chunks(msgx_n);",
            f"{pad}  {t} *msgx_priv = msgx_ch > 1 ? calloc((size_t)msgx_ch * {offset}, sizeof({t})) : NULL;",
            f"{pad}  if (msgx_priv == NULL) {{",
            f"{pad}    {name}_range({', '.join(names + ['0', 'msgx_n'])});",
            f"{pad}  }} else {{", *copies,
            f"{pad}    {name}_args msgx_a = {{{', '.join(args)}, msgx_n, msgx_ch}};",
            f"{pad}    msgx_parallel({name}, &msgx_a, msgx_n);",
            f"{pad}    for (long msgx_k = 0; msgx_k < msgx_ch; msgx_k++) {{"]
        for a, n in size.items():
            self.lines += [f"{pad}      #pragma omp simd",
                           f"{pad}      for (long msgx_i = 0; msgx_i < {n}L; msgx_i++)",
                           f"{pad}        (({t} *){a})[msgx_i] += msgx_{a}[msgx_k * {n}L + msgx_i];"]
        self.lines += [f"{pad}    }}", f"{pad}    free(msgx_priv);", f"{pad}  }} }}"]

    def _for(self, node, depth, in_par):
        pad = "  " * depth
        it = node.for_get_iterator().get_id().get_name()
        init = node.for_get_init().to_C_str()
        body = node.for_get_body()
        dim = int(it[1:]) if it[1:].isdigit() else -1
        rows = self._row_buffers(node, dim)
        if node.for_is_degenerate():
            self.lines.append(f"{pad}{{ const long {it} = {init};")
            self.lines += [f"{pad}  {d}" for d in rows]
            self.bound.append(it)
            self.emit(body, depth + 1, in_par)
            self.bound.pop()
            self.lines.append(f"{pad}}}")
            return
        threads = self._threading(node, in_par)
        special = threads is None and not rows  # the loop shapes below have no place for row buffers
        if special and not _has_loop(body) and (self._scalar_reduction(node, it, init, pad)
                                                or self._fused_reductions(node, it, init, pad)):
            return
        nest = regtile.match(node, self.stmts, self.dtype) \
            if special and self.res.config.register_tile else None
        if nest is not None:
            self.lines += regtile.emit(nest, self.dtype, *self.res.config.register_tile, pad)
            return
        simd = self.res.config.vectorize and not _has_loop(body) and not rows and dim >= 0 and \
            self.res.loop_parallel(dim, frozenset(_calls(body)))
        if threads is not None and self.loops == 0:
            self._parallel(node, depth, simd, rows, threads)
            return
        if threads is not None:  # a time step: on one thread the loop as it would be serial, inline (the
            # MEDIUM stencils' steps ran 5-15% slower through the helper; an outermost loop runs once)
            self.lines.append(f"{pad}if (msgx_threads < 2) {{")
            self._for(node, depth + 1, True)
            self.lines.append(f"{pad}}} else {{")
            self._parallel(node, depth + 1, simd, rows, threads)
            self.lines.append(f"{pad}}}")
            return
        if simd:
            self.lines.append(f"{pad}#pragma omp simd")
        cond, inc = node.for_get_cond().to_C_str(), node.for_get_inc().to_C_str()
        self.lines.append(f"{pad}for (long {it} = {init}; {cond}; {it} += {inc}) {{")
        self.lines += [f"{pad}  {d}" for d in rows]
        self.loops += 1
        self.bound.append(it)
        self.emit(body, depth + 1, in_par)
        self.bound.pop()
        self.loops -= 1
        self.lines.append(f"{pad}}}")


def _instance_cost(st) -> int:
    """A statement instance's cost in plain ones: each exp/erf/tanh/log/pow/sqrt call counts CALL_COST."""
    return 1 + CALL_COST * sum(st.body.count(f) for f in EXPENSIVE)


def _upper_bound(node) -> tuple[str, str] | None:
    """("<=" or "<", bound) when a for node's condition is `iterator <= bound` or `iterator < bound`."""
    cond = node.for_get_cond()
    it = node.for_get_iterator().get_id().get_name()
    if cond.get_type() != isl.ast_expr_type.op or cond.get_op_n_arg() != 2:
        return None
    op = {isl.ast_expr_op_type.le: "<=", isl.ast_expr_op_type.lt: "<"}.get(cond.get_op_type())
    lhs = cond.get_op_arg(0)
    if op is None or lhs.get_type() != isl.ast_expr_type.id or lhs.get_id().get_name() != it:
        return None
    return op, cond.get_op_arg(1).to_C_str()


def _decl(scop: Scop, binding: dict, arr) -> str:
    t, shape = scop.dtype, scop.shape(arr.name, binding)
    if len(shape) <= 1:
        return f"  {t} *restrict {arr.name} = {arr.name}_;"
    tail = "".join(f"[{d}]" for d in shape[1:])
    return f"  {t} (*restrict {arr.name}){tail} = ({t} (*){tail}){arr.name}_;"


def _prologue(scop: Scop, binding: dict) -> list[str]:
    """Array views and size constants at the top of a kernel function or region helper."""
    out = [_decl(scop, binding, a) for a in scop.arrays]
    out += [f"  const long {p} = {int(binding[p])};" for p in scop.params]
    return out + [f"  (void){p};" for p in scop.params]


def function(scop: Scop, binding: dict, res: Result, fn: str) -> str:
    """C text of one kernel function `void fn(T *A_, ..., T alpha...)` (arrays, then scalars), preceded by
    the static helpers of its parallel regions (named `fn_region<k>`). The arrays are res.scop's where the
    scheduler expanded some (same names and order, other shapes)."""
    scop = res.scop or scop
    for name in [fn, *(a.name for a in scop.arrays), *scop.scalars, *scop.params]:
        if not _NAME.match(name):
            raise ScopError(f"scop {scop.name!r}: {name!r} is not a C identifier")
    args = [f"{scop.dtype} *restrict {a.name}_" for a in scop.arrays]
    args += [f"{scop.dtype} {s}" for s in scop.scalars]
    ast = _ast(scop, binding, res)
    rows = contract.private_rows(scop, binding, res.schedule, ast) if res.config.contract else {}
    scop = contract.rewrite(scop, rows)
    out = []
    for st in scop.statements:
        body = st.body.rstrip().rstrip(";")
        for it in st.iters:
            body = re.sub(rf"\b{re.escape(it)}\b", f"({it})", body)
        out.append(f"#define {st.name}({', '.join(st.iters)}) {body}")
    pr = _Printer(res, scop, binding, fn, rows, ast)
    pr.emit(ast, 1, False)
    out += pr.helpers
    out.append(f"void {fn}({', '.join(args) or 'void'}) {{")
    out += _prologue(scop, binding)
    out += pr.lines
    out.append("}")
    out += [f"#undef {st.name}" for st in scop.statements]
    return "\n".join(out) + "\n"


def translation_unit(functions: list[str]) -> str:
    """One C file: the prelude and every kernel function of a graph (or a benchmark)."""
    return PRELUDE + regtile.PRELUDE + "\n".join(functions)
