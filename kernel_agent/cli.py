"""`msgx agent run TASK.py` (generate, verify and tune one task, with progress and a report) and
`msgx agent bench` (the task set: fast_0, fast_1, geomean speedup; benchmarks/agent.py)."""
from __future__ import annotations

import sys


def register(subparsers, common) -> None:
    """Add `agent run` and `agent bench`; `common` is the parent parser of the options every command takes."""
    a = subparsers.add_parser("agent", parents=[common],
                              help="the kernel agent: generate verified kernels for tasks")
    sub = a.add_subparsers(dest="agent_command", required=True)
    r = sub.add_parser("run", parents=[common], help="generate a kernel for a KernelBench-style task file")
    r.add_argument("task", metavar="TASK.py")
    r.add_argument("--generator", default="offline", choices=["offline", "llm"])
    r.add_argument("--budget", type=int, default=None, help="sandbox runs for verification and tuning")
    r.add_argument("--show-source", action="store_true", help="print the accepted kernel's source")
    r.set_defaults(fn=cmd_run)
    b = sub.add_parser("bench", parents=[common],
                       help="the task set: fast_0, fast_1, geomean speedup vs numpy")
    from benchmarks import agent  # the suite's options; benchmarks are not part of the runtime path
    agent.add_args(b)
    b.set_defaults(fn=agent.run)


def cmd_run(args) -> int:
    from . import generate
    from .task import load_task
    task = load_task(args.task)
    k = generate(task, args.generator, args.budget, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"task        {task.name} ({task.path})")
    print(f"generator   {k.generator}{' (from the registry)' if k.from_registry else ''}")
    print(f"variant     {k.variant}")
    print(f"verified on {', '.join(k.verification.get('cases', [])) or '-'}")
    if k.speedup is not None:
        t = k.times_ms
        print(f"speedup     {k.speedup:.2f}x vs the numpy reference "
              f"({t.get('reference', 0):.3f} ms -> {t.get('kernel', 0):.3f} ms)")
    print(f"time        {k.seconds:.1f} s")
    if args.show_source:
        print(k.source)
    return 0
