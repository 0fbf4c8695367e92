"""The seeds' single-scale fast detector: one trunk map, a context neck, a light head.

    image (B, 3, H, W)
      -> trunk (ResNet18 / MobileNetV2, stride s = 16 or 32)        (B, Ct, H/s, W/s)
      -> lateral 1x1 to C channels                                   (B, C, H/s, W/s)
      -> [fusion] stride-2 convs down to stride 64, upsampled and added back
      -> dilated residual encoder (YOLOF): context for small objects
      -> head: shared conv tower, then per cell K x (tx ty tw th obj) + C class logits

Box decoding (per cell (gx, gy), prior size pw x ph; anchor-free: K = 1, pw = ph = s;
offset span S = ``offset_span`` cells, centred on the cell centre):
    cx = (gx + S * sigmoid(tx) - (S - 1) / 2) * s    S = 1: inside its cell (centre-cell assignment);
    cy = (gy + S * sigmoid(ty) - (S - 1) / 2) * s    S > 1: up to S / 2 cells from the cell centre,
                                                     for a cell next to the object's (centre sampling)
    w  = pw * exp(clamp(tw)),  h = ph * exp(clamp(th))
    score[c] = sigmoid(obj) * sigmoid(cls[c])

With fusion on, ``raw_maps`` also returns the stride-64 map's own head output: training
puts a detection loss on it too (the seed found the coarse path does not learn otherwise).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layers import MAX_LOG_SIZE, ConvBNAct, SeparableConv, cell_grid, xywh_to_xyxy
from .trunks import MobileNetV2Trunk, build_trunk, load_pretrained_mobilenetv2


@dataclass(frozen=True)
class FastDetConfig:
    trunk: str  # mobilenetv2 | resnet18
    stride: int  # 16 | 32
    pretrained: str = "none"  # none | deepsort_mobilenetv2
    channels: int = 128  # neck and head width
    fusion: bool = False  # add an upsampled stride-64 map onto the main map
    dilations: tuple[int, ...] = (2, 4, 6, 8)  # dilated encoder blocks; empty: none
    head_convs: int = 2
    depthwise: bool = True  # separable 3x3 convs in neck and head
    anchors: tuple[tuple[float, float], ...] = ()  # prior (w, h) in input pixels; empty: anchor-free
    trunk_blocks: int = 0  # MobileNetV2 only: keep the first N inverted-residual blocks (13: stride 16, 96 ch); 0 = all
    offset_span: float = 1.0  # cells the predicted centre may range over, centred on the cell centre (1: its cell)

    def __post_init__(self) -> None:
        if self.stride not in (16, 32):
            raise ValueError(f"stride {self.stride} is not supported; use 16 or 32")
        if self.pretrained not in ("none", "deepsort_mobilenetv2"):
            raise ValueError(f"pretrained {self.pretrained!r} is not known; use none or deepsort_mobilenetv2")
        if self.pretrained == "deepsort_mobilenetv2" and self.trunk != "mobilenetv2":
            raise ValueError(f"pretrained deepsort_mobilenetv2 needs trunk mobilenetv2, not {self.trunk!r}")
        if self.trunk_blocks and (self.trunk != "mobilenetv2" or not 1 <= self.trunk_blocks <= 17):
            raise ValueError(f"trunk_blocks {self.trunk_blocks} needs trunk mobilenetv2 and a value in 1..17")
        if self.trunk_blocks and self.trunk_blocks < {16: 7, 32: 14}[self.stride]:
            raise ValueError(f"trunk_blocks {self.trunk_blocks} ends before stride {self.stride}; "
                             f"use at least {({16: 7, 32: 14})[self.stride]}")
        if self.offset_span < 1:
            raise ValueError(f"offset_span {self.offset_span} must be >= 1 (1: the centre stays in its cell)")


def _conv3(c: int, depthwise: bool, dilation: int = 1) -> nn.Module:
    if depthwise:
        return SeparableConv(c, c, 3, 1, dilation=dilation, act="relu")
    return ConvBNAct(c, c, 3, 1, dilation=dilation, act="relu")


class DilatedBlock(nn.Module):
    """YOLOF's residual block: 1x1 reduce -> 3x3 dilated -> 1x1 expand, plus the input."""

    def __init__(self, c: int, dilation: int, depthwise: bool):
        super().__init__()
        mid = c // 4
        self.reduce = ConvBNAct(c, mid, 1, act="relu")
        self.conv = (SeparableConv(mid, mid, 3, dilation=dilation, act="relu") if depthwise
                     else ConvBNAct(mid, mid, 3, dilation=dilation, act="relu"))
        self.expand = ConvBNAct(mid, c, 1, act="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.expand(self.conv(self.reduce(x)))


class Head(nn.Module):
    """Shared conv tower then one 1x1 predictor: K * 5 box/objectness channels + C class channels."""

    def __init__(self, c: int, num_classes: int, num_anchors: int, convs: int, depthwise: bool):
        super().__init__()
        self.tower = nn.Sequential(*[_conv3(c, depthwise) for _ in range(convs)])
        self.num_anchors, self.num_classes = num_anchors, num_classes
        self.pred = nn.Conv2d(c, num_anchors * 5 + num_classes, 1)
        nn.init.normal_(self.pred.weight, std=0.01)
        nn.init.zeros_(self.pred.bias)
        prior = -math.log((1 - 0.01) / 0.01)  # objectness starts near 0.01: few false boxes at init
        with torch.no_grad():
            self.pred.bias[num_anchors * 4: num_anchors * 5] = prior

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pred(self.tower(x))  # (B, K*5 + C, h, w)


class FastDet(nn.Module):
    family = "fastdet"

    def __init__(self, cfg: FastDetConfig, num_classes: int):
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.trunk = build_trunk(cfg.trunk, cfg.stride, cfg.trunk_blocks)
        if cfg.pretrained == "deepsort_mobilenetv2":
            assert isinstance(self.trunk, MobileNetV2Trunk)
            load_pretrained_mobilenetv2(self.trunk)
        c = cfg.channels
        self.lateral = ConvBNAct(self.trunk.out_channels, c, 1, act="relu")
        if cfg.fusion:
            n_down = int(math.log2(64 // cfg.stride))  # 1 from stride 32, 2 from stride 16
            self.down = nn.Sequential(*[
                SeparableConv(c, c, 3, 2, act="relu") if cfg.depthwise else ConvBNAct(c, c, 3, 2, act="relu")
                for _ in range(n_down)])
            self.aux_head = Head(c, num_classes, self.num_anchors, 1, cfg.depthwise)
        self.encoder = nn.Sequential(*[DilatedBlock(c, d, cfg.depthwise) for d in cfg.dilations])
        self.head = Head(c, num_classes, self.num_anchors, cfg.head_convs, cfg.depthwise)

    @property
    def num_anchors(self) -> int:
        return max(len(self.cfg.anchors), 1)

    def raw_maps(self, x: torch.Tensor) -> list[tuple[torch.Tensor, int]]:
        """Head outputs per scale as (B, K*5 + C, h, w) maps with their strides: main first, then stride 64."""
        main = self.lateral(self.trunk(x))  # (B, C, H/s, W/s)
        maps = []
        if self.cfg.fusion:
            coarse = self.down(main)  # (B, C, H/64, W/64)
            main = main + F.interpolate(coarse, size=main.shape[-2:], mode="nearest")
            maps.append((self.aux_head(coarse), 64))
        out = self.head(self.encoder(main))
        return [(out, self.cfg.stride)] + maps

    def _priors(self, h: int, w: int, stride: int, like: torch.Tensor) -> torch.Tensor:
        """(h*w*K, 5) rows gx gy stride pw ph, cells row-major, anchors fastest."""
        gx, gy = cell_grid(h, w, like)  # (h*w,)
        k = self.num_anchors
        if self.cfg.anchors:
            sizes = torch.tensor(self.cfg.anchors, dtype=like.dtype, device=like.device)  # (K, 2)
        else:
            sizes = torch.full((1, 2), float(stride), dtype=like.dtype, device=like.device)
        cells = torch.stack((gx, gy, torch.full_like(gx, float(stride))), dim=1)  # (h*w, 3)
        return torch.cat((cells[:, None, :].expand(-1, k, 3),
                          sizes[None].expand(h * w, k, 2)), dim=2).reshape(h * w * k, 5)  # (h*w, K, 5) -> (h*w*K, 5)

    def split(self, out: torch.Tensor, stride: int):
        """(B, K*5 + C, h, w) -> params (B, h*w*K, 4), scores (B, h*w*K, C), priors (h*w*K, 5)."""
        b, _, h, w = out.shape
        k, c = self.num_anchors, self.num_classes
        box = out[:, : 4 * k].reshape(b, k, 4, h, w)  # (B, K, 4, h, w)
        obj = out[:, 4 * k: 5 * k]  # (B, K, h, w)
        cls = out[:, 5 * k:]  # (B, C, h, w)
        params = box.permute(0, 3, 4, 1, 2).reshape(b, h * w * k, 4)  # (B, h, w, K, 4) -> (B, h*w*K, 4)
        score = obj.sigmoid()[:, :, None] * cls.sigmoid()[:, None]  # (B, K, C, h, w)
        scores = score.permute(0, 3, 4, 1, 2).reshape(b, h * w * k, c)  # (B, h, w, K, C) -> (B, h*w*K, C)
        return params, scores, self._priors(h, w, stride, out)

    def raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The main map only (the stride-64 aux output is for training)."""
        out, stride = self.raw_maps(x)[0]
        return self.split(out, stride)

    def decode_boxes(self, params: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
        """(..., 4) tx ty tw th with (..., 5) priors -> (..., 4) x1 y1 x2 y2 in input pixels."""
        return decode_fastdet(params, priors, self.cfg.offset_span)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params, scores, priors = self.raw(x)
        return torch.cat((self.decode_boxes(params, priors), scores), dim=-1)  # (B, N, 4 + C)


def decode_fastdet(params: torch.Tensor, priors: torch.Tensor, offset_span: float = 1.0) -> torch.Tensor:
    """(..., 4) tx ty tw th with (..., 5) priors gx gy s pw ph -> (..., 4) x1 y1 x2 y2 in input pixels.

    The centre offset from the cell's corner is ``span * sigmoid(t) - (span - 1) / 2`` cells: in
    [0, 1] for span 1 (bit for bit the in-cell ``sigmoid(t)``), 0.5 +- span / 2 in general.
    """
    s = priors[..., 2]
    shift = (offset_span - 1) / 2
    cx = (priors[..., 0] + params[..., 0].sigmoid() * offset_span - shift) * s
    cy = (priors[..., 1] + params[..., 1].sigmoid() * offset_span - shift) * s
    wh = params[..., 2:4].clamp(max=MAX_LOG_SIZE).exp()  # clamp before exp
    return xywh_to_xyxy(cx, cy, wh[..., 0] * priors[..., 3], wh[..., 1] * priors[..., 4])
