"""The O1 graph-kernel passes (expand, infer shapes, cluster + outline, stack, DCE) and a fusion report."""
from __future__ import annotations

import os
from collections import Counter

from framework.ir import Graph, print_graph
from framework.passes import eliminate_dead_code, infer_shapes

from .expand import expand_pass
from .flags import parse_flags
from .outline import outline
from .partition import PartitionOptions, host_values, partition, role
from .stack import stack_independent
from .symbols import SymbolEngine


def cluster_pass(options: PartitionOptions | None = None):
    """Partition then outline, as one Graph -> Graph pass."""
    def cluster(graph: Graph) -> Graph:
        clusters = partition(graph, SymbolEngine.from_graph(graph), options)
        return outline(graph, clusters) if clusters else graph
    return cluster


def o1_passes(flags="") -> tuple:
    """The (name, Graph -> Graph) passes O1 adds after O0; honours opt_level, disable_pass and the op lists."""
    f = parse_flags(flags)
    if f.opt_level == 0:
        return ()
    options = PartitionOptions(enable_ops=f.enable_cluster_ops, disable_ops=f.disable_cluster_ops)
    passes = [("gk_expand", expand_pass(f)), ("gk_infer_shapes", infer_shapes),
              ("gk_cluster", cluster_pass(options)), ("gk_stack", stack_independent),
              ("gk_eliminate_dead_code", eliminate_dead_code)]
    return tuple((n, fn) for n, fn in passes if n not in f.disable_pass and n[3:] not in f.disable_pass)


def pynative_passes(flags="") -> tuple:
    """The passes PyNative O1 applies before running op by op with lazy fusion: composite ops expanded into
    primitives (LayerNormalization, Softmax, Gelu...), as DVM expands them before its lazy fusion, so the
    live groups can take them; results are those of the ops expanded. Clustering stays at run time."""
    f = parse_flags(flags)
    if f.opt_level == 0 or "gk_expand" in f.disable_pass or "expand" in f.disable_pass:
        return ()
    return (("gk_expand", expand_pass(f)), ("gk_infer_shapes", infer_shapes))


# ---------------------------------------------------------------- reporting

def _compile(model, flags: str) -> Graph:
    from framework.compile import run_passes
    from framework.onnx_frontend import import_model

    if isinstance(model, str) and not os.path.exists(model):
        import onnx_models
        from benchmarks.zoo import zoo_models  # the report is a tool for the lead; zoo names are accepted
        zoo = zoo_models()
        model = onnx_models.build(model) if model in onnx_models.MODELS else str(zoo[model])
    graph = model if isinstance(model, Graph) else import_model(model)
    return run_passes(graph, "O1", graph_kernel_flags=flags)


def fusion_report(model, flags: str = "", name: str | None = None, quiet: bool = False) -> list[dict]:
    """One row per cluster (kind, ops, op types) plus a last row for what stayed unfused; printed as a table.

    `model`: a bundled or zoo model name, a path, an onnx.ModelProto or an msgx Graph."""
    graph = _compile(model, flags)
    rows = report_rows(graph, name or (model if isinstance(model, str) else graph.name))
    if not quiet:
        print(format_report(rows))
    return rows


def report_rows(graph: Graph, label: str) -> list[dict]:
    """fusion_report's rows for a graph already compiled at O1."""
    rows = []
    for n in graph.nodes:
        if n.op == "Fused" and n.domain == "msgx":
            body = n.attrs["body"]
            rows.append({"model": label, "cluster": n.name, "kind": n.attrs["kind"], "ops": len(body.nodes),
                         "op_types": "+".join(m.op for m in body.nodes)})
    left = [n for n in graph.nodes if not (n.op == "Fused" and n.domain == "msgx")]
    host = host_values(graph)
    fusable = [n for n in left if role(n) in ("elem", "reduce") and not any(v in host for v in n.outputs)]
    rows.append({"model": label, "cluster": "unfused", "kind": "-", "ops": len(left),
                 "op_types": _counts(left), "fusable_left": _counts(fusable)})
    return rows


def _counts(nodes) -> str:
    c = Counter(n.op for n in nodes)
    return ", ".join(f"{op}x{k}" if k > 1 else op for op, k in sorted(c.items()))


def summarize(rows: list[dict]) -> dict:
    """One line per model: cluster count, ops per cluster, unfused ops."""
    clusters = [r for r in rows if r["cluster"] != "unfused"]
    left = rows[-1]
    return {"model": left["model"], "clusters": len(clusters), "fused_ops": sum(r["ops"] for r in clusters),
            "ops_per_cluster": " ".join(str(r["ops"]) for r in clusters), "unfused": left["op_types"],
            "fusable_left": left.get("fusable_left", "")}


def format_report(rows: list[dict]) -> str:
    """A Markdown table of a report's rows."""
    s = summarize(rows)
    lines = [f"{s['model']}: {s['clusters']} clusters, {s['fused_ops']} fused ops",
             "| cluster | kind | ops | op types |", "|---|---|---|---|"]
    lines += [f"| {r['cluster']} | {r['kind']} | {r['ops']} | {r['op_types']} |" for r in rows]
    return "\n".join(lines)
