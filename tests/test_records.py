import numpy as np
import pytest

from dashtrack_core.records import Detections, Frame


@pytest.mark.parametrize(
    "case, kwargs, message",
    [
        ("score too short", dict(xyxy=np.zeros((2, 4)), score=[0.1], class_id=[0, 0]), "score has 1"),
        ("class too long", dict(xyxy=np.zeros((1, 4)), score=[0.1], class_id=[0, 0]), "class_id has 2"),
        ("track ids mismatch", dict(xyxy=np.zeros((1, 4)), score=[0.1], class_id=[0], track_id=[1, 2]), "track_id has 2"),
    ],
)
def test_detections_reject_inconsistent_lengths(case, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Detections(**kwargs)


def test_detections_are_frozen_and_typed():
    d = Detections([[0, 0, 10, 20]], [0.9], [2])
    assert d.xyxy.dtype == np.float32 and d.xyxy.shape == (1, 4)
    assert d.class_id.dtype == np.int32 and not d.tracked
    with pytest.raises(ValueError):
        d.xyxy[0, 0] = 5          # arrays are read-only
    with pytest.raises(AttributeError):
        d.score = np.zeros(1)     # the record is frozen


def test_empty_select_concat_and_tracks():
    assert len(Detections.empty()) == 0 and Detections.empty(tracked=True).tracked
    d = Detections([[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5]], [0.2, 0.8, 0.5], [0, 1, 2])
    hi = d[d.score > 0.4]
    assert hi.class_id.tolist() == [1, 2]
    t = d.with_tracks(np.array([7, 8, 9]))
    assert t.track_id.tolist() == [7, 8, 9] and t.coasted.tolist() == [False] * 3
    both = Detections.concat([t, t[[0]]])
    assert len(both) == 4 and both.track_id.tolist() == [7, 8, 9, 7]
    assert not Detections.concat([t, d]).tracked   # mixing drops track ids rather than inventing them


def test_frame_is_frozen():
    f = Frame(np.zeros((4, 6, 3), np.uint8), 3, 0.12, "x")
    assert (f.width, f.height) == (6, 4)
    with pytest.raises(AttributeError):
        f.index = 4
