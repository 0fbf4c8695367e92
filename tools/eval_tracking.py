"""Score our tracker and peer trackers on KITTI tracking with trackeval.

    python -m tools.eval_tracking --kitti-root ../shared/data/kitti_tracking \
        [--seqs 0000,0003] [--classes Car,Pedestrian] \
        [--trackers ours,ours-with-coasted,sv-bytetrack,norfair,boxmot-ocsort,boxmot-bytetrack] \
        [--dropout-frames 2,5,10,15 --dropout-fraction 0.3 --seed 0] [--class-flip 0.1,0.2,0.3] [--json OUT] \
        [--tracker-config configs/tracker.yaml] [--set key=value ...] [--explain-idsw [all]]

Every tracker gets the same detections: PointRCNN boxes with raw score >=
--score-threshold (default 2.0, as in ANCHORS), scores passed as sigmoid(raw).
Trackers are called every frame with timestamp frame / 10 s.

Coasted boxes: "ours" is scored on the boxes backed by a detection this frame
(``coasted == False``), like every peer's output; "ours-with-coasted" scores
the same run with its coasted (predicted, flagged) boxes included -- those the
trust policy lets through (``trackers/trust.py``; before it, every coasted box
within the emission horizon lowered HOTA by 6-7 points, most of them ghosts of
cars gone from view).  Ours is given each sequence's image size
(``kitti.frame_size``), as the pipeline knows it from the images.
``--class-flip P[,P...]`` (seeded by --seed): a fraction P of the Car
detections on ground-truth Car tracks is relabelled Van or Truck (the detector
changing its mind about the class); every vehicle-group output (Car, Van,
Truck) is scored as Car, so a track that keeps its id through the flips scores
as if nothing happened.
``--explain-idsw`` classifies each of ours' ID switches by cause (see
``trackers/eval/idsw.py``) and prints the counts per setting; ``all`` also
lists every switch with sequence and frame.
Peers run only when importable (install them in a separate venv); the missing
ones are reported.
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:      # run by path: the project's packages are not on the path
    raise SystemExit("run it from the repository root as a module: python -m tools.eval_tracking --help")

import os

# Before any peer imports torch: OpenMP threads that spin after each parallel region
# took a core from whatever ran next on this 2-core machine (measured: every tracker,
# ours included, up to 2x slower in a same-run table).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402  (after OMP_WAIT_POLICY is set; so are the imports below)
import json
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import yaml

from dashtrack_core.configtools import from_mapping, to_mapping
from tools.tables import markdown_table
from trackers import TrackerConfig
from trackers.eval import idsw, kitti, peers, scoring

DEFAULT_TRACKERS = "ours,ours-with-coasted,sv-bytetrack,norfair,boxmot-ocsort,boxmot-bytetrack"
TABLE_COLS = ("HOTA", "MOTA", "IDF1", "IDSW", "Frag")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kitti-root", type=Path, default=kitti.default_root())
    ap.add_argument("--seqs", default="", help="comma-separated; default: every label_02/*.txt")
    ap.add_argument("--classes", default="Car")
    ap.add_argument("--trackers", default=DEFAULT_TRACKERS)
    ap.add_argument("--score-threshold", type=float, default=2.0, help="raw PointRCNN score floor, all trackers")
    ap.add_argument("--dropout-frames", default="", help="K values, e.g. 2,5,10,15 (frames at 10 fps)")
    ap.add_argument("--dropout-fraction", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--class-flip", default="", help="fractions P, e.g. 0.1,0.2,0.3: Car detections relabelled")
    ap.add_argument("--tracker-config", type=Path, default=None, help="YAML for ours (default: TrackerConfig())")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one ours field")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--explain-idsw", nargs="?", const="counts", choices=("counts", "all"), default=None,
                    help="classify ours' ID switches by cause; 'all' lists each one")
    ap.add_argument("--workdir", type=Path, default=None, help="keep result files here (default: a temp dir)")
    return ap.parse_args(argv)


def ours_config(args) -> TrackerConfig:
    data = (yaml.safe_load(args.tracker_config.read_text()) or {}) if args.tracker_config else {}
    for kv in args.set:
        key, _, value = kv.partition("=")
        data[key] = yaml.safe_load(value)
    return from_mapping(TrackerConfig, data, "tracker")


def run_tracker(name: str, seqs: list[kitti.Sequence], cfg: TrackerConfig, class_names,
                logs: dict | None = None) -> tuple[dict, float, int]:
    """Run one tracker over all sequences; return KITTI lines per sequence, seconds in update, calls.

    With ``logs`` (ours only), each sequence's ``idsw.TrackLog`` is stored there.
    """
    lines, seconds, calls = {}, 0.0, 0
    for seq in seqs:
        base = "ours" if name.startswith("ours") else name
        tracker = peers.make(base, kitti.KITTI_FPS, cfg, emit_coasted=(name == "ours-with-coasted"),
                             class_names=kitti.TRACKER_CLASS_NAMES, frame_size=kitti.frame_size(seq.name))
        log = logs.setdefault(seq.name, idsw.TrackLog()) if logs is not None else None
        out_lines = []
        for f, dets in enumerate(seq.dets):
            t0 = time.perf_counter()
            tracks = tracker.update(dets, f / kitti.KITTI_FPS)
            seconds += time.perf_counter() - t0
            calls += 1
            out_lines += kitti.kitti_lines(f, tracks, class_names)
            if log is not None:
                log.record(f, f / kitti.KITTI_FPS, tracker.tracker)
        lines[seq.name] = out_lines
    return lines, seconds, calls


def explain_idsw(tag, out: Path, gt: Path, seqs, logs: dict, args) -> dict[str, int]:
    """Print ours' ID switches by cause for one setting; return the counts."""
    ds = scoring.dataset(out, gt, ["ours"], args.classes_list)
    events = [e for s in seqs for cls in args.classes_list for e in idsw.idsw_events(ds, "ours", s.name, cls.lower())]
    counts, lines = idsw.explain(events, logs)
    print(f"[{tag}] ours IDSW by cause ({len(events)}): "
          + ", ".join(f"{k} {v}" for k, v in counts.most_common()), file=sys.stderr)
    if args.explain_idsw == "all":
        print("\n".join(f"  [{tag}] {line}" for line in lines), file=sys.stderr)
    return dict(counts)


