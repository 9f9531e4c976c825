"""The op registry and its op families. Importing this package registers every op."""
from .registry import DOMAIN_ALIASES, Ctx, Fusion, OpDef, all_ops, get, lookup, op, register

# registration side effects, one module per op family
from . import elementwise, tensor, cast, sequence  # noqa: E402,F401
from . import nn, conv, norm, rnn, attention  # noqa: E402,F401
from . import math, reduce, quant, signal, misc, control, fused  # noqa: E402,F401

__all__ = ["Ctx", "Fusion", "OpDef", "all_ops", "get", "lookup", "op", "register", "DOMAIN_ALIASES"]
from . import grads_nn, grads_math  # noqa: E402,F401  (gradient rules and kernels for training)
from .functional import *  # noqa: E402,F401,F403  (framework.ops.relu(x), ...: ops on Tensors)
