"""Pictures of a session's graph after the pipeline: Graphviz lays it out (clusters boxed and coloured by
backend, each node with its output type and symbolic dims); the HTML form embeds the SVG and, per cluster,
its body IR and the listings its backend exposes (DVM bytecode disassembly, generated C)."""
from __future__ import annotations

import html
import os
import re

from .errors import MsgxError
from .ir import Graph, Node, print_graph

# backend -> (fill, outline); a backend not listed gets the "other" colours
COLORS = {"dvm": ("#cfe2ff", "#1d4ed8"), "poly": ("#d1fadf", "#15803d"), "agent": ("#fde9c8", "#b45309"),
          "numpy": ("#eceff3", "#6b7280"), "other": ("#f5d0fe", "#a21caf")}
IO_COLOR = "#ffffff"


class ShowError(MsgxError):
    """The picture cannot be drawn or written (Graphviz missing, bad output path or format)."""


def _is_fused(n: Node) -> bool:
    return n.op == "Fused" and n.domain == "msgx" and isinstance(n.attrs.get("body"), Graph)


def _type(v) -> str:
    return str(v.type) if v is not None and v.type is not None else "?"


def _colors(backend: str) -> tuple[str, str]:
    return COLORS.get(backend, COLORS["other"])


def _steps(sess) -> list[tuple[Node, str, object]]:
    """(node, backend name, compiled kernel) per node of the session's graph."""
    steps = getattr(sess._executor, "steps", None)
    if steps is not None:
        return [(st.node, st.backend, st.kernel) for st in steps]
    return [(n, "numpy", None) for n in sess.graph.nodes]  # PyNative: the model as imported


def listings(sess, node: Node, backend: str, kernel) -> dict[str, str]:
    """Text listings a backend exposes for a compiled node through `listing(node, kernel)`."""
    b = next((b for b in getattr(sess, "_backends", ()) if b.name == backend), None)
    fn = getattr(b, "listing", None)
    if fn is None:
        return {}
    try:
        return dict(fn(node, kernel))
    except Exception as e:  # noqa: BLE001 - a listing is a view; its failure must not stop the picture
        return {"listing unavailable": f"{type(e).__name__}: {e}"}


def build(sess, title: str = "msgx graph"):
    """The graphviz.Digraph of the session's graph and, per cluster, its anchor id and details."""
    try:
        import graphviz
    except ImportError:
        raise ShowError("drawing needs the graphviz Python package (pip install graphviz) and Graphviz's "
                        "`dot` (apt-get install graphviz)") from None
    g = graphviz.Digraph("msgx", graph_attr={
        "rankdir": "TB", "fontname": "Helvetica", "fontsize": "11", "nodesep": "0.12", "ranksep": "0.22",
        "label": title, "labelloc": "t", "tooltip": title},
        node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica", "fontsize": "9",
                   "height": "0.3", "margin": "0.06,0.02"},
        edge_attr={"arrowsize": "0.5", "color": "#64748b"})
    src: dict = {}  # Value -> graphviz node id that produces it
    counter = iter(range(1 << 30))
    for v in sess.graph.inputs:
        vid = f"in{next(counter)}"
        src[v] = vid
        g.node(vid, f"{v.name}\n{_type(v)}", shape="ellipse", fillcolor=IO_COLOR, style="filled")
    clusters = []
    for i, (n, backend, kernel) in enumerate(_steps(sess)):
        fill, line = _colors(backend)
        if _is_fused(n):
            clusters.append(_draw_cluster(g, sess, i, n, backend, kernel, src, counter))
            continue
        nid = f"n{next(counter)}"
        label = f"{n.op}\n{_type(n.outputs[0]) if n.outputs else ''}"
        g.node(nid, label, fillcolor=fill, color=line, tooltip=f"{n.name or n.op} ({backend})")
        for v in n.inputs:
            if v is not None and v in src:
                g.edge(src[v], nid)
        for v in n.outputs:
            src[v] = nid
    for v in sess.graph.outputs:
        vid = f"out{next(counter)}"
        g.node(vid, f"{v.name}\n{_type(v)}", shape="ellipse", fillcolor=IO_COLOR, style="filled")
        if v in src:
            g.edge(src[v], vid)
    return g, clusters


def _draw_cluster(g, sess, i: int, n: Node, backend: str, kernel, src: dict, counter) -> dict:
    """One boxed cluster holding its body's ops; outer values connect to the body ops that read them."""
    body: Graph = n.attrs["body"]
    anchor = f"k{i}"
    fill, line = _colors(backend)
    inner = dict(zip(body.inputs, (src.get(v) for v in n.inputs)))
    kind = n.attrs.get("kind", "")
    name = n.name or f"cluster{i}"
    with g.subgraph(name=f"cluster_{anchor}") as c:
        c.attr(label=f"{name}  [{kind}, {len(body.nodes)} ops]  on {backend}", style="rounded,filled",
               fillcolor=fill, color=line, penwidth="1.6", fontsize="10", URL=f"#{anchor}", target="_self",
               tooltip=f"{name}: " + ", ".join(b.op for b in body.nodes[:12]) +
               (" ..." if len(body.nodes) > 12 else ""), id=f"box-{anchor}")
        for b in body.nodes:
            bid = f"n{next(counter)}"
            c.node(bid, f"{b.op}\n{_type(b.outputs[0]) if b.outputs else ''}", fillcolor="#ffffff",
                   color=line, URL=f"#{anchor}", target="_self", tooltip=f"{b.op} in {name}")
            for v in b.inputs:
                if v is not None and inner.get(v):
                    g.edge(inner[v], bid)
            for v in b.outputs:
                inner[v] = bid
    for outer, v in zip(n.outputs, body.outputs):
        if inner.get(v):
            src[outer] = inner[v]
    return {"anchor": anchor, "name": name, "backend": backend, "kind": kind, "ops": len(body.nodes),
            "inputs": [_type(v) for v in n.inputs], "outputs": [_type(v) for v in n.outputs],
            "body": print_graph(body), "listings": listings(sess, n, backend, kernel)}


