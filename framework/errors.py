"""Typed errors: every failure caused by user input is a MsgxError subclass that names the culprit."""


class MsgxError(Exception):
    """Base class of every error msgx raises on purpose."""


class ModelError(MsgxError):
    """The model is malformed: unparsable bytes, cycles, dangling values, bad external data."""


class UnsupportedOpError(MsgxError):
    """No kernel is registered for an op in the model's opset."""

    def __init__(self, op: str, domain: str = "", opset: int | None = None, node: str = "", why: str = ""):
        self.op, self.domain, self.opset, self.node = op, domain, opset, node
        where = f" (node {node!r})" if node else ""
        dom = domain or "ai.onnx"
        extra = f": {why}" if why else ""
        super().__init__(f"unsupported op {dom}::{op} at opset {opset}{where}{extra}")


class ShapeError(MsgxError):
    """Shapes or dtypes inside the graph are inconsistent."""


class InputError(MsgxError):
    """A feed passed to run() does not match the model's inputs."""


class InputNameError(InputError):
    """A feed names an input the model does not have, or misses a required one."""


class InputTypeError(InputError):
    """A feed has the wrong dtype."""


class InputShapeError(InputError):
    """A feed has the wrong rank or a wrong static dimension."""


class KernelError(MsgxError):
    """A kernel failed while running a node; names the node and op."""


class ContextError(MsgxError):
    """Invalid option passed to set_context or a session (mode, jit_level, flags)."""


class GradError(MsgxError):
    """Autograd or training API misuse: a non-scalar output without sensitivity, a weight the function does
    not use, a traced tensor read before the graph runs."""


class ArgumentError(MsgxError, ValueError):
    """A layer or loss got an argument outside its valid set (an unknown mode or name, a probability out of
    range, a class index past the number of classes). A ValueError too, as MindSpore raises for these."""
