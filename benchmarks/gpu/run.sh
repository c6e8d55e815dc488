#!/usr/bin/env bash
# The full-size SGMA measurement on the GPU machine, in one command and 8 minutes:
#
#   make device-wheels                      # here, once: keras & co. as wheels in .whl/
#   bash benchmarks/gpu/run.sh              # there (the device tool: carry [".whl"])
#   bash benchmarks/gpu/run.sh --dry-run    # anywhere: tiny model on the CPU, < 1 minute
#
# Installs the carried wheels into a temporary site folder (that machine has Python 3.12,
# JAX and PyTorch with CUDA, no Keras, no TensorFlow, no network), checks the GPU, then runs
# benchmarks/gpu/full_size.py, which writes gpu_benchmark.json and gpu_benchmark.md into
# $OUT (default results/gpu). Extra arguments go to full_size.py. PYTHON picks the
# interpreter (default python3). The whole run is cut at TOTAL_S seconds (default 480).
# Keras is checked under JAX: its default backend, TensorFlow, is not on that machine.
set -u
START=$SECONDS
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1
PY=${PYTHON:-python3}
TOTAL_S=${TOTAL_S:-480}
export OUT=${OUT:-$ROOT/results/gpu}
mkdir -p "$OUT"
export SGMA_GPU_COMMAND="bash benchmarks/gpu/run.sh $*"
DRY=0
for arg in "$@"; do [ "$arg" = "--dry-run" ] && DRY=1; done

if [ "$DRY" = 0 ]; then
    if ls .whl/*.whl >/dev/null 2>&1; then
        SITE=$(mktemp -d /tmp/sgma_site.XXXXXX)
        echo "== installing $(ls .whl/*.whl | wc -l) carried wheels into $SITE"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$SITE" .whl/*.whl || { echo "wheel install failed"; exit 1; }
        export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    else
        echo "== no .whl/ folder (run 'make device-wheels' here and carry .whl); using $PY as is"
    fi
    echo "== GPU"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm \
        --format=csv || echo "nvidia-smi failed"
    timeout 90 "$PY" -c "import jax; print('jax', jax.__version__, jax.devices())" \
        || echo "jax sees no device (continuing: each measurement records its own error)"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
KERAS_BACKEND=jax "$PY" -c "import keras; print('keras', keras.__version__, 'from', keras.__file__)" \
    || { echo "keras is not importable"; exit 1; }

LEFT=$((TOTAL_S - (SECONDS - START) - 15))  # 15 s for the Python start and the final write
echo "== benchmarks/gpu/full_size.py, ${LEFT} s"
timeout --kill-after=5 $((LEFT + 10)) "$PY" benchmarks/gpu/full_size.py --budget "$LEFT" "$@" \
    2>&1 | tee "$OUT/run.log"
exit "${PIPESTATUS[0]}"
