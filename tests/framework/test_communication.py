"""framework.communication under real mpirun jobs of 2 and 4 ranks on this machine (loopback)."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from framework.communication import CommunicationError, DistributedSampler

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("mpirun") is None,
                                reason="no mpirun: .ci/run installs Debian's openmpi-bin")


def mpirun(n: int, case: str, timeout: float, **env):
    cmd = ["mpirun", "--oversubscribe", "-n", str(n), sys.executable, "-m", "tests.framework.mpi_worker", case]
    environ = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
               "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **env}
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - start


@pytest.mark.parametrize("n", [2, 4])
def test_collectives_and_grad_reducer(n):
    proc, _ = mpirun(n, "collectives", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(line for line in proc.stdout.splitlines() if line.endswith("OK")) == \
        [f"rank {r} of {n}: OK" for r in range(n)]


def test_killed_rank_ends_the_job_quickly():
    proc, seconds = mpirun(2, "dies", timeout=60)
    assert proc.returncode != 0 and "unreachable" not in proc.stdout
    assert seconds < 30, f"job took {seconds:.1f} s to end after a rank was killed"
    assert "rank 1" in proc.stderr or "signal 9" in proc.stderr or "Killed" in proc.stderr, proc.stderr


def test_hung_rank_times_out_with_a_clear_error():
    proc, seconds = mpirun(2, "hangs", timeout=90, WORKER_TIMEOUT="3")
    assert proc.returncode != 0 and seconds < 30
    assert "all_reduce timed out after 3 s on rank 0 of 2" in proc.stderr, proc.stderr


def test_sampler_shards_each_global_batch():
    parts = [list(DistributedSampler(20, 8, seed=3, rank=r, group_size=2)) for r in range(2)]
    whole = list(DistributedSampler(20, 8, seed=3, rank=0, group_size=1))
    assert len(whole) == 2 == len(parts[0])
    for step in range(2):
        np.testing.assert_array_equal(np.concatenate([parts[0][step], parts[1][step]]), whole[step])
    with pytest.raises(CommunicationError, match="not divisible"):
        DistributedSampler(20, 7, rank=0, group_size=2)
