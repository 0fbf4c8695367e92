"""Exponential moving average of a model's weights (what is evaluated, kept and exported when on).

The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after n updates, so the first steps
are not dominated by the start weights; batch-norm buffers are averaged the same way.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class WeightEMA:
    def __init__(self, model: nn.Module, decay: float, updates: int = 0):
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.updates = updates

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        own = self.model.state_dict()
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                own[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                own[k].copy_(v)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, st: dict) -> None:
        self.model.load_state_dict(st["model"])
        self.updates = st["updates"]
