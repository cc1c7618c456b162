"""Exponential moving average of trainable parameters (full weights, LoRA or embeddings)."""

from __future__ import annotations

import contextlib

import torch
from torch import nn


class EMA:
    """Shadow copies of a module's trainable parameters; ``swapped_in`` exports with them."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.module = module
        self.shadow = {n: p.detach().clone().float() for n, p in module.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self) -> None:
        for name, parameter in self.module.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(parameter.detach().float(), 1 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, value in state.items():
            self.shadow[name].copy_(value)

    @contextlib.contextmanager
    def swapped_in(self):
        params = dict(self.module.named_parameters())
        backup = {n: params[n].detach().clone() for n in self.shadow}
        with torch.no_grad():
            for name, value in self.shadow.items():
                params[name].copy_(value)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, value in backup.items():
                    params[name].copy_(value)
