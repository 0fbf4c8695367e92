"""``TorchDetector``: the pipeline's Detector protocol around any model of the registry.

Preprocessing (letterbox from uint8, colour order, normalisation: ``device_preprocess.py``),
the forward pass and decode + NMS all run on the model's device in torch; only the uint8
frames go in (pinned memory, non-blocking copies on CUDA) and only the final boxes of a
whole batch come back, in one transfer.

    det = build_detector("mobilenetv2_s16")                          # a registered variant
    det = build_detector("yolox_nano:../shared/data/teachers/yolox_nano/yolox_nano.pth")
    det = build_detector("runs/best.pt")                             # our checkpoint (metadata inside)
    dets = det.detect([frame_bgr])                                   # list[Detections]
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from dashtrack_core.detector import Batch, Letterbox, frame_input_shape
from dashtrack_core.records import Detections

from .checkpoint import CheckpointError, is_ours, load_state_strict, read_checkpoint, spec_of
from .device_preprocess import DevicePreprocessor
from .postprocess import PostprocessConfig, postprocess_packed
from .registry import ModelSpec, build_model, list_variants, load_variant
from .yolox import infer_yolox_size
from .zoo import ZOO, fetch_weights


def letterbox_params(h: int, w: int, input_hw: tuple[int, int], mode: str) -> tuple[Letterbox, int, int]:
    """The mapping of an h x w image into the network input, and the resized size (nh, nw)."""
    lb = Letterbox.fit(w, h, input_hw[0], input_hw[1], mode)
    return lb, lb.new_h, lb.new_w


def image_area(lb: Letterbox) -> tuple[float, float, float, float]:
    """x0, y0, x1, y1 of the image inside the network input: boxes are clipped to it before NMS, as the
    numpy path clips them to the image (``pipeline/np_postprocess.py``)."""
    return (lb.pad_x, lb.pad_y, lb.pad_x + lb.width * lb.scale_x, lb.pad_y + lb.height * lb.scale_y)


class TorchDetector:
    def __init__(self, model: nn.Module, spec: ModelSpec, device: str = "cpu",
                 post: PostprocessConfig = PostprocessConfig(), classes: Sequence[str] | None = None,
                 half: bool = False, imgsz: int | None = None, channels_last: bool = False, nms: str = "auto"):
        """``imgsz``: the input's long side, the short side following each frame's aspect
        (``frame_input_shape``); None: the variant's fixed ``spec.input_size``."""
        self.imgsz = imgsz
        self.device = torch.device(device)
        if half and self.device.type != "cuda":
            raise ValueError(f"half=True needs a CUDA device, got {device!r}")
        self.dtype = torch.float16 if half else torch.float32
        if self.device.type == "cuda":
            # one input shape per detector: let cuDNN pick its fastest convolutions once
            torch.backends.cudnn.benchmark = True
        self.model = model.to(self.device, self.dtype).eval()
        self.spec = spec
        self.post = post
        names = spec.class_names
        if classes is None:
            selected = list(range(len(names)))
        else:
            unknown = [c for c in classes if c not in names]
            if unknown:
                raise ValueError(f"classes {unknown} are not predicted by {spec.name}; it knows: {', '.join(names)}")
            selected = [names.index(c) for c in classes]
        self.class_names: tuple[str, ...] = tuple(names[i] for i in selected)
        self._selected = None if classes is None else torch.tensor(selected, device=self.device)
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.nms = nms
        self._prep = DevicePreprocessor(spec.preprocess, self.device, self.dtype, channels_last)

    def input_shape(self, width: int, height: int) -> tuple[int, int]:
        """The (height, width) input for width x height frames."""
        if self.imgsz is None:
            return self.spec.input_size
        return frame_input_shape(width, height, self.imgsz, 32)   # every family's input is a multiple of 32

    @property
    def input_size(self) -> tuple[int, int]:
        """The network input (H, W) when it does not follow the frame (``imgsz`` None), else the variant's default."""
        return self.spec.input_size

    @torch.inference_mode()
    def preprocess(self, images: Sequence[np.ndarray]) -> Batch:
        """BGR uint8 (H, W, 3) frames -> (B, 3, IH, IW) normalised tensor on the device + letterboxes."""
        if len(images) == 0 or getattr(images[0], "ndim", 0) != 3:
            raise ValueError("expected a non-empty list of (H, W, 3) uint8 BGR images")
        shape = self.input_shape(images[0].shape[1], images[0].shape[0])   # one shape per batch
        data, letterboxes = self._prep(images, shape)
        return Batch(data, letterboxes)

    @torch.inference_mode()
    def infer(self, batch: Batch):
        """Forward pass: (params (B, N, 4), scores (B, N, C), priors (N, 5)) on the device."""
        return self.model.raw(batch.data)

    @torch.inference_mode()
    def postprocess(self, raw, batch: Batch) -> list[Detections]:
        params, scores, priors = raw
        if self._selected is not None:
            scores = scores.index_select(2, self._selected)  # (B, N, C) -> (B, N, len(classes))
        input_hw = tuple(batch.data.shape[-2:])
        clip = torch.tensor([image_area(lb) for lb in batch.letterboxes], dtype=torch.float32)
        xyxy, score, cls, img = postprocess_packed(params.float(), scores.float(), priors.float(),
                                                   self.model.decode_boxes, input_hw, self.post, self.nms, clip)
        # one device -> host copy for the whole batch: (M, 7) = xyxy, score, class, image
        rows = torch.cat((xyxy, score[:, None], cls[:, None].float(), img[:, None].float()), dim=1).cpu().numpy()
        ends = np.searchsorted(rows[:, 6], np.arange(len(batch)), side="right")
        out, start = [], 0
        for i, lb in enumerate(batch.letterboxes):
            r = rows[start:ends[i]]
            start = ends[i]
            out.append(Detections(lb.to_image(r[:, :4]), r[:, 4], r[:, 5].astype(np.int32)))
        return out

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        batch = self.preprocess(images)
        return self.postprocess(self.infer(batch), batch)


