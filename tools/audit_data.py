"""Audit a detection dataset (YOLO, COCO, KITTI label_2, BDD100K) and optionally write a cleaned copy.

    python -m tools.audit_data --format yolo --images DIR --labels DIR [--stride 16 --min-size 8]
        [--imgsz 640] [--json REPORT.json] [--write-clean OUT_DIR [--clean-format yolo|coco]]

Checks (severity in brackets; ``--write-clean`` applies the action in parentheses):

  box level
    malformed        [error]   a label row that cannot be parsed (row dropped)
    degenerate       [error]   zero/negative width or height, NaN (box dropped)
    out-of-image     [error]   box beyond the image by more than --tolerance px
                               (clipped; dropped when nothing is left)
    duplicate        [error]   same class, IoU >= --dup-iou with an earlier box (dropped)
    too-small        [warning] width or height < --min-size px after scaling the image's
                               long side to --imgsz (default: --stride / 2) (dropped)
  image level
    missing-image    [error]   labels whose image file is absent (image dropped)
    unreadable       [error]   the image cannot be decoded (image dropped)
    size-mismatch    [error]   size declared by the labels != the image's size (image dropped)
    dark / bright    [warning] mean grey < --dark or > --bright, or more than
                               --clip-fraction of pixels crushed/saturated (image dropped)
    blur             [warning] variance of the Laplacian at 512 px width < --blur, on an image not
                               already flagged dark/bright (image dropped)
    near-duplicate   [warning] 32x18 thumbnail differs from a recently kept image by a mean
                               of <= --near-dup grey levels (image dropped)
  dataset level
    dataset          [error]   annotations referencing unknown images/classes, ...

The class histogram (boxes and images per class) and counts per check are printed;
``--json`` writes every issue.  Images are checked in sorted name order, so
near-duplicates are found among neighbouring frames of a sequence (``--dup-window``).

Exit codes: 0 no errors (warnings allowed), 1 errors found (or warnings with --strict),
2 bad input or usage (missing folder, malformed JSON).
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:      # run by path: the project's packages are not on the path
    raise SystemExit("run it from the repository root as a module: python -m tools.audit_data --help")

import argparse
import json
import os
import shutil
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from dashtrack_core.boxes import iou as box_iou
from tools.datasets import DatasetError, ImageLabels, LabelSet, image_size
from tools.image_quality import ImageStats, NearDuplicates, image_stats
from tools.label_formats import FORMATS, read_labels, write_coco, write_yolo

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2
IMAGE_CHECKS = ("dark", "bright", "blur", "near-duplicate")


@dataclass(frozen=True)
class AuditConfig:
    stride: int = 16                 # the model's finest output stride
    min_size: float | None = None    # px; None = stride / 2
    imgsz: int | None = None         # long side the model sees; None = native pixels
    tolerance: float = 1.0           # px a box may poke out of the image
    dup_iou: float = 0.9             # same-class IoU counted as a duplicate
    dark: float = 35.0               # mean grey level (0..255)
    bright: float = 220.0
    clip_fraction: float = 0.6       # fraction of pixels <= 5 or >= 250
    blur: float = 30.0               # Laplacian variance at 512 px width (sharp street frames: 200-1300)
    near_dup: float = 1.0            # mean abs difference of 32x18 thumbnails, grey levels
    dup_window: int = 5              # compare with this many recently kept images
    image_checks: bool = True

    @property
    def min_side(self) -> float:
        return self.min_size if self.min_size is not None else self.stride / 2


@dataclass
class Issue:
    severity: str     # error | warning
    check: str
    image: str
    message: str
    row: int | None = None


@dataclass
class AuditReport:
    labels: LabelSet
    issues: list[Issue]
    cleaned: list[ImageLabels]           # boxes after clip/drop, images not dropped
    dropped_images: dict[str, str]       # name -> check
    stats: dict[str, dict]

    @property
    def n_errors(self) -> int:
        return sum(i.severity == "error" for i in self.issues)

    @property
    def n_warnings(self) -> int:
        return sum(i.severity == "warning" for i in self.issues)

    def counts(self) -> Counter:
        return Counter((i.severity, i.check) for i in self.issues)

    def histogram(self) -> list[tuple[str, int, int]]:
        """(class, boxes, images) for every class name, ignore regions counted apart."""
        names = self.labels.names
        boxes, images = Counter(), Counter()
        for it in self.labels.items:
            cls = [names[c] + (" (ignore)" if ig else "") for c, ig in zip(it.class_id, it.ignore)]
            boxes.update(cls)
            images.update(set(cls))
        return [(n, boxes[n], images[n]) for n in sorted(boxes, key=lambda n: (-boxes[n], n))]


# -- box checks ------------------------------------------------------------------
def check_boxes(item: ImageLabels, names: Sequence[str], cfg: AuditConfig) -> tuple[list[Issue], ImageLabels]:
    """Box-level issues of one image and its cleaned labels."""
    issues = [Issue("error", "malformed", item.name, p) for p in item.problems]
    xyxy = item.xyxy.copy()
    keep = np.ones(len(xyxy), bool)
    w, h = item.width, item.height
    size_known = bool(w and h)
    for k in range(len(xyxy)):
        x1, y1, x2, y2 = xyxy[k]
        row = int(item.rows[k])
        label = names[item.class_id[k]] if 0 <= item.class_id[k] < len(names) else f"class {item.class_id[k]}"
        if not np.all(np.isfinite(xyxy[k])) or x2 - x1 <= 0 or y2 - y1 <= 0:
            issues.append(Issue("error", "degenerate", item.name,
                                f"row {row}: {label} box {np.round(xyxy[k], 1).tolist()} has no area", row))
            keep[k] = False
            continue
        if size_known:
            t = cfg.tolerance
            if x1 < -t or y1 < -t or x2 > w + t or y2 > h + t:
                issues.append(Issue("error", "out-of-image", item.name,
                                    f"row {row}: {label} box {np.round(xyxy[k], 1).tolist()} outside the "
                                    f"{w}x{h} image", row))
            xyxy[k] = np.clip(xyxy[k], 0, [w, h, w, h])
            if xyxy[k, 2] - xyxy[k, 0] <= 0 or xyxy[k, 3] - xyxy[k, 1] <= 0:
                keep[k] = False
                continue
        if item.ignore[k]:
            continue
        scale = cfg.imgsz / max(w, h) if (cfg.imgsz and size_known) else 1.0
        bw, bh = (xyxy[k, 2] - xyxy[k, 0]) * scale, (xyxy[k, 3] - xyxy[k, 1]) * scale
        if min(bw, bh) < cfg.min_side:
            issues.append(Issue("warning", "too-small", item.name,
                                f"row {row}: {label} box {bw:.1f}x{bh:.1f} px < {cfg.min_side:g} px "
                                f"(stride {cfg.stride})", row))
            keep[k] = False
    # duplicates among the boxes still kept, same class, later row reported
    idx = np.flatnonzero(keep & ~item.ignore)
    if len(idx) > 1:
        iou = box_iou(xyxy[idx], xyxy[idx])
        same = item.class_id[idx][:, None] == item.class_id[idx][None, :]
        dup = np.triu((iou >= cfg.dup_iou) & same, 1)
        for j in np.flatnonzero(dup.any(0)):
            i = int(np.flatnonzero(dup[:, j])[0])
            if not keep[idx[i]]:
                continue
            keep[idx[j]] = False
            issues.append(Issue("error", "duplicate", item.name,
                                f"row {item.rows[idx[j]]}: duplicates row {item.rows[idx[i]]} "
                                f"(IoU {iou[i, j]:.2f})", int(item.rows[idx[j]])))
    cleaned = ImageLabels(item.name, item.image, w, h, xyxy[keep], item.class_id[keep], item.ignore[keep],
                          None if item.score is None else item.score[keep], item.rows[keep])
    return issues, cleaned


# -- image checks (the measurements are in tools/image_quality.py) ----------------
def check_image(name: str, st: ImageStats, cfg: AuditConfig) -> list[Issue]:
    out = []
    if st.mean < cfg.dark or st.dark_fraction > cfg.clip_fraction:
        out.append(Issue("warning", "dark", name,
                         f"under-exposed: mean grey {st.mean:.0f}, {st.dark_fraction:.0%} crushed"))
    elif st.mean > cfg.bright or st.bright_fraction > cfg.clip_fraction:
        out.append(Issue("warning", "bright", name,
                         f"over-exposed: mean grey {st.mean:.0f}, {st.bright_fraction:.0%} saturated"))
    if st.sharpness < cfg.blur and not out:     # a badly exposed image has no contrast: blame the exposure
        out.append(Issue("warning", "blur", name, f"blurred: Laplacian variance {st.sharpness:.1f} < {cfg.blur:g}"))
    return out


# -- the audit -------------------------------------------------------------------
def audit(labels: LabelSet, cfg: AuditConfig = AuditConfig(), progress: bool = False,
          drop_checks: Sequence[str] = IMAGE_CHECKS) -> AuditReport:
    issues = [Issue("error", "dataset", labels.source, p) for p in labels.problems]
    cleaned, dropped, stats = [], {}, {}
    near = NearDuplicates(cfg.near_dup, cfg.dup_window)
    items = labels.items
    if progress:
        from tqdm import tqdm
        items = tqdm(items, desc="audit", unit="img", file=sys.stderr)
    for item in items:
        img_issues: list[Issue] = []
        if item.image is None:
            img_issues.append(Issue("error", "missing-image", item.name, f"{len(item)} labels but no image file"))
        else:
            actual = image_size(item.image)
            st = image_stats(item.image) if (cfg.image_checks or actual is None) else None
            if actual is None or (cfg.image_checks and st is None):
                img_issues.append(Issue("error", "unreadable", item.name, f"{item.image}: cannot decode the image"))
            else:
                if item.width and item.height and (item.width, item.height) != actual:
                    img_issues.append(Issue("error", "size-mismatch", item.name,
                                            f"labels say {item.width}x{item.height}, image is {actual[0]}x{actual[1]}"))
                elif not item.width:
                    item = ImageLabels(item.name, item.image, actual[0], actual[1], item.xyxy, item.class_id,
                                       item.ignore, item.score, item.rows, item.problems)
                if st is not None:
                    stats[item.name] = {"mean": round(st.mean, 1), "sharpness": round(st.sharpness, 1)}
                    img_issues += check_image(item.name, st, cfg)
                    dup = near.check(item.name, st.thumb)
                    if dup is not None:
                        img_issues.append(Issue("warning", "near-duplicate", item.name,
                                                f"near-duplicate of {dup[0]} (mean difference {dup[1]:.2f})"))
        box_issues, clean = check_boxes(item, labels.names, cfg)
        issues += img_issues + box_issues
        fatal = [i.check for i in img_issues if i.severity == "error" or i.check in drop_checks]
        if fatal:
            dropped[item.name] = fatal[0]
        else:
            cleaned.append(clean)
    return AuditReport(labels, issues, cleaned, dropped, stats)


def write_clean(report: AuditReport, out_dir: Path, fmt: str) -> Path:
    """Copy kept images (hard links when possible) and their cleaned labels to ``out_dir``."""
    out_dir = Path(out_dir)
    img_dir = out_dir / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    for it in report.cleaned:
        dst = img_dir / it.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists():
            dst.unlink()
        try:
            os.link(it.image, dst)
        except OSError:
            shutil.copy2(it.image, dst)
    names = report.labels.names
    if fmt == "yolo":
        write_yolo(out_dir / "labels", report.cleaned)
        (out_dir / "dataset.yaml").write_text(
            "# written by tools/audit_data.py --write-clean\n"
            f"path: {out_dir.resolve()}\ntrain: images\nval: images\nnames:\n"
            + "".join(f"  {k}: {json.dumps(n)}\n" for k, n in enumerate(names)))
    else:
        write_coco(out_dir / "annotations.json", report.cleaned, names,
                   {"description": "cleaned by tools/audit_data.py", "source": report.labels.source})
    return out_dir


# -- CLI ---------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--format", required=True, choices=FORMATS)
    ap.add_argument("--labels", required=True, type=Path,
                    help="label folder (yolo, kitti) or JSON file (coco, bdd)")
    ap.add_argument("--images", type=Path, default=None,
                    help="image folder (needed for yolo; coco/bdd default to the JSON's folder, "
                         "kitti to ../image_2)")
    d = AuditConfig()
    ap.add_argument("--stride", type=int, default=d.stride, help="the model's finest stride (default %(default)s)")
    ap.add_argument("--min-size", type=float, default=None, help="smallest box side in px (default stride / 2)")
    ap.add_argument("--imgsz", type=int, default=None, help="long side the model sees; box sizes are scaled to it")
    ap.add_argument("--tolerance", type=float, default=d.tolerance, help="px a box may exceed the image")
    ap.add_argument("--dup-iou", type=float, default=d.dup_iou)
    ap.add_argument("--dark", type=float, default=d.dark)
    ap.add_argument("--bright", type=float, default=d.bright)
    ap.add_argument("--clip-fraction", type=float, default=d.clip_fraction)
    ap.add_argument("--blur", type=float, default=d.blur)
    ap.add_argument("--near-dup", type=float, default=d.near_dup, help="thumbnail difference, grey levels; 0 = off")
    ap.add_argument("--dup-window", type=int, default=d.dup_window)
    ap.add_argument("--no-image-checks", action="store_true", help="skip exposure, blur and near-duplicate checks")
    ap.add_argument("--keep", default="", help=f"image checks that do not drop images in the clean copy "
                                               f"(comma list of {', '.join(IMAGE_CHECKS)})")
    ap.add_argument("--write-clean", type=Path, default=None, metavar="DIR")
    ap.add_argument("--clean-format", choices=("yolo", "coco"), default=None,
                    help="format of the clean copy (default: coco for coco input, else yolo)")
    ap.add_argument("--json", type=Path, default=None, help="write the full report here")
    ap.add_argument("--show", type=int, default=20, help="issues printed (default %(default)s)")
    ap.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    ap.add_argument("--no-progress", action="store_true")
    return ap.parse_args(argv)


def print_report(rep: AuditReport, show: int) -> None:
    n_boxes = sum(len(it) for it in rep.labels.items)
    print(f"{rep.labels.format} dataset {rep.labels.source}: {len(rep.labels)} images, {n_boxes} boxes, "
          f"{len(rep.labels.names)} classes")
    print("\nclass histogram (boxes / images):")
    for name, nb, ni in rep.histogram():
        print(f"  {name:<24} {nb:>7} {ni:>7}")
    empty = sum(1 for it in rep.labels.items if len(it) == 0)
    print(f"  {'(images without boxes)':<24} {'':>7} {empty:>7}")
    print("\nchecks:")
    counts = rep.counts()
    if not counts:
        print("  no issues")
    for (sev, check), n in sorted(counts.items()):
        print(f"  {sev:<8} {check:<16} {n:>6}")
    for issue in rep.issues[:show]:
        print(f"  - [{issue.severity}] {issue.check}: {issue.image}: {issue.message}")
    if len(rep.issues) > show:
        print(f"  ... {len(rep.issues) - show} more (--json writes all)")
    print(f"\n{rep.n_errors} errors, {rep.n_warnings} warnings; the clean copy keeps {len(rep.cleaned)} images "
          f"({len(rep.dropped_images)} dropped)")


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = AuditConfig(stride=args.stride, min_size=args.min_size, imgsz=args.imgsz, tolerance=args.tolerance,
                      dup_iou=args.dup_iou, dark=args.dark, bright=args.bright, clip_fraction=args.clip_fraction,
                      blur=args.blur, near_dup=args.near_dup if args.near_dup > 0 else -1.0,
                      dup_window=args.dup_window, image_checks=not args.no_image_checks)
    keep = {k.strip() for k in args.keep.split(",") if k.strip()}
    unknown = keep - set(IMAGE_CHECKS)
    if unknown:
        print(f"audit_data: --keep {','.join(sorted(unknown))}: unknown; allowed: {', '.join(IMAGE_CHECKS)}",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        labels = read_labels(args.format, args.labels, args.images)
    except DatasetError as e:
        print(f"audit_data: {e}", file=sys.stderr)
        return EXIT_USAGE
    if not labels.items:
        print(f"audit_data: {args.labels}: no labelled images found", file=sys.stderr)
        return EXIT_USAGE
    rep = audit(labels, cfg, progress=not args.no_progress, drop_checks=[c for c in IMAGE_CHECKS if c not in keep])
    print_report(rep, args.show)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "format": labels.format, "source": labels.source, "images": len(labels), "config": asdict(cfg),
            "errors": rep.n_errors, "warnings": rep.n_warnings,
            "counts": {f"{s}:{c}": n for (s, c), n in rep.counts().items()},
            "histogram": [{"class": n, "boxes": b, "images": i} for n, b, i in rep.histogram()],
            "issues": [asdict(i) for i in rep.issues],
            "dropped_images": rep.dropped_images, "image_stats": rep.stats}, indent=1))
    if args.write_clean:
        fmt = args.clean_format or ("coco" if args.format == "coco" else "yolo")
        out = write_clean(rep, args.write_clean, fmt)
        print(f"clean copy ({fmt}) written to {out}")
    if rep.n_errors or (args.strict and rep.n_warnings):
        return EXIT_ERRORS
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
