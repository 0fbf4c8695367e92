"""Small building blocks shared by the detector families."""
from __future__ import annotations

import torch
from torch import nn


def make_act(name: str) -> nn.Module:
    if name == "silu":
        return nn.SiLU(inplace=True)
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown activation {name!r}; use silu, relu, relu6 or none")


class ConvBNAct(nn.Module):
    """conv (no bias) -> batch norm -> activation; padding keeps the size at stride 1.

    The child names ``conv`` and ``bn`` are part of the checkpoint layout (YOLOX's
    ``BaseConv`` uses the same names), so do not rename them.
    """

    def __init__(self, c_in: int, c_out: int, k: int = 1, stride: int = 1, groups: int = 1,
                 dilation: int = 1, act: str = "relu", bn_eps: float = 1e-5, bn_momentum: float = 0.1):
        super().__init__()
        pad = dilation * (k - 1) // 2
        self.conv = nn.Conv2d(c_in, c_out, k, stride, pad, dilation=dilation, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=bn_eps, momentum=bn_momentum)
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SeparableConv(nn.Module):
    """Depthwise k x k conv then pointwise 1x1 conv, each with BN + activation (YOLOX ``DWConv`` layout)."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, stride: int = 1, dilation: int = 1,
                 act: str = "relu", bn_eps: float = 1e-5, bn_momentum: float = 0.1):
        super().__init__()
        self.dconv = ConvBNAct(c_in, c_in, k, stride, groups=c_in, dilation=dilation, act=act,
                               bn_eps=bn_eps, bn_momentum=bn_momentum)
        self.pconv = ConvBNAct(c_in, c_out, 1, 1, act=act, bn_eps=bn_eps, bn_momentum=bn_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pconv(self.dconv(x))


def cell_grid(h: int, w: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Column and row index of every cell of an h x w map, row-major: two (h*w,) tensors."""
    ys = torch.arange(h, device=like.device, dtype=like.dtype)
    xs = torch.arange(w, device=like.device, dtype=like.dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")  # (h, w) each
    return gx.reshape(-1), gy.reshape(-1)  # (h*w,)


def xywh_to_xyxy(cx: torch.Tensor, cy: torch.Tensor, w: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


# Largest log-size a box head may predict before exp: exp(10) strides is far beyond any image.
MAX_LOG_SIZE = 10.0
