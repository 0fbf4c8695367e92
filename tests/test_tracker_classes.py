"""Class groups and class votes (trackers/classes.py) as tables of named cases.

COCO ids (the tracker's default class names): 0 person, 1 bicycle, 2 car,
3 motorcycle, 5 bus, 7 truck, 9 traffic light.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dashtrack_core.configtools import ConfigError
from pipeline.outputs import JsonlWriter, MotWriter
from dashtrack_core.detector import COCO_NAMES
from dashtrack_core.records import Detections, Frame
from trackers import KalmanTracker, TrackerConfig
from trackers.classes import ClassGroups, cast_votes
from trackers.eval import kitti

PERSON, BICYCLE, CAR, MOTO, BUS, TRUCK = 0, 1, 2, 3, 5, 7
ROOT = Path(__file__).resolve().parents[1]
KITTI = kitti.default_root()


def box(frame: int, x0: float = 100.0, vx: float = 5.0) -> tuple:
    x = x0 + vx * frame
    return (x, 100.0, x + 80.0, 160.0)


def run(schedule, cfg: TrackerConfig | None = None, class_names=None):
    """schedule: per frame a list of (box, class, score); returns the outputs per frame."""
    tracker = KalmanTracker(cfg or TrackerConfig(), class_names)
    outs = []
    for f, objs in enumerate(schedule):
        if objs:
            b = np.array([o[0] for o in objs], np.float32)
            d = Detections(b, np.array([o[2] for o in objs]), np.array([o[1] for o in objs]))
        else:
            d = Detections.empty()
        outs.append(tracker.update(d, f * 0.1))
    return outs


def one_object(classes, score=0.9, x0=100.0):
    return [[(box(f, x0), c, score)] for f, c in enumerate(classes)]


# name, classes per frame of one object, config overrides, expected (ids seen, class at the end)
ONE_OBJECT_CASES = [
    ("car_x3_then_truck_keeps_id_and_class", [CAR] * 3 + [TRUCK], {}, {1}, CAR),
    ("car_truck_alternating_keeps_id", [CAR, TRUCK] * 6, {}, {1}, CAR),
    ("votes_turn_after_10_truck_frames", [CAR] * 3 + [TRUCK] * 10, {}, {1}, TRUCK),
    ("bus_flip_within_vehicles", [BUS] * 4 + [CAR] + [BUS] * 3, {}, {1}, BUS),
    ("motorcycle_bicycle_two_wheelers", [MOTO] * 3 + [BICYCLE] * 2 + [MOTO] * 2, {}, {1}, MOTO),
    # classes not checked: any class joins, an id beyond the class names widens the tallies
    ("class_consistent_off_unnamed_id_votes", [CAR] * 3 + [90] * 10, {"class_consistent": False}, {1}, 90),
    # old behaviour (groups off): the truck detection cannot join, a new id is born
    ("groups_off_car_then_truck_new_id", [CAR] * 3 + [TRUCK] * 3, {"class_groups": ()}, {1, 2}, TRUCK),
]


@pytest.mark.parametrize("name,classes,overrides,ids,final_cls", ONE_OBJECT_CASES,
                         ids=[c[0] for c in ONE_OBJECT_CASES])
def test_one_object_class_flips(name, classes, overrides, ids, final_cls):
    outs = run(one_object(classes), TrackerConfig(**overrides))
    live = [o[~o.coasted] for o in outs[1:]]          # (frame 0: tentative, not emitted)
    seen = set(np.concatenate([o.track_id for o in live]).tolist())
    assert seen == ids, f"{name}: ids {seen}"
    last = live[-1]
    assert last.class_id.tolist() == [final_cls], f"{name}: class {last.class_id.tolist()}"
    if overrides.get("class_groups") != ():
        # no frame coasts: the object is matched every frame
        assert all(len(o) == 1 and not o.coasted.any() for o in outs[1:]), name


def test_voted_class_is_stable_and_det_class_is_per_frame():
    classes = [CAR] * 3 + [TRUCK] + [CAR] * 2
    outs = run(one_object(classes))
    assert [o.class_id.tolist() for o in outs[1:]] == [[CAR]] * 5
    assert [o.columns["det_class"].tolist() for o in outs[1:]] == [[c] for c in classes[1:]]


# name, two objects per frame: (x0, class) each; expected distinct ids
TWO_OBJECT_CASES = [
    ("truck_and_car_side_by_side", (100.0, TRUCK), (190.0, CAR)),
    ("truck_and_car_overlapping_half", (100.0, TRUCK), (140.0, CAR)),
    ("person_never_takes_a_cars_id", (100.0, CAR), (100.0, PERSON)),
    ("bicycle_never_takes_a_cars_id", (100.0, CAR), (104.0, BICYCLE)),
]


@pytest.mark.parametrize("name,a,b", TWO_OBJECT_CASES, ids=[c[0] for c in TWO_OBJECT_CASES])
def test_two_objects_keep_separate_ids(name, a, b):
    sched = [[(box(f, a[0]), a[1], 0.9), (box(f, b[0]), b[1], 0.9)] for f in range(12)]
    outs = run(sched)
    for o in outs[1:]:
        assert len(o) == 2 and len(set(o.track_id.tolist())) == 2, name
        by_id = dict(zip(o.track_id.tolist(), o.class_id.tolist()))
        assert by_id == {1: a[1], 2: b[1]}, f"{name}: {by_id}"


def test_person_after_car_vanishes_is_not_given_its_id():
    """The car's box is taken by a person the next frames: the car's track coasts, the person gets a new id."""
    sched = [[(box(f), CAR, 0.9)] for f in range(5)] + [[(box(f), PERSON, 0.9)] for f in range(5, 10)]
    outs = run(sched)
    person = [o[o.class_id == PERSON] for o in outs[5:]]
    assert all(1 not in p.track_id.tolist() for p in person)
    assert outs[-1][outs[-1].class_id == PERSON].track_id.tolist() == [2]


def test_same_class_detection_wins_a_near_tie():
    """Two detections on one car track, equally close: the one of the track's class takes it."""
    sched = [[(box(f), CAR, 0.9)] for f in range(5)]
    b = box(5)
    sched.append([((b[0] - 3, b[1], b[2] - 3, b[3]), TRUCK, 0.9), ((b[0] + 3, b[1], b[2] + 3, b[3]), CAR, 0.9)])
    out = run(sched)[-1]
    assert out[out.track_id == 1].columns["det_class"].tolist() == [CAR]


