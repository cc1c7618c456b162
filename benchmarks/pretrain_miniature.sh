#!/usr/bin/env bash
# Build the miniature from scratch and print each stage's wall time:
#   bash benchmarks/pretrain_miniature.sh [ROOT]   (default runs/miniature; rerun to resume)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${1:-runs/miniature}
BIN=${BIN:-.venv/bin}
for stage in clip clip_image vae unet; do
  start=$(date +%s)
  "$BIN/dreamtune" pretrain "configs/miniature/$stage.yaml" "root=$ROOT"
  echo "stage $stage: $(( $(date +%s) - start )) s wall"
done
start=$(date +%s)
"$BIN/dreamtune" pretrain assemble --root "$ROOT"
echo "stage assemble: $(( $(date +%s) - start )) s wall"
