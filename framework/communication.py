"""Collective communication for data-parallel training, over MPI (mpi4py), in MindSpore's naming.

Launch with `mpirun -n 2 python train.py`; the script calls `init()` first. Every blocking collective waits
with a deadline (`init(timeout=...)`, default `$MSGX_COMM_TIMEOUT` or 120 s): a rank that died or hung turns
into a `CommunicationError` on the others instead of a hang, and an uncaught error on any rank aborts the
whole job (mpirun then stops every rank) rather than leaving the others blocked in MPI_Finalize.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

from .errors import MsgxError


class CommunicationError(MsgxError):
    """MPI is missing, init() was not called, or a collective failed or timed out (a rank died or hung)."""


_state: dict = {"comm": None, "timeout": 120.0}
_OPS = ("sum", "max", "min", "prod")


def init(backend_name: str = "mpi", timeout: float | None = None) -> None:
    """Join the job started by mpirun (a single process without mpirun is a job of one)."""
    if backend_name != "mpi":
        raise CommunicationError(f"backend {backend_name!r} is not available; msgx communicates over 'mpi'")
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise CommunicationError("data-parallel training needs mpi4py and an MPI library: "
                                 "apt-get install openmpi-bin libopenmpi-dev && pip install mpi4py") from e
    _state["comm"] = MPI.COMM_WORLD
    _state["timeout"] = float(timeout if timeout is not None else os.environ.get("MSGX_COMM_TIMEOUT", 120))
    if MPI.COMM_WORLD.Get_size() > 1 and not getattr(sys.excepthook, "_msgx_abort", False):
        sys.excepthook = _abort_on_uncaught(sys.excepthook)


def _abort_on_uncaught(previous):
    def hook(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.flush()
        _state["comm"].Abort(1)  # the other ranks would otherwise wait for this one forever
    hook._msgx_abort = True
    return hook


def _comm():
    if _state["comm"] is None:
        raise CommunicationError("framework.communication.init() must be called before any collective")
    return _state["comm"]


def get_rank() -> int:
    return _comm().Get_rank()


def get_group_size() -> int:
    return _comm().Get_size()


def is_initialized() -> bool:
    return _state["comm"] is not None


def _wait(request, what: str) -> None:
    """Wait for a non-blocking collective, polling so that a dead or hung peer becomes an error."""
    deadline = time.monotonic() + _state["timeout"]
    pause = 0.0
    while not request.Test():
        if time.monotonic() > deadline:
            comm = _comm()
            raise CommunicationError(
                f"{what} timed out after {_state['timeout']:g} s on rank {comm.Get_rank()} of "
                f"{comm.Get_size()}: another rank died or stopped responding")
        time.sleep(pause)
        pause = min(2e-4, pause * 2 or 1e-5)  # spin briefly, then short naps: a long one would add latency


def _mpi_op(op: str):
    from mpi4py import MPI

    if op not in _OPS:
        raise CommunicationError(f"all_reduce op must be one of {_OPS}, not {op!r}")
    return {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN, "prod": MPI.PROD}[op]


def all_reduce(x, op: str = "sum") -> np.ndarray:
    """The elementwise reduction of `x` over all ranks (every rank gets the result)."""
    send = np.ascontiguousarray(np.asarray(x))
    recv = np.empty_like(send)
    _wait(_comm().Iallreduce(send, recv, op=_mpi_op(op)), "all_reduce")
    return recv


def broadcast(x, root: int = 0) -> np.ndarray:
    """Rank `root`'s `x` on every rank (all ranks pass an array of the same shape and dtype)."""
    buf = np.array(x, copy=True, order="C")
    _wait(_comm().Ibcast(buf, root=root), "broadcast")
    return buf


def all_gather(x) -> np.ndarray:
    """Every rank's `x` concatenated along axis 0, in rank order (same shape on every rank)."""
    send = np.ascontiguousarray(np.asarray(x))
    recv = np.empty((get_group_size() * send.shape[0],) + send.shape[1:] if send.ndim else
                    (get_group_size(),), send.dtype)
    _wait(_comm().Iallgather(send, recv), "all_gather")
    return recv


def barrier() -> None:
    _wait(_comm().Ibarrier(), "barrier")


class DistributedGradReducer:
    """Averages gradients over ranks, packed into buckets of about `bucket_mb` MiB.

    A bucket's all-reduce starts as soon as it is full, so when gradients arrive one by one (an iterator
    fed by the backward pass) communication overlaps the rest of the backward computation.
    """

    def __init__(self, mean: bool = True, bucket_mb: float = 4.0):
        self.mean = mean
        self.bucket_bytes = int(bucket_mb * 2**20)

    def __call__(self, grads) -> list[np.ndarray]:
        comm, size = _comm(), get_group_size()
        grads = (np.asarray(g) for g in grads)
        out: list = []
        pending: list = []  # (request, send buffer, result, [(position, shape, start, stop)])
        bucket: list = []

        def launch():
            flat = np.concatenate([out[i].ravel() for i, _ in bucket])
            result = np.empty_like(flat)
            slots, start = [], 0
            for i, shape in bucket:
                n = int(np.prod(shape))
                slots.append((i, shape, start, start + n))
                start += n
            # `flat` stays referenced in `pending`: MPI reads it until the request completes
            pending.append((comm.Iallreduce(flat, result, op=_mpi_op("sum")), flat, result, slots))
            bucket.clear()

        for g in grads:
            if bucket and (g.dtype != out[bucket[0][0]].dtype
                           or sum(out[i].nbytes for i, _ in bucket) + g.nbytes > self.bucket_bytes):
                launch()
            out.append(g)
            bucket.append((len(out) - 1, g.shape))
        if bucket:
            launch()
        for request, _, result, slots in pending:
            _wait(request, "gradient all_reduce")
            if self.mean:
                result /= size
            for i, shape, start, stop in slots:
                out[i] = result[start:stop].reshape(shape)
        return out


class DistributedSampler:
    """Shards each global batch across ranks: rank r gets its contiguous part of every global batch.

    One process with batch size B and n ranks with B/n each therefore see the same samples per step, so
    averaged gradients equal the single-process ones. Shuffled per epoch with a seed shared by all ranks.
    """

    def __init__(self, num_samples: int, global_batch_size: int, shuffle: bool = True, seed: int = 0,
                 rank: int | None = None, group_size: int | None = None):
        self.rank = get_rank() if rank is None else rank
        self.group_size = get_group_size() if group_size is None else group_size
        if global_batch_size % self.group_size:
            raise CommunicationError(f"global batch size {global_batch_size} is not divisible by the "
                                     f"{self.group_size} ranks")
        self.num_samples, self.global_batch_size = num_samples, global_batch_size
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples // self.global_batch_size

    def __iter__(self):
        order = (np.random.default_rng(self.seed + self.epoch).permutation(self.num_samples) if self.shuffle
                 else np.arange(self.num_samples))
        local = self.global_batch_size // self.group_size
        for b in range(len(self)):
            start = b * self.global_batch_size + self.rank * local
            yield order[start:start + local]
