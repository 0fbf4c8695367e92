"""The measurements of ``bench/gpu_check.py``: model-only timings, CPU-vs-device parity, end to end.

Each function takes a ``deadline`` (``time.monotonic()`` value) and stops starting new work past
it; what it skipped is recorded, never silently dropped.  Every attempt that may fail on some
machine (CUDA graphs, ``torch.compile``) is guarded and its error recorded in its row.
"""
from __future__ import annotations

import dataclasses
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import load_state_strict
from models.detector import build_detector, resolve
from models.registry import build_model, load_variant

VARIANTS = ("resnet18_s16", "resnet18_s32", "mobilenetv2_s16", "yolox_nano")


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:300]}" if text else type(e).__name__


def load_network(name: str, yolox_pth: Path | None) -> torch.nn.Module:
    """A variant's network with no download: fastdet trunks random (timing only), YOLOX from the shared .pth."""
    if name.startswith("yolox"):
        if yolox_pth is None or not yolox_pth.is_file():
            raise FileNotFoundError(f"no YOLOX checkpoint at {yolox_pth} (pass --shared DIR)")
        spec, state, source = resolve(f"{name}:{yolox_pth}")
        model = build_model(spec)
        load_state_strict(model, state, source, spec.name)
        return model
    spec = load_variant(name)
    spec = dataclasses.replace(spec, fastdet=dataclasses.replace(spec.fastdet, pretrained="none"))
    return build_model(spec)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn, device: torch.device, warmup: int, min_iters: int, max_s: float) -> tuple[float, int]:
    """Median ms of ``fn()`` after ``warmup`` calls; at least ``min_iters`` calls, then until ``max_s``."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_iters or (time.perf_counter() - start < max_s and len(times) < 200):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times), len(times)


def graphed(model, x: torch.Tensor):
    """``model.raw`` captured in a CUDA graph on a static input; returns the replay function."""
    static = x.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            model.raw(static)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        model.raw(static)
    return graph.replay


def model_timings(device: torch.device, variants, sizes, precisions, batches, modes, yolox_pth, deadline: float,
                  warmup: int, min_iters: int, max_s: float) -> list[dict]:
    """One row per (variant, size, precision, batch, mode): ms per batch and images per second."""
    rows: list[dict] = []
    for name in variants:
        try:
            base = load_network(name, yolox_pth).eval()
        except Exception as e:
            rows.append({"variant": name, "status": "failed", "error": first_line(e)})
            continue
        for size in sizes:
            for precision in precisions:
                dtype = torch.float16 if precision == "fp16" else torch.float32
                for batch in batches:
                    for mode in modes:
                        row = {"variant": name, "input_hw": list(size), "precision": precision, "batch": batch,
                               "mode": mode}
                        rows.append(row)
                        if time.monotonic() > deadline:
                            row.update(status="skipped", error="step time budget spent")
                            continue
                        try:
                            cl = mode != "eager"
                            fmt = torch.channels_last if cl else torch.contiguous_format
                            model = base.to(device, dtype).to(memory_format=fmt)
                            x = torch.randn(batch, 3, *size, device=device, dtype=dtype).contiguous(memory_format=fmt)
                            with torch.inference_mode():
                                fn = graphed(model, x) if mode == "channels_last+cuda_graph" else (lambda: model.raw(x))
                                ms, n = time_calls(fn, device, warmup, min_iters, max_s)
                            row.update(status="ok", ms_per_batch=round(ms, 3), images_per_s=round(1000 * batch / ms, 1),
                                       iters=n)
                        except Exception as e:   # out of memory, capture unsupported, ...: recorded, next row
                            row.update(status="failed", error=first_line(e))
                            if device.type == "cuda":
                                torch.cuda.empty_cache()
        base.to("cpu", torch.float32)
    return rows


def compile_timing(device: torch.device, name: str, size, precision: str, batch: int, yolox_pth) -> dict:
    """``torch.compile`` of one headline configuration (compiling every row would not fit the budget)."""
    dtype = torch.float16 if precision == "fp16" else torch.float32
    row = {"variant": name, "input_hw": list(size), "precision": precision, "batch": batch,
           "mode": "channels_last+torch.compile"}
    try:
        model = load_network(name, yolox_pth).eval().to(device, dtype).to(memory_format=torch.channels_last)
        x = torch.randn(batch, 3, *size, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
        raw = torch.compile(model.raw)
        t0 = time.perf_counter()
        with torch.inference_mode():
            raw(x)
            _sync(device)
            compile_s = time.perf_counter() - t0
            ms, n = time_calls(lambda: raw(x), device, 3, 10, 1.0)
        row.update(status="ok", ms_per_batch=round(ms, 3), images_per_s=round(1000 * batch / ms, 1), iters=n,
                   compile_s=round(compile_s, 1))
    except Exception as e:
        row.update(status="failed", error=first_line(e))
    return row


# ---- parity ------------------------------------------------------------------------------------

def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-9)


def match(ref, got, iou_min: float = 0.95, score_tol: float = 0.02) -> dict:
    """Greedy one-to-one match of same-class boxes by IoU; counts and the worst score difference."""
    iou = iou_matrix(ref.xyxy, got.xyxy)
    iou[ref.class_id[:, None] != got.class_id[None, :]] = 0
    used, matched, worst = set(), 0, 0.0
    for i in np.argsort(-ref.score, kind="stable"):
        order = [j for j in np.argsort(-iou[i]) if j not in used and iou[i, j] >= iou_min]
        if order:
            j = order[0]
            diff = abs(float(ref.score[i]) - float(got.score[j]))
            if diff <= score_tol:
                used.add(j)
                matched += 1
            worst = max(worst, diff)
    return {"ref": len(ref), "got": len(got), "matched": matched, "max_score_diff": round(worst, 4)}


def parity(frames: list[np.ndarray], yolox_pth: Path, variants: list[tuple[str, dict]]) -> dict:
    """CPU fp32 detections of ``frames`` against each (label, build_detector kwargs) variant."""
    spec = f"yolox_nano:{yolox_pth}"
    ref_det = build_detector(spec, device="cpu")
    ref = [ref_det.detect([f])[0] for f in frames]
    out = {"frames": len(frames), "reference": "cpu fp32 eager, frame by frame", "boxes": sum(len(r) for r in ref),
           "variants": {}}
    for label, kwargs in variants:
        try:
            det = build_detector(spec, **kwargs)
            got = det.detect(frames)                   # the whole set as one batch
            per = [match(r, g) for r, g in zip(ref, got)]
            total = {k: sum(p[k] for p in per) for k in ("ref", "got", "matched")}
            worst = max((p["max_score_diff"] for p in per), default=0.0)
            ok = total["matched"] == total["ref"] == total["got"]
            out["variants"][label] = dict(total, max_score_diff=worst, status="ok" if ok else "mismatch")
        except Exception as e:
            out["variants"][label] = {"status": "failed", "error": first_line(e)}
    return out


# ---- end to end --------------------------------------------------------------------------------

def looped(clip: Path, source_cfg, frames: int, seconds: float):
    """The clip decoded again and again up to ``frames`` frames or ``seconds`` of wall time."""
    from bench.common import Looped

    class Capped(Looped):
        def __iter__(self):
            for i, frame in enumerate(super().__iter__()):
                if i >= frames:
                    return
                yield frame

    n_clip_passes = 10 ** 6            # bounded by frames and seconds, not by passes
    return Capped(clip, source_cfg, times=n_clip_passes, seconds=seconds)


def decode_only(clip: Path, source_cfg, frames: int, streams: int, seconds: float) -> dict:
    """Frames per second of decoding alone, ``streams`` copies at once (threads, as the runner's)."""
    counts = [0] * streams

    def run(i: int) -> None:
        for _ in looped(clip, source_cfg, frames, seconds):
            counts[i] += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    wall = time.perf_counter() - t0
    return {"streams": streams, "frames": sum(counts), "fps": round(sum(counts) / wall, 1)}


def end_to_end(cli: list[str], clip: Path, frames: int, streams: int, seconds: float) -> dict:
    """run_stream.py's configuration from ``cli`` and its runner on the looped clip; FPS and stage table."""
    import run_stream
    from pipeline.multi import MultiRunner
    from pipeline.runner import Runner

    cfg = run_stream.build_config(run_stream.parse_args(["--source", str(clip)] + cli))
    t0 = time.perf_counter()
    if streams == 1:
        runner = Runner(cfg, looped(clip, cfg.source, frames, seconds))
        reports, detector = [runner.run()], runner.detector
    else:
        multi = MultiRunner(cfg, [str(clip)] * streams)
        for r in multi.runners:
            r.source.close()
            r.source = looped(clip, cfg.source, frames, seconds)
        reports, detector = multi.run(), multi.shared.detector
    wall = time.perf_counter() - t0
    frames = sum(r["frames_out"] for r in reports)
    stages = {k: {"p50_ms": v["p50_ms"], "mean_ms": v["mean_ms"]} for k, v in reports[0]["stages"].items()}
    return {"streams": streams, "frames": frames, "fps": round(frames / wall, 1), "stages": stages,
            "latency_p50_ms": reports[0]["latency"]["p50_ms"], "args": cli,
            "input_hw": list(input_hw(detector))}


def input_hw(detector) -> tuple:
    """The network input (H, W) a detector runs at (torch: ``input_size``, ONNX: ``in_h``/``in_w``)."""
    if hasattr(detector, "input_size"):
        return tuple(detector.input_size)
    return (getattr(detector, "in_h", None), getattr(detector, "in_w", None))
