"""`msgx bench report` / `python -m benchmarks report`: runs every suite in benchmarks.__main__.SUITES (quick
settings unless --full), keeps their JSON lines and Markdown tables, plots ours/peer ratios (matplotlib PNG)
and writes BENCHMARKS.md saying on which machine, commit and date the numbers were taken.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

from . import harness

ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict:
    """CPU model, cores, memory, OS and library versions of this machine."""
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        models = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")]
        info["cpu"] = models[0] if models else info["cpu"]
        mem = Path("/proc/meminfo").read_text().split()[1]  # "MemTotal: N kB"
        info["memory_gib"] = round(int(mem) / 2**20, 1)
    except (OSError, IndexError, ValueError):
        pass
    env = harness.environment()
    info.update({k: env[k] for k in ("numpy", "onnxruntime") if k in env})
    try:
        import torch  # noqa: F401 - a peer's version, when installed
        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info


def commit() -> dict:
    """The git commit of the tree and how many tracked files differ from it."""
    def git(*a):
        done = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=30)
        return done.stdout.strip()
    try:
        sha = git("rev-parse", "HEAD")
        dirty = [ln for ln in git("status", "--porcelain", "--untracked-files=no").splitlines() if ln]
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "modified_files": None}
    return {"sha": sha or None, "modified_files": len(dirty)}


def run_suite(name: str, out_dir: Path, extra: list[str], quick: bool, timeout: float) -> dict:
    """One suite in a fresh interpreter: its JSON lines, Markdown and log go to out_dir."""
    jsonl, md, log = out_dir / f"{name}.jsonl", out_dir / f"{name}.md", out_dir / f"{name}.log"
    cmd = [sys.executable, "-m", "benchmarks", name, *(["--quick"] if quick else []), "--out", str(jsonl),
           "--md", str(md), *extra]
    t0 = time.perf_counter()
    with open(log, "w") as f:
        try:
            rc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = None
    rows = []
    if jsonl.exists():
        for line in jsonl.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
    return {"suite": name, "command": "python " + " ".join(shlex.quote(c) for c in cmd[1:]), "rc": rc,
            "seconds": time.perf_counter() - t0, "rows": rows,
            "table": md.read_text() if md.exists() else "", "log_tail": log.read_text()[-1500:]}


def ratio_points(rows: list[dict]) -> dict[str, list[tuple[str, float]]]:
    """peer -> [(case, ours/peer median)] over the rows that have ratios."""
    out: dict[str, list] = {}
    for r in rows:
        for peer, v in (r.get("ratios") or {}).items():
            if isinstance(v, (int, float)) and v > 0 and math.isfinite(v):
                out.setdefault(peer, []).append((r["case"], float(v)))
    return out


def geomean(xs: list[float]) -> float | None:
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None


def plot(suite: str, rows: list[dict], path: Path) -> Path | None:
    """Horizontal bars of ours/peer per case and peer (log scale; < 1: ours is faster); None if no ratios."""
    points = ratio_points(rows)
    if not points:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(dict.fromkeys(c for pts in points.values() for c, _ in pts))
    peers = list(points)
    height = 0.8 / len(peers)
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.28 * len(cases) * max(1, len(peers) / 2)))
    for k, peer in enumerate(peers):
        got = dict(points[peer])
        ys = [i + k * height for i, c in enumerate(cases) if c in got]
        ax.barh(ys, [got[c] for c in cases if c in got], height=height, label=f"msgx / {peer}")
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(cases))], cases, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("time ratio msgx / peer (log scale; < 1: msgx faster)")
    ax.set_title(f"{suite}: msgx vs peers")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _summary_lines(result: dict) -> list[str]:
    rows = result["rows"]
    errors = sum(1 for r in rows if r.get("error"))
    command = result["command"].replace(str(ROOT) + os.sep, "")
    lines = [f"- command: `{command}`; exit code {result['rc']}; "
             f"{result['seconds']:.0f} s; {len(rows)} rows, {errors} with errors"]
    for peer, pts in ratio_points(rows).items():
        wins = sum(v < 1 for _, v in pts)
        lines.append(f"- msgx / {peer}: geomean {geomean([v for _, v in pts]):.2f} over {len(pts)} cases "
                     f"(msgx faster in {wins})")
    for r in rows:  # suites that end on a summary row (dynamic) carry their headline ratios in meta
        for key, val in (r.get("meta") or {}).items():
            if key.startswith("ratios_") and isinstance(val, dict) and val:
                lines.append(f"- {r['case']} {key[7:]}: "
                             + ", ".join(f"msgx / {p} {v:.2f}" for p, v in val.items()))
    return lines


def markdown(results: list[dict], mach: dict, rev: dict, when: str, quick: bool, plots: dict,
             load: list | None = None) -> str:
    """BENCHMARKS.md: provenance, then per suite the summary, the plot and the suite's own table."""
    dirty = f" with {rev['modified_files']} modified tracked file(s)" if rev.get("modified_files") else ""
    out = ["# Benchmarks", "",
           f"Generated by `msgx bench report{'' if quick else ' --full'}` on {when} at commit "
           f"`{rev.get('sha') or 'unknown'}`{dirty}. "
           f"{'Quick settings (few, short rounds)' if quick else 'Full settings'}; "
           "ratios are msgx / peer medians from interleaved rounds (< 1: msgx is faster).", "",
           f"Machine: {mach['cpu']}, {mach['cores']} cores"
           + (f", {mach['memory_gib']} GiB" if "memory_gib" in mach else "") + f", {mach['os']}; Python "
           f"{mach['python']}, numpy {mach.get('numpy')}, onnxruntime {mach.get('onnxruntime')}, torch "
           f"{mach.get('torch') or 'not installed'}."
           + (f" 1-minute load average at the start / end of the run: {load[0]} / {load[-1]} (other "
              "processes shared the machine when it is above the core count)." if load and None not in load
              else ""), "",
           "| suite | rows | errors | exit code | seconds |", "|---|---|---|---|---|"]
    for r in results:
        out.append(f"| [{r['suite']}](#{r['suite']}) | {len(r['rows'])} | "
                   f"{sum(1 for x in r['rows'] if x.get('error'))} | {r['rc']} | {r['seconds']:.0f} |")
    for r in results:
        out += ["", f"## {r['suite']}", "", *_summary_lines(r), ""]
        if plots.get(r["suite"]):
            out += [f"![{r['suite']} ratios]({plots[r['suite']]})", ""]
        if r["table"]:  # the suite's own headings go one level below the suite's
            table = r["table"].strip().splitlines()
            out += ["\n".join("##" + ln if ln.startswith("#") else ln for ln in table), ""]
        if r["rc"] != 0:
            out += ["The suite did not finish cleanly; the end of its log:", "", "```",
                    r["log_tail"].strip(), "```", ""]
    return "\n".join(out).rstrip() + "\n"


