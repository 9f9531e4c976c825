"""kernel_agent: agent-generated kernels, verified and tuned, the framework's last fallback.

`generate(task, generator="offline"|"llm", budget=None)` returns a GeneratedKernel (callable, source,
generator, verification record, measured speedup). See ARCHITECTURE.md, "Kernel agent"."""
from __future__ import annotations


def generate(task, generator: str = "offline", budget: int | None = None, *, registry=None, log=None,
             llm=None):
    """Generate (or fetch from the registry) a verified kernel for `task` (a Task or a task file path)."""
    from .conductor import run
    from .task import Task, load_task
    if not isinstance(task, Task):
        task = load_task(task)
    return run(task, generator, budget, registry, log=log or (lambda m: None), llm=llm)