# name, votes (class -> tally), new detections (class, score), expected class
VOTE_CASES = [
    ("tie_keeps_current", {CAR: 0.9}, [(TRUCK, 0.9)], CAR),
    ("strictly_more_turns", {CAR: 0.9}, [(TRUCK, 0.95)], TRUCK),
    ("score_weighted_not_counted", {CAR: 0.9}, [(TRUCK, 0.25), (TRUCK, 0.25), (TRUCK, 0.25)], CAR),
    ("same_class_adds_only", {CAR: 0.5, TRUCK: 0.4}, [(CAR, 0.9)], CAR),
]


@pytest.mark.parametrize("name,tally,new,expect", VOTE_CASES, ids=[c[0] for c in VOTE_CASES])
def test_cast_votes(name, tally, new, expect):
    votes = np.zeros((1, 8), np.float32)
    for c, v in tally.items():
        votes[0, c] = v
    cls = np.array([max(tally, key=tally.get)], np.int32)
    for c, s in new:
        cast_votes(votes, cls, np.array([0]), np.array([c]), np.array([s], np.float32))
    assert int(cls[0]) == expect, name


# name, class names, groups, pairs (class a, class b, same group?)
GROUP_CASES = [
    ("coco_vehicles", None, TrackerConfig().class_groups, [(CAR, TRUCK, True), (CAR, BUS, True), (CAR, PERSON, False),
                                                           (MOTO, BICYCLE, True), (MOTO, CAR, False)]),
    ("class_outside_groups_alone", None, (("car", "truck"),), [(CAR, BUS, False), (BUS, BUS, True)]),
    ("id_beyond_names_alone", ("car", "truck"), (("car", "truck"),), [(0, 1, True), (0, 7, False), (7, 7, True)]),
    ("names_case_insensitive", kitti.TRACKER_CLASS_NAMES, TrackerConfig().class_groups,
     [(2, 4, True), (2, 5, True), (1, 2, False), (3, 2, False)]),
]


