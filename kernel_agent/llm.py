"""The LLM generator's client: OpenAI-compatible `/chat/completions` (MSGX_LLM_BASE_URL, MSGX_LLM_API_KEY,
MSGX_LLM_MODEL), prompts as files in `prompts/`, and a record/replay cache (MSGX_LLM_CACHE=off|record|replay)
in the shared disk cache, so tests run offline and deterministically."""
from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from framework.disk_cache import DiskCache, cache_key
from framework.errors import MsgxError
from framework.ir import print_graph

from .kernel import CompileError, KernelSpec, compile_c

PROMPTS = Path(__file__).parent / "prompts"
MODES = ("off", "record", "replay")


class LLMError(MsgxError):
    """The model service failed, answered malformed JSON, or replay has no recorded answer (names which)."""


def prompt(file: str, **fields) -> str:
    return (PROMPTS / f"{file}.md").read_text().format(**fields)


class Client:
    """chat(messages) -> reply text. In replay mode it never touches the network."""

    def __init__(self, base_url=None, api_key=None, model=None, cache_mode=None, timeout=120.0, cache=None):
        env = os.environ
        self.base_url = (base_url or env.get("MSGX_LLM_BASE_URL", "http://127.0.0.1:8000/v1")).rstrip("/")
        self.api_key = api_key if api_key is not None else env.get("MSGX_LLM_API_KEY", "")
        self.model = model or env.get("MSGX_LLM_MODEL", "default")
        self.mode = cache_mode or env.get("MSGX_LLM_CACHE", "off")
        if self.mode not in MODES:
            raise LLMError(f"MSGX_LLM_CACHE must be one of {MODES}, got {self.mode!r}")
        self.timeout = timeout
        self.cache = cache or DiskCache("agent-llm")
        self.requests = 0

    def _key(self, messages) -> str:
        return cache_key("chat", self.model, json.dumps(messages, sort_keys=True))

    def chat(self, messages: list[dict]) -> str:
        key = self._key(messages)
        if self.mode in ("replay", "record"):
            hit = self.cache.get(key, ".json")
            if hit is not None:
                return json.loads(hit)["reply"]
            if self.mode == "replay":
                raise LLMError(f"replay mode: no recorded answer for this request (model {self.model!r})")
        reply = self._post(messages)
        if self.mode == "record":
            self.cache.put(key, json.dumps({"reply": reply}).encode(), ".json")
        return reply

    def _post(self, messages) -> str:
        body = json.dumps({"model": self.model, "messages": messages, "temperature": 0}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.base_url + "/chat/completions", body, headers)
        self.requests += 1
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                data = json.loads(r.read())
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise LLMError(f"chat request to {self.base_url} failed: {e}") from e
        try:
            return data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as e:
            raise LLMError(f"malformed answer from {self.base_url}: no choices[0].message.content") from e


def _describe(values) -> str:
    return ", ".join(f"{v.name}: {v.type}" for v in values)


def conversation(task, graph) -> list[dict]:
    return [{"role": "system", "content": prompt("system")},
            {"role": "user", "content": prompt("task", name=task.name, source=task.source.strip(),
                                               ir=print_graph(graph), inputs=_describe(graph.inputs),
                                               outputs=_describe(graph.outputs))}]


def feedback(conv: list[dict], reason: str) -> list[dict]:
    return conv + [{"role": "user", "content": prompt("feedback", reason=reason)}]


def candidate_from_reply(reply: str, graph, attempt: int) -> tuple[str, dict]:
    """(label, candidate) from the first fenced block: C (`int kernel(void **b)`) or Python (`def kernel`)."""
    m = re.search(r"```(c|python|py)?\s*\n(.*?)```", reply, re.S)
    label = f"llm-{attempt}"
    if m is None:
        return label, {"kind": "error", "reason": "the answer holds no fenced code block"}
    lang, code = (m.group(1) or "c"), m.group(2)
    if lang in ("python", "py"):
        return label, {"kind": "py", "source": code}
    types = {}
    ins = list(range(len(graph.inputs)))
    outs = list(range(len(graph.inputs), len(graph.inputs) + len(graph.outputs)))
    for i, v in zip(ins + outs, list(graph.inputs) + list(graph.outputs)):
        types[i] = (tuple(int(d) for d in v.type.shape), v.type.dtype.str)
    spec = KernelSpec(ins, outs, [("c", "kernel", ins, outs)], {}, code, "llm", label, types)
    try:
        return label, {"kind": "c", "spec": spec, "so_path": compile_c(code)}
    except CompileError as e:
        return label, {"kind": "error", "reason": str(e)}
