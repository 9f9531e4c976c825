"""The LLM path against a fake OpenAI-compatible server: every adversarial kernel is rejected with its reason,
feedback leads to an accepted kernel, and replay mode is deterministic and offline."""
import numpy as np
import pytest

from kernel_agent import llm
from kernel_agent.conductor import GenerationError, run
from kernel_agent.registry import Registry
from kernel_agent.task import Task
from kernel_agent.verifier import verify

from . import kernels as K
from .fake_llm import FakeLLM


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture
def task():
    return Task("softmax64", softmax,
                lambda s: [np.random.default_rng(s).standard_normal((K.ROWS, K.COLS)).astype(np.float32)],
                source="e = np.exp(x - x.max(-1, keepdims=True)); return e / e.sum(-1, keepdims=True)")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MSGX_CACHE_DIR", str(tmp_path / "cache"))


def ask(server, task, mode="off"):
    client = llm.Client(base_url=server.url, model="fake", cache_mode=mode)
    return llm.candidate_from_reply(client.chat(llm.conversation(task, task.traced())), task.traced(), 0)[1]


ADVERSARIAL = [
    ("all zeros", K.ZEROS, "output is all zeros"),
    ("copy of an input", K.COPY, "copy of input 0"),
    ("cached output", K.CACHED, "cached result"),
    ("NaN", K.NAN, "NaN where the reference is finite"),
    ("wrong only on edge inputs", K.NO_MAX, "wrong only on edge input"),
    ("infinite loop", K.LOOP, "timed out"),
    ("writes its input", K.WRITES_INPUT, "modified its input 0"),
    ("correct at first, wrong after timing", K.DRIFT, "output changed when run again after timing"),
    ("file write (C)", K.FILE_WRITE, "file access: calls fopen"),
    ("network (C)", K.NETWORK, "network access: calls socket"),
    ("out-of-bounds read", K.OOB, "out-of-bounds memory access"),
    ("file write (Python)", K.PY_FILE_WRITE, "file write: open("),
    ("network (Python)", K.PY_NETWORK, "network access: socket"),
]


@pytest.mark.parametrize("label,answer,reason", ADVERSARIAL, ids=[a[0] for a in ADVERSARIAL])
def test_adversarial_kernel_rejected_with_reason(task, label, answer, reason):
    with FakeLLM([answer]) as server:
        cand = ask(server, task)
    v = verify(task, cand, timeout=4.0)
    assert not v.ok
    assert reason in v.reason, v.reason


def test_correct_llm_kernel_accepted(task):
    with FakeLLM([K.GOOD]) as server:
        v = verify(task, ask(server, task), reps=2)
    assert v.ok, v.reason
    assert "edge input 'nan-inf'" in v.record["cases"]


def test_rejection_is_fed_back_and_the_retry_accepted(task):
    with FakeLLM([K.ZEROS, K.GOOD]) as server:
        k = run(task, "llm", 1, Registry(), llm=llm.Client(base_url=server.url, model="fake"))
        assert server.requests == 2
        assert "output is all zeros" in server.bodies[1]["messages"][-1]["content"]
    x = task.make_inputs(7)[0]
    np.testing.assert_allclose(k(x), softmax(x), rtol=1e-5, atol=1e-7)
    assert k.generator == "llm" and k.variant == "llm-1"


def test_all_rejected_is_a_typed_error(task):
    with FakeLLM([K.ZEROS]) as server:
        with pytest.raises(GenerationError, match="all zeros"):
            run(task, "llm", 1, Registry(), llm=llm.Client(base_url=server.url, model="fake"))


def test_replay_is_deterministic_and_offline(task):
    with FakeLLM([K.GOOD]) as server:
        recorded = run(task, "llm", 1, Registry(), workflow=_no_registry(),
                       llm=llm.Client(base_url=server.url, model="fake", cache_mode="record"))
        n = server.requests
    # the server is gone: replay answers from the recording, twice, identically
    dead = "http://127.0.0.1:9/v1"
    a = run(task, "llm", 1, Registry(), workflow=_no_registry(), llm=llm.Client(base_url=dead, model="fake",
                                                                                  cache_mode="replay"))
    b = run(task, "llm", 1, Registry(), workflow=_no_registry(), llm=llm.Client(base_url=dead, model="fake",
                                                                                  cache_mode="replay"))
    assert n == 1 and a.source == b.source == recorded.source
    with pytest.raises(llm.LLMError, match="no recorded answer"):
        llm.Client(base_url=dead, model="other-model", cache_mode="replay").chat(MSG)
    with pytest.raises(llm.LLMError, match="failed"):
        llm.Client(base_url=dead, model="fake", cache_mode="off", timeout=2).chat(MSG)


MSG = [{"role": "user", "content": "x"}]


def _no_registry():
    from kernel_agent.conductor import WORKFLOW
    return tuple(s for s in WORKFLOW if s["step"] not in ("lookup", "register"))


def test_bad_cache_mode_is_typed():
    with pytest.raises(llm.LLMError, match="MSGX_LLM_CACHE"):
        llm.Client(cache_mode="sometimes")
