"""Optimizers (SGD, Momentum, Adam, AdamWeightDecay) and learning-rate schedules. The step is separate from
gradient computation (`optimizer(grads)`), and every update is ops on Tensors, so under `jit` the updates
trace into the training graph (one fused elementwise kernel per parameter at O1)."""

from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..errors import GradError, ShapeError
from ..tensor import Parameter, Tensor
from .cell import Cell


class LearningRateSchedule(Cell):
    """lr = construct(global_step): a float32 scalar Tensor computed from the int step (in the graph)."""


class ExponentialDecayLR(LearningRateSchedule):
    def __init__(self, learning_rate: float, decay_rate: float, decay_steps: int, is_stair: bool = False):
        super().__init__()
        self.lr, self.rate, self.steps, self.stair = learning_rate, decay_rate, decay_steps, is_stair

    def construct(self, step):
        p = ops.cast(step, np.float32) / float(self.steps)
        if self.stair:
            p = ops.cast(ops.cast(p, np.int64), np.float32)
        return ops.exp(p * math.log(self.rate)) * self.lr


class CosineDecayLR(LearningRateSchedule):
    def __init__(self, min_lr: float, max_lr: float, decay_steps: int):
        super().__init__()
        self.min_lr, self.max_lr, self.steps = min_lr, max_lr, decay_steps

    def construct(self, step):
        p = ops.minimum(ops.cast(step, np.float32), float(self.steps)) / float(self.steps)
        return (ops.cos(p * math.pi) + 1.0) * (0.5 * (self.max_lr - self.min_lr)) + self.min_lr


class WarmUpLR(LearningRateSchedule):
    def __init__(self, learning_rate: float, warmup_steps: int):
        super().__init__()
        self.lr, self.steps = learning_rate, warmup_steps

    def construct(self, step):
        return ops.minimum(ops.cast(step, np.float32) + 1.0, float(self.steps)) * (self.lr / self.steps)


class Optimizer(Cell):
    """`learning_rate`: a float, a list/array of per-step values (the last repeats), or a
    LearningRateSchedule. `weight_decay` is L2 added to the gradient (decoupled in AdamWeightDecay)."""

    def __init__(self, learning_rate, parameters, weight_decay: float = 0.0):
        super().__init__()
        self.parameters = tuple(p for p in parameters)
        if not self.parameters or not all(isinstance(p, Parameter) for p in self.parameters):
            raise GradError("an optimizer needs a non-empty list of Parameters (net.trainable_params())")
        self.weight_decay = weight_decay
        self.global_step = Parameter(np.zeros((), np.int64), "global_step", requires_grad=False)
        if isinstance(learning_rate, LearningRateSchedule):
            self.lr_schedule = learning_rate
            self.lr_table = None
        elif isinstance(learning_rate, (list, tuple, np.ndarray)):
            self.lr_schedule, self.lr_table = None, np.asarray(learning_rate, np.float32).reshape(-1)
        else:
            self.lr_schedule, self.lr_table = None, None
            self.learning_rate = Parameter(
                np.array(learning_rate, np.float32), "learning_rate", requires_grad=False
            )

    def _state(self, tag: str, init: float = 0.0) -> list[Parameter]:
        """One state Parameter per optimized parameter, named `<tag>.<parameter name>` as in MindSpore.
        They are registered with the cell (not only kept in the returned list) so that parameters_and_names,
        and so save_checkpoint / load_param_into_net, include them: a resumed run needs the moments as well as
        the beta powers and global_step, else it restarts from zero moments and diverges."""
        states = []
        for p in self.parameters:
            key = f"{tag}.{p.name}"
            # Parameters created outside a Cell can share a name (two standalone layers' 'weight'); a suffix
            # keeps one checkpoint entry per state instead of silently dropping one of them
            n = 1
            while key in self._params:
                key, n = f"{tag}.{p.name}.{n}", n + 1
            state = Parameter(np.full(p.shape, init, p.dtype), key, requires_grad=False)
            self._params[key] = state
            state.name = f"{self._scope}{key}"  # as Cell.__setattr__ names an attribute's Parameter
            states.append(state)
        return states

    def get_lr(self) -> Tensor:
        """This step's learning rate (a scalar Tensor); advances global_step."""
        step = self.global_step
        if self.lr_schedule is not None:
            lr = self.lr_schedule(step)
        elif self.lr_table is not None:
            idx = ops.minimum(step, len(self.lr_table) - 1)
            lr = ops.gather(Tensor(self.lr_table), idx)
        else:
            lr = self.learning_rate
        ops.assign(self.global_step, step + 1)
        return lr

    def construct(self, grads):
        grads = tuple(grads)
        if len(grads) != len(self.parameters):
            raise GradError(
                f"{type(self).__name__}: got {len(grads)} gradients for {len(self.parameters)} parameters"
            )
        for p, g in zip(self.parameters, grads):
            if tuple(g.shape) != tuple(p.shape):
                raise ShapeError(
                    f"{type(self).__name__}: gradient of shape {tuple(g.shape)} for parameter "
                    f"{p.name!r} of shape {tuple(p.shape)}"
                )
        lr = self.get_lr()
        for i, (p, g) in enumerate(zip(self.parameters, grads)):
            if self.weight_decay and not isinstance(self, AdamWeightDecay):
                g = g + p * self.weight_decay
            self.update(i, p, g, lr)
        return True

    def update(self, i: int, p: Parameter, g: Tensor, lr: Tensor) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """p -= lr * (g + momentum * velocity) (nesterov) or p -= lr * velocity; plain SGD when momentum=0."""

    def __init__(
        self,
        params,
        learning_rate=0.1,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ):
        super().__init__(learning_rate, params, weight_decay)
        self.momentum, self.nesterov = momentum, nesterov
        self.moments = self._state("moments") if momentum else None

    def update(self, i, p, g, lr):
        if not self.momentum:
            ops.assign(p, p - g * lr)
            return
        v = self.moments[i] * self.momentum + g
        ops.assign(self.moments[i], v)
        ops.assign(p, p - (g + v * self.momentum if self.nesterov else v) * lr)


