"""ONNX detector backend on onnxruntime (CUDA provider when present).

Three output layouts are understood:

- ``yolox``:   one (B, N, 5 + C) tensor of raw YOLOX rows
               ``dx, dy, log w, log h, objectness, C class scores`` over
               stride 8/16/32 grids; score = objectness * class score.
- ``nanodet``: per stride 8/16/32 a (B, N_s, C) sigmoid score tensor and a
               (B, N_s, 4 * (R + 1)) distance distribution (softmax, expectation,
               times stride = distances l, t, r, b from the cell centre).
- ``decoded``: one (B, N, 4 + C) tensor: x1 y1 x2 y2 in network-input pixels,
               then C class scores (what ``models/`` exports).  Preprocessing may
               be stored in the model's metadata under the key ``dashtrack``.

Input shape: a file with a fixed height and width runs at that shape (a one-line note when the
frames' aspect ratio would want another); a dynamic-shape file gets, per frame size,
``frame_input_shape(w, h, imgsz, stride)``: ``detector.imgsz`` (else the metadata's default
input_size) as the long side, the short side following the frame.  ``detector.input_size`` fixes a
dynamic file's shape instead.  The input must be (batch, 3, H, W).

Post-processing (``pipeline/np_postprocess.py``, the torch backend's order and comparison): score
threshold (>=) -> top-k -> decode -> letterbox undone, clipped to the image -> class-aware NMS -> max
detections.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .config import DetectorConfig
from dashtrack_core.configtools import ConfigError
from dashtrack_core.detector import COCO_NAMES, Batch, Letterbox, frame_input_shape
from .model_file import file_wins
from .np_postprocess import nms_per_class, select
from dashtrack_core.records import Detections



class DetectorError(RuntimeError):
    """A detector that cannot be loaded or run; the message is one line for the user."""


def letterbox_image(image: np.ndarray, lb: Letterbox, in_h: int, in_w: int, pad_value: float) -> np.ndarray:
    """Resize ``image`` into an (in_h, in_w, 3) uint8 canvas as ``lb`` describes."""
    new_w, new_h = lb.new_w, lb.new_h
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    if new_w == in_w and new_h == in_h:
        return resized
    canvas = np.full((in_h, in_w, 3), int(round(pad_value)), np.uint8)
    x0, y0 = int(lb.pad_x), int(lb.pad_y)
    canvas[y0:y0 + new_h, x0:x0 + new_w] = resized
    return canvas


def _grid(in_h: int, in_w: int, strides: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) cell x/y and (N,) stride for row-major grids of each stride."""
    cells, stride_col = [], []
    for s in strides:
        gh, gw = in_h // s, in_w // s
        gy, gx = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
        cells.append(np.stack([gx.ravel(), gy.ravel()], 1))
        stride_col.append(np.full(gh * gw, s))
    return np.concatenate(cells).astype(np.float32), np.concatenate(stride_col).astype(np.float32)


