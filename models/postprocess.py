"""Decode + NMS on the model's device, batched, in one readable order.

    score threshold (score >= threshold) -> top-k -> decode -> clip (a box left with no area dropped)
    -> class-aware NMS -> max detections

The ONNX backend's numpy post-processing (``pipeline/np_postprocess.py``) runs the same order with the
same comparisons (``>=`` for the score threshold, IoU ``>`` nms_iou suppresses); with ``clip`` set to
each image's area inside the letterbox both give the same boxes (``tests/test_postprocess_parity.py``).

NMS is ``torchvision.ops.nms`` where torchvision is installed, else the pure-torch fixed point
below (``nms_keep``); both give greedy NMS's answer.  Every model exposes ``raw(x) -> (params (B, N, 4), scores (B, N, C), priors (N, 5))`` and
``decode_boxes(params, priors) -> xyxy``; decoding only the top-k candidates keeps the
exp/offset arithmetic off the thousands of empty cells.  Each box keeps its best class
(one box per object, as in YOLOX's demo), so a car is not reported again as a truck.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class PostprocessConfig:
    score_threshold: float = 0.3
    nms_iou: float = 0.45
    pre_nms_topk: int = 1000
    max_detections: int = 100


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of (..., M, 4) and (..., K, 4) xyxy boxes -> (..., M, K)."""
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)  # (..., M)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)  # (..., K)
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])  # (..., M, K, 2)
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])  # (..., M, K, 2)
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]  # (..., M, K)
    union = area_a[..., :, None] + area_b[..., None, :] - inter
    return inter / union.clamp(min=1e-9)


