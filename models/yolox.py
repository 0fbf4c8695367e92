"""YOLOX (Megvii) in plain torch, module names matching the official release files.

Official checkpoints (``{'model': state_dict}``) load with strict key matching:
``YOLOX.backbone`` is ``YOLOPAFPN`` (``backbone.backbone`` is ``CSPDarknet``) and
``YOLOX.head`` is ``YOLOXHead``.  Sizes are data (``YoloxSize``): nano, tiny, s, m, l, x.

Input: BGR, 0..255, not normalised, letterboxed top-left on a canvas of 114.
Output of ``forward``: (B, N, 4 + C) decoded boxes x1 y1 x2 y2 in input pixels and
per-class scores objectness x class probability; N runs over strides 8, 16, 32,
each grid row-major.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layers import MAX_LOG_SIZE, ConvBNAct, SeparableConv, cell_grid, xywh_to_xyxy

BN = {"bn_eps": 1e-3, "bn_momentum": 0.03}  # YOLOX's init_yolo values


@dataclass(frozen=True)
class YoloxSize:
    depth: float
    width: float
    depthwise: bool


YOLOX_SIZES = {
    "nano": YoloxSize(0.33, 0.25, True),
    "tiny": YoloxSize(0.33, 0.375, False),
    "s": YoloxSize(0.33, 0.50, False),
    "m": YoloxSize(0.67, 0.75, False),
    "l": YoloxSize(1.0, 1.0, False),
    "x": YoloxSize(1.33, 1.25, False),
}


def _conv(c_in: int, c_out: int, k: int, stride: int, depthwise: bool) -> nn.Module:
    if depthwise:
        return SeparableConv(c_in, c_out, k, stride, act="silu", **BN)
    return ConvBNAct(c_in, c_out, k, stride, act="silu", **BN)


def _base(c_in: int, c_out: int, k: int = 1, stride: int = 1) -> ConvBNAct:
    return ConvBNAct(c_in, c_out, k, stride, act="silu", **BN)


class Bottleneck(nn.Module):
    def __init__(self, c_in: int, c_out: int, shortcut: bool, depthwise: bool):
        super().__init__()
        self.conv1 = _base(c_in, c_out, 1)
        self.conv2 = _conv(c_out, c_out, 3, 1, depthwise)
        self.use_add = shortcut and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return y + x if self.use_add else y


class CSPLayer(nn.Module):
    """Split into two 1x1 branches, run bottlenecks on one, concatenate, fuse with 1x1."""

    def __init__(self, c_in: int, c_out: int, n: int, shortcut: bool, depthwise: bool):
        super().__init__()
        hidden = c_out // 2
        self.conv1 = _base(c_in, hidden)
        self.conv2 = _base(c_in, hidden)
        self.conv3 = _base(2 * hidden, c_out)
        self.m = nn.Sequential(*[Bottleneck(hidden, hidden, shortcut, depthwise) for _ in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(torch.cat((self.m(self.conv1(x)), self.conv2(x)), dim=1))


class SPPBottleneck(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernels: tuple[int, ...] = (5, 9, 13)):
        super().__init__()
        hidden = c_in // 2
        self.conv1 = _base(c_in, hidden)
        self.m = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in kernels)
        self.conv2 = _base(hidden * (len(kernels) + 1), c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [pool(x) for pool in self.m], dim=1))


class Focus(nn.Module):
    """Space-to-depth (B, 3, H, W) -> (B, 12, H/2, W/2), then a 3x3 conv."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = _base(c_in * 4, c_out, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tl, tr = x[..., ::2, ::2], x[..., ::2, 1::2]
        bl, br = x[..., 1::2, ::2], x[..., 1::2, 1::2]
        return self.conv(torch.cat((tl, bl, tr, br), dim=1))


