"""Detector accuracy and cost on the two held-out splits, every variant in one process on the same frames.

    python -m bench.bench_detector --json bench/results/detector_cpu.json
        [--model models/weights/dashcam.onnx] [--rows teacher416,teacher_frame,default,crops,tiled]

Rows (each scored against the same labels, on the same frames):

- ``teacher416``:    the YOLOX-Nano COCO teacher as shipped in ../shared (square 416 letterbox);
- ``teacher_frame``: the same weights (``yolox_nano.pth``) re-exported at an input shaped like the
                     frame (``--frame-shape``, default 384x672) with ``models/export.py`` (as
                     ``tools/export_model.py`` does), cached under ``--work``; or ``--teacher-frame FILE``;
- ``default``:       the shipped default (``--model``; default ``models/weights/dashcam.onnx`` when present);
- ``crops``:         ``--crops-model`` (default: the ``default`` model, else the frame-shaped teacher) with
                     ``detector.crops`` on, run with the tracker over consecutive frames from one second
                     before the first scored frame (the planner learns from the tracks);
- ``tiled``:         the 416 teacher on native 416 tiles (overlap 0.25) + full pass: how the labels are
                     made, so it scores near 1 by construction; its cost is the point.

Splits: PandaSet 002 front frames 60-79 (1920x1080, 10 fps; the crops run starts at 50) and
test_small2.mp4 every 5th frame after the first second (frames 25, 30, ..., 95; 1280x720, 25 fps;
the crops run starts at 0).  Every row scores exactly these frames.  Labels: the tiled teacher's
pseudo-labels (``tools/pseudo_label.py``'s ``label_frame`` with its CLI defaults), made once into
``--work``/labels.  Metrics (``tools/detection_metrics.py``, IoU 0.5): car P/R/F1 at score >= 0.3,
car AP50 (detections >= 0.05), car recall by height (< 25, 25-40, >= 40 px), traffic-light recall.
Cost: wall ms per frame of preprocessing + inference + decode + NMS (+ crop planning and merging),
onnxruntime with ``--threads`` intra-op threads, one call at a time.
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:      # run by path: the project's packages are not on the path
    raise SystemExit("run it from the repository root as a module: python -m bench.bench_detector --help")

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import REPO, SHARED, markdown_table, write_json

from pipeline.config import DetectorConfig, SourceConfig, load_config  # noqa: E402
from pipeline.crops import CropDetector, CropPlanner, CropSettings, crop_size_for  # noqa: E402
from dashtrack_core.records import Detections  # noqa: E402
from pipeline.tiling import detect_tiled  # noqa: E402
from tools.datasets import DASHCAM_NAMES, ImageLabels  # noqa: E402
from tools.detection_metrics import evaluate  # noqa: E402
from tools.pseudo_label import LabelConfig, LabelError, label_frame, load_teacher  # noqa: E402

ROWS = ("teacher416", "teacher_frame", "default", "crops", "tiled")
CAR, LIGHT = DASHCAM_NAMES.index("car"), DASHCAM_NAMES.index("traffic light")


class BenchError(RuntimeError):
    """Bad input; one line for the user."""


@dataclasses.dataclass
class Split:
    name: str
    fps: float
    frames: dict[int, np.ndarray]     # frame index -> BGR image (scored and context frames)
    scored: list[int]
    start: int                        # first frame of the crops run


def load_splits(shared: Path, max_frames: int | None, context_s: float) -> list[Split]:
    import cv2

    from pipeline.sources import open_source

    panda = shared / "images" / "pandaset_002_front"
    clip = shared / "videos" / "udacity" / "test_small2.mp4"
    for p in (panda, clip):
        if not p.exists():
            raise BenchError(f"{p} not found; pass --shared DIR (the shared data folder)")
    out = []
    scored = list(range(60, 80))[:max_frames]
    start = max(0, scored[0] - int(round(context_s * 10)))
    frames = {}
    for i in range(start, scored[-1] + 1):
        img = cv2.imread(str(panda / f"{i:02d}.jpg"), cv2.IMREAD_COLOR)
        if img is None:
            raise BenchError(f"{panda / f'{i:02d}.jpg'}: not a readable image")
        frames[i] = img
    out.append(Split("pandaset 60-79", 10.0, frames, scored, start))
    src = open_source(str(clip), SourceConfig())
    fps = src.fps or 25.0
    first = int(round(fps))                       # every 5th frame after the first second
    scored = list(range(first, 100, 5))[:max_frames]
    start = max(0, scored[0] - int(round(context_s * fps)))
    frames = {}
    try:
        for f in src:
            if f.index > scored[-1]:
                break
            if f.index >= start:
                frames[f.index] = f.image
    finally:
        src.close()
    out.append(Split("test_small2 every 5th", fps, frames, scored, start))
    return out


# -- labels -------------------------------------------------------------------------------
def labels_for(split: Split, teacher_onnx: Path, work: Path) -> dict[int, np.ndarray]:
    """frame index -> (N, 6) x1 y1 x2 y2 class score: tiled-teacher pseudo-labels, cached in ``work``."""
    path = work / "labels" / (split.name.split()[0] + ".json")
    cached = json.loads(path.read_text()) if path.is_file() else {}
    missing = [i for i in split.scored if str(i) not in cached.get("frames", {})]
    if missing:
        teacher = load_teacher(str(teacher_onnx), 0.2, threads=2)     # pseudo_label.py's --det-threshold
        cfg = LabelConfig()                                             # 416 tiles, overlap 0.25, score 0.3
        frames = cached.get("frames", {})
        for i in missing:
            d = label_frame(split.frames[i], [teacher], cfg)
            frames[str(i)] = np.column_stack([d.xyxy, d.class_id, d.score]).round(2).tolist()
        cached = {"made_by": "tools/pseudo_label.py label_frame, yolox_nano tiled 416/0.25, det 0.2, label 0.3",
                  "teacher": str(teacher_onnx), "frames": frames}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cached))
    return {i: np.asarray(cached["frames"][str(i)], np.float64).reshape(-1, 6) for i in split.scored}


def ground_truth(labels: dict[int, np.ndarray], split: Split) -> list[ImageLabels]:
    out = []
    for i in split.scored:
        rows = labels[i]
        h, w = split.frames[i].shape[:2]
        out.append(ImageLabels(f"{i}", None, w, h, rows[:, :4], rows[:, 4].astype(np.int64),
                               np.zeros(len(rows), bool)))
    return out


# -- models -------------------------------------------------------------------------------
def export_frame_teacher(pth: Path, shape: tuple[int, int], work: Path) -> Path:
    """The teacher's checkpoint re-exported at ``shape`` (H, W); cached."""
    out = work / f"yolox_nano_{shape[0]}x{shape[1]}.onnx"
    if out.is_file():
        return out
    if not pth.is_file():
        raise BenchError(f"{pth} not found; pass --teacher-pth FILE or --teacher-frame FILE.onnx")
    from models.checkpoint import load_state_strict
    from models.detector import resolve
    from models.export import export_onnx
    from models.registry import build_model

    spec, state, source = resolve(f"yolox_nano:{pth}")
    spec = dataclasses.replace(spec, input_size=tuple(shape))
    model = build_model(spec)
    load_state_strict(model, state, source, spec.name)
    return export_onnx(model, spec, out)