@pytest.mark.parametrize("name,names,groups,pairs", GROUP_CASES, ids=[c[0] for c in GROUP_CASES])
def test_class_group_keys(name, names, groups, pairs):
    g = ClassGroups(groups, names)
    for a, b, same in pairs:
        ka, kb = g.keys(np.array([a, b]))
        assert bool(ka == kb) is same, f"{name}: {a} vs {b}"


CONFIG_ERRORS = [
    ("empty_group", {"class_groups": (("car",), ())}, "class_groups[1] is empty"),
    ("class_in_two_groups", {"class_groups": (("car", "truck"), ("Truck",))}, "a class belongs to one group"),
    ("empty_name", {"class_groups": (("car", " "),)}, "empty class name"),
    ("negative_cost", {"class_switch_cost": -0.1}, "class_switch_cost"),
]


@pytest.mark.parametrize("name,kw,message", CONFIG_ERRORS, ids=[c[0] for c in CONFIG_ERRORS])
def test_config_errors(name, kw, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        TrackerConfig(**kw)


def test_jsonl_and_mot_carry_voted_class_and_detector_class(tmp_path):
    classes = [CAR] * 3 + [TRUCK] + [CAR] * 2
    outs = run(one_object(classes))
    jl, mot = JsonlWriter(str(tmp_path / "o.jsonl"), COCO_NAMES), MotWriter(str(tmp_path / "o.txt"))
    img = np.zeros((4, 4, 3), np.uint8)
    for f, o in enumerate(outs):
        frame = Frame(img, f, f * 0.1, "t")
        jl.write(frame, o)
        mot.write(frame, o)
    jl.close()
    mot.close()
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    boxes = [b for r in rows for b in r["boxes"]]
    assert [b["class"] for b in boxes] == ["car"] * 5
    assert [b["det_class"] for b in boxes] == [COCO_NAMES[c] for c in classes[1:]]
    assert [b["det_class_id"] for b in boxes] == classes[1:]
    assert {b["track_id"] for b in boxes} == {1}
    mot_ids = {line.split(",")[1] for line in (tmp_path / "o.txt").read_text().splitlines()}
    assert mot_ids == {"1"}


def test_jsonl_coasted_box_has_no_detector_class(tmp_path):
    sched = one_object([CAR] * 4) + [[]]
    out = run(sched, TrackerConfig(coast_trust=False))[-1]     # every coasted box emitted (trust.py tested apart)
    assert out.coasted.tolist() == [True] and out.columns["det_class"].tolist() == [-1]
    jl = JsonlWriter(str(tmp_path / "o.jsonl"), COCO_NAMES)
    jl.write(Frame(np.zeros((4, 4, 3), np.uint8), 0, 0.0, "t"), out)
    jl.close()
    b = json.loads((tmp_path / "o.jsonl").read_text())["boxes"][0]
    assert b["class"] == "car" and b["det_class"] is None and b["det_class_id"] is None


@pytest.mark.skipif(not (KITTI / "label_02").is_dir(), reason=f"shared KITTI data not found at {KITTI}")
@pytest.mark.parametrize("p", [0.0, 0.2])
def test_class_flip_is_seeded_and_relabels_only_cars(p):
    seq = kitti.load_sequence(KITTI, "0003", ["Car"], 2.0)
    labels = kitti.load_labels(KITTI, "0003")
    a, na = kitti.apply_class_flip(seq, labels, p, seed=0)
    b, nb = kitti.apply_class_flip(seq, labels, p, seed=0)
    total = sum(len(d) for d in seq.dets)
    assert na == nb and [d.class_id.tolist() for d in a.dets] == [d.class_id.tolist() for d in b.dets]
    cls = np.concatenate([d.class_id for d in a.dets])
    assert int((cls != CAR).sum()) == na and set(cls.tolist()) <= {2, 4, 5}
    assert (na == 0) if p == 0 else (0.1 * total < na < 0.3 * total)


@pytest.mark.skipif(not (KITTI / "label_02").is_dir(), reason=f"shared KITTI data not found at {KITTI}")
def test_eval_tool_class_flip_bad_value_is_one_line(capsys):
    from tools import eval_tracking

    assert eval_tracking.main(["--kitti-root", str(KITTI), "--class-flip", "0.2,x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--class-flip" in err[0]
