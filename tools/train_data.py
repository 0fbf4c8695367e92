"""Training data for ``tools/train.py``: YOLO datasets (from ``tools/pseudo_label.py``) held in
memory, and the augmentation that keeps the context around small objects.

One sample, in order (all in one affine warp from the cached frame, so no resolution is lost
to a chain of resizes):

1. scale: the frame's letterbox scale into the network input times a log-uniform jitter in
   ``scale`` (e.g. 0.75-1.5: zoomed in, a small object gets more pixels; zoomed out, less);
2. crop: a network-input-sized window placed at random over the scaled frame (a zoomed-in
   frame is cropped, never squeezed, so an object keeps its real surroundings); a zoomed-out
   frame is pasted at a random offset on a ``pad_value`` canvas;
3. horizontal flip with probability ``flip``;
4. colour: hue / saturation shift in HSV, brightness (exposure, as a gain) and contrast,
   and gamma (night / dusk frames are darker, not just dimmer).

Boxes cut by the crop keep their visible part when at least ``min_visible`` of their area
is inside; boxes less visible than that are dropped (the few pixels left are background).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from dashtrack_core.detector import Letterbox, Preprocess
from tools.datasets import DASHCAM_NAMES, DatasetError, ImageLabels, canonical_class
from tools.label_formats import read_yolo


@dataclass(frozen=True)
class AugmentConfig:
    scale: tuple[float, float] = (0.75, 1.5)  # jitter of the letterbox scale (log-uniform)
    flip: float = 0.5  # horizontal flip probability
    hue: float = 5.0  # +- degrees/2 (OpenCV hue units 0..180)
    saturation: float = 0.35  # gain in [1 - s, 1 + s]
    exposure: float = 0.4  # brightness gain in [1 - e, 1 + e]
    contrast: float = 0.25  # contrast gain in [1 - c, 1 + c] about the mean
    gamma: float = 0.3  # gamma in [1 - g, 1 + g]
    min_visible: float = 0.5  # keep a cropped box when this much of its area stays inside
    min_size: float = 2.0  # drop boxes thinner than this (network-input px) after the warp
    enabled: bool = True
    crop: tuple[int, int] | None = None  # training window (H, W) cut from the frame at the network input's scale
                                         # (cheaper steps, same object sizes as deployed); None: the whole input


    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise ValueError(f"augment.scale {list(self.scale)} must be 0 < min <= max")
        if not 0 <= self.flip <= 1:
            raise ValueError(f"augment.flip {self.flip} must be in [0, 1]")
        for name in ("saturation", "exposure", "contrast", "gamma"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"augment.{name} {getattr(self, name)} must be in [0, 1)")
        if not 0 < self.min_visible <= 1:
            raise ValueError(f"augment.min_visible {self.min_visible} must be in (0, 1]")
        if self.crop is not None and (min(self.crop) < 32 or any(v % 32 for v in self.crop)):
            raise ValueError(f"augment.crop {list(self.crop)} must be positive multiples of 32")


@dataclass
class Frame:
    """One cached frame: BGR image at ``cache_scale`` of the original, boxes in original pixels."""

    name: str
    image: np.ndarray  # (h * cache_scale, w * cache_scale, 3) uint8 BGR
    cache_scale: float
    width: int
    height: int
    xyxy: np.ndarray  # (N, 4) float32, original pixels
    cls: np.ndarray  # (N,) int64, dashcam ids
    labels: ImageLabels  # dashcam-mapped ground truth (for evaluation)


def select_items(items: list, spec: str) -> list:
    """``START:STOP`` slice of the sorted items ("" = all)."""
    if not spec:
        return items
    parts = spec.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        lo, hi = (int(p) if p.strip() else None for p in parts)
    except ValueError:
        raise DatasetError(f"select {spec!r}: expected START:STOP, e.g. 0:60 or -20:") from None
    return items[slice(lo, hi)]


def to_dashcam_ids(names: Sequence[str]) -> np.ndarray:
    """Class-name list of a dataset -> lookup to dashcam ids (-1: not a dashcam class)."""
    return np.array([DASHCAM_NAMES.index(m) if (m := canonical_class(n)) in DASHCAM_NAMES else -1 for n in names],
                    np.int64)


def load_frames(root: Path, select: str, max_scale: float) -> list[Frame]:
    """Read a YOLO dataset folder (``images/``, ``labels/``); cache every frame at the scale training needs."""
    images, labels = root / "images", root / "labels"
    if not images.is_dir() or not labels.is_dir():
        raise DatasetError(f"{root}: not a YOLO dataset (needs images/ and labels/ folders)")
    ls = read_yolo(labels, images)
    if ls.problems:
        raise DatasetError(f"{root}: {ls.problems[0]}")
    items = sorted((it for it in ls.items if it.image is not None), key=lambda it: it.name)
    items = select_items(items, select)
    if not items:
        raise DatasetError(f"{root}: no labelled image (select {select!r})")
    lut = to_dashcam_ids(ls.names)
    frames = []
    for it in items:
        if it.problems:
            raise DatasetError(f"{root}/{it.name}: {it.problems[0]}")
        img = cv2.imread(str(it.image), cv2.IMREAD_COLOR)
        if img is None:
            raise DatasetError(f"{it.image}: not a readable image")
        h, w = img.shape[:2]
        cid = lut[it.class_id] if len(it.class_id) else np.zeros(0, np.int64)
        keep = (cid >= 0) & ~it.ignore
        cs = min(1.0, max_scale)
        if cs < 1.0:
            img = cv2.resize(img, (round(w * cs), round(h * cs)), interpolation=cv2.INTER_AREA)
        gt = ImageLabels(it.name, it.image, w, h, it.xyxy, np.where(cid >= 0, cid, -1), it.ignore | (cid < 0))
        frames.append(Frame(f"{root.name}/{it.name}", img, cs, w, h, it.xyxy[keep].astype(np.float32),
                            cid[keep], gt))
    return frames


def letterbox_scale(w: int, h: int, in_hw: tuple[int, int], mode: str = "topleft") -> float:
    """The scale of a w x h frame in the ``in_hw`` network input: the one letterbox of the detectors
    (``dashtrack_core.detector.Letterbox.fit``, the model's ``preprocess.letterbox``), so training sees objects
    at the size inference gives them.  Training pastes with one scale, so ``stretch`` is refused."""
    if mode == "stretch":
        raise ValueError("preprocess.letterbox 'stretch' scales the axes apart; training needs topleft or center")
    return Letterbox.fit(w, h, in_hw[0], in_hw[1], mode).scale_x


def augment(frame: Frame, in_hw: tuple[int, int], cfg: AugmentConfig, rng: np.random.Generator,
            pad_value: float, letterbox: str = "topleft") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One training sample: (H, W, 3) uint8 BGR canvas, boxes (M, 4) float32 in input px, classes (M,).
    The frame is scaled as for the ``in_hw`` network input; the window is ``cfg.crop`` or ``in_hw``."""
    ih, iw = cfg.crop or in_hw
    r0 = letterbox_scale(frame.width, frame.height, in_hw, letterbox)
    if cfg.enabled:
        lo, hi = cfg.scale
        r = r0 * math.exp(rng.uniform(math.log(lo), math.log(hi)))
    else:
        r = r0
    sw, sh = frame.width * r, frame.height * r  # scaled frame size
    # window origin in scaled-frame px: crop when larger, random paste offset when smaller
    if not cfg.enabled:
        x0 = y0 = 0.0
    else:
        x0 = rng.uniform(0, sw - iw) if sw > iw else -rng.uniform(0, iw - sw)
        y0 = rng.uniform(0, sh - ih) if sh > ih else -rng.uniform(0, ih - sh)
    flip = cfg.enabled and rng.random() < cfg.flip
    k = r / frame.cache_scale  # cached px -> scaled px
    m = np.array([[k, 0, -x0], [0, k, -y0]], np.float64)
    if flip:
        m = np.array([[-1, 0, iw], [0, 1, 0]], np.float64) @ np.vstack([m, [0, 0, 1]])
    interp = cv2.INTER_AREA if k < 0.5 else cv2.INTER_LINEAR
    canvas = cv2.warpAffine(frame.image, m, (iw, ih), flags=interp, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=(pad_value,) * 3)
    # boxes
    b = frame.xyxy * r - np.array([x0, y0, x0, y0], np.float32)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    c = b.copy()
    c[:, [0, 2]] = c[:, [0, 2]].clip(0, min(iw, sw - x0))
    c[:, [1, 3]] = c[:, [1, 3]].clip(0, min(ih, sh - y0))
    vis = (c[:, 2] - c[:, 0]).clip(0) * (c[:, 3] - c[:, 1]).clip(0)
    keep = (vis >= cfg.min_visible * np.maximum(area, 1e-6)) & ((c[:, 2] - c[:, 0]) >= cfg.min_size) & \
           ((c[:, 3] - c[:, 1]) >= cfg.min_size)
    c, cls = c[keep], frame.cls[keep]
    if flip:
        c = np.stack([iw - c[:, 2], c[:, 1], iw - c[:, 0], c[:, 3]], 1)
    if cfg.enabled:
        canvas = colour_jitter(canvas, cfg, rng)
    return canvas, c.astype(np.float32), cls


def colour_jitter(img: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Hue/saturation in HSV, then exposure gain, contrast and gamma through one lookup table."""
    if cfg.hue or cfg.saturation:
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        dh = rng.uniform(-cfg.hue, cfg.hue)
        gs = rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)
        lut_h = ((np.arange(256) + dh) % 180).astype(np.uint8)
        lut_s = np.clip(np.arange(256) * gs, 0, 255).astype(np.uint8)
        hsv = cv2.merge([cv2.LUT(hsv[..., 0], lut_h), cv2.LUT(hsv[..., 1], lut_s), hsv[..., 2]])
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    gain = rng.uniform(1 - cfg.exposure, 1 + cfg.exposure)
    con = rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)
    gam = rng.uniform(1 - cfg.gamma, 1 + cfg.gamma)
    mean = float(img.mean())
    x = np.arange(256, dtype=np.float32)
    x = (x - mean) * con + mean
    x = np.clip(x * gain, 0, 255) / 255.0
    lut = np.clip(255.0 * x ** gam, 0, 255).astype(np.uint8)
    return cv2.LUT(img, lut)


def to_tensor_batch(canvases: Sequence[np.ndarray], prep: Preprocess) -> np.ndarray:
    """uint8 BGR canvases -> (B, 3, H, W) float32 normalised as the model's preprocess (numpy)."""
    x = np.stack(canvases).astype(np.float32)  # (B, H, W, 3) BGR
    if prep.color == "rgb":
        x = x[..., ::-1]
    return np.ascontiguousarray(prep.normalize(x.transpose(0, 3, 1, 2)))  # (B, H, W, 3) -> (B, 3, H, W)
