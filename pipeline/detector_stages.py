"""The detector's stages of the chain (preprocess, inference, decode), built from the detector:

- ``frame_stages``: one frame at a time (the default);
- ``crop_stages``: each frame batched with its native-resolution crops (``detector.crops``,
  ``pipeline/crops.py``); the crop planning and merging are timed as their own rows;
- ``batched_stages``: ``detector.batch`` consecutive frames of a file as one batch.
"""
from __future__ import annotations

import dataclasses
import time

from dashtrack_core.records import Packet, PacketGroup
from .stages import Many, StageSpec


def frame_stages(det) -> list[StageSpec]:
    def preprocess(p: Packet) -> Packet:
        return dataclasses.replace(p, batch=det.preprocess([p.frame.image]))

    def inference(p: Packet) -> Packet:
        return dataclasses.replace(p, raw=det.infer(p.batch))

    def decode(p: Packet) -> Packet:
        return dataclasses.replace(p, raw=None, batch=None, detections=det.postprocess(p.raw, p.batch)[0])

    return [StageSpec("preprocess", preprocess), StageSpec("inference", inference, workers=getattr(det, "workers", 1)),
            StageSpec("decode", decode)]


def crop_stages(cdet, planner, stats, tracked: bool) -> list[StageSpec]:
    """preprocess / inference / decode with the frame's crops in the batch; the crop planning
    and merging are timed as their own rows ("crop plan", "crop merge"), the crops' share of
    preprocess and inference stays in those rows; the crop count is under ``counts``.
    Without a track stage (``tracked`` False) the planner learns from the merged boxes."""

    def preprocess(p: Packet) -> Packet:
        img = p.frame.image
        t0 = time.perf_counter()
        rects = planner.plan(p.frame.index, img.shape[1], img.shape[0])
        stats.record("crop plan", time.perf_counter() - t0)
        stats.count("crops", len(rects))
        return dataclasses.replace(p, batch=cdet.preprocess(img, rects))

    def inference(p: Packet) -> Packet:
        return dataclasses.replace(p, raw=cdet.infer(p.batch))

    def decode(p: Packet) -> Packet:
        dets = cdet.detector.postprocess(p.raw, p.batch.batch)
        t0 = time.perf_counter()
        merged = cdet.merge(dets, p.batch)
        stats.record("crop merge", time.perf_counter() - t0)
        if not tracked:
            planner.update(p.frame.index, merged)
        return dataclasses.replace(p, raw=None, batch=None, detections=merged)

    workers = getattr(cdet.detector, "workers", 1)
    return [StageSpec("preprocess", preprocess), StageSpec("inference", inference, workers=workers),
            StageSpec("decode", decode)]


def batched_stages(det, size: int) -> list[StageSpec]:
    """``detector.batch`` > 1: a ``batch`` stage gathers ``size`` consecutive packets into a
    ``PacketGroup`` (the last, partial group at the end of the input), preprocess, inference
    and decode each run once per group, and decode passes the packets on one by one, in order.
    Stage times stay per frame (the chain divides a group's time by its frames)."""
    pending: list[Packet] = []

    def gather(p: Packet) -> PacketGroup | None:
        pending.append(p)
        return flush() if len(pending) >= size else None

    def flush() -> PacketGroup | None:
        if not pending:
            return None
        group = PacketGroup(tuple(pending))
        pending.clear()
        return group

    def preprocess(g: PacketGroup) -> PacketGroup:
        return dataclasses.replace(g, batch=det.preprocess([p.frame.image for p in g.packets]))

    def inference(g: PacketGroup) -> PacketGroup:
        return dataclasses.replace(g, raw=det.infer(g.batch))

    def decode(g: PacketGroup) -> Many:
        dets = det.postprocess(g.raw, g.batch)
        return Many(dataclasses.replace(p, detections=d) for p, d in zip(g.packets, dets))

    return [StageSpec("batch", gather, flush=flush), StageSpec("preprocess", preprocess),
            StageSpec("inference", inference, workers=getattr(det, "workers", 1)), StageSpec("decode", decode)]