def cpu_split(cfg: DetectorConfig) -> tuple[int, int]:
    """(inference workers, intra-op threads per call) on the CPU; 0 in the config = auto."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = cfg.workers or (2 if cores >= 2 else 1)
    return workers, cfg.threads or max(1, cores // workers)


class OnnxDetector:
    """Runs an ONNX detector; implements ``dashtrack_core.detector.Detector``."""

    def __init__(self, cfg: DetectorConfig):
        import onnxruntime as ort

        path = Path(cfg.model)
        if not cfg.model:
            raise DetectorError("detector.model is empty; give an .onnx file with --model PATH")
        if not path.is_file():
            raise DetectorError(f"detector model {path} not found; check the path or pass --model PATH")
        providers = ["CPUExecutionProvider"]
        if cfg.device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.workers, threads = cpu_split(cfg) if len(providers) == 1 else (cfg.workers or 1, cfg.threads)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        if not cfg.spin:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DetectorError(f"detector model {path} is not a loadable ONNX model ({first}); pass a valid .onnx file") from None
        self.notes: list[str] = []       # one-line notes printed once (shape choices, file vs config)
        meta = self._read_metadata(path)
        cfg = self._apply_metadata(cfg, meta)
        self.cfg = cfg
        self.input_name = self.session.get_inputs()[0].name
        self._setup_shape(cfg, path, meta)
        if cfg.format == "auto":
            cfg = self.cfg = dataclasses.replace(cfg, format=self._guess_format(cfg))
        names = cfg.class_names
        self.class_names: tuple[str, ...] = COCO_NAMES if names == "coco" else tuple(names)
        self._keep_mask = self._class_mask(cfg.classes)
        self.prep = cfg.preprocess           # the model file's preprocessing (file_wins above), one record
        self._check_outputs(path)
        self._grids: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    # -- setup ------------------------------------------------------------------
    def _read_metadata(self, path: Path) -> dict:
        meta = self.session.get_modelmeta().custom_metadata_map.get("dashtrack")
        if not meta:
            return {}
        try:
            info = json.loads(meta)
        except json.JSONDecodeError:
            info = None
        if not isinstance(info, dict):
            raise DetectorError(f"detector model {path}: its 'dashtrack' metadata is not a JSON object; re-export it")
        return info

    def _apply_metadata(self, cfg: DetectorConfig, info: dict) -> DetectorConfig:
        """The file's preprocessing wins over the config (``pipeline.model_file``); its input_size is only a
        default (``_setup_shape``)."""
        return file_wins(cfg, info, Path(cfg.model).name, self._note)

    def _setup_shape(self, cfg: DetectorConfig, path: Path, meta: dict) -> None:
        """Fixed (``fixed_shape``) or per-frame-size (``imgsz`` + ``stride``) input; see ``input_shape``."""
        inp = self.session.get_inputs()[0]
        shape = list(inp.shape)
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise DetectorError(f"detector model {path}: input {inp.name!r} has shape {shape}, expected "
                                "(batch, 3, height, width); give an image detector exported for 3-channel input")
        self.stride = int(meta.get("stride", 32))
        self.variant = meta.get("variant")
        self.imgsz: int | None = None
        self.fixed_shape: tuple[int, int] | None = None
        self._file_fixed = isinstance(shape[2], int) and isinstance(shape[3], int)
        if self._file_fixed:                                             # the file decides
            self.fixed_shape = (shape[2], shape[3])
            if cfg.input_size is not None and tuple(cfg.input_size) != self.fixed_shape:
                raise DetectorError(
                    f"detector model {path} has a fixed {shape[2]}x{shape[3]} input but detector.input_size is "
                    f"{list(cfg.input_size)}; drop input_size or re-export the model with a dynamic shape")
        elif cfg.input_size is not None:
            self.fixed_shape = tuple(cfg.input_size)
            if cfg.imgsz is not None:
                self._note(f"detector.input_size {list(cfg.input_size)} and detector.imgsz {cfg.imgsz} are both set; "
                           "the fixed input_size wins (set it to null to follow each source's aspect ratio)")
        else:
            default = meta.get("input_size")
            self.imgsz = cfg.imgsz or (max(default) if isinstance(default, list) and default else None)
            if self.imgsz is None:
                raise DetectorError(f"detector model {path} has a dynamic input size and no default in its metadata; "
                                    "set detector.imgsz (or --imgsz N)")
        # in_h, in_w: the fixed input, or the long side both ways for a dynamic one (tile size for tools)
        self.in_h, self.in_w = self.fixed_shape or (self.imgsz, self.imgsz)
        self._shapes: dict[tuple[int, int], tuple[int, int]] = {}

    def input_shape(self, width: int, height: int) -> tuple[int, int]:
        """The (height, width) input for width x height frames, decided once per frame size."""
        shape = self._shapes.get((width, height))
        if shape is None:
            if self.fixed_shape is None:
                shape = frame_input_shape(width, height, self.imgsz, self.stride)
            else:
                shape = self.fixed_shape
                wanted = frame_input_shape(width, height, max(shape), self.stride)
                if self._file_fixed and wanted != shape and self.cfg.letterbox != "stretch":
                    spec = f"{self.variant}:WEIGHTS.pth" if self.variant else \
                        "VARIANT:WEIGHTS.pth (e.g. yolox_nano:yolox_nano.pth)"
                    self._note(f"{Path(self.cfg.model).name} has a fixed {shape[0]}x{shape[1]} input; {width}x{height} "
                               f"frames would want {wanted[0]}x{wanted[1]} (no padding to pay for); re-export with "
                               f"a dynamic shape: python -m tools.export_model {spec} -o OUT.onnx")
            self._shapes[(width, height)] = shape
        return shape

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)
            print(f"note: {text}", file=sys.stderr)

    def _guess_format(self, cfg: DetectorConfig) -> str:
        outs = self.session.get_outputs()
        n_cls = len(COCO_NAMES if cfg.class_names == "coco" else cfg.class_names)
        if len(outs) == 6:
            return "nanodet"
        last = outs[0].shape[-1] if len(outs) == 1 else None
        if last == 5 + n_cls:
            return "yolox"
        if last == 4 + n_cls:
            return "decoded"
        raise DetectorError(
            f"detector model {cfg.model}: cannot tell its output layout ({len(outs)} outputs, last dim {last}); "
            "set detector.format (yolox, nanodet or decoded)"
        )

    def _class_mask(self, classes: tuple[str, ...]) -> np.ndarray:
        mask = np.ones(len(self.class_names), bool)
        if classes:
            unknown = [c for c in classes if c not in self.class_names]
            if unknown:
                raise ConfigError(
                    f"detector.classes: {unknown!r} not among the model's classes; allowed: {', '.join(self.class_names)}"
                )
            mask[:] = False
            mask[[self.class_names.index(c) for c in classes]] = True
        return mask

    def _check_outputs(self, path: Path) -> None:
        outs = self.session.get_outputs()
        n_cls = len(self.class_names)
        expect = {"yolox": 5 + n_cls, "decoded": 4 + n_cls}.get(self.cfg.format)
        if expect is not None:
            last = outs[0].shape[-1]
            if len(outs) != 1 or (isinstance(last, int) and last != expect):
                raise DetectorError(
                    f"detector model {path}: output {outs[0].shape} does not fit format "
                    f"'{self.cfg.format}' with {n_cls} classes (expected last dim {expect}); check detector.format"
                )
        elif len(outs) != 6:
            raise DetectorError(f"detector model {path}: format 'nanodet' needs 6 outputs, the model has {len(outs)}")

    # -- protocol ------------------------------------------------------------------
    def preprocess(self, images: Sequence[np.ndarray]) -> Batch:
        lbs, canvases = [], []
        in_h, in_w = self.input_shape(images[0].shape[1], images[0].shape[0])   # one shape per batch
        for img in images:
            lb = Letterbox.fit(img.shape[1], img.shape[0], in_h, in_w, self.prep.letterbox)
            lbs.append(lb)
            canvases.append(letterbox_image(img, lb, in_h, in_w, self.prep.pad_value))
        swap = self.prep.color == "rgb"
        # (B, H, W, 3) uint8 BGR -> (B, 3, H, W) float32 in the model's colour order, then its mean / std
        # (given in that colour order: a reversed mean here fed the RGB lite model B's mean on R)
        data = cv2.dnn.blobFromImages(canvases, 1.0, swapRB=swap) if len(canvases) > 1 else \
            cv2.dnn.blobFromImage(canvases[0], 1.0, swapRB=swap)
        data = self.prep.normalize(data)
        return Batch(np.ascontiguousarray(data, np.float32), tuple(lbs))

    def infer(self, batch: Batch) -> list[np.ndarray]:
        if len(batch) == 1 or self.session.get_inputs()[0].shape[0] != 1:
            return self.session.run(None, {self.input_name: batch.data})
        # A model exported with batch 1: run frame by frame, stack outputs.
        parts = [self.session.run(None, {self.input_name: batch.data[i:i + 1]}) for i in range(len(batch))]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]

    def postprocess(self, raw: list[np.ndarray], batch: Batch) -> list[Detections]:
        scores, rows = self._decode(raw, batch.data.shape[2:])   # (B, N, C), rows(i, idx) -> (K, 4) input pixels
        cfg = self.cfg
        return [select(scores[i], lambda idx, i=i: rows(i, idx), batch.letterboxes[i], self._keep_mask,
                       cfg.score_threshold, cfg.top_k, cfg.nms_iou, cfg.max_detections) for i in range(len(batch))]

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        batch = self.preprocess(images)
        return self.postprocess(self.infer(batch), batch)

    # -- decoding ------------------------------------------------------------------
    def _decode(self, raw: list[np.ndarray], in_hw):
        """(B, N, C) class scores and ``rows(i, idx)``: the xyxy boxes (input pixels) of image i's rows idx,
        decoded only for the rows that pass the threshold and top-k."""
        fmt = self.cfg.format
        if fmt == "decoded":
            out = raw[0]                                   # (B, N, 4 + C)
            return out[..., 4:], lambda i, idx: out[i, idx, :4]
        key = (int(in_hw[0]), int(in_hw[1]))
        if key not in self._grids:
            self._grids[key] = _grid(key[0], key[1], (8, 16, 32))
        cells, strides = self._grids[key]
        if fmt == "yolox":
            out = raw[0]                                   # (B, N, 5 + C)

            def yolox_rows(i: int, idx: np.ndarray) -> np.ndarray:
                r, s = out[i, idx], strides[idx, None]     # (K, 5 + C), (K, 1)
                cxcy = (r[:, 0:2] + cells[idx]) * s
                wh = np.exp(np.clip(r[:, 2:4], -10.0, 10.0)) * s
                return np.concatenate([cxcy - wh / 2, cxcy + wh / 2], axis=-1)

            return out[..., 5:] * out[..., 4:5], yolox_rows
        # nanodet: outputs are 3 score tensors then 3 distribution tensors
        scores = np.concatenate(raw[:3], axis=1)           # (B, N, C)
        dist_all = np.concatenate(raw[3:], axis=1)         # (B, N, 4 * bins)
        bins = dist_all.shape[-1] // 4

        def nanodet_rows(i: int, idx: np.ndarray) -> np.ndarray:
            dist = dist_all[i, idx].reshape(len(idx), 4, bins)
            dist = np.exp(dist - dist.max(-1, keepdims=True))
            dist /= dist.sum(-1, keepdims=True)
            s = strides[idx, None]
            ltrb = (dist * np.arange(bins, dtype=np.float32)).sum(-1) * s
            centre = cells[idx] * s + (s - 1) / 2
            return np.concatenate([centre - ltrb[:, :2], centre + ltrb[:, 2:]], axis=-1)

        return scores, nanodet_rows