def default_model() -> str | None:
    for p in (REPO / "configs" / "detectors" / "dashcam.yaml", REPO / "models" / "weights" / "dashcam.onnx"):
        if p.is_file():
            return str(p)
    return None


def build(spec: str, threads: int):
    try:
        return load_teacher(spec, 0.05, threads=threads)
    except LabelError as e:
        raise BenchError(str(e)) from None


# -- running ------------------------------------------------------------------------------
class Clock:
    """Wall and process-CPU ms per timed frame (CPU time is less bent by other load on the machine)."""

    def __init__(self):
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def __enter__(self):
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall.append(1000 * (time.perf_counter() - self._w))
        self.cpu.append(1000 * (time.process_time() - self._c))


def run_single(teacher, split: Split) -> tuple[list, Clock]:
    dets, clock = [], Clock()
    for i in split.scored:
        with clock:
            d = teacher.detector.detect([split.frames[i]])[0]
        dets.append(teacher.to_dashcam_ids(d))
    return dets, clock


def run_tiled(teacher, split: Split) -> tuple[list, Clock]:
    dets, clock = [], Clock()
    for i in split.scored:
        with clock:
            d = detect_tiled(teacher.detector, split.frames[i], teacher.input_size, 0.25, 0.5)
        dets.append(teacher.to_dashcam_ids(d))
    return dets, clock


