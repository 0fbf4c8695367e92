"""Ways to play a file source: replayed N times (``source.loop``, ``--loop N``) and paced to its
own timestamps (``source.realtime``, ``--realtime``).

Both wrap a non-live ``Source`` (``open_source`` applies them); a live source has its own clock
and no end to start again from, so neither applies to it (the CLI says so in one line).

- ``LoopedSource``: the file is reopened for each pass; frame indices and timestamps continue
  across passes (each pass starts one frame interval after the last frame of the previous one),
  so the tracker and the outputs see one long drive.  ``max_frames`` counts over all passes.
- ``PacedSource``: each frame leaves no earlier than its timestamp after the first frame's, on
  the monotonic clock.  Every frame is still processed: a machine slower than the file plays it
  slower (the clock restarts from a late frame instead of rushing to catch up, so a pause in the
  preview does not end in a burst).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Iterator

from dashtrack_core.records import Frame
from .source_base import Source

LATE_RESTART_S = 0.25          # a frame later than this restarts the pacing clock


class _Wrapper(Source):
    """Forwards the attributes the runner reads (name, fps, warnings, ...) to the wrapped source."""

    def __init__(self, inner: Source):
        self.inner = inner
        self.name = inner.name
        self.live = inner.live
        self.fps = inner.fps
        self.frame_count_hint = inner.frame_count_hint
        self.description = inner.description

    @property
    def on_warning(self):
        return self.inner.on_warning

    @on_warning.setter
    def on_warning(self, callback) -> None:
        self.inner.on_warning = callback

    @property
    def warnings(self) -> list[str]:
        return list(getattr(self.inner, "warnings", []))

    def close(self) -> None:
        self.inner.close()


class LoopedSource(_Wrapper):
    """``passes`` passes over a file, reopened by ``reopen`` for every pass after the first."""

    def __init__(self, first: Source, reopen: Callable[[], Source], passes: int, max_frames: int | None = None):
        if passes < 1:
            raise ValueError(f"passes {passes!r} must be >= 1")
        super().__init__(first)
        self.reopen, self.passes, self.max_frames = reopen, passes, max_frames
        self._done: list[Source] = []          # closed passes (their warnings are kept)
        if first.frame_count_hint:
            total = first.frame_count_hint * passes
            self.frame_count_hint = min(total, max_frames) if max_frames else total

    @property
    def warnings(self) -> list[str]:
        return [w for s in (*self._done, self.inner) for w in getattr(s, "warnings", [])]

    def __iter__(self) -> Iterator[Frame]:
        index, offset, last_ts = 0, 0.0, None
        step = 1.0 / self.fps if self.fps else 1.0 / 30.0
        for n in range(self.passes):
            if n > 0:
                callback = self.inner.on_warning
                self.inner.close()
                self._done.append(self.inner)
                self.inner = self.reopen()
                self.inner.on_warning = callback
                offset = last_ts + step if last_ts is not None else 0.0
            for frame in self.inner:
                last_ts = offset + frame.timestamp
                yield dataclasses.replace(frame, index=index, timestamp=last_ts)
                index += 1
                if self.max_frames and index >= self.max_frames:
                    return


class PacedSource(_Wrapper):
    """Frames no faster than their timestamps; ``clock`` and ``sleep`` are injectable for tests."""

    def __init__(self, inner: Source, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        super().__init__(inner)
        self.clock, self.sleep = clock, sleep

    def __iter__(self) -> Iterator[Frame]:
        anchor = None                       # (clock time, timestamp) the schedule counts from
        for frame in self.inner:
            now = self.clock()
            if anchor is None:
                anchor = (now, frame.timestamp)
            due = anchor[0] + (frame.timestamp - anchor[1])
            if due > now:
                self.sleep(due - now)
                now = self.clock()
            elif now - due > LATE_RESTART_S:
                anchor = (now, frame.timestamp)
            # Captured when it is due: the latency counts from the frame's arrival, as for a live source.
            yield dataclasses.replace(frame, captured_at=now)