def evaluate_setting(tag, seqs, names, cfg, args, work: Path, class_names, gt: Path) -> dict:
    out = work / tag
    timing, logs = {}, {}
    for name in names:
        log = logs if (args.explain_idsw and name == "ours") else None
        lines, seconds, calls = run_tracker(name, seqs, cfg, class_names, log)
        scoring.write_tracker_results(out, name, lines)
        timing[name] = 1e6 * seconds / max(calls, 1)
        print(f"[{tag}] ran {name}: {timing[name]:.0f} us/update", file=sys.stderr)
    table = scoring.evaluate(out, gt, names, args.classes_list)
    result = {name: {"metrics": table[name], "us_per_update_kitti": timing[name]} for name in names}
    if logs:
        result["ours"]["idsw_causes"] = explain_idsw(tag, out, gt, seqs, logs, args)
    return result


def metrics_table(rows: dict[str, dict], cls: str) -> str:
    """One row per tracker, the TABLE_COLS metrics of class ``cls``."""
    return markdown_table(["tracker", *TABLE_COLS], [
        [name] + [f"{m[cls][c]:.2f}" if isinstance(m[cls][c], float) else str(m[cls][c]) for c in TABLE_COLS]
        for name, m in rows.items()])


def main(argv=None) -> int:
    args = parse_args(argv)
    root = args.kitti_root
    if not (root / "label_02").is_dir():
        print(f"error: {root}/label_02 not found (expected the layout of ../shared/data/kitti_tracking)",
              file=sys.stderr)
        return 2
    args.classes_list = [c.strip() for c in args.classes.split(",") if c.strip()]
    try:
        flips = [float(p) for p in args.class_flip.split(",") if p.strip()]
    except ValueError:
        print(f"error: --class-flip {args.class_flip!r}: give fractions in [0, 1], e.g. 0.1,0.2", file=sys.stderr)
        return 2
    if any(not 0.0 <= p <= 1.0 for p in flips) or (flips and "Car" not in args.classes_list):
        print(f"error: --class-flip {args.class_flip!r}: needs fractions in [0, 1] and Car in --classes",
              file=sys.stderr)
        return 2
    seq_names = [s.strip() for s in args.seqs.split(",") if s.strip()] or kitti.list_sequences(root)
    requested = [t.strip() for t in args.trackers.split(",") if t.strip()]
    missing = {}
    names = []
    for t in requested:
        ok, why = peers.available("ours" if t.startswith("ours") else t)
        (names.append(t) if ok else missing.__setitem__(t, why))
    for t, why in missing.items():
        print(f"skipping {t}: {why}", file=sys.stderr)
    cfg = ours_config(args)
    class_names = {kitti.CLASS_IDS[c]: c for c in args.classes_list}
    if "Car" in args.classes_list:      # relabelled vehicles (--class-flip) are scored as Car
        class_names.update({i: "Car" for i in kitti.FLIP_CLASS_IDS.values()})
    base = [kitti.load_sequence(root, s, args.classes_list, args.score_threshold) for s in seq_names]
    labels = {s: kitti.load_labels(root, s) for s in seq_names}
    ks = [int(k) for k in args.dropout_frames.split(",") if k.strip()]

    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        gt = scoring.write_gt_folder(root, {s.name: s.n_frames for s in base}, work)
        results = {"clean": evaluate_setting("clean", base, names, cfg, args, work, class_names, gt)}
        removed = {}
        for k in ks:
            seqs = []
            removed[k] = 0
            for s in base:
                d, n = kitti.apply_dropout(s, labels[s.name], args.classes_list, k, args.dropout_fraction, args.seed)
                seqs.append(d)
                removed[k] += n
            results[f"K={k}"] = evaluate_setting(f"K{k}", seqs, names, cfg, args, work, class_names, gt)
        flipped = {}
        for p in flips:
            if p == 0:              # nothing relabelled: the clean run
                flipped[p] = 0
                continue
            seqs = []
            flipped[p] = 0
            for s in base:
                d, n = kitti.apply_class_flip(s, labels[s.name], p, args.seed)
                seqs.append(d)
                flipped[p] += n
            results[f"flip={p:g}"] = evaluate_setting(f"flip{p:g}", seqs, names, cfg, args, work, class_names, gt)

    report = {
        "command": "python -m tools.eval_tracking " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        "device": f"{platform.machine()}, {scoring.cpu_count()} CPU cores, CPU only",
        "sequences": seq_names, "classes": args.classes_list, "score_threshold_raw": args.score_threshold,
        "dropout": {"fraction": args.dropout_fraction, "seed": args.seed, "frames": ks,
                    "detections_removed": removed},
        "class_flip": {"fractions": flips, "seed": args.seed, "detections_relabelled": {f"{p:g}": n for p, n in flipped.items()}},
        "ours_config": to_mapping(cfg),
        "missing_trackers": missing,
        "trackers": {name: {"clean": results["clean"][name]["metrics"],
                            "us_per_update_kitti": results["clean"][name]["us_per_update_kitti"],
                            "dropout": {k: results[k][name]["metrics"] for k in results if k.startswith("K=")},
                            "class_flip": {k.partition("=")[2]: results[k][name]["metrics"]
                                           for k in results if k.startswith("flip=")},
                            **({"idsw_causes": {k: r[name]["idsw_causes"] for k, r in results.items()}}
                               if "idsw_causes" in results["clean"][name] else {})}
                     for name in names},
    }
    for cls in [c.lower() for c in args.classes_list] + (["overall"] if len(args.classes_list) > 1 else []):
        print(f"\n### {cls}, clean detections\n")
        print(metrics_table({n: results["clean"][n]["metrics"] for n in names}, cls))
    if ks:
        print("\n### dropout stress (" + ", ".join(args.classes_list) + "): HOTA / IDF1 / IDSW\n")
        cls = args.classes_list[0].lower()
        cells = {n: [results[f"K={k}"][n]["metrics"][cls] for k in ks] for n in names}
        print(markdown_table(["tracker"] + [f"K={k}" for k in ks],
                             [[n] + [f"{c['HOTA']:.2f} / {c['IDF1']:.2f} / {c['IDSW']}" for c in cells[n]]
                              for n in names]))
    if flips:
        print("\n### class flip (Car detections relabelled Van/Truck, scored as Car): HOTA / IDF1 / IDSW\n")
        cells = {n: [results["clean" if p == 0 else f"flip={p:g}"][n]["metrics"]["car"] for p in flips]
                 for n in names}
        print(markdown_table(["tracker"] + [f"P={p:g}" for p in flips],
                             [[n] + [f"{c['HOTA']:.2f} / {c['IDF1']:.2f} / {c['IDSW']}" for c in cells[n]]
                              for n in names]))
    if missing:
        print("\nnot run (not importable here): " + "; ".join(f"{k}: {v}" for k, v in missing.items()))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