def run_crops(teacher, split: Split, dcfg: DetectorConfig, tracker_cfg) -> tuple[list, Clock, float]:
    """Consecutive frames from ``split.start`` with the tracker feeding the planner; returns the scored
    frames' boxes, ms of every frame run and crops per frame."""
    from trackers import KalmanTracker

    planner = CropPlanner(CropSettings(budget=dcfg.crop_budget, small_px=dcfg.crop_small_px, band=tuple(dcfg.crop_band)),
                          crop_size_for(teacher.detector, dcfg.crop_size))
    cdet = CropDetector(teacher.detector, dcfg.crop_merge_iou, dcfg.crop_edge_margin, 300)
    tracker = KalmanTracker(tracker_cfg)
    dets, clock, n_crops = {}, Clock(), 0
    for i in range(split.start, split.scored[-1] + 1):
        img = split.frames[i]
        with clock:
            rects = planner.plan(i, img.shape[1], img.shape[0])
            d = cdet.detect(img, rects)
        n_crops += len(rects)
        tracked = tracker.update(d, i / split.fps, img)
        planner.update(i, tracked, d)
        if i in split.scored:
            dets[i] = teacher.to_dashcam_ids(d)
    return [dets[i] for i in split.scored], clock, n_crops / max(1, len(clock.wall))


def score(gts: list[ImageLabels], dets: list[Detections]) -> dict:
    res = evaluate(gts, [(d.xyxy, d.score, d.class_id) for d in dets], DASHCAM_NAMES, 0.5, 0.3)
    car, light = res["classes"]["car"], res["classes"]["traffic light"]
    bh = car["by_height"]
    return {"car": {k: car[k] for k in ("gt", "tp", "fp", "fn", "precision", "recall", "f1", "ap50")},
            "car_recall_by_height": {b: {"recall": bh[b]["recall"], "gt": bh[b]["gt"]} for b in bh},
            "traffic_light": {"gt": light["gt"], "recall": light["recall"], "ap50": light["ap50"]}}


def _clean(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def _f(v, nd=2) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{nd}f}"


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(SHARED), help="the shared data folder (default %(default)s)")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma list of {', '.join(ROWS)}")
    ap.add_argument("--model", default=None, help="the shipped default: .onnx or detector YAML "
                    "(default configs/detectors/dashcam.yaml or models/weights/dashcam.onnx when present)")
    ap.add_argument("--crops-model", nargs="+", default=None,
                    help="model(s) of the crops rows: teacher416, teacher_frame, default or a file "
                         "(default: default when there is one, else teacher_frame)")
    ap.add_argument("--teacher-frame", default=None, help="an existing frame-shaped teacher .onnx (skips the export)")
    ap.add_argument("--frame-shape", type=int, nargs=2, default=[384, 672], metavar=("H", "W"))
    ap.add_argument("--crop-budget", type=int, nargs="+", default=None,
                    help="crops per frame; several values: one crops row each (default: detector.crop_budget)")
    ap.add_argument("--crop-small-px", type=float, default=None, help="default: detector.crop_small_px")
    ap.add_argument("--crop-band", type=float, nargs=2, default=None, metavar=("TOP", "BOTTOM"),
                    help="horizon band as fractions of the height (default: detector.crop_band)")
    ap.add_argument("--max-frames", type=int, default=None, help="score only the first N frames of each split")
    ap.add_argument("--context-seconds", type=float, default=1.0, help="crops run starts this long before the first scored frame")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (default %(default)s)")
    ap.add_argument("--work", default=str(REPO / "runs" / "bench_detector"), help="labels and exports cache")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    bad = [r for r in rows if r not in ROWS]
    if bad or not rows:
        ap.error(f"--rows {args.rows!r}: allowed {', '.join(ROWS)}")
    args.row_list = rows
    if args.max_frames is not None and args.max_frames < 1:
        ap.error("--max-frames must be >= 1")
    return args


