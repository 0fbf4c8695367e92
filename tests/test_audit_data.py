"""tools/audit_data.py: every check catches a planted problem; the clean copy and the exit codes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tools.audit_data import AuditConfig, audit, main
from tools.datasets import ImageLabels, LabelSet
from tools.label_formats import read_labels

REPO = Path(__file__).resolve().parents[1]
from conftest import SHARED  # noqa: E402  ($DASHTRACK_SHARED_DATA, else ../shared/data)

PANDASET = SHARED / "images" / "pandaset_002_front"


def _noise_image(path: Path, w: int = 320, h: int = 240, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(30, 220, (h, w, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), img)
    return path


def _labels(path: Path, w: int, h: int, boxes, classes) -> ImageLabels:
    return ImageLabels(path.name, path, w, h, np.asarray(boxes, float).reshape(-1, 4), classes, None)


def _checks(rep) -> dict[str, list]:
    out: dict[str, list] = {}
    for i in rep.issues:
        out.setdefault(i.check, []).append(i)
    return out


# -- box level: a table of planted problems ----------------------------------------------
BOX_CASES = [
    # (name, boxes, classes, expected check or None, boxes left in the clean copy)
    ("good box", [[10, 10, 60, 60]], [0], None, 1),
    ("zero width", [[10, 10, 10, 60]], [0], "degenerate", 0),
    ("inverted", [[60, 60, 10, 10]], [0], "degenerate", 0),
    ("NaN", [[np.nan, 10, 60, 60]], [0], "degenerate", 0),
    ("partly outside: clipped", [[300, 10, 400, 60]], [0], "out-of-image", 1),
    ("fully outside: dropped", [[400, 10, 500, 60]], [0], "out-of-image", 0),
    ("touching the border is fine", [[0, 0, 320, 240]], [0], None, 1),
    ("exact duplicate", [[10, 10, 60, 60], [10, 10, 60, 60]], [0, 0], "duplicate", 1),
    ("near duplicate (IoU 0.92)", [[10, 10, 60, 60], [10, 10, 60, 56]], [0, 0], "duplicate", 1),
    ("same box, other class", [[10, 10, 60, 60], [10, 10, 60, 60]], [0, 1], None, 2),
    ("overlapping, not duplicate", [[10, 10, 60, 60], [30, 10, 80, 60]], [0, 0], None, 2),
    ("too small for stride 16", [[10, 10, 40, 15]], [0], "too-small", 0),
]


@pytest.mark.parametrize("name,boxes,classes,expected,left", BOX_CASES, ids=[c[0] for c in BOX_CASES])
def test_box_checks(tmp_path, name, boxes, classes, expected, left):
    img = _noise_image(tmp_path / "a.jpg")
    ls = LabelSet("yolo", ["car", "person"], [_labels(img, 320, 240, boxes, classes)])
    rep = audit(ls, AuditConfig(stride=16, image_checks=False))
    found = {i.check for i in rep.issues}
    assert found == ({expected} if expected else set()), rep.issues
    assert len(rep.cleaned[0]) == left
    assert np.all(rep.cleaned[0].xyxy[:, 2] <= 320)


def test_min_size_scales_with_imgsz(tmp_path):
    img = _noise_image(tmp_path / "a.jpg", 1280, 720)
    ls = LabelSet("yolo", ["car"], [_labels(img, 1280, 720, [[0, 0, 20, 20]], [0])])
    assert not audit(ls, AuditConfig(stride=16, image_checks=False)).issues          # 20 px >= 8
    rep = audit(ls, AuditConfig(stride=16, imgsz=320, image_checks=False))          # 5 px at 320
    assert [i.check for i in rep.issues] == ["too-small"]


def test_size_mismatch_and_missing_image(tmp_path):
    img = _noise_image(tmp_path / "a.jpg", 320, 240)
    ls = LabelSet("coco", ["car"], [
        _labels(img, 640, 480, [[10, 10, 50, 50]], [0]),                    # labels made for 640x480
        ImageLabels("gone.jpg", None, 320, 240, [[1, 1, 5, 5]], [0], None),
    ])
    rep = audit(ls, AuditConfig(image_checks=False))
    checks = _checks(rep)
    assert "size-mismatch" in checks and "320x240" in checks["size-mismatch"][0].message
    assert "missing-image" in checks
    assert rep.cleaned == [] and set(rep.dropped_images) == {"a.jpg", "gone.jpg"}


def test_malformed_rows_are_errors(tmp_path):
    _noise_image(tmp_path / "images" / "a.jpg")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.5 nan\n")
    rep = audit(read_labels("yolo", tmp_path / "labels", tmp_path / "images"), AuditConfig(image_checks=False))
    assert [i.check for i in rep.issues] == ["malformed"]
    assert len(rep.cleaned[0]) == 1


# -- image level on real frames -------------------------------------------------------
@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    if not PANDASET.is_dir():
        pytest.skip(f"shared data {PANDASET} is absent (tests read ../shared/data beside the repo)")
    return [cv2.resize(cv2.imread(str(PANDASET / f"{k:02d}.jpg")), (640, 360), interpolation=cv2.INTER_AREA)
            for k in (0, 40, 70)]


def _dataset(tmp_path: Path, images: dict[str, np.ndarray]) -> Path:
    (tmp_path / "images").mkdir(parents=True)
    (tmp_path / "labels").mkdir(parents=True)
    for name, img in images.items():
        assert cv2.imwrite(str(tmp_path / "images" / name), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        (tmp_path / "labels" / Path(name).with_suffix(".txt").name).write_text("0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "dataset.yaml").write_text("names: [car]\n")
    return tmp_path


def test_image_checks_catch_planted_frames(tmp_path, frames):
    a, b, c = frames
    noisy = np.clip(b.astype(np.int16) + np.random.default_rng(0).integers(-2, 3, b.shape), 0, 255).astype(np.uint8)
    root = _dataset(tmp_path, {
        "00_real.jpg": a,
        "01_dark.jpg": (a * 0.08).astype(np.uint8),
        "02_real.jpg": b,
        "03_neardup.jpg": noisy,                                  # the same frame re-encoded with noise
        "04_blurred.jpg": cv2.GaussianBlur(c, (0, 0), 4),
        "05_bright.jpg": cv2.add(c, np.full_like(c, 200)),
        "06_real.jpg": c,
    })
    rep = audit(read_labels("yolo", root / "labels", root / "images"))
    flagged = {i.image: i.check for i in rep.issues}
    assert flagged == {"01_dark.jpg": "dark", "03_neardup.jpg": "near-duplicate", "04_blurred.jpg": "blur",
                       "05_bright.jpg": "bright"}, rep.issues
    assert all(i.severity == "warning" for i in rep.issues)
    assert [it.name for it in rep.cleaned] == ["00_real.jpg", "02_real.jpg", "06_real.jpg"]


def test_cli_clean_copy_and_exit_codes(tmp_path, frames, capsys):
    root = _dataset(tmp_path / "ds", {"a.jpg": frames[0], "b.jpg": frames[1]})
    (root / "labels" / "b.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n0 1.5 0.5 0.2 0.2\n")
    out = tmp_path / "clean"
    rc = main(["--format", "yolo", "--images", str(root / "images"), "--labels", str(root / "labels"),
               "--write-clean", str(out), "--json", str(tmp_path / "r.json"), "--no-progress"])
    assert rc == 1                                       # a duplicate and an out-of-image box
    text = capsys.readouterr().out
    assert "class histogram" in text and "duplicate" in text
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"] == {"error:duplicate": 1, "error:out-of-image": 1}
    assert (out / "images" / "a.jpg").is_file() and (out / "dataset.yaml").is_file()
    assert len((out / "labels" / "b.txt").read_text().splitlines()) == 1
    rc = main(["--format", "yolo", "--images", str(out / "images"), "--labels", str(out / "labels"), "--no-progress"])
    assert rc == 0                                       # the clean copy audits clean


@pytest.mark.parametrize("args,message", [
    (["--format", "kitti", "--labels", "/nonexistent/label_2"], "no such"),
    (["--format", "coco", "--labels", "BAD_JSON"], "malformed JSON"),
])
def test_cli_bad_input_is_exit_2_one_line(tmp_path, args, message):
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    args = [str(bad) if a == "BAD_JSON" else a for a in args]
    proc = subprocess.run([sys.executable, "-m", "tools.audit_data", *args, "--no-progress"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_cli_help():
    proc = subprocess.run([sys.executable, "-m", "tools.audit_data", "--help"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Exit codes" in proc.stdout and "--write-clean" in proc.stdout