def svg(graph) -> str:
    """Lay the Digraph out with Graphviz's dot; the SVG text."""
    import graphviz
    try:
        return graph.pipe(format="svg").decode("utf-8")
    except graphviz.ExecutableNotFound:
        raise ShowError("Graphviz's `dot` is not installed (apt-get install graphviz)") from None


_CSS = """
body{font-family:Helvetica,Arial,sans-serif;margin:0;display:flex;height:100vh}
#graph{flex:3;overflow:auto;border-right:1px solid #ccc} #graph svg{max-width:100%;height:auto}
#fit{display:none} #fit:checked ~ #graph svg{height:calc(100vh - 8px);width:auto}
label{color:#1d4ed8;cursor:pointer;text-decoration:underline}
#side{flex:2;overflow:auto;padding:0 12px;font-size:13px}
.kernel{display:none} .kernel:target{display:block} #side:not(:has(.kernel:target)) #hint{display:block}
#hint{display:none;color:#555} pre{background:#f8fafc;border:1px solid #e2e8f0;padding:6px;font-size:11px;
overflow:auto} .sw{display:inline-block;width:12px;height:12px;border:2px solid;margin:0 4px 0 10px;
vertical-align:middle} table{border-collapse:collapse} td{padding:1px 8px 1px 0}
"""


def page(svg_text: str, clusters: list[dict], title: str, stats: dict) -> str:
    """The self-contained HTML page: the SVG, a legend and one section per cluster (shown when clicked)."""
    svg_text = re.sub(r"^.*?(?=<svg)", "", svg_text, flags=re.S)  # drop the XML prolog and doctype
    used = {c["backend"] for c in clusters} | set(stats.get("backends", {}))
    legend = "".join(f'<span class="sw" style="background:{_colors(b)[0]};border-color:{_colors(b)[1]}">'
                     f"</span>{html.escape(b)}" for b in sorted(used))
    rows = "".join(f'<tr><td><a href="#{c["anchor"]}">{html.escape(c["name"])}</a></td>'
                   f'<td>{c["backend"]}</td><td>{html.escape(str(c["kind"]))}</td>'
                   f'<td>{c["ops"]} ops</td></tr>'
                   for c in clusters)
    sections = []
    for c in clusters:
        parts = [f'<section class="kernel" id="{c["anchor"]}"><h3>{html.escape(c["name"])}</h3>',
                 f'<p>backend <b>{c["backend"]}</b>, kind {html.escape(str(c["kind"]))}, {c["ops"]} ops<br>'
                 f'inputs: {html.escape(", ".join(c["inputs"]))}<br>'
                 f'outputs: {html.escape(", ".join(c["outputs"]))}'
                 f'</p><h4>body</h4><pre class="body">{html.escape(c["body"])}</pre>']
        for head, text in c["listings"].items():
            parts.append(f'<h4>{html.escape(head)}</h4><pre class="listing">{html.escape(text)}</pre>')
        sections.append("".join(parts) + "</section>")
    summary = (f'{stats.get("nodes", "?")} kernels, {len(clusters)} fused clusters holding '
               f'{sum(c["ops"] for c in clusters)} ops; '
               f'backends: {html.escape(str(stats.get("backends", {})))}')
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<style>{_CSS}</style></head><body>'
            f'<input type="checkbox" id="fit" title="fit the graph to the window">'
            f'<div id="graph">{svg_text}</div><div id="side">'
            f'<h2>{html.escape(title)}</h2>'
            f'<p><label for="fit">fit the graph to the window (toggle)</label></p>'
            f'<p>{summary}</p><p>backends:{legend}</p>'
            f'<p id="hint">Click a cluster (or a row below) to see its body and listings.</p>'
            f'<table id="clusters">{rows}</table>{"".join(sections)}</div></body></html>\n')


def write(sess, path: str | os.PathLike, title: str = "msgx graph") -> str:
    """Draw the session's graph to `path`: .svg (tooltips) or .html (SVG plus click-through details)."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".svg", ".html", ".htm"):
        raise ShowError(f"cannot draw to {path!r}: use a .html or .svg file name")
    graph, clusters = build(sess, title)
    text = svg(graph)
    if ext != ".svg":
        text = page(text, clusters, title, sess.stats)
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise ShowError(f"cannot write {path!r}: {e.strerror or e}") from None
    return path
