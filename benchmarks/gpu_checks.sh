#!/usr/bin/env bash
# The GPU checks of a lent CUDA machine, in order of what matters most: build the C extensions, the GPU tests,
# host time per call (benchmarks/gpu_host.py), softmax/LayerNorm over 4096x32000 rows, then the GPU ops
# suite. Tables and logs go to $OUT (default ./gpu_out). Every step's timeout is cut to what is left of
# BUDGET_S seconds (default 560), so the whole run ends inside a device call's limit. Packages the machine
# lacks (islpy) travel as wheels in .whl (see ../.library/device/README.md) and are installed first.
set -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
END=$((SECONDS + ${BUDGET_S:-560}))
left() { local l=$((END - SECONDS)); [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl || exit 1
  export PYTHONPATH=.:/tmp/site
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
date -u +%H:%M:%S
python3 setup.py build_ext --inplace > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
date -u +%H:%M:%S
timeout "$(left 220)" python3 -m pytest -q -p no:cacheprovider --durations=8 tests/dvm_runtime/test_gpu_chain.py \
  tests/dvm_runtime/test_gpu.py tests/dvm_runtime/test_gpu_rows.py 2>&1 | tee "$OUT/tests.log" | tail -45
date -u +%H:%M:%S
timeout "$(left 100)" python3 -m benchmarks.gpu_host 2>&1 | tee "$OUT/host.log" | tail -60
date -u +%H:%M:%S
timeout "$(left 100)" python3 -m benchmarks gpu --parts ops --sizes 4096x32000 --chains softmax,layer_norm \
  --out "$OUT/vocab.jsonl" --md "$OUT/vocab.md" 2>&1 | tail -15
date -u +%H:%M:%S
timeout "$(left 300)" python3 -m benchmarks gpu --parts ops --out "$OUT/ops.jsonl" --md "$OUT/ops.md" 2>&1 | tail -40
date -u +%H:%M:%S