def resolve(spec: str) -> tuple[ModelSpec, dict | None, str]:
    """A variant name, ``variant:path`` or a checkpoint path -> (ModelSpec, state dict or None, source)."""
    variants = list_variants()
    if spec in variants:
        s = load_variant(spec)
        if s.weights == "zoo":
            path = fetch_weights(spec)
            return s, _official_state(read_checkpoint(path), path), str(path)
        return s, None, "random init" + (" + pretrained trunk" if s.family == "fastdet" and s.fastdet.pretrained != "none" else "")
    named, _, rest = spec.partition(":")
    if rest and named in variants:
        variant, path = named, Path(rest)
    else:
        variant, path = None, Path(spec)
    if not path.is_file():
        raise FileNotFoundError(
            f"model {spec!r} is neither a registered variant ({', '.join(variants)}) nor an existing file")
    ckpt = read_checkpoint(path)
    if is_ours(ckpt):
        s = spec_of(ckpt, path)
        if variant is not None and variant != s.name:
            raise CheckpointError(f"{path} holds variant {s.name!r} but {variant!r} was asked for")
        return s, ckpt["state_dict"], str(path)
    state = _official_state(ckpt, path)
    if variant is None:
        variant = f"yolox_{infer_yolox_size(state)}"
    return load_variant(variant), state, str(path)


def _official_state(ckpt: object, path) -> dict:
    """The state dict of an official YOLOX release file (``{'model': state_dict}``)."""
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict):
        return ckpt["model"]
    keys = list(ckpt)[:5] if isinstance(ckpt, dict) else type(ckpt).__name__
    raise CheckpointError(f"{path}: neither a dashtrack checkpoint nor an official YOLOX file (top keys {keys})")


def build_detector(spec: str, device: str = "cpu", score_threshold: float = 0.3, nms_iou: float = 0.45,
                   max_detections: int = 100, top_k: int = 1000, classes: tuple[str, ...] | None = None,
                   half: bool = False, imgsz: int | None = None,
                   input_size: tuple[int, int] | None = None, channels_last: bool = False,
                   nms: str = "auto") -> TorchDetector:
    """``input_size`` (H, W) fixes the input and wins over ``imgsz`` (a one-line note when both are given)."""
    model_spec, state, source = resolve(spec)
    if input_size is not None:
        if imgsz is not None:
            print(f"note: input_size {list(input_size)} and imgsz {imgsz} are both set; the fixed input_size wins",
                  file=sys.stderr)
        model_spec, imgsz = dataclasses.replace(model_spec, input_size=tuple(input_size)), None
    model = build_model(model_spec)
    if state is not None:
        load_state_strict(model, state, source, model_spec.name)
    post = PostprocessConfig(score_threshold=score_threshold, nms_iou=nms_iou, pre_nms_topk=top_k,
                             max_detections=max_detections)
    return TorchDetector(model, model_spec, device, post, classes, half, imgsz, channels_last, nms)


__all__ = ["TorchDetector", "build_detector", "letterbox_params", "resolve", "ZOO"]
