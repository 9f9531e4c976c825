"""Graph O1 (graph-kernel fusion) gives graph O0's results on the bundled and zoo models; the fusion table."""
import numpy as np
import onnx
import pytest

import framework
from framework.compile import run_passes
from framework.executor import GraphExecutor
from framework.onnx_frontend import import_model
import onnx_models
from benchmarks.zoo import random_feed, randomize_weights, zoo_models
from graph_kernel.pipeline import format_report, fusion_report, report_rows, summarize

SHAPES = {
    "tiny_gpt": [{"batch": 1, "seq": 5}, {"batch": 2, "seq": 16}, {"batch": 3, "seq": 33}],
    "mobilenet": [{"batch": 1, "height": 32, "width": 32}, {"batch": 2, "height": 48, "width": 40},
                  {"batch": 3, "height": 17, "width": 29}],
    "mlp": [{"batch": 1}, {"batch": 4}, {"batch": 7}],
}
ZOO = zoo_models()
# elementwise/reduce ops left alone because no pattern has a partner for them (a Relu between a Concat
# and a Conv; a GlobalAveragePool after a conv, whose epilogue may not reduce)
ALONE = {"shufflenet": "Relux3", "squeezenet": "GlobalAveragePool"}
TABLE: dict[str, dict] = {}


def assert_same(o0, o1):
    for a, b in zip(o0, o1, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(a).max())))


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_bundled_model_o1_matches_o0(name):
    model = onnx_models.build(name)
    s0 = framework.InferenceSession(model, jit_level="O0")
    s1 = framework.InferenceSession(model, jit_level="O1", check_ir=True)
    assert s1.stats["clusters"] > 0 and s1.stats["fused_ops"] > s1.stats["clusters"]
    for dims in SHAPES[name]:
        feed = onnx_models.example_inputs(name, dims)
        assert_same(s0.run(None, feed), s1.run(None, feed))
    TABLE[name] = summarize(report_rows(s1.graph, name))
    assert TABLE[name]["clusters"] == s1.stats["clusters"]
    assert TABLE[name]["fusable_left"] == ""  # every elementwise/reduce op joined a kernel


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_o1_matches_o0(name):
    model = randomize_weights(onnx.load(ZOO[name]), seed=0)
    feed = random_feed(model, seed=1)
    graph = import_model(model)  # imported once (the zoo's weights are large); the passes never mutate it
    g0, g1 = run_passes(graph, "O0"), run_passes(graph, "O1", check=True)
    args = [feed[v.name] for v in graph.inputs]
    assert_same(GraphExecutor(g0).run(args), GraphExecutor(g1).run(args))
    TABLE[name] = summarize(report_rows(g1, name))
    assert TABLE[name]["clusters"] > 0
    assert TABLE[name]["fusable_left"] == ALONE.get(name, "")


def fixed_shape(model: onnx.ModelProto, dims: dict) -> onnx.ModelProto:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for vi in model.graph.input:
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param in dims:
                d.dim_value = dims[d.dim_param]
    return model


def test_transformer_fuses_as_well_with_symbolic_batch_and_seq():
    model = onnx_models.build("tiny_gpt")
    symbolic = framework.InferenceSession(model, jit_level="O1", check_ir=True)
    static = framework.InferenceSession(fixed_shape(model, {"batch": 2, "seq": 16}), jit_level="O1")
    assert str(symbolic.graph.inputs[0].type) == "i64[batch,seq]"
    assert str(static.graph.inputs[0].type) == "i64[2,16]"
    assert symbolic.stats["clusters"] == static.stats["clusters"] > 0
    kinds = [n.attrs["kind"] for n in symbolic.graph.nodes if n.op == "Fused"]
    assert kinds == [n.attrs["kind"] for n in static.graph.nodes if n.op == "Fused"]
    feed = onnx_models.example_inputs("tiny_gpt", {"batch": 2, "seq": 16})
    assert_same(static.run(None, feed), symbolic.run(None, feed))


def test_report_table(capsys):
    """Printed (visible with -s or -rA): model, clusters, ops per cluster, what stayed unfused."""
    missing = [m for m in [*SHAPES, *ZOO] if m not in TABLE]
    for m in missing:
        model = onnx_models.build(m) if m in SHAPES else randomize_weights(onnx.load(ZOO[m]), seed=0)
        TABLE[m] = summarize(fusion_report(model, name=m, quiet=True))
    lines = ["| model | clusters | fused ops | ops per cluster | unfused |", "|---|---|---|---|---|"]
    for m in [*SHAPES, *sorted(ZOO)]:
        r = TABLE[m]
        per = r["ops_per_cluster"] if len(r["ops_per_cluster"]) < 60 else r["ops_per_cluster"][:57] + "..."
        lines.append(f"| {m} | {r['clusters']} | {r['fused_ops']} | {per} | {r['unfused']} |")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    rows = fusion_report("mlp", quiet=True)
    # Gemm+Relu, MatMul+Add+Tanh, and the last Gemm with its softmax (6 ops) as the epilogue
    assert format_report(rows).splitlines()[0] == "mlp: 3 clusters, 12 fused ops"
