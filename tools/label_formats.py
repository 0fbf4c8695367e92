"""Readers and writers of the detection label formats, and ``read_labels``, which dispatches on the format's name.

Every reader returns a ``LabelSet``: the class names and one ``ImageLabels``
per image, with boxes as absolute pixel ``xyxy`` (float64) whatever the file
stored.  Formats:

- ``yolo``: one ``<stem>.txt`` per image, rows ``class cx cy w h`` normalised to
  0..1; class names from ``dataset.yaml``/``data.yaml`` (``names``) beside the
  folders or ``classes.txt`` in the label folder.
- ``coco``: one JSON with ``images`` (id, file_name, width, height),
  ``annotations`` (image_id, category_id, bbox ``x y w h``, iscrowd) and
  ``categories``.  ``iscrowd`` boxes are kept as ignore regions.
- ``kitti``: ``label_2``-style, one ``<stem>.txt`` per image, rows
  ``type truncated occluded alpha x1 y1 x2 y2 h w l x y z rot_y [score]``.
  ``DontCare`` rows are ignore regions.
- ``bdd``: BDD100K detection JSON, a list of ``{"name", "labels": [{"category",
  "box2d": {"x1","y1","x2","y2"}}]}`` (labels without ``box2d`` are skipped).

A row that cannot be parsed does not stop the reader: it is kept as a message
in ``ImageLabels.problems`` (the audit reports it as an error).  Input that
cannot be read at all (missing folder, malformed JSON) raises ``DatasetError``
with a one-line message.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import yaml

from tools.datasets import IMAGE_SUFFIXES, DatasetError, ImageLabels, LabelSet, image_size, list_images

FORMATS = ("yolo", "coco", "kitti", "bdd")


def _find_image(images_dir: Path | None, stem: str, by_stem: dict[str, Path] | None) -> Path | None:
    if by_stem is not None:
        return by_stem.get(stem)
    if images_dir is None:
        return None
    for suf in IMAGE_SUFFIXES:
        p = images_dir / f"{stem}{suf}"
        if p.is_file():
            return p
    return None


def _stem_index(images_dir: Path | None) -> dict[str, Path] | None:
    """Relative path without suffix -> image path (for nested folders)."""
    if images_dir is None or not Path(images_dir).is_dir():
        return None
    return {str(p.relative_to(images_dir).with_suffix("")): p for p in list_images(images_dir)}


def _read_json(path: Path, what: str):
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such {what} file; check the path")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read ({e})") from None


def _finite(values: Sequence[float]) -> bool:
    return all(math.isfinite(v) for v in values)


# -- YOLO ----------------------------------------------------------------------------
def yolo_names(labels_dir: Path, n_hint: int = 0) -> list[str]:
    """Class names for a YOLO label folder: dataset.yaml/data.yaml beside it or classes.txt in it."""
    labels_dir = Path(labels_dir)
    for cand in (labels_dir.parent / "dataset.yaml", labels_dir.parent / "data.yaml",
                 labels_dir / "dataset.yaml", labels_dir / "data.yaml"):
        if cand.is_file():
            try:
                data = yaml.safe_load(cand.read_text()) or {}
            except yaml.YAMLError as e:
                raise DatasetError(f"{cand}: malformed YAML ({str(e).splitlines()[0]})") from None
            names = data.get("names") if isinstance(data, dict) else None
            if isinstance(names, dict):
                return [str(names[k]) for k in sorted(names)]
            if isinstance(names, list):
                return [str(n) for n in names]
    classes = labels_dir / "classes.txt"
    if classes.is_file():
        return [ln.strip() for ln in classes.read_text().splitlines() if ln.strip()]
    return [f"class{k}" for k in range(n_hint)]


def read_yolo(labels_dir: Path, images_dir: Path, names: Sequence[str] | None = None) -> LabelSet:
    """YOLO txt labels.  Images without a label file are background images (no boxes)."""
    labels_dir, images_dir = Path(labels_dir), Path(images_dir)
    if not labels_dir.is_dir():
        raise DatasetError(f"{labels_dir}: no such label folder; check --labels")
    images = list_images(images_dir)
    by_stem = {str(p.relative_to(images_dir).with_suffix("")): p for p in images}
    label_files = {str(p.relative_to(labels_dir).with_suffix("")): p
                   for p in labels_dir.rglob("*.txt") if p.name != "classes.txt"}
    items: list[ImageLabels] = []
    max_cls = -1
    for stem in sorted(set(by_stem) | set(label_files)):
        img = by_stem.get(stem)
        size = image_size(img) if img is not None else None
        w, h = size if size else (None, None)
        name = str(img.relative_to(images_dir)) if img is not None else stem
        boxes, cls, rows, problems = [], [], [], []
        lf = label_files.get(stem)
        if lf is not None:
            for ln, line in enumerate(lf.read_text().splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                try:
                    if len(parts) != 5:
                        raise ValueError(f"{len(parts)} fields, expected 5")
                    c = int(parts[0])
                    cx, cy, bw, bh = (float(v) for v in parts[1:])
                    if c < 0 or not _finite((cx, cy, bw, bh)):
                        raise ValueError("negative class or non-finite value")
                except ValueError as e:
                    problems.append(f"{lf.name}:{ln}: malformed row {line.strip()!r} ({e})")
                    continue
                sx, sy = (w, h) if w else (1.0, 1.0)
                boxes.append(((cx - bw / 2) * sx, (cy - bh / 2) * sy, (cx + bw / 2) * sx, (cy + bh / 2) * sy))
                cls.append(c)
                rows.append(ln)
                max_cls = max(max_cls, c)
        items.append(ImageLabels(name, img, w, h, np.asarray(boxes).reshape(-1, 4), cls, None, None, rows, problems))
    names = list(names) if names else yolo_names(labels_dir, max_cls + 1)
    problems = []
    if len(names) <= max_cls:
        problems.append(f"class id {max_cls} used but only {len(names)} class names are declared")
        names += [f"class{k}" for k in range(len(names), max_cls + 1)]
    return LabelSet("yolo", names, items, problems, source=str(labels_dir))


def write_yolo(labels_dir: Path, labels: Iterable[ImageLabels], names: Sequence[str] | None = None) -> None:
    """One txt per image (normalised ``class cx cy w h``, 6 decimals); ignore regions are left out."""
    labels_dir = Path(labels_dir)
    labels_dir.mkdir(parents=True, exist_ok=True)
    for it in labels:
        if not it.width or not it.height:
            raise ValueError(f"write_yolo: {it.name} has no image size")
        out = labels_dir / Path(it.name).with_suffix(".txt")
        out.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for (x1, y1, x2, y2), c, ign in zip(it.xyxy, it.class_id, it.ignore):
            if ign:
                continue
            cx, cy = (x1 + x2) / 2 / it.width, (y1 + y2) / 2 / it.height
            bw, bh = (x2 - x1) / it.width, (y2 - y1) / it.height
            lines.append(f"{int(c)} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
        out.write_text("\n".join(lines) + ("\n" if lines else ""))
    if names is not None:
        (labels_dir / "classes.txt").write_text("\n".join(names) + "\n")


# -- COCO ----------------------------------------------------------------------------
def read_coco(json_path: Path, images_dir: Path | None = None) -> LabelSet:
    """COCO detection JSON; images are looked up under ``images_dir`` (default: beside the JSON)."""
    json_path = Path(json_path)
    data = _read_json(json_path, "COCO annotation")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or \
            not isinstance(data.get("annotations", []), list):
        raise DatasetError(f"{json_path}: not a COCO detection file (needs 'images' and 'annotations' lists)")
    images_dir = Path(images_dir) if images_dir is not None else json_path.parent
    cats = data.get("categories") or []
    try:
        cat_ids = sorted(int(c["id"]) for c in cats)
        cat_name = {int(c["id"]): str(c.get("name", c["id"])) for c in cats}
        img_recs = {int(im["id"]): im for im in data["images"]}
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{json_path}: malformed 'images' or 'categories' entry ({type(e).__name__}: {e})") from None
    problems: list[str] = []
    per_image: dict[int, list[tuple]] = {i: [] for i in img_recs}
    for k, ann in enumerate(data.get("annotations", [])):
        try:
            iid, cid = int(ann["image_id"]), int(ann["category_id"])
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError):
            problems.append(f"annotation #{k}: malformed (needs image_id, category_id, bbox [x, y, w, h])")
            continue
        if iid not in img_recs:
            problems.append(f"annotation #{k} (id {ann.get('id')}): unknown image_id {iid}")
            continue
        if cid not in cat_name:
            cat_ids.append(cid)
            cat_name[cid] = f"category{cid}"
            problems.append(f"annotation #{k} (id {ann.get('id')}): category_id {cid} not in 'categories'")
        per_image[iid].append((x, y, x + w, y + h, cid, bool(ann.get("iscrowd", 0)), k, _finite((x, y, w, h))))
    cat_ids = sorted(set(cat_ids))
    index = {cid: i for i, cid in enumerate(cat_ids)}
    items = []
    for iid in sorted(img_recs):
        rec = img_recs[iid]
        fname = str(rec.get("file_name", ""))
        path = images_dir / fname if fname else None
        rows = per_image[iid]
        probs = [f"annotation #{r[6]}: non-finite bbox" for r in rows if not r[7]]
        rows = [r for r in rows if r[7]]
        w, h = rec.get("width"), rec.get("height")
        items.append(ImageLabels(
            fname or f"id{iid}", path if path is not None and path.is_file() else None,
            int(w) if w else None, int(h) if h else None,
            np.asarray([r[:4] for r in rows]).reshape(-1, 4), [index[r[4]] for r in rows],
            [r[5] for r in rows], None, [r[6] for r in rows], probs))
    return LabelSet("coco", [cat_name[c] for c in cat_ids], items, problems, str(json_path))


def coco_dict(labels: Sequence[ImageLabels], names: Sequence[str], info: dict | None = None) -> dict:
    """A COCO detection dict (category ids are 1-based class index + 1; ignore rows become iscrowd)."""
    images, anns = [], []
    for img_id, it in enumerate(labels, 1):
        images.append({"id": img_id, "file_name": it.name, "width": it.width, "height": it.height})
        for (x1, y1, x2, y2), c, ign in zip(it.xyxy, it.class_id, it.ignore):
            w, h = float(x2 - x1), float(y2 - y1)
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": int(c) + 1,
                         "bbox": [round(float(x1), 2), round(float(y1), 2), round(w, 2), round(h, 2)],
                         "area": round(w * h, 2), "iscrowd": int(bool(ign))})
    out = {"images": images, "annotations": anns,
           "categories": [{"id": k + 1, "name": n} for k, n in enumerate(names)]}
    if info:
        out["info"] = info
    return out


def write_coco(json_path: Path, labels: Sequence[ImageLabels], names: Sequence[str], info: dict | None = None) -> None:
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(coco_dict(labels, names, info)))


# -- KITTI ---------------------------------------------------------------------------
def read_kitti(labels_dir: Path, images_dir: Path | None = None) -> LabelSet:
    """KITTI object ``label_2`` files; ``DontCare`` rows become ignore regions."""
    labels_dir = Path(labels_dir)
    if not labels_dir.is_dir():
        raise DatasetError(f"{labels_dir}: no such label folder; check --labels")
    if images_dir is None and (labels_dir.parent / "image_2").is_dir():
        images_dir = labels_dir.parent / "image_2"
    by_stem = _stem_index(images_dir)
    names: list[str] = []
    items = []
    for lf in sorted(labels_dir.glob("*.txt")):
        boxes, cls, ign, rows, scores, problems = [], [], [], [], [], []
        for ln, line in enumerate(lf.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            try:
                if len(parts) not in (15, 16):
                    raise ValueError(f"{len(parts)} fields, expected 15 (or 16 with a score)")
                x1, y1, x2, y2 = (float(v) for v in parts[4:8])
                score = float(parts[15]) if len(parts) == 16 else 1.0
                if not _finite((x1, y1, x2, y2)):
                    raise ValueError("non-finite box")
            except ValueError as e:
                problems.append(f"{lf.name}:{ln}: malformed row ({e})")
                continue
            typ = parts[0]
            if typ not in names:
                names.append(typ)
            boxes.append((x1, y1, x2, y2))
            cls.append(names.index(typ))
            ign.append(typ.lower() == "dontcare")
            rows.append(ln)
            scores.append(score)
        img = _find_image(Path(images_dir) if images_dir else None, lf.stem, by_stem)
        size = image_size(img) if img is not None else None
        w, h = size if size else (None, None)
        name = str(img.relative_to(images_dir)) if img is not None else lf.stem
        items.append(ImageLabels(name, img, w, h, np.asarray(boxes).reshape(-1, 4), cls, ign, None, rows, problems))
    return LabelSet("kitti", names, items, source=str(labels_dir))


# -- BDD100K -------------------------------------------------------------------------
def read_bdd(json_path: Path, images_dir: Path | None = None) -> LabelSet:
    """BDD100K detection labels (a JSON list of frames, or ``{"frames": [...]}``)."""
    json_path = Path(json_path)
    data = _read_json(json_path, "BDD100K label")
    if isinstance(data, dict):
        data = data.get("frames")
    if not isinstance(data, list):
        raise DatasetError(f"{json_path}: not a BDD100K detection file (expected a list of frames with 'name')")
    images_dir = Path(images_dir) if images_dir is not None else json_path.parent
    names: list[str] = []
    items, problems = [], []
    for k, frame in enumerate(data):
        if not isinstance(frame, dict) or "name" not in frame:
            problems.append(f"frame #{k}: malformed (needs 'name')")
            continue
        boxes, cls, rows, probs = [], [], [], []
        for j, lab in enumerate(frame.get("labels") or []):
            box = lab.get("box2d") if isinstance(lab, dict) else None
            if box is None:
                continue   # lanes / drivable areas
            try:
                x1, y1, x2, y2 = (float(box[c]) for c in ("x1", "y1", "x2", "y2"))
                cat = str(lab["category"])
            except (KeyError, TypeError, ValueError):
                probs.append(f"frame {frame['name']} label #{j}: malformed box2d/category")
                continue
            if cat not in names:
                names.append(cat)
            boxes.append((x1, y1, x2, y2))
            cls.append(names.index(cat))
            rows.append(j)
        path = images_dir / str(frame["name"])
        img = path if path.is_file() else None
        size = image_size(img) if img is not None else None
        w, h = size if size else (None, None)
        items.append(ImageLabels(str(frame["name"]), img, w, h, np.asarray(boxes).reshape(-1, 4), cls, None, None,
                                 rows, probs))
    return LabelSet("bdd", names, items, problems, str(json_path))


# -- dispatch ------------------------------------------------------------------------
def read_labels(fmt: str, labels: Path, images: Path | None) -> LabelSet:
    """Read ``labels`` (a folder for yolo/kitti, a JSON file for coco/bdd) in format ``fmt``."""
    if fmt not in FORMATS:
        raise DatasetError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
    labels = Path(labels)
    if not labels.exists():
        raise DatasetError(f"{labels}: no such {'file' if fmt in ('coco', 'bdd') else 'folder'}; check --labels")
    if images is not None and not Path(images).is_dir():
        raise DatasetError(f"{images}: no such image folder; check --images")
    if fmt == "yolo":
        if images is None:
            raise DatasetError("yolo labels need --images (the image folder)")
        return read_yolo(labels, images)
    if fmt == "coco":
        return read_coco(labels, images)
    if fmt == "kitti":
        return read_kitti(labels, images)
    return read_bdd(labels, images)