class CSPDarknet(nn.Module):
    def __init__(self, size: YoloxSize):
        super().__init__()
        c = int(size.width * 64)
        d = max(round(size.depth * 3), 1)
        dw = size.depthwise
        self.stem = Focus(3, c)
        self.dark2 = nn.Sequential(_conv(c, c * 2, 3, 2, dw), CSPLayer(c * 2, c * 2, d, True, dw))
        self.dark3 = nn.Sequential(_conv(c * 2, c * 4, 3, 2, dw), CSPLayer(c * 4, c * 4, d * 3, True, dw))
        self.dark4 = nn.Sequential(_conv(c * 4, c * 8, 3, 2, dw), CSPLayer(c * 8, c * 8, d * 3, True, dw))
        self.dark5 = nn.Sequential(
            _conv(c * 8, c * 16, 3, 2, dw), SPPBottleneck(c * 16, c * 16), CSPLayer(c * 16, c * 16, d, False, dw)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x3 = self.dark3(self.dark2(self.stem(x)))
        x4 = self.dark4(x3)
        return x3, x4, self.dark5(x4)  # strides 8, 16, 32


class YOLOPAFPN(nn.Module):
    """Top-down then bottom-up path over dark3/4/5; returns maps at strides 8, 16, 32."""

    def __init__(self, size: YoloxSize):
        super().__init__()
        w, dw = size.width, size.depthwise
        c3, c4, c5 = int(256 * w), int(512 * w), int(1024 * w)
        n = round(3 * size.depth)
        self.backbone = CSPDarknet(size)
        self.lateral_conv0 = _base(c5, c4)
        self.C3_p4 = CSPLayer(2 * c4, c4, n, False, dw)
        self.reduce_conv1 = _base(c4, c3)
        self.C3_p3 = CSPLayer(2 * c3, c3, n, False, dw)
        self.bu_conv2 = _conv(c3, c3, 3, 2, dw)
        self.C3_n3 = CSPLayer(2 * c3, c4, n, False, dw)
        self.bu_conv1 = _conv(c4, c4, 3, 2, dw)
        self.C3_n4 = CSPLayer(2 * c4, c5, n, False, dw)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x3, x4, x5 = self.backbone(x)
        top5 = self.lateral_conv0(x5)
        up4 = self.C3_p4(torch.cat((F.interpolate(top5, scale_factor=2.0, mode="nearest"), x4), dim=1))
        top4 = self.reduce_conv1(up4)
        out3 = self.C3_p3(torch.cat((F.interpolate(top4, scale_factor=2.0, mode="nearest"), x3), dim=1))
        out4 = self.C3_n3(torch.cat((self.bu_conv2(out3), top4), dim=1))
        out5 = self.C3_n4(torch.cat((self.bu_conv1(out4), top5), dim=1))
        return out3, out4, out5


class YOLOXHead(nn.Module):
    """Decoupled head per stride: a 1x1 stem, then a class tower and a box/objectness tower."""

    def __init__(self, num_classes: int, size: YoloxSize, strides: tuple[int, ...] = (8, 16, 32)):
        super().__init__()
        w, dw = size.width, size.depthwise
        hid = int(256 * w)
        self.num_classes = num_classes
        self.strides = strides
        self.stems = nn.ModuleList(_base(int(c * w), hid) for c in (256, 512, 1024))
        self.cls_convs = nn.ModuleList(
            nn.Sequential(_conv(hid, hid, 3, 1, dw), _conv(hid, hid, 3, 1, dw)) for _ in strides)
        self.reg_convs = nn.ModuleList(
            nn.Sequential(_conv(hid, hid, 3, 1, dw), _conv(hid, hid, 3, 1, dw)) for _ in strides)
        self.cls_preds = nn.ModuleList(nn.Conv2d(hid, num_classes, 1) for _ in strides)
        self.reg_preds = nn.ModuleList(nn.Conv2d(hid, 4, 1) for _ in strides)
        self.obj_preds = nn.ModuleList(nn.Conv2d(hid, 1, 1) for _ in strides)

    def logits(self, feats) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training view: params (B, N, 4), objectness logits (B, N), class logits (B, N, C), priors (N, 5)."""
        params, objs, clss, priors = [], [], [], []
        for i, x in enumerate(feats):
            x = self.stems[i](x)
            cls = self.cls_preds[i](self.cls_convs[i](x))  # (B, C, h, w)
            reg_feat = self.reg_convs[i](x)
            reg = self.reg_preds[i](reg_feat)  # (B, 4, h, w)
            obj = self.obj_preds[i](reg_feat)  # (B, 1, h, w)
            h, w = x.shape[-2:]
            params.append(reg.flatten(2).transpose(1, 2))  # (B, 4, h, w) -> (B, h*w, 4)
            objs.append(obj.flatten(1))  # (B, 1, h, w) -> (B, h*w)
            clss.append(cls.flatten(2).transpose(1, 2))  # (B, C, h, w) -> (B, h*w, C)
            gx, gy = cell_grid(h, w, reg)
            s = torch.full_like(gx, float(self.strides[i]))
            priors.append(torch.stack((gx, gy, s, s, s), dim=1))  # (h*w, 5)
        return torch.cat(params, 1), torch.cat(objs, 1), torch.cat(clss, 1), torch.cat(priors, 0)

    def forward(self, feats) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns params (B, N, 4) = dx dy logw logh, scores (B, N, C), priors (N, 5) = gx gy s pw ph."""
        params, obj, cls, priors = self.logits(feats)
        return params, obj.sigmoid()[..., None] * cls.sigmoid(), priors  # scores: objectness x class probability


class YOLOX(nn.Module):
    """The whole detector; ``raw`` for post-processing on device, ``forward`` for export."""

    family = "yolox"

    def __init__(self, size: str = "nano", num_classes: int = 80):
        super().__init__()
        if size not in YOLOX_SIZES:
            raise ValueError(f"unknown YOLOX size {size!r}; use one of {', '.join(YOLOX_SIZES)}")
        self.size_name = size
        self.num_classes = num_classes
        self.backbone = YOLOPAFPN(YOLOX_SIZES[size])
        self.head = YOLOXHead(num_classes, YOLOX_SIZES[size])
        self.head_bias_init()

    def head_bias_init(self, prior_prob: float = 0.01) -> None:
        b = -torch.log(torch.tensor((1 - prior_prob) / prior_prob)).item()
        for conv in list(self.head.cls_preds) + list(self.head.obj_preds):
            nn.init.constant_(conv.bias, b)

    def raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.head(self.backbone(x))

    def raw_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """params, objectness logits, class logits, priors (``YOLOXHead.logits``): what the loss needs."""
        return self.head.logits(self.backbone(x))

    @staticmethod
    def decode_boxes(params: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
        """(..., 4) dx dy logw logh with (..., 5) priors -> (..., 4) x1 y1 x2 y2 in input pixels."""
        s = priors[..., 2]
        cx = (params[..., 0] + priors[..., 0]) * s
        cy = (params[..., 1] + priors[..., 1]) * s
        wh = params[..., 2:4].clamp(max=MAX_LOG_SIZE).exp()  # clamp before exp
        return xywh_to_xyxy(cx, cy, wh[..., 0] * priors[..., 3], wh[..., 1] * priors[..., 4])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params, scores, priors = self.raw(x)
        return torch.cat((self.decode_boxes(params, priors), scores), dim=-1)  # (B, N, 4 + C)


def infer_yolox_size(state_dict: dict) -> str:
    """Guess the YOLOX size of an official state dict from its stem width and depthwise convs."""
    key = "backbone.backbone.stem.conv.conv.weight"
    if key not in state_dict:
        raise ValueError(f"not a YOLOX state dict: key {key!r} is missing")
    width = state_dict[key].shape[0] / 64
    depthwise = any(".dconv." in k for k in state_dict)
    depth_n = sum(1 for k in state_dict if k.startswith("backbone.backbone.dark3.1.m.") and k.endswith("conv1.conv.weight"))
    for name, size in YOLOX_SIZES.items():
        if abs(size.width - width) < 1e-6 and size.depthwise == depthwise and max(round(size.depth * 3), 1) * 3 == depth_n:
            return name
    raise ValueError(f"YOLOX state dict with width {width}, depthwise {depthwise}, dark3 depth {depth_n} "
                     f"matches no known size ({', '.join(YOLOX_SIZES)})")
