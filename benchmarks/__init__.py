"""Benchmarks: one harness (harness.py), peers (peers.py) and suites; `python -m benchmarks models`."""

import os

# OpenBLAS's worker threads spin for about 0.1 s after each threaded call (its THREAD_TIMEOUT, 2^28 cycles) and
# took half of a 2-core machine from whatever ran next: in the models suite at 2 threads, after our rounds
# (a classifier's Gemm on numpy's BLAS) onnxruntime's ResNet-50 took 41 ms instead of 21, and after its own
# rounds ours 43 instead of 35. 2^4 cycles (the minimum) puts them to sleep at once, as peers.ort_session
# turns onnxruntime's spinning off. OpenBLAS reads it when it loads, so this is set before anything imports
# numpy (`python -m benchmarks`, and the suites `msgx bench` and the report start); a user's setting wins.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
