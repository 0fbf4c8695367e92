"""Letterbox + colour order + normalisation of uint8 BGR frames, done on the model's device.

Only the uint8 frames cross the bus (a quarter of the float32 bytes): on CUDA they are
staged in a pinned host buffer and copied with ``non_blocking=True``, so the copy overlaps
the host's next work; the resize (bilinear, half-pixel centres, no antialias: what
``cv2.resize(..., INTER_LINEAR)`` computes), the padding, the channel swap and
``(x - mean) / std`` all run on the device.

The network input size ``(H, W)`` is an argument of each call, not a property of the
object, so any rule that picks the shape (fixed, or from the frame aspect) plugs in:

    prep = DevicePreprocessor(spec.preprocess, device="cuda", dtype=torch.float16)
    data, letterboxes = prep(frames, (384, 640))      # (B, 3, 384, 640) on the device
"""
from __future__ import annotations

import threading
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dashtrack_core.detector import Letterbox


def check_frame(i: int, image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(f"image {i}: expected (H, W, 3) uint8 BGR, got {shape} {getattr(image, 'dtype', type(image))}")


def shape_runs(images: Sequence[np.ndarray]) -> list[tuple[int, int]]:
    """(start, end) of each run of consecutive frames of one shape (a file's frames: one run)."""
    runs, start = [], 0
    for i in range(1, len(images) + 1):
        if i == len(images) or images[i].shape != images[start].shape:
            runs.append((start, i))
            start = i
    return runs


class _Staging:
    """Per-thread pinned host buffers, reused; an event says when the last copy out of
    a buffer has finished, so it is never overwritten while the device still reads it."""

    def __init__(self):
        self.local = threading.local()

    def buffer(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, list]:
        cache = getattr(self.local, "cache", None)
        if cache is None:
            cache = self.local.cache = {}
        entry = cache.get(shape)
        if entry is None:
            if len(cache) > 8:          # frame sizes change rarely; bound the pinned memory anyway
                cache.clear()
            entry = cache[shape] = (torch.empty(shape, dtype=torch.uint8).pin_memory(), [None])
        return entry


class DevicePreprocessor:
    """BGR uint8 frames -> normalised (B, 3, H, W) tensor on ``device`` + one ``Letterbox`` each.

    ``prep`` is a ``models.registry.Preprocess`` (colour order, mean/std in 0..255 units and
    in that colour order, letterbox mode, pad value).
    """

    def __init__(self, prep, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 channels_last: bool = False, uint8_resize: bool | None = None):
        self.prep = prep
        self.device = torch.device(device)
        # Resize the uint8 frame (rounded, as cv2 does) or its float copy. None: uint8 on the CPU,
        # where torch has a fast uint8 channels_last kernel; float on CUDA (no uint8 bilinear kernel).
        self.uint8_resize = self.device.type == "cpu" if uint8_resize is None else uint8_resize
        self.dtype = dtype
        self.channels_last = channels_last
        self.pinned = self.device.type == "cuda"
        self.group_runs = self.device.type == "cuda"   # upload a run of same-shape frames in one copy
        order = [2, 1, 0] if prep.color == "rgb" else [0, 1, 2]   # frames are BGR
        self._order = order
        std = torch.tensor(prep.std, dtype=torch.float32)
        mean = torch.tensor(prep.mean, dtype=torch.float32)
        # x_norm = x * scale + bias, per output channel
        self._scale = (1.0 / std).view(1, 3, 1, 1).to(self.device)
        self._bias = (-mean / std).view(1, 3, 1, 1).to(self.device)
        self._pad = ((float(prep.pad_value) - mean) / std).view(1, 3, 1, 1).to(self.device)
        self._staging = _Staging()

    def upload(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Frames of one shape -> (n, h, w, 3) uint8 on the device (pinned + non-blocking on CUDA)."""
        if not self.pinned:
            if len(images) == 1:
                return torch.from_numpy(np.ascontiguousarray(images[0]))[None].to(self.device)
            return torch.from_numpy(np.stack(images)).to(self.device)
        buf, last = self._staging.buffer((len(images),) + images[0].shape)
        if last[0] is not None:
            last[0].synchronize()       # the previous copy out of this buffer is done
        host = buf.numpy()
        for i, image in enumerate(images):
            host[i] = image
        out = buf.to(self.device, non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))   # the stream the copy went on
        last[0] = event
        return out

    def __call__(self, images: Sequence[np.ndarray], input_hw: tuple[int, int]) -> tuple[torch.Tensor, tuple[Letterbox, ...]]:
        if len(images) == 0:
            raise ValueError("no images to preprocess; pass at least one frame")
        for i, image in enumerate(images):
            check_frame(i, image)
        ih, iw = int(input_hw[0]), int(input_hw[1])
        canvas = self._pad.expand(len(images), 3, ih, iw).contiguous()
        letterboxes: list[Letterbox] = []
        # CUDA: a run of same-shape frames crosses in one copy; CPU: each frame from its own
        # numpy memory (no copy), as stacking them would copy every frame once more.
        runs = shape_runs(images) if self.group_runs else [(i, i + 1) for i in range(len(images))]
        for start, end in runs:
            h, w = images[start].shape[:2]
            lb = Letterbox.fit(w, h, ih, iw, self.prep.letterbox)
            x = self.upload(images[start:end]).permute(0, 3, 1, 2)   # (n, 3, h, w) uint8, channels_last strides
            resize = (lb.new_h, lb.new_w) != (h, w)
            if resize and self.uint8_resize:
                x = F.interpolate(x, size=(lb.new_h, lb.new_w), mode="bilinear", align_corners=False, antialias=False)
                resize = False
            x = x[:, self._order].float()                              # the model's colour order
            if resize:
                x = F.interpolate(x, size=(lb.new_h, lb.new_w), mode="bilinear", align_corners=False,
                                  antialias=False)
            py, px = int(lb.pad_y), int(lb.pad_x)
            canvas[start:end, :, py:py + lb.new_h, px:px + lb.new_w] = x * self._scale + self._bias
            letterboxes += [lb] * (end - start)
        out = canvas.to(self.dtype)
        if self.channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        return out, tuple(letterboxes)