def run(args) -> list[dict]:
    shared, work = Path(args.shared), Path(args.work)
    teacher_onnx = shared / "teachers" / "yolox_nano" / "yolox_nano.onnx"
    if not teacher_onnx.is_file():
        raise BenchError(f"{teacher_onnx} not found; pass --shared DIR (the shared data folder)")
    splits = load_splits(shared, args.max_frames, args.context_seconds)
    gts = {s.name: ground_truth(labels_for(s, teacher_onnx, work), s) for s in splits}
    model = args.model or default_model()
    frame_shape = "x".join(map(str, args.frame_shape))
    specs: dict[str, tuple[str, str]] = {"teacher416": ("teacher 416x416", str(teacher_onnx))}
    crops_models = args.crops_model or ["default" if model else "teacher_frame"]
    if "teacher_frame" in args.row_list or ("crops" in args.row_list and "teacher_frame" in crops_models):
        path = args.teacher_frame or str(export_frame_teacher(shared / "teachers" / "yolox_nano" / "yolox_nano.pth",
                                                              tuple(args.frame_shape), work))
        specs["teacher_frame"] = (f"teacher {frame_shape}", path)
    if model:
        specs["default"] = (f"default ({Path(model).name})", model)
    dcfg = load_config().detector
    dcfg = dataclasses.replace(dcfg, crop_small_px=args.crop_small_px or dcfg.crop_small_px,
                               crop_band=tuple(args.crop_band or dcfg.crop_band))
    budgets = args.crop_budget or [dcfg.crop_budget]
    tracker_cfg = load_config().tracker
    loaded: dict[str, object] = {}

    def get(spec: str):
        if spec not in loaded:
            loaded[spec] = build(spec, args.threads)
        return loaded[spec]

    results = []
    for row in args.row_list:
        if row in ("default",) and row not in specs:
            print(f"note: no shipped default model (models/weights/dashcam.onnx); row {row!r} skipped; pass --model",
                  file=sys.stderr)
            continue
        variants = [(s, m, b) for s in splits for m in crops_models for b in budgets] if row == "crops" else \
            [(s, None, None) for s in splits]
        for split, cmodel, budget in variants:
            extra = {}
            if row == "crops":
                if cmodel in ("teacher416", "teacher_frame", "default") and cmodel not in specs:
                    raise BenchError(f"--crops-model {cmodel}: that model is not available (pass --model)")
                label, spec = specs[cmodel] if cmodel in specs else (Path(cmodel).name, cmodel)
                label += f" + {budget} crop{'s' if budget > 1 else ''}"
                bcfg = dataclasses.replace(dcfg, crop_budget=budget)
                dets, clock, per_frame = run_crops(get(spec), split, bcfg, tracker_cfg)
                extra = {"crops_per_frame": round(per_frame, 2), "frames_run": len(clock.wall),
                         "crop_budget": budget, "crop_small_px": dcfg.crop_small_px, "crop_band": list(dcfg.crop_band)}
            elif row == "tiled":
                label, spec = "teacher 416 tiled + full", str(teacher_onnx)
                dets, clock = run_tiled(get(spec), split)
            else:
                label, spec = specs[row]
                dets, clock = run_single(get(spec), split)
            h, w = split.frames[split.scored[0]].shape[:2]
            res = {"row": row, "method": label, "model": spec, "split": split.name, "frame": f"{w}x{h}",
                   "scored_frames": len(split.scored), "ms_per_frame": round(float(np.mean(clock.wall)), 1),
                   "ms_p50": round(float(np.median(clock.wall)), 1),
                   "cpu_ms_per_frame": round(float(np.mean(clock.cpu)), 1), **extra, **score(gts[split.name], dets)}
            results.append(_clean(res))
            print(f"{split.name:<22} {label:<34} {res['ms_per_frame']:7.1f} ms  car AP50 {_f(res['car']['ap50'])}",
                  file=sys.stderr, flush=True)
    return results


def table(results: list[dict]) -> str:
    header = ["split", "method", "ms/frame", "CPU ms/frame", "car P", "car R", "car F1", "car AP50", "car R<25", "car R25-40",
              "car R>=40", "TL recall", "crops/frame"]
    rows = []
    for r in results:
        c, bh, tl = r["car"], r["car_recall_by_height"], r["traffic_light"]
        rows.append([r["split"], r["method"], _f(r["ms_per_frame"], 1), _f(r["cpu_ms_per_frame"], 1), _f(c["precision"]), _f(c["recall"]),
                     _f(c["f1"]), _f(c["ap50"])] + [f"{_f(bh[b]['recall'])} ({bh[b]['gt']})" for b in ("small", "medium", "large")]
                    + [f"{_f(tl['recall'])} ({tl['gt']})", _f(r.get("crops_per_frame"), 1) if "crops_per_frame" in r else "-"])
    return markdown_table(header, rows)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        results = run(args)
    except BenchError as e:
        print(f"bench_detector: {e}", file=sys.stderr)
        return 2
    print(table(results))
    print("(in brackets: ground-truth count; labels are tiled-teacher pseudo-labels)")
    write_json(args.json, argparse.Namespace(**{k: v for k, v in vars(args).items() if k != "row_list"}), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
