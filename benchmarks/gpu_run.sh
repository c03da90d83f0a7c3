#!/usr/bin/env bash
# On a bare CUDA machine, after the calls of `python -m benchmarks.gpu_check --pack .gpu` copied
# their parts to /tmp/gpu: join the parts, install the wheels, run the check.
#   bash benchmarks/gpu_run.sh --part shape        (then, in a second command, --part full)
set -euo pipefail
cd "$(dirname "$0")/.."
G=/tmp/gpu
mkdir -p "$G/files" "$G/data/ml-1m-collm"
for first in "$G"/*.part000000000000; do       # one per original file
    name=$(basename "$first" .part000000000000)
    [ -f "$G/files/$name" ] || cat $(ls "$G/$name".part* | sort) > "$G/files/$name"
done
mv -f "$G"/files/ml-1m-collm.* "$G/data/ml-1m-collm/" 2>/dev/null || true
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$G"/files/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
OUT_DIR=${OUT:-$G/out}
mkdir -p "$OUT_DIR"
python3 -m benchmarks.gpu_check --gguf "$G/files/SmolLM2-135M-Instruct.Q4_1.gguf" --data-path "$G/data/" --out "$OUT_DIR" "$@" 2>&1 | tee -a "$OUT_DIR/log.txt"
