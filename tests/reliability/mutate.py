"""Hostile models: mutations of valid models, each of which msgx must refuse with a MsgxError.

`mutation(index, seed, workdir)` builds mutation number `index` deterministically (category by index, details
from the seed); `hostile.run_hostile` runs them under time and memory bounds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .graphs import RandomChooser, build_case

STRICT = (
    "wrong_tensor_size",
    "huge_dims",
    "negative_dims",
    "cycle",
    "missing_initializer",
    "recursive_function",
    "deep_nesting",
    "external_data",
    "strings_for_numbers",
    "bad_structure",
)
CATEGORIES = ("bitflip", "truncate") + STRICT  # bit flips and cuts may leave a valid model: it must then run


def _base(rng) -> tuple[onnx.ModelProto, dict]:
    """A valid model with a feed: a small random graph, or the bundled MLP."""
    if rng.integers(0, 4) == 0:
        import onnx_models

        return onnx_models.build("mlp"), onnx_models.example_inputs("mlp", {"batch": 2})
    while True:
        case = build_case(RandomChooser(int(rng.integers(0, 2**31))), max_steps=6)
        if case.model.graph.initializer or rng.integers(0, 2):
            return case.model, case.feeds[0]


def _model(nodes, inputs, outputs, inits=(), functions=(), opset=18) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "hostile", inputs, outputs, list(inits))
    m = helper.make_model(
        g,
        opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("local", 1)],
        functions=list(functions),
    )
    m.ir_version = 8
    return m


def _vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


X = [_vi("x", [2, 3])]
Y = [_vi("y", None)]
FEED = {"x": np.ones((2, 3), np.float32)}


def _tensor(name, dims, raw=b"", dtype=TensorProto.FLOAT) -> TensorProto:
    """A tensor proto with whatever dims we say (helper.make_tensor would refuse the hostile ones)."""
    t = TensorProto(name=name, data_type=dtype, raw_data=raw)
    t.dims.extend(dims)
    return t


def _pick_init(rng, m):
    used = {i for n in m.graph.node for i in n.input}
    inits = [t for t in m.graph.initializer if t.name in used]
    return inits[int(rng.integers(0, len(inits)))] if inits else None


def _with_const_op(op, shape_arr):
    """x -> Add(x, reduce(op(shape)))-like graph whose op reads a constant shape operand."""
    c = numpy_helper.from_array(np.asarray(shape_arr, np.int64), "s")
    nodes = [helper.make_node(op, ["s"] if op == "ConstantOfShape" else ["x", "s"], ["t"])]
    nodes.append(helper.make_node("ReduceSum", ["t"], ["r"], keepdims=0))
    nodes.append(helper.make_node("Add", ["x", "r"], ["y"]))
    return _model(nodes, X, Y, [c])


def m_bitflip(rng, base, feed, _):
    data = bytearray(base.SerializeToString())
    for _ in range(int(rng.integers(1, 9))):
        i = int(rng.integers(0, len(data) * 8))
        data[i // 8] ^= 1 << (i % 8)
    return bytes(data), feed


def m_truncate(rng, base, feed, _):
    data = base.SerializeToString()
    return data[: int(rng.integers(0, len(data)))], feed


def m_wrong_tensor_size(rng, base, feed, _):
    t = _pick_init(rng, base)
    if t is None:
        return (
            _model(
                [helper.make_node("Add", ["x", "w"], ["y"])],
                X,
                Y,
                [_tensor("w", [3], np.ones(2, np.float32).tobytes())],
            ),
            FEED,
        )  # 2 floats for 3
    arr = numpy_helper.to_array(t)
    how = int(rng.integers(0, 3))
    if how == 0:  # declared dims larger than the data
        t.dims[:] = list(arr.shape or (1,))[:-1] + [
            (arr.shape[-1] if arr.ndim else 1) + int(rng.integers(1, 5))
        ]
    elif how == 1:  # raw bytes cut short
        t.raw_data = numpy_helper.from_array(arr).raw_data[:-1] if arr.size else b"\x01"
        if not arr.size:
            t.dims[:] = [0]
    else:  # typed field with the wrong count
        t.ClearField("raw_data")
        t.dims[:] = [max(2, arr.size + 1)]
        t.data_type = TensorProto.INT64
        t.int64_data[:] = [1]
    return base, feed


def m_huge_dims(rng, base, feed, _):
    big = int(rng.choice([2**31, 2**40, 2**62, 2**63 - 1]))
    how = int(rng.integers(0, 6))
    if how == 0:  # an initializer declaring astronomically many elements
        t = _tensor("w", [big, big], b"\0" * 8)
        return _model([helper.make_node("Add", ["x", "w"], ["y"])], X, Y, [t]), FEED
    if how == 1:  # the input itself declares a huge dim; the feed cannot match
        return _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [2, big])], Y), FEED
    if how == 2:
        return _with_const_op("ConstantOfShape", [big, 2**20, 2**20]), FEED
    if how == 3:
        return _with_const_op("Expand", [2**20, 2**20, 2, 3]), FEED  # valid, but 2**43 elements
    if how == 4:
        return _with_const_op("Reshape", [big, -1]), FEED
    return _with_const_op("Tile", [2**30, 2**30]), FEED


def m_negative_dims(rng, base, feed, _):
    how = int(rng.integers(0, 5))
    neg = -int(rng.integers(1, 2**40))
    if how == 0:
        t = _tensor("w", [neg, 3], b"\0" * 12)
        return _model([helper.make_node("Add", ["x", "w"], ["y"])], X, Y, [t]), FEED
    if how == 1:
        m = _model([helper.make_node("Relu", ["x"], ["y"])], X, Y)
        m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = neg
        return m, FEED
    if how == 2:
        return _with_const_op("ConstantOfShape", [2, neg]), FEED
    if how == 3:
        return _with_const_op("Reshape", [neg, -1]), FEED
    return _with_const_op("Expand", [neg, 3]), FEED


def m_cycle(rng, base, feed, _):
    nodes = base.graph.node
    if len(nodes) < 1 or not nodes[0].input:
        return (
            _model(
                [
                    helper.make_node("Relu", ["b"], ["a"]),
                    helper.make_node("Relu", ["a"], ["b"]),
                    helper.make_node("Add", ["x", "b"], ["y"]),
                ],
                X,
                Y,
            ),
            FEED,
        )
    i = int(rng.integers(0, len(nodes)))
    reach, later = set(nodes[i].output), [i]  # node i and the nodes that (transitively) read its outputs
    for j in range(i + 1, len(nodes)):
        if reach & set(nodes[j].input):
            reach |= set(nodes[j].output)
            later.append(j)
    j = later[int(rng.integers(0, len(later)))]
    nodes[i].input[0] = nodes[j].output[0]  # reads its own output or a descendant's: a cycle
    return base, feed


def m_missing_initializer(rng, base, feed, _):
    t = _pick_init(rng, base)
    if t is None:
        return _model([helper.make_node("Add", ["x", "nowhere"], ["y"])], X, Y), FEED
    base.graph.initializer.remove(t)
    return base, feed


def m_recursive_function(rng, base, feed, _):
    depth = int(rng.integers(1, 4))  # F0 -> F1 -> ... -> F0
    fns = [
        helper.make_function(
            "local",
            f"F{k}",
            ["a"],
            ["b"],
            [helper.make_node(f"F{(k + 1) % depth}", ["a"], ["b"], domain="local")],
            [helper.make_opsetid("", 18), helper.make_opsetid("local", 1)],
        )
        for k in range(depth)
    ]
    return _model([helper.make_node("F0", ["x"], ["y"], domain="local")], X, Y, functions=fns), FEED


def _nested_if(depth: int) -> onnx.ModelProto:
    cond = numpy_helper.from_array(np.array(True), "c")
    leaf = helper.make_graph([helper.make_node("Relu", ["x"], ["e"])], "leaf", [], [_vi("e", None)])
    body = helper.make_graph([helper.make_node("Relu", ["x"], ["o0"])], "g0", [], [_vi("o0", None)])
    for k in range(1, depth):
        body = helper.make_graph(
            [helper.make_node("If", ["c"], [f"o{k}"], then_branch=body, else_branch=leaf)],
            f"g{k}",
            [],
            [_vi(f"o{k}", None)],
        )
    return _model([helper.make_node("If", ["c"], ["y"], then_branch=body, else_branch=leaf)], X, Y, [cond])


def m_deep_nesting(rng, base, feed, _):
    # as bytes: Python's protobuf cannot even build a ModelProto nested 100 deep, so the parser meets it first
    return _wrap_bytes(_nested_if(2), int(rng.choice([200, 1000, 5000, 50000]))), FEED


def _wrap_bytes(m: onnx.ModelProto, extra: int) -> bytes:
    """The model with its graph nested `extra` more If levels deep, written as protobuf bytes directly."""

    def tag(num: int) -> bytes:
        return _varint(num << 3 | 2)

    def field_bytes(num: int, payload: bytes) -> bytes:
        return tag(num) + _varint(len(payload)) + payload

    # GraphProto.node(1) -> NodeProto.attribute(5) -> AttributeProto.g(6) -> GraphProto ...
    head_of_node = field_bytes(1, b"c") + field_bytes(2, b"y") + field_bytes(4, b"If")
    head_of_attr = field_bytes(1, b"then_branch") + _varint(20 << 3) + _varint(5)
    tail = field_bytes(2, b"w") + field_bytes(12, field_bytes(1, b"y"))  # name, one output "y"
    outer = b"".join(field_bytes(5, t.SerializeToString()) for t in m.graph.initializer) + b"".join(
        field_bytes(11, v.SerializeToString()) for v in m.graph.input
    )  # the outermost graph's c and x
    inner = onnx.GraphProto()
    inner.CopyFrom(m.graph)
    inner.ClearField("input")
    inner.ClearField("initializer")
    core = inner.SerializeToString()
    size, prefixes = len(core), []
    for level in range(extra):
        attr_len = len(head_of_attr) + len(tag(6)) + len(_varint(size)) + size
        node_len = len(head_of_node) + len(tag(5)) + len(_varint(attr_len)) + attr_len
        prefixes.append(
            tag(1)
            + _varint(node_len)
            + head_of_node
            + tag(5)
            + _varint(attr_len)
            + head_of_attr
            + tag(6)
            + _varint(size)
        )
        size = (
            len(tag(1))
            + len(_varint(node_len))
            + node_len
            + len(tail)
            + (len(outer) if level == extra - 1 else 0)
        )
    head = onnx.ModelProto()
    head.CopyFrom(m)
    head.ClearField("graph")
    return (
        head.SerializeToString()
        + tag(7)
        + _varint(size)
        + b"".join(reversed(prefixes))
        + core
        + tail * extra
        + outer
    )


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def m_external_data(rng, base, feed, workdir: Path):
    folder = workdir / "model"
    folder.mkdir(parents=True, exist_ok=True)
    (workdir / "outside.bin").write_bytes(b"\0" * 64)
    (folder / "data.bin").write_bytes(b"\0" * 8)
    t = _tensor("w", [3])
    how = int(rng.integers(0, 7))
    loc, extra = {
        0: ("../outside.bin", {}),
        1: (str(workdir / "outside.bin"), {}),
        2: ("missing.bin", {}),
        3: ("data.bin", {"offset": "4096"}),
        4: ("data.bin", {"length": "12"}),
        5: ("link.bin", {}),
        6: ("data.bin", {"offset": "-8", "length": "zz"}),
    }[how]
    if how == 5:  # a link inside the folder pointing outside it
        link = folder / "link.bin"
        if not link.exists():
            link.symlink_to(workdir / "outside.bin")
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in {"location": loc, **extra}.items():
        t.external_data.add(key=k, value=v)
    m = _model([helper.make_node("Add", ["x", "w"], ["y"])], X, Y, [t])
    path = folder / "m.onnx"
    path.write_bytes(m.SerializeToString())
    return str(path), FEED


def m_strings_for_numbers(rng, base, feed, _):
    how = int(rng.integers(0, 6))
    s = helper.make_tensor("s", TensorProto.STRING, [2], [b"2", b"3"])
    if how == 0:  # a string tensor where Reshape wants int64
        return _model([helper.make_node("Reshape", ["x", "s"], ["y"])], X, Y, [s]), FEED
    if how == 1:
        return _model([helper.make_node("Add", ["x", "s"], ["y"])], X, Y, [s]), FEED
    if how == 2:  # a string attribute where an int list belongs
        n = helper.make_node("Transpose", ["x"], ["y"])
        n.attribute.append(helper.make_attribute("perm", "1,0"))
        return _model([n], X, Y), FEED
    if how == 3:
        n = helper.make_node("Concat", ["x", "x"], ["y"])
        n.attribute.append(helper.make_attribute("axis", "one"))
        return _model([n], X, Y), FEED
    if how == 4:
        n = helper.make_node("Cast", ["x"], ["y"])
        n.attribute.append(helper.make_attribute("to", "float"))
        return _model([n], X, Y), FEED
    return _model([helper.make_node("Slice", ["x", "s", "s"], ["y"])], X, Y, [s]), FEED


def m_bad_structure(rng, base, feed, _):
    how = int(rng.integers(0, 6))
    if how == 0:  # an element type that does not exist
        m = _model([helper.make_node("Relu", ["x"], ["y"])], X, Y)
        m.graph.input[0].type.tensor_type.elem_type = 999
        return m, FEED
    if how == 1:  # too few inputs
        return _model([helper.make_node("Add", ["x"], ["y"])], X, Y), FEED
    if how == 2:  # too many inputs
        return _model([helper.make_node("Relu", ["x", "x", "x"], ["y"])], X, Y), FEED
    if how == 3:  # one value produced twice
        return (
            _model([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["y"])], X, Y),
            FEED,
        )
    if how == 4:  # an output nothing produces
        return _model([helper.make_node("Relu", ["x"], ["z"])], X, Y), FEED
    return _model([helper.make_node("", ["x"], ["y"])], X, Y), FEED


MUTATORS = {name: globals()[f"m_{name}"] for name in CATEGORIES}


def mutation(index: int, seed: int, workdir: Path):
    """(category, model as bytes/path/ModelProto, feed) for mutation number `index`."""
    category = CATEGORIES[index % len(CATEGORIES)]
    rng = np.random.default_rng([seed, index])
    base, feed = _base(rng)
    model, feed = MUTATORS[category](rng, base, feed, workdir / str(index))
    return category, model, feed
