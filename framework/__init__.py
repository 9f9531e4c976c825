"""msgx framework: IR, op registry, ONNX frontend, passes, executors and the session API."""
from . import allocator
from .context import GRAPH_MODE, PYNATIVE_MODE, get_context, set_context
from .errors import MsgxError
from .session import InferenceSession, NodeArg
from .tensor import Parameter, Tensor
from . import nn, ops
from .api import grad, jit, value_and_grad
from .onnx_cell import export, load_onnx
from .custom_ops import register_custom_op

allocator.tune()  # large intermediates reuse heap memory instead of page-faulting each run

__all__ = ["GRAPH_MODE", "PYNATIVE_MODE", "InferenceSession", "MsgxError", "NodeArg", "get_context",
           "set_context", "Tensor", "Parameter", "nn", "ops", "grad", "value_and_grad", "jit", "load_onnx",
           "export", "register_custom_op"]
