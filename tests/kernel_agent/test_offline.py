"""Tracing, the verifier's comparison, the registry, and the offline synthesizer on the task set."""
import numpy as np
import pytest

import kernel_agent
from framework.executor import GraphExecutor
from kernel_agent import registry
from kernel_agent.task import Task, TaskError, load_task
from kernel_agent.trace import TraceError, trace
from kernel_agent.verifier import compare

from benchmarks.agent import task_files


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MSGX_CACHE_DIR", str(tmp_path / "cache"))


def layer_norm(x, g):
    mu = x.mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(np.var(x, axis=-1, keepdims=True) + 1e-5) * g


def test_trace_records_structure_that_reruns_exactly():
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal((8, 32)).astype(np.float32), rng.random(32).astype(np.float32)
    graph = trace(layer_norm, [x, g])
    ops = [n.op for n in graph.nodes]
    assert ops.count("ReduceMean") == 3 and "Sqrt" in ops and "Div" in ops
    np.testing.assert_array_equal(GraphExecutor(graph).run([x, g])[0], layer_norm(x, g))


@pytest.mark.parametrize("fn,what", [
    (lambda x: x if x.sum() > 0 else -x, "data-dependent control flow"),
    (lambda x: np.sort(x, axis=-1), "np.sort is not traceable"),
    (lambda x: x[1:], "indexing"),
    (lambda x: float(x.max()) * x, "float()"),
])
def test_untraceable_is_reported(fn, what):
    with pytest.raises(TraceError, match=what):
        trace(fn, [np.ones((4, 4), np.float32)])


def test_compare_names_the_failure():
    ref = np.linspace(-1, 1, 64, dtype=np.float32).reshape(4, 16)
    x = ref.copy()
    assert compare(ref + 1e-8, ref.astype(np.float64), ref, [x]) == ""
    assert compare(np.zeros_like(ref), ref.astype(np.float64), ref, [x]) == "output is all zeros"
    assert compare(x, (ref * 2).astype(np.float64), ref * 2, [x]) == "output is a copy of input 0"
    bad = ref.copy()
    bad[0, 0] = np.nan
    assert compare(bad, ref.astype(np.float64), ref, [x]).startswith("NaN where the reference is finite")
    assert "elements off" in compare(ref * 1.01, ref.astype(np.float64), ref, [x])
    assert "dtype" in compare(ref.astype(np.float64), ref.astype(np.float64), ref, [x])


def test_task_file_errors_are_typed(tmp_path):
    with pytest.raises(TaskError, match="does not exist"):
        load_task(tmp_path / "nope.py")
    p = tmp_path / "t.py"
    p.write_text("import numpy as np\ndef get_inputs():\n    return []\n")
    with pytest.raises(TaskError, match="defines no Model"):
        load_task(p)


def test_registry_hit_and_corrupt_entry_regenerated(tmp_path):
    t = Task("rms", lambda x: x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + 1e-6),
             lambda s: [np.random.default_rng(s).standard_normal((32, 128)).astype(np.float32)])
    reg = registry.Registry(tmp_path / "reg")
    k1 = kernel_agent.generate(t, budget=1, registry=reg)
    k2 = kernel_agent.generate(t, budget=1, registry=reg)
    assert not k1.from_registry and k2.from_registry and k1.source == k2.source
    entry = next((tmp_path / "reg" / "agent").rglob("*.kernel"))
    entry.write_bytes(entry.read_bytes()[:-10] + b"corrupted!")
    k3 = kernel_agent.generate(t, budget=1, registry=reg)
    assert not k3.from_registry and reg.cache.corruptions == 1
    x = t.make_inputs(5)[0]
    np.testing.assert_allclose(k3(x), t.reference(x), rtol=1e-5, atol=1e-6)


def test_failure_is_cached(tmp_path):
    t = Task("noop", lambda x: x * 1.0, lambda s: [np.ones((4, 4), np.float32)])
    reg = registry.Registry(tmp_path / "reg")
    reg.store(t, "offline", {"failed": "earlier rejection"})
    with pytest.raises(kernel_agent.conductor.GenerationError, match="cached failure: earlier rejection"):
        kernel_agent.generate(t, registry=reg)


FAST = ["softmax", "cumsum_int", "argmax", "cross_entropy", "sum_transposed", "mean_middle_axis",
        "matmul_bias_gelu"]


def _generate_and_check(path):
    task = load_task(path)
    k = kernel_agent.generate(task, budget=1)
    for seed in (11, 12):
        inputs = task.make_inputs(seed)
        for got, ref in zip(k.fn(*inputs), task.run_reference(inputs)):
            assert got.dtype == ref.dtype and got.shape == ref.shape
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(ref).max())))
    assert len(k.verification["cases"]) >= 8  # 3 seeds + 5 edge inputs (+ integer limits)
    return k


@pytest.mark.parametrize("name", FAST)
def test_offline_generator_on_a_subset_of_the_task_set(name):
    _generate_and_check(next(f for f in task_files() if f.stem == name))


def test_task_set_size():
    assert len(task_files()) >= 30


@pytest.mark.slow
@pytest.mark.parametrize("path", task_files(), ids=lambda p: p.stem)
def test_offline_generator_on_every_task(path):
    _generate_and_check(path)


def test_cli_agent_run_reports(tmp_path, capsys):
    from framework.cli import main
    p = tmp_path / "relu_task.py"
    p.write_text("import numpy as np\n\n\nclass Model:\n    def forward(self, x):\n"
                 "        return np.maximum(x, 0.0)\n\n\n"
                 "def get_inputs():\n    return [np.random.randn(64, 128).astype(np.float32)]\n")
    assert main(["agent", "run", str(p)]) == 0
    out = capsys.readouterr()
    assert "generator   offline" in out.out and "speedup" in out.out and "edge input 'nan-inf'" in out.out
    assert "[relu_task] accepted" in out.err
    assert main(["agent", "run", str(tmp_path / "missing.py")]) == 2
