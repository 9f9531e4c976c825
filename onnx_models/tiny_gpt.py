"""Tiny decoder-only transformer laid out the way PyTorch's exporter writes GPT-style graphs."""

from __future__ import annotations

import math

import numpy as np
import onnx

from ._util import FLOAT, INT64, GraphBuilder, tensor_info

VOCAB = 256
D_MODEL = 64
N_HEADS = 4
HEAD_DIM = D_MODEL // N_HEADS
N_LAYERS = 2
D_MLP = 256
N_CTX = 128
DEFAULT_DIMS = {"batch": 2, "seq": 16}


def _linear(g: GraphBuilder, x: str, d_in: int, d_out: int, name: str) -> str:
    w = g.weight(f"{name}.weight", (d_in, d_out), 1.0 / math.sqrt(d_in))
    b = g.weight(f"{name}.bias", (d_out,), 0.02)
    return g.op("Add", [g.op("MatMul", [x, w], f"{name}/MatMul"), b], f"{name}/Add")


def _layer_norm(g: GraphBuilder, x: str, name: str) -> str:
    scale = g.const(f"{name}.weight", 1.0 + g.rng.normal(0.0, 0.05, D_MODEL))
    bias = g.weight(f"{name}.bias", (D_MODEL,), 0.05)
    return g.op("LayerNormalization", [x, scale, bias], name, axis=-1, epsilon=1e-5)


def _attention(g: GraphBuilder, x: str, split_shape: str, mask: str, name: str) -> str:
    def heads(t: str, perm: list[int], tag: str) -> str:
        t = g.op("Reshape", [t, split_shape], f"{name}/{tag}/Reshape")
        return g.op("Transpose", [t], f"{name}/{tag}/Transpose", perm=perm)

    q = heads(_linear(g, x, D_MODEL, D_MODEL, f"{name}.q_proj"), [0, 2, 1, 3], "q")
    # K is transposed straight to [b, h, d, s] so QK^T is a single MatMul, as exporters emit it.
    k = heads(_linear(g, x, D_MODEL, D_MODEL, f"{name}.k_proj"), [0, 2, 3, 1], "k")
    v = heads(_linear(g, x, D_MODEL, D_MODEL, f"{name}.v_proj"), [0, 2, 1, 3], "v")
    scores = g.op("MatMul", [q, k], f"{name}/MatMul_qk")
    scores = g.op("Mul", [scores, g.const(f"{name}.scale", 1.0 / math.sqrt(HEAD_DIM))], f"{name}/Mul_scale")
    scores = g.op("Where", [mask, g.const(f"{name}.mask_value", -1e9), scores], f"{name}/Where_mask")
    probs = g.op("Softmax", [scores], f"{name}/Softmax", axis=-1)
    ctx = g.op("MatMul", [probs, v], f"{name}/MatMul_pv")
    ctx = g.op("Transpose", [ctx], f"{name}/Transpose_out", perm=[0, 2, 1, 3])
    # 0 copies batch/seq from the input, so the merge needs no runtime shape computation.
    merge_shape = g.const(f"{name}.merge_shape", [0, 0, D_MODEL], np.int64)
    ctx = g.op("Reshape", [ctx, merge_shape], f"{name}/Reshape_out")
    return _linear(g, ctx, D_MODEL, D_MODEL, f"{name}.o_proj")


def _gelu(g: GraphBuilder, x: str, name: str) -> str:
    t = g.op("Div", [x, g.const(f"{name}.sqrt2", math.sqrt(2.0))], f"{name}/Div")
    t = g.op("Add", [g.op("Erf", [t], f"{name}/Erf"), g.const(f"{name}.one", 1.0)], f"{name}/Add")
    t = g.op("Mul", [x, t], f"{name}/Mul")
    return g.op("Mul", [t, g.const(f"{name}.half", 0.5)], f"{name}/Mul_half")


def build(*, seed: int = 0) -> onnx.ModelProto:
    """Build the 2-layer, 4-head GPT: ids int64 [batch, seq] -> logits float32 [batch, seq, 256]."""
    g = GraphBuilder(seed)
    shape = g.op("Shape", ["ids"], "Shape_ids")
    batch = g.op("Gather", [shape, g.const("idx0", 0, np.int64)], "Gather_batch", axis=0)
    seq = g.op("Gather", [shape, g.const("idx1", 1, np.int64)], "Gather_seq", axis=0)
    start, delta = g.const("range_start", 0, np.int64), g.const("range_delta", 1, np.int64)
    pos = g.op("Range", [start, seq, delta], "Range_pos")

    axes0 = g.const("axes0", [0], np.int64)
    split_shape = g.op(
        "Concat",
        [
            g.op("Unsqueeze", [batch, axes0], "Unsqueeze_batch"),
            g.op("Unsqueeze", [seq, axes0], "Unsqueeze_seq"),
            g.const("heads_shape", [N_HEADS, HEAD_DIM], np.int64),
        ],
        "Concat_split_shape",
        axis=0,
    )
    # Causal mask from a Range comparison: key position j > query position i is masked.
    mask = g.op(
        "Greater",
        [
            g.op("Unsqueeze", [pos, axes0], "Unsqueeze_key_pos"),
            g.op("Unsqueeze", [pos, g.const("axes1", [1], np.int64)], "Unsqueeze_query_pos"),
        ],
        "Greater_causal",
    )

    wte = g.weight("wte", (VOCAB, D_MODEL), 0.1)
    wpe = g.weight("wpe", (N_CTX, D_MODEL), 0.1)
    tok_emb = g.op("Gather", [wte, "ids"], "Gather_tok")
    x = g.op("Add", [tok_emb, g.op("Gather", [wpe, pos], "Gather_pos")], "Add_emb")

    for i in range(N_LAYERS):
        p = f"h.{i}"
        attn = _attention(g, _layer_norm(g, x, f"{p}.ln_1"), split_shape, mask, f"{p}.attn")
        x = g.op("Add", [x, attn], f"{p}/Add_attn")
        hidden = _linear(g, _layer_norm(g, x, f"{p}.ln_2"), D_MODEL, D_MLP, f"{p}.mlp.fc")
        hidden = _gelu(g, hidden, f"{p}.mlp.gelu")
        x = g.op("Add", [x, _linear(g, hidden, D_MLP, D_MODEL, f"{p}.mlp.proj")], f"{p}/Add_mlp")

    x = _layer_norm(g, x, "ln_f")
    lm_head = g.weight("lm_head.weight", (D_MODEL, VOCAB), 1.0 / math.sqrt(D_MODEL))
    g.op("MatMul", [x, lm_head], "logits")
    return g.model(
        "tiny_gpt",
        [tensor_info("ids", INT64, ["batch", "seq"])],
        [tensor_info("logits", FLOAT, ["batch", "seq", VOCAB])],
        doc=f"Decoder-only transformer: {N_LAYERS} layers, d_model {D_MODEL}, {N_HEADS} heads, "
        f"vocab {VOCAB}.",
    )


def make_inputs(dims: dict[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random token ids in [0, VOCAB)."""
    if dims["seq"] > N_CTX:
        raise ValueError(f"tiny_gpt supports seq <= {N_CTX}, got {dims['seq']}")
    return {"ids": rng.integers(0, VOCAB, size=(dims["batch"], dims["seq"]), dtype=np.int64)}