class Momentum(SGD):
    def __init__(
        self, params, learning_rate, momentum: float, weight_decay: float = 0.0, use_nesterov: bool = False
    ):
        super().__init__(params, learning_rate, momentum, weight_decay, use_nesterov)


class Adam(Optimizer):
    """Adam with bias correction through beta powers kept as state (as MindSpore does)."""

    def __init__(
        self,
        params,
        learning_rate=1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        super().__init__(learning_rate, params, weight_decay)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.moment1, self.moment2 = self._state("moment1"), self._state("moment2")
        self.beta1_power = Parameter(np.ones((), np.float32), "beta1_power", requires_grad=False)
        self.beta2_power = Parameter(np.ones((), np.float32), "beta2_power", requires_grad=False)

    def construct(self, grads):
        b1p, b2p = self.beta1_power * self.beta1, self.beta2_power * self.beta2
        ops.assign(self.beta1_power, b1p)
        ops.assign(self.beta2_power, b2p)
        self._scale = ops.sqrt(1.0 - b2p) / (1.0 - b1p)
        return super().construct(grads)

    def _moments(self, i, g):
        """Update and return the first and second moment estimates of parameter i."""
        m = self.moment1[i] * self.beta1 + g * (1.0 - self.beta1)
        v = self.moment2[i] * self.beta2 + g * g * (1.0 - self.beta2)
        ops.assign(self.moment1[i], m)
        ops.assign(self.moment2[i], v)
        return m, v

    def update(self, i, p, g, lr):
        m, v = self._moments(i, g)
        ops.assign(p, p - m / (ops.sqrt(v) + self.eps) * (lr * self._scale))


class AdamWeightDecay(Adam):
    """AdamW: decoupled weight decay p -= lr * wd * p, no bias correction (MindSpore's AdamWeightDecay)."""

    def __init__(
        self,
        params,
        learning_rate=1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
    ):
        super().__init__(params, learning_rate, beta1, beta2, eps, weight_decay)

    def update(self, i, p, g, lr):
        m, v = self._moments(i, g)
        step = m / (ops.sqrt(v) + self.eps)
        if self.weight_decay:
            step = step + p * self.weight_decay
        ops.assign(p, p - step * lr)

    def construct(self, grads):
        return Optimizer.construct(self, grads)