def nms_sorted(boxes: torch.Tensor, classes: torch.Tensor, valid: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Exact greedy class-aware NMS, batched and loop-free over boxes (Cluster-NMS fixed point).

    boxes (B, K, 4), classes (B, K), valid (B, K) bool; each row sorted by score, highest first.
    Returns keep (B, K) bool, identical to running greedy NMS per image and class.

    A box is suppressed when a *kept* higher-scored box of its class overlaps it by more than
    the threshold.  Starting from "all kept", recomputing keep from the current keep set
    converges to the greedy answer; the number of rounds is the longest chain of
    suppressions (a handful in practice), and each round is one (B, K, K) max.
    """
    k = boxes.shape[1]
    if k == 0:
        return valid.clone()
    iou = box_iou(boxes, boxes)  # (B, K, K)
    same = classes[:, :, None] == classes[:, None, :]  # (B, K, K)
    higher = torch.ones(k, k, dtype=torch.bool, device=boxes.device).triu(diagonal=1)  # row i beats column j > i
    overlap = (iou > iou_threshold) & same & higher & valid[:, :, None]  # (B, K, K): i may suppress j
    keep = valid.clone()
    for _ in range(k):
        suppressed = (overlap & keep[:, :, None]).any(dim=1)  # (B, K): some kept box beats it
        new_keep = valid & ~suppressed
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return keep


_TV_NMS: list = []   # [torchvision.ops.nms or None], filled on first use
TV_NMS_ERRORS: list[str] = []   # why the torchvision NMS was given up at run time, if it was


def torchvision_nms():
    """``torchvision.ops.nms`` when torchvision imports and its op runs here, else None."""
    if not _TV_NMS:
        try:
            from torchvision.ops import nms

            nms(torch.zeros(1, 4), torch.zeros(1), 0.5)   # a torchvision built for another torch fails here
            _TV_NMS.append(nms)
        except Exception:   # not installed, or its compiled ops do not load with this torch
            _TV_NMS.append(None)
    return _TV_NMS[0]


def nms_backend(name: str = "auto") -> str:
    """The NMS that ``nms_keep`` runs: ``torchvision`` when available (or asked), else ``torch``."""
    if name not in ("auto", "torch", "torchvision"):
        raise ValueError(f"nms backend {name!r} is not known; use auto, torch or torchvision")
    if name == "auto":
        return "torchvision" if torchvision_nms() is not None else "torch"
    if name == "torchvision" and torchvision_nms() is None:
        raise RuntimeError("nms backend 'torchvision' asked for but torchvision is not installed for this torch")
    return name


def nms_keep(boxes: torch.Tensor, classes: torch.Tensor, valid: torch.Tensor, iou_threshold: float,
             backend: str = "auto") -> torch.Tensor:
    """Greedy class-aware NMS on score-sorted rows, as ``nms_sorted``: keep (B, K) bool.

    ``torchvision``: one ``torchvision.ops.nms`` kernel call over the whole batch; images and
    classes are kept apart by shifting each (image, class) group's boxes to its own region
    (in float64, so the shift costs no precision, unlike float32 at batch 32 x 80 classes).
    ``torch``: the loop-free fixed point of ``nms_sorted`` (no torchvision needed).
    """
    if nms_backend(backend) == "torch":
        return nms_sorted(boxes, classes, valid, iou_threshold)
    b, k = valid.shape
    flat = valid.reshape(-1).nonzero().squeeze(1)   # valid rows, image-major, score order inside an image
    keep = torch.zeros(b * k, dtype=torch.bool, device=valid.device)
    if flat.numel() == 0:
        return keep.view(b, k)
    sel = boxes.reshape(-1, 4)[flat].double()
    group = (flat // k) * (int(classes.max().item()) + 1) + classes.reshape(-1)[flat]
    span = float(sel.max().item()) - min(float(sel.min().item()), 0.0) + 1.0
    shifted = sel + (group.double() * span)[:, None]
    rank = -(flat % k).double()                      # rows are sorted: earlier = higher, ties kept in order
    try:
        kept = torchvision_nms()(shifted, rank, iou_threshold)
    except RuntimeError as e:   # e.g. a build without float64 kernels on this device: the torch NMS from now on
        TV_NMS_ERRORS.append(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
        _TV_NMS[:] = [None]
        warnings.warn(f"torchvision NMS failed ({TV_NMS_ERRORS[-1]}); using the torch NMS", RuntimeWarning)
        return nms_sorted(boxes, classes, valid, iou_threshold)
    keep[flat[kept]] = True
    return keep.view(b, k)


def postprocess_packed(
    params: torch.Tensor,
    scores: torch.Tensor,
    priors: torch.Tensor,
    decode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    input_hw: tuple[int, int],
    cfg: PostprocessConfig,
    nms: str = "auto",
    clip: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, N, 4) params, (B, N, C) scores, (N, 5) priors -> the kept boxes of the whole batch:
    xyxy (M, 4), score (M,), class (M,), image index (M,), image-major and by score inside an image.
    ``clip`` (B, 4) x0, y0, x1, y1: each image's area in the network input (its letterbox); None: the input.

    Everything stays on the input device, so a caller copies the final boxes back in one transfer.
    """
    b, n, _ = scores.shape
    best, cls = scores.max(dim=2)  # (B, N) best class per box
    # score threshold -> top-k: top-k of all boxes, then mask the ones under the threshold
    k = min(cfg.pre_nms_topk, n)
    top_score, top_idx = best.topk(k, dim=1)  # (B, k), sorted high -> low
    valid = top_score >= cfg.score_threshold  # (B, k)
    k_used = int(valid.sum(dim=1).max().item()) if b else 0  # longest surviving list in the batch
    top_score, top_idx, valid = top_score[:, :k_used], top_idx[:, :k_used], valid[:, :k_used]
    top_cls = cls.gather(1, top_idx)  # (B, k_used)
    # decode only the survivors
    sel_params = params.gather(1, top_idx[:, :, None].expand(-1, -1, params.shape[2]))  # (B, k_used, 4)
    boxes = decode(sel_params, priors[top_idx])  # priors[top_idx]: (B, k_used, 5) -> boxes (B, k_used, 4)
    # clip to each image's area in the network input (default: the whole input)
    if clip is None:
        h, w = input_hw
        lo = boxes.new_zeros(1, 1, 2)
        hi = torch.tensor([w, h], dtype=boxes.dtype, device=boxes.device).view(1, 1, 2)
    else:
        clip = clip.to(boxes.device, boxes.dtype)
        lo, hi = clip[:, None, :2], clip[:, None, 2:]                  # (B, 1, 2)
    lo4, hi4 = torch.cat((lo, lo), dim=-1), torch.cat((hi, hi), dim=-1)
    boxes = torch.minimum(torch.maximum(boxes, lo4), hi4).float()     # (B, k_used, 4)
    valid = valid & (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])   # no area: no detection
    keep = nms_keep(boxes, top_cls, valid, cfg.nms_iou, nms)  # (B, k_used)
    keep &= keep.cumsum(dim=1) <= cfg.max_detections  # the best max_detections of each image
    img, pos = keep.nonzero(as_tuple=True)  # image-major, still sorted by score inside an image
    return boxes[img, pos], top_score[img, pos].float(), top_cls[img, pos], img


def postprocess(
    params: torch.Tensor,
    scores: torch.Tensor,
    priors: torch.Tensor,
    decode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    input_hw: tuple[int, int],
    cfg: PostprocessConfig,
    nms: str = "auto",
    clip: torch.Tensor | None = None,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(B, N, 4) params, (B, N, C) scores, (N, 5) priors -> per image (xyxy (M, 4), score (M,), class (M,)).

    Boxes stay in network-input pixels and on the input device; the caller undoes the letterbox.
    """
    xyxy, score, cls, img = postprocess_packed(params, scores, priors, decode, input_hw, cfg, nms, clip)
    counts = torch.bincount(img, minlength=scores.shape[0]).tolist()
    return list(zip(xyxy.split(counts), score.split(counts), cls.split(counts)))


def decoded_to_raw(decoded: torch.Tensor, input_hw: tuple[int, int]):
    """View an exported (B, N, 4 + C) decoded tensor as (params, scores, priors) with identity decode.

    Lets ``postprocess`` run on the output of an exported graph (ONNX parity checks).
    """
    n = decoded.shape[1]
    priors = torch.zeros(n, 5, dtype=decoded.dtype, device=decoded.device)
    return decoded[..., :4], decoded[..., 4:], priors, (lambda p, _pr: p)
