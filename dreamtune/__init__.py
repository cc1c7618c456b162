"""dreamtune: personalize text-to-image diffusion models (see README.md)."""

import logging as _logging

# torchao (the quantization library) and bitsandbytes warn at import that its CUDA kernels are missing on a CPU
# machine, and torch that torchao registers an enum twice: noise on every command's stderr
_logging.getLogger("torchao").setLevel(_logging.ERROR)
_logging.getLogger("torch.utils._pytree").setLevel(_logging.ERROR)
_logging.getLogger("bitsandbytes").setLevel(
    _logging.ERROR
)  # 8-bit AdamW: a CPU 4-bit kernel it will not use is missing
