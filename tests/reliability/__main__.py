"""`python -m tests.reliability [--long] [--part NAME ...] [--out PATH]`: run the suite, write the report."""

import argparse
import json
import sys

from .report import generate


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.reliability", description=__doc__)
    p.add_argument(
        "--long", action="store_true", help="nightly sizes: 10,000 graphs, 1,000 hostile models, ..."
    )
    p.add_argument(
        "--part",
        action="append",
        choices=["differential", "hostile", "soak", "concurrency", "numerics", "generated_code"],
        help="run only these parts",
    )
    p.add_argument("--out", help="report path (default RELIABILITY.md at the repository root)")
    args = p.parse_args(argv)
    summary = generate(args.long, args.out and __import__("pathlib").Path(args.out), args.part)
    print(json.dumps(summary, indent=1, default=str))
    bad = any(
        "error" in s or s.get("mismatches") or s.get("failures") or s.get("died") for s in summary.values()
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
