"""Programs run under mpirun by test_communication.py (one case per invocation)."""
import os
import signal
import sys
import time

import numpy as np

from framework import communication as comm


def collectives():
    rank, size = comm.get_rank(), comm.get_group_size()
    x = np.arange(6, dtype=np.float32).reshape(2, 3) + rank
    ranks = np.arange(size)
    np.testing.assert_array_equal(comm.all_reduce(x), size * np.arange(6).reshape(2, 3) + ranks.sum())
    np.testing.assert_array_equal(comm.all_reduce(x, op="max"), np.arange(6).reshape(2, 3) + size - 1)
    np.testing.assert_array_equal(comm.broadcast(x, root=size - 1), np.arange(6).reshape(2, 3) + size - 1)
    gathered = comm.all_gather(np.full((1, 2), rank, np.int64))
    np.testing.assert_array_equal(gathered, np.repeat(ranks, 2).reshape(size, 2))
    comm.barrier()
    # three dtypes and a tiny bucket so several buckets are in flight at once
    grads = [np.full((3, 4), rank, np.float64), np.full(5, 2.0 * rank, np.float32), np.full((2, 2), rank, np.float64)]
    mean = comm.DistributedGradReducer(bucket_mb=16 / 2**20)(iter(grads))
    avg = ranks.mean()
    for got, g in zip(mean, grads):
        assert got.shape == g.shape and got.dtype == g.dtype
        np.testing.assert_allclose(got, np.full(g.shape, avg * (2.0 if g.dtype == np.float32 else 1.0)))
    print(f"rank {rank} of {size}: OK", flush=True)


def rank_dies():
    comm.barrier()
    if comm.get_rank() == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    comm.all_reduce(np.ones(4))
    print("unreachable: the all_reduce completed without rank 1", flush=True)


def rank_hangs():
    comm.barrier()
    if comm.get_rank() == 1:
        time.sleep(600)
    comm.all_reduce(np.ones(4))


if __name__ == "__main__":
    comm.init(timeout=float(os.environ.get("WORKER_TIMEOUT", 60)))
    {"collectives": collectives, "dies": rank_dies, "hangs": rank_hangs}[sys.argv[1]]()
