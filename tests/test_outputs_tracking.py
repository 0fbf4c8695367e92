"""What the writers make of the tracker's fields: the MOT visibility flag of coasted rows, the JSONL
extra columns, and the preview's TTC warning colour."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.drawing import WARN_COLOR, draw_detections
from pipeline.outputs import JsonlWriter, MotWriter
from dashtrack_core.records import Detections, Frame

FRAME = Frame(np.zeros((100, 200, 3), np.uint8), 4, 0.4, "x")


def tracked(coasted, ttc=None, in_path=None):
    n = len(coasted)
    d = Detections(np.tile([[10.0, 20.0, 50.0, 60.0]], (n, 1)), np.full(n, 0.5), np.full(n, 2),
                   np.arange(1, n + 1), np.array(coasted, bool))
    cols = {}
    if ttc is not None:
        cols["ttc_s"] = np.array(ttc, float)
    if in_path is not None:
        cols["in_path"] = np.array(in_path, bool)
    return d.with_columns(**cols) if cols else d


@pytest.mark.parametrize("name,coasted,visibility", [
    ("detected_row_visible", [False], ["1"]),
    ("coasted_row_flagged_0", [True], ["0"]),
    ("mixed", [False, True, False], ["1", "0", "1"]),
], ids=lambda v: v if isinstance(v, str) else "")
def test_mot_visibility_column_flags_coasted_rows(tmp_path, name, coasted, visibility):
    path = tmp_path / "mot.txt"
    w = MotWriter(str(path))
    w.write(FRAME, tracked(coasted))
    w.write(FRAME, Detections([[0, 0, 5, 5]], [0.9], [2]))      # untracked: not written (no id)
    w.close()
    rows = [line.split(",") for line in path.read_text().splitlines()]
    assert [r[8] for r in rows] == visibility, name
    assert all(len(r) == 10 and r[0] == "5" and r[7] == "-1" and r[9] == "-1" for r in rows)


@pytest.mark.parametrize("name,ttc,in_path,expect", [
    ("nan_ttc_is_null", [np.nan], [False], [(None, False)]),
    ("finite_ttc_rounded", [3.14159], [True], [(3.1416, True)]),
    ("infinite_is_null", [np.inf], [True], [(None, True)]),
], ids=lambda v: v if isinstance(v, str) else "")
def test_jsonl_writes_extra_columns(tmp_path, name, ttc, in_path, expect):
    path = tmp_path / "o.jsonl"
    w = JsonlWriter(str(path), ["a", "b", "car"])
    w.write(FRAME, tracked([False] * len(ttc), ttc, in_path))
    w.close()
    boxes = json.loads(path.read_text())["boxes"]
    assert [(b["ttc_s"], b["in_path"]) for b in boxes] == expect, name


@pytest.mark.parametrize("name,ttc,in_path,warned", [
    ("in_path_below_threshold_warned", [1.5], [True], True),
    ("in_path_above_threshold_normal", [5.0], [True], False),
    ("close_but_not_in_path_normal", [1.0], [False], False),
    ("unknown_ttc_normal", [np.nan], [True], False),
], ids=lambda v: v if isinstance(v, str) else "")
def test_preview_warning_colour(name, ttc, in_path, warned):
    img = draw_detections(np.zeros((100, 200, 3), np.uint8), tracked([False], ttc, in_path), ["a", "b", "car"],
                          ttc_warn_s=2.0)
    red = np.all(img == np.array(WARN_COLOR, np.uint8), axis=2)
    assert bool(red.any()) is warned, name
