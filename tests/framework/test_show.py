"""`msgx show`: the graph after the pipeline drawn by Graphviz; the HTML rendered by headless Chromium."""
import html
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import onnx_models
from framework import show
from framework.cli import main
from framework.session import InferenceSession

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz `dot` not installed (apt graphviz)")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt chromium)")
SVG_NS = "{http://www.w3.org/2000/svg}"

# Reports, after layout, each drawn cluster's box in page pixels (the browser's geometry, not ours).
PROBE = """<script>addEventListener('load', () => {
  const out = [...document.querySelectorAll('#graph g.cluster')].map(g => {
    const r = g.querySelector('path,polygon').getBoundingClientRect();
    return {id: g.id, title: g.querySelector('text').textContent, x: r.x, y: r.y, w: r.width, h: r.height};
  });
  const shown = [...document.querySelectorAll('section.kernel')].filter(
    s => getComputedStyle(s).display !== 'none').map(s => s.id);
  const pre = document.createElement('pre'); pre.id = 'probe';
  pre.textContent = JSON.stringify({boxes: out, shown: shown});
  document.body.appendChild(pre);
});</script>"""


@pytest.fixture(scope="module")
def o1_session():
    sess = InferenceSession(onnx_models.build("tiny_gpt"), jit_level="O1")
    feed = onnx_models.example_inputs("tiny_gpt", {"batch": 2, "seq": 8})
    sess.run(None, feed)
    return sess


def _chromium(url, tmp_path, *extra, width=1600, height=1200):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--hide-scrollbars", f"--user-data-dir={tmp_path / 'chromium-profile'}",
           f"--window-size={width},{height}", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _fused(sess):
    return [n for n in sess.graph.nodes if n.op == "Fused" and n.domain == "msgx"]


@needs_dot
@needs_chromium
def test_o1_html_renders_every_cluster_in_chromium(o1_session, tmp_path):
    """Must-show 2: every cluster has a drawn box of its backend's colour in the screenshot."""
    from PIL import Image

    page = tmp_path / "graph.html"
    show.write(o1_session, page, title="tiny_gpt O1")
    text = page.read_text()
    height_pt = float(re.search(r'<svg width="[\d.]+pt" height="([\d.]+)pt"', text).group(1))
    height = int(height_pt * 96 / 72) + 40  # the whole graph in one screenshot
    probed = tmp_path / "probe.html"
    probed.write_text(text.replace("</body>", PROBE + "</body>"))
    fused = _fused(o1_session)
    clicked = next(i for i, st in enumerate(o1_session._executor.steps) if st.node is fused[3])
    dom = _chromium(probed.as_uri() + f"#k{clicked}", tmp_path, "--dump-dom", "--virtual-time-budget=5000",
                    height=height)
    probe = json.loads(html.unescape(re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S).group(1)))
    boxes = probe["boxes"]
    assert probe["shown"] == [f"k{clicked}"]  # the link target's details, and only those, are displayed
    assert len(fused) == 11 and len(boxes) == len(fused)
    steps = {st.node.name: st.backend for st in o1_session._executor.steps}
    assert sorted(b["title"].split()[0] for b in boxes) == sorted(n.name for n in fused)
    shot = tmp_path / "graph.png"
    _chromium(page.as_uri(), tmp_path, f"--screenshot={shot}", height=height)
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape[0] == height
    for b in boxes:
        assert b["w"] > 50 and b["h"] > 40, b  # a real box, not a collapsed one
        x, y = int(b["x"] + 4), int(b["y"] + b["h"] / 2)  # inside the border, left of the body's ops
        fill = show.COLORS[steps[b["title"].split()[0]]][0]
        want = np.array([int(fill[i:i + 2], 16) for i in (1, 3, 5)])
        assert np.abs(img[y, x] - want).max() <= 8, (b, img[y, x], fill)


@needs_dot
def test_html_click_through_holds_body_and_bytecode(o1_session, tmp_path):
    from dvm_runtime import encoder
    from dvm_runtime.backend import _shape_inputs
    from dvm_runtime.disasm import disasm
    from framework.ir import print_graph

    page = tmp_path / "g.html"
    show.write(o1_session, page)
    text = page.read_text()
    steps = o1_session._executor.steps
    for i, st in enumerate(steps):
        if st.node.op != "Fused":
            continue
        assert f'href="#k{i}"' in text or f'xlink:href="#k{i}"' in text  # the box links to its section
        section = re.search(rf'<section class="kernel" id="k{i}">(.*?)</section>', text, re.S).group(1)
        body = html.unescape(re.search(r'<pre class="body">(.*?)</pre>', section, re.S).group(1))
        assert body == print_graph(st.node.attrs["body"])
        if st.backend == "dvm":  # the bytecode the kernel ran for ids [2, 8]: re-encode it independently
            listing = html.unescape(re.search(r'<pre class="listing">(.*?)</pre>', section, re.S).group(1))
            (key,) = st.kernel.cache
            n_in = len(st.node.inputs)
            shapes, dtypes = key[:2 * n_in:2], key[1:2 * n_in:2]  # the key: shape, dtype per input, then values
            body_graph = st.node.attrs["body"]
            values = {j: np.array(v, np.int64) for j, v in zip(sorted(_shape_inputs(body_graph)), key[2 * n_in:])}
            assert listing == disasm(encoder.encode(body_graph, shapes, dtypes, values))
            assert 8 in shapes[0]  # the run's sequence length, not a trial binding


@needs_dot
def test_svg_output_and_symbolic_dims(o1_session, tmp_path):
    path = tmp_path / "g.svg"
    show.write(o1_session, path)
    root = ET.parse(path).getroot()
    clusters = [g for g in root.iter(f"{SVG_NS}g") if g.get("class") == "cluster"]
    assert len(clusters) == len(_fused(o1_session))
    texts = [t.text for t in root.iter(f"{SVG_NS}text")]
    assert "f32[batch,seq,64]" in texts and "i64[batch,seq]" in texts  # symbolic dims, not the run's 2x8


@needs_dot
def test_cli_show(tmp_path, capsys):
    out = tmp_path / "g.html"
    assert main(["show", "--model", "mlp", "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out and out.read_text().startswith("<!DOCTYPE html>")
    with pytest.raises(SystemExit) as e:
        main(["show", "--model", "mlp", "-o", str(tmp_path / "g.png")])
    assert e.value.code == 2 and "g.png" in capsys.readouterr().err


def test_bad_output_path_is_a_typed_error(o1_session, tmp_path):
    with pytest.raises(show.ShowError, match="g.pdf"):
        show.write(o1_session, tmp_path / "g.pdf")
