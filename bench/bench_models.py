"""Benchmark the registered detector variants: ms/img, img/s, params, GFLOPs.

    python -m bench.bench_models                       # every variant, CPU fp32 batch 1 (+ CUDA fp32/fp16, batch 1 and 8)
    python -m bench.bench_models --variants resnet18_s16 resnet18_s32 --sizes 384x640 736x1280
    python -m bench.bench_models --onnx                # add onnxruntime rows on CPU
    python -m bench.bench_models --assignment          # anchor-free vs anchors: cell collisions on KITTI labels

Times are the median of ``--iters`` forward passes (network only, no pre/post-processing)
after ``--warmup`` passes, with ``--threads`` CPU threads (torch's default otherwise).  GFLOPs count conv/matmul work at
batch 1 (2 x multiply-accumulates, torch.utils.flop_counter).
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:      # run by path: the project's packages are not on the path
    raise SystemExit("run it from the repository root as a module: python -m bench.bench_models --help")

import argparse
import dataclasses
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from models.registry import build_model, list_variants, load_variant
from dashtrack_core.paths import shared_data_dir

ROOT = Path(__file__).resolve().parents[1]
KITTI = shared_data_dir() / "kitti_tracking" / "label_02"


def gflops(model, size) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, *size))
    return counter.get_total_flops() / 1e9


def time_torch(model, size, device, half, batch, warmup, iters) -> float:
    dtype = torch.float16 if half else torch.float32
    model = model.to(device, dtype)
    x = torch.randn(batch, 3, *size, device=device, dtype=dtype)
    times = []
    with torch.inference_mode():
        for i in range(warmup + iters):
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            model(x)
            if device == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - t)
    model.to("cpu", torch.float32)
    return statistics.median(times) * 1000 / batch


def time_onnx(model, spec, warmup, iters, threads: int) -> float:
    import onnxruntime as ort

    from models.export import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, spec, Path(tmp) / "m.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.random.randn(1, 3, *spec.input_size).astype(np.float32)
    times = []
    for i in range(warmup + iters):
        t = time.perf_counter()
        session.run(None, {"images": x})
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def parse_size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


HEADER = ["| variant | input HxW | device / precision | batch | ms/img | img/s | params (M) | GFLOPs |",
          "| --- | --- | --- | --- | --- | --- | --- | --- |"]


def bench(args) -> list[str]:
    """Measure and print one table row at a time; returns the rows."""
    rows: list[str] = []
    configs = [("cpu", False, b) for b in args.cpu_batches]
    if torch.cuda.is_available():
        configs += [("cuda", half, b) for half in (False, True) for b in (1, 8)]
    for name in args.variants or list_variants():
        base = load_variant(name)
        sizes = [parse_size(s) for s in args.sizes] if args.sizes else [base.input_size]
        if base.family == "yolox" and not args.sizes:
            sizes = [base.input_size]
        for size in sizes:
            spec = dataclasses.replace(base, input_size=size)
            model = build_model(spec)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            flops = gflops(model, size)
            for device, half, batch in configs:
                ms = time_torch(model, size, device, half, batch, args.warmup, args.iters)
                label = f"{device} {'fp16' if half else 'fp32'} torch eager"
                rows.append(f"| {name} | {size[0]}x{size[1]} | {label} | {batch} | {ms:.1f} | {1000 / ms:.1f} "
                            f"| {params:.2f} | {flops:.2f} |")
                print(rows[-1], flush=True)
            if args.onnx:
                ms = time_onnx(model, spec, args.warmup, args.iters, torch.get_num_threads())
                rows.append(f"| {name} | {size[0]}x{size[1]} | cpu fp32 onnxruntime | 1 | {ms:.1f} | {1000 / ms:.1f} "
                            f"| {params:.2f} | {flops:.2f} |")
                print(rows[-1], flush=True)
    return rows


# ---- anchor-free vs anchors: how many objects lose their cell -------------------------------------

def kitti_boxes() -> list[np.ndarray]:
    """Per labelled frame, the (M, 4) xyxy boxes of real objects (DontCare dropped)."""
    frames = []
    for path in sorted(KITTI.glob("*.txt")):
        per: dict[int, list] = {}
        for line in path.read_text().splitlines():
            f = line.split()
            if f[2] == "DontCare":
                continue
            per.setdefault(int(f[0]), []).append([float(v) for v in f[6:10]])
        frames += [np.array(b, np.float32) for b in per.values()]
    return frames


def kmeans_wh(wh: np.ndarray, k: int, iters: int = 30) -> np.ndarray:
    """k box shapes by k-means with 1 - IoU (both centred) as distance; deterministic start."""
    centres = np.quantile(wh, np.linspace(0.1, 0.9, k), axis=0)
    for _ in range(iters):
        inter = np.minimum(wh[:, None, 0], centres[None, :, 0]) * np.minimum(wh[:, None, 1], centres[None, :, 1])
        iou = inter / (wh.prod(1)[:, None] + centres.prod(1)[None] - inter)
        best = iou.argmax(1)
        centres = np.array([wh[best == j].mean(0) if (best == j).any() else centres[j] for j in range(k)])
    return centres


def assignment(scale: float) -> list[str]:
    frames = kitti_boxes()
    allwh = np.concatenate([(b[:, 2:] - b[:, :2]) * scale for b in frames])
    rows = ["| stride | priors per cell | objects | share a cell+prior with another object | lost (one kept per slot) |",
            "| --- | --- | --- | --- | --- |"]
    for stride in (16, 32):
        for k in (1, 3, 5):
            centres = kmeans_wh(allwh, k) if k > 1 else None
            shared = lost = total = 0
            for b in frames:
                b = b * scale
                cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
                slot = (cx // stride).astype(int) * 10_000 + (cy // stride).astype(int) * 10
                if centres is not None:
                    wh = b[:, 2:] - b[:, :2]
                    inter = (np.minimum(wh[:, None, 0], centres[None, :, 0]) *
                             np.minimum(wh[:, None, 1], centres[None, :, 1]))
                    slot = slot + (inter / (wh.prod(1)[:, None] + centres.prod(1)[None] - inter)).argmax(1)
                _, inverse, counts = np.unique(slot, return_inverse=True, return_counts=True)
                shared += int((counts[inverse] > 1).sum())
                lost += int((counts - 1).sum())
                total += len(b)
            rows.append(f"| {stride} | {k}{' (anchor-free)' if k == 1 else ''} | {total} | "
                        f"{100 * shared / total:.2f}% | {100 * lost / total:.2f}% |")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="*", help=f"default: all ({', '.join(list_variants())})")
    ap.add_argument("--sizes", nargs="*", help="input sizes HxW, e.g. 384x640 736x1280 (default: the variant's)")
    ap.add_argument("--cpu-batches", nargs="*", type=int, default=[1])
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=7)
    ap.add_argument("--threads", type=int, help="torch and onnxruntime CPU threads (default: torch's)")
    ap.add_argument("--onnx", action="store_true", help="add onnxruntime CPU rows (needs the onnx package)")
    ap.add_argument("--assignment", action="store_true", help="only the anchor-free vs anchors cell-collision table")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.assignment:
        print(f"KITTI tracking labels ({KITTI}), 1242x375 frames scaled by 640/1242 (the 384x640 letterbox)")
        print("\n".join(assignment(640 / 1242)))
        return 0
    print(f"device: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU threads visible, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"CUDA: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'not available'}")
    print("\n".join(HEADER), flush=True)
    bench(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