def parse_args(argv) -> argparse.Namespace:
    from .__main__ import SUITES
    p = argparse.ArgumentParser(prog="msgx bench report", description=__doc__.splitlines()[0])
    p.add_argument("--suites", default=",".join(SUITES), help=f"comma-separated (default: all of {SUITES})")
    p.add_argument("--full", action="store_true", help="the suites' default settings instead of --quick")
    p.add_argument("--suite-args", action="append", default=[], metavar="SUITE=ARGS",
                   help="extra options for one suite, e.g. models='--models mlp'")
    p.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"),
                   help="the report (default: BENCHMARKS.md at the repository root)")
    p.add_argument("--results", help="folder for JSON lines, tables, logs and plots "
                                     "(default: benchmarks/results next to the report)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per suite")
    p.add_argument("--from-results", action="store_true",
                   help="re-render the report from the last run's results folder without running anything")
    args = p.parse_args(argv)
    args.suite_list = [s.strip() for s in args.suites.split(",") if s.strip()]
    unknown = [s for s in args.suite_list if s not in SUITES]
    if unknown:
        p.error(f"unknown suite(s) {unknown}; known: {', '.join(SUITES)}")
    args.extra = {}
    for item in args.suite_args:
        name, sep, rest = item.partition("=")
        if not sep or name not in SUITES:
            p.error(f"--suite-args expects SUITE=ARGS with SUITE one of {', '.join(SUITES)}, got {item!r}")
        args.extra[name] = shlex.split(rest)
    return args


def _load_rows(path: Path) -> list[dict]:
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
    return rows


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    report = Path(args.output).resolve()
    results_dir = Path(args.results).resolve() if args.results else report.parent / "benchmarks" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    if args.from_results:  # re-render the last run's results, nothing is measured
        try:
            run = json.loads((results_dir / "report.json").read_text())
        except (OSError, ValueError) as e:
            harness.progress(f"msgx bench report: no results to re-render in {results_dir}: {e}")
            return 2
        results = [{**r, "rows": _load_rows(results_dir / f"{r['suite']}.jsonl")} for r in run["suites"]]
    else:
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        run = {"when": when, "machine": machine(), "commit": commit(), "quick": not args.full,
               "load_average": [_load_average()]}
        results = []
        for i, name in enumerate(args.suite_list, 1):
            harness.progress(f"{harness.bar(i - 1, len(args.suite_list))} suite {name} "
                             f"(log: {results_dir / name}.log)")
            res = run_suite(name, results_dir, args.extra.get(name, []), not args.full, args.timeout)
            results.append(res)
            harness.progress(f"{harness.bar(i, len(args.suite_list))} suite {name}: exit {res['rc']}, "
                             f"{len(res['rows'])} rows, {res['seconds']:.0f} s")
        run["load_average"].append(_load_average())
        run["suites"] = [{k: v for k, v in r.items() if k != "rows"} for r in results]
        with open(results_dir / "report.json", "w") as f:
            json.dump(run, f, indent=1)
    plots = {}
    for r in results:
        png = plot(r["suite"], r["rows"], results_dir / f"{r['suite']}_ratios.png")
        if png is not None:
            plots[r["suite"]] = os.path.relpath(png, report.parent)
    quick = run.get("quick", all("--quick" in r["command"] for r in results))
    report.write_text(markdown(results, run["machine"], run["commit"], run["when"], quick, plots,
                               run.get("load_average")))
    harness.progress(f"wrote {report}")
    return 0 if all(r["rc"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
