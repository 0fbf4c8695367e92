"""pipeline/replay.py: a file replayed N times (--loop) and paced to its timestamps (--realtime),
on synthetic sources with an injected clock (no sleeping, no timing asserts)."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import SourceConfig
from dashtrack_core.records import Frame
from pipeline.replay import LATE_RESTART_S, LoopedSource, PacedSource
from pipeline.source_base import Source
from pipeline.sources import open_source


class Listed(Source):
    """A file-like source of frames at the given timestamps."""

    opened = 0

    def __init__(self, stamps, name="clip.mp4", warn_on_pass=False):
        Listed.opened += 1
        self.stamps, self.name, self.fps = list(stamps), name, 25.0
        self.frame_count_hint = len(self.stamps)
        self.closed = False
        self.warn_on_pass = warn_on_pass

    def __iter__(self):
        if self.warn_on_pass:
            self.warn("skipped a packet")
        for i, t in enumerate(self.stamps):
            yield Frame(np.zeros((16, 16, 3), np.uint8), i, t, self.name, 0.0)

    def close(self):
        self.closed = True


LOOPS = [
    # id, stamps of one pass, passes, max_frames, expected timestamps
    ("twice", [0.0, 0.04, 0.08], 2, None, [0.0, 0.04, 0.08, 0.12, 0.16, 0.20]),
    ("offset-start", [1.0, 1.04], 2, None, [1.0, 1.04, 1.08 + 1.0, 1.12 + 1.0]),
    ("once-is-unchanged", [0.0, 0.04], 1, None, [0.0, 0.04]),
    ("max-frames-over-passes", [0.0, 0.04, 0.08], 3, 5, [0.0, 0.04, 0.08, 0.12, 0.16]),
    ("single-frame-file", [0.0], 3, None, [0.0, 0.04, 0.08]),
]


@pytest.mark.parametrize("stamps, passes, max_frames, expected", [r[1:] for r in LOOPS], ids=[r[0] for r in LOOPS])
def test_looped_indices_and_timestamps_continue(stamps, passes, max_frames, expected):
    src = LoopedSource(Listed(stamps), lambda: Listed(stamps), passes, max_frames)
    frames = list(src)
    assert [f.index for f in frames] == list(range(len(expected)))
    assert [f.timestamp for f in frames] == pytest.approx(expected)
    assert src.frame_count_hint == (min(len(stamps) * passes, max_frames) if max_frames else len(stamps) * passes)


def test_looped_closes_each_pass_and_keeps_their_warnings():
    made = []

    def reopen():
        made.append(Listed([0.0], warn_on_pass=True))
        return made[-1]

    first = Listed([0.0], warn_on_pass=True)
    src = LoopedSource(first, reopen, 3)
    heard = []
    src.on_warning = heard.append
    list(src)
    src.close()
    assert first.closed and all(s.closed for s in made) and len(made) == 2
    assert src.warnings == ["skipped a packet"] * 3
    assert heard == ["clip.mp4: skipped a packet"] * 3       # reported as it happens, every pass


class FakeClock:
    def __init__(self):
        self.now, self.slept = 100.0, []

    def __call__(self):
        return self.now

    def sleep(self, s):
        self.slept.append(round(s, 6))
        self.now += s


PACES = [
    # id, timestamps, processing time the consumer spends per frame, expected sleeps
    ("on-time", [0.0, 0.04, 0.08, 0.12], 0.0, [0.04, 0.04, 0.04]),
    ("consumer-takes-some", [0.0, 0.04, 0.08], 0.01, [0.03, 0.03]),
    ("slow-consumer-never-sleeps", [0.0, 0.04, 0.08], 0.05, []),
    # a pause of 2 s after frame 1: frame 2 leaves at once and restarts the clock, frame 3 waits its
    # 0.04 s after it (without the restart frames 2 and 3 would both go at once: a burst)
    ("pause-restarts-the-clock", [0.0, 0.04, 0.08, 0.12], None, [0.04, 0.04]),
]


@pytest.mark.parametrize("stamps, work, sleeps", [r[1:] for r in PACES], ids=[r[0] for r in PACES])
def test_paced_sleeps_to_the_timestamps(stamps, work, sleeps):
    clock = FakeClock()
    src = PacedSource(Listed(stamps), clock=clock, sleep=clock.sleep)
    captured = []
    for i, frame in enumerate(src):
        captured.append(frame.captured_at)
        clock.now += (2.0 if i == 1 else 0.0) if work is None else work
    assert clock.slept == pytest.approx(sleeps)
    assert captured == sorted(captured) and captured[0] == 100.0


def test_paced_restart_threshold_is_more_than_a_frame():
    assert 0.1 < LATE_RESTART_S < 1.0


def test_open_source_applies_loop_and_realtime_to_files_only(example_video):
    src = open_source(str(example_video), SourceConfig(loop=2, realtime=True))
    assert isinstance(src, PacedSource) and isinstance(src.inner, LoopedSource) and not src.live
    src.close()
    live = open_source("lavfi:testsrc2=size=64x48:rate=25", SourceConfig(loop=2, realtime=True))
    assert live.live and not isinstance(live, (PacedSource, LoopedSource))
    live.close()
