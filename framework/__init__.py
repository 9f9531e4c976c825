"""msgx framework: IR, op registry, ONNX frontend, passes, executors and the session API."""
from .context import GRAPH_MODE, PYNATIVE_MODE, get_context, set_context
from .errors import MsgxError
from .session import InferenceSession, NodeArg

__all__ = ["GRAPH_MODE", "PYNATIVE_MODE", "InferenceSession", "MsgxError", "NodeArg", "get_context",
           "set_context"]
