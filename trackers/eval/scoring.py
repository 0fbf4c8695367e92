"""Score KITTI-format tracker output with trackeval's ``Kitti2DBox`` (HOTA, CLEAR, Identity).

trackeval applies KITTI's rules: DontCare regions (unmatched boxes inside them
are not false positives), Van counted as a distractor for Car, and ground truth
that is too occluded, truncated or small (< 25 px) ignored.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
from pathlib import Path

import numpy as np

METRIC_KEYS = ("HOTA", "DetA", "AssA", "MOTA", "MOTP", "IDF1", "IDSW", "Frag", "TP", "FP", "FN")


def write_gt_folder(kitti_root: Path, seq_lengths: dict[str, int], out: Path) -> Path:
    """GT folder in trackeval's layout: label_02/<seq>.txt plus the seqmap."""
    gt = out / "gt"
    (gt / "label_02").mkdir(parents=True, exist_ok=True)
    for seq in seq_lengths:
        dst = gt / "label_02" / f"{seq}.txt"
        if not dst.exists():
            shutil.copyfile(Path(kitti_root) / "label_02" / f"{seq}.txt", dst)
    with open(gt / "evaluate_tracking.seqmap.training", "w") as fh:
        for seq, n in seq_lengths.items():
            fh.write(f"{seq} empty 000000 {n:06d}\n")
    return gt


def write_tracker_results(out: Path, name: str, lines_per_seq: dict[str, list[str]]) -> None:
    d = out / "trackers" / name / "data"
    d.mkdir(parents=True, exist_ok=True)
    for seq, lines in lines_per_seq.items():
        (d / f"{seq}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))


def dataset(out: Path, gt: Path, trackers: list[str], classes: list[str]):
    """trackeval's ``Kitti2DBox`` over the results in ``out/trackers``."""
    import trackeval  # bench dependency: imported only when scoring

    ds_cfg = trackeval.datasets.Kitti2DBox.get_default_dataset_config()
    ds_cfg.update({"GT_FOLDER": str(gt), "TRACKERS_FOLDER": str(out / "trackers"),
                   "OUTPUT_FOLDER": str(out / "trackeval_out"), "TRACKERS_TO_EVAL": list(trackers),
                   "CLASSES_TO_EVAL": [c.lower() for c in classes], "SPLIT_TO_EVAL": "training",
                   "PRINT_CONFIG": False})
    with contextlib.redirect_stdout(io.StringIO()):
        return trackeval.datasets.Kitti2DBox(ds_cfg)


def evaluate(out: Path, gt: Path, trackers: list[str], classes: list[str],
             parallel: bool = False) -> dict[str, dict[str, dict[str, float]]]:
    """Return {tracker: {class: {metric: value}}} with a 'combined' class when several are scored.

    HOTA, DetA, AssA, MOTA, MOTP and IDF1 are percentages; IDSW, Frag, TP, FP, FN counts.
    """
    import trackeval  # bench dependency: imported only when scoring

    eval_cfg = trackeval.Evaluator.get_default_eval_config()
    eval_cfg.update({"USE_PARALLEL": parallel, "NUM_PARALLEL_CORES": 2, "PRINT_RESULTS": False,
                     "PRINT_CONFIG": False, "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False,
                     "PLOT_CURVES": False, "PRINT_ONLY_COMBINED": True, "TIME_PROGRESS": False,
                     "DISPLAY_LESS_PROGRESS": True, "OUTPUT_EMPTY_CLASSES": False})
    metrics = [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR({"PRINT_CONFIG": False, "THRESHOLD": 0.5}),
               trackeval.metrics.Identity({"PRINT_CONFIG": False, "THRESHOLD": 0.5})]
    with contextlib.redirect_stdout(io.StringIO()):
        results, messages = trackeval.Evaluator(eval_cfg).evaluate(
            [dataset(out, gt, trackers, classes)], metrics)
    res = results["Kitti2DBox"]
    table: dict[str, dict[str, dict[str, float]]] = {}
    for tracker in trackers:
        if tracker not in res:
            raise RuntimeError(f"trackeval did not score {tracker}: {messages}")
        combined = res[tracker]["COMBINED_SEQ"]
        table[tracker] = {}
        for cls in [c.lower() for c in classes]:
            r = combined[cls]
            table[tracker][cls] = {
                "HOTA": 100 * float(np.mean(r["HOTA"]["HOTA"])),
                "DetA": 100 * float(np.mean(r["HOTA"]["DetA"])),
                "AssA": 100 * float(np.mean(r["HOTA"]["AssA"])),
                "MOTA": 100 * float(r["CLEAR"]["MOTA"]),
                "MOTP": 100 * float(r["CLEAR"]["MOTP"]),
                "IDF1": 100 * float(r["Identity"]["IDF1"]),
                "IDSW": int(r["CLEAR"]["IDSW"]),
                "Frag": int(r["CLEAR"]["Frag"]),
                "TP": int(r["CLEAR"]["CLR_TP"]),
                "FP": int(r["CLEAR"]["CLR_FP"]),
                "FN": int(r["CLEAR"]["CLR_FN"]),
            }
        if len(classes) > 1:
            # "overall": detection-weighted sum over the scored classes, done by trackeval itself
            r = combined.get("cls_comb_det_av")
            if r is not None:
                table[tracker]["overall"] = {
                    "HOTA": 100 * float(np.mean(r["HOTA"]["HOTA"])),
                    "MOTA": 100 * float(r["CLEAR"]["MOTA"]),
                    "IDF1": 100 * float(r["Identity"]["IDF1"]),
                    "IDSW": int(r["CLEAR"]["IDSW"]),
                    "Frag": int(r["CLEAR"]["Frag"]),
                }
    return table


def cpu_count() -> int:
    return os.cpu_count() or 1
