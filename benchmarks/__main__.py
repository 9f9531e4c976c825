"""`python -m benchmarks SUITE [args]`: run a suite's main(args) (the same as `msgx bench SUITE`); `report`
runs them all into BENCHMARKS.md (benchmarks/report.py)."""
from __future__ import annotations

import importlib
import sys

SUITES = ("models", "ops", "dynamic", "pynative", "gpu", "train", "agent", "dp", "poly")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUITES + ("report",):
        print(f"usage: python -m benchmarks {{{','.join(SUITES)}}} [suite options]\n"
              f"       python -m benchmarks report [--full]   (every suite -> BENCHMARKS.md)", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return importlib.import_module(f"benchmarks.{argv[0]}").main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
