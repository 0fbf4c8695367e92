"""Reopen a live source that stops, with bounded exponential backoff.

A network stream that ends or fails, or a camera that stops delivering, is
reopened: waits of ``initial_s``, doubling up to ``max_s``, until it returns or
``timeout_s`` has passed since it was lost (then a ``SourceError``).  No frame
is fabricated for the gap: the first frame after the return carries a
timestamp that includes the gap, so the tracker sees a time jump, and the gap
is reported (``gaps``, and a warning as it happens).
"""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable, Iterator

from dashtrack_core.records import Frame
from .source_base import Source, SourceError


class ReconnectingSource(Source):
    live = True

    def __init__(self, opener: Callable[[], Source], *, timeout_s: float, initial_s: float = 0.25,
                 max_s: float = 0.5, stop: threading.Event | None = None):
        self._opener = opener
        self._current: Source | None = self._adopt(opener())   # the first open fails loudly, with no retry
        self.name = self._current.name
        self.description = getattr(self._current, "description", None)
        self.fps = self._current.fps
        self.frame_count_hint = None
        self.timeout_s, self.initial_s, self.max_s = timeout_s, initial_s, max_s
        self.stop = stop or threading.Event()
        # {"after_frame", "at_s", "seconds", "resumed_at_s"}: times on the frames' clock (the first frame
        # after the gap is stamped resumed_at_s = at_s + seconds); "resumed_monotonic": time.monotonic().
        self.gaps: list[dict] = []

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        offset = 0.0          # added to the current session's timestamps
        last_ts = 0.0
        lost_at: float | None = None
        while not self.stop.is_set():
            if self._current is None:
                self._current = self._adopt(self._reopen(lost_at, index))
                if self._current is None:
                    return                            # stopped while waiting
                now = time.monotonic()
                gap = now - lost_at
                offset = last_ts + gap
                self.gaps.append({"after_frame": index - 1, "at_s": round(last_ts, 3), "seconds": round(gap, 3),
                                  "resumed_at_s": round(offset, 3), "resumed_monotonic": now})
                self.warn(f"back after a {gap:.2f} s gap (frame {index} on)")
            session_start: float | None = None
            reason = "the stream ended"
            try:
                for f in self._current:
                    if session_start is None:
                        session_start = f.timestamp
                    last_ts = offset + (f.timestamp - session_start)
                    yield dataclasses.replace(f, index=index, timestamp=last_ts)
                    index += 1
                    if self.stop.is_set():
                        return
            except SourceError as e:
                reason = str(e)
            finally:
                self._close_current()
            lost_at = time.monotonic()
            self.warn(f"lost after frame {index - 1} ({reason}); reconnecting for up to {self.timeout_s:.0f} s")

    def _adopt(self, source: Source | None) -> Source | None:
        """The session's own warnings (a camera's mode note, a skipped packet) are this source's."""
        if source is not None:
            prefix = f"{source.name}: "
            source.on_warning = lambda text: self.warn(text[len(prefix):] if text.startswith(prefix) else text)
        return source

    def _reopen(self, lost_at: float, index: int) -> Source | None:
        wait = self.initial_s
        last_error = "no answer"
        while True:
            if self.stop.wait(wait):
                return None
            try:
                return self._opener()
            except SourceError as e:
                last_error = str(e)
            waited = time.monotonic() - lost_at
            if waited >= self.timeout_s:
                raise SourceError(f"{self.name}: lost after frame {index - 1} and not back within "
                                  f"{self.timeout_s:.0f} s ({last_error}); check the source")
            wait = min(wait * 2, self.max_s, max(self.timeout_s - waited, 0.01))

    def _close_current(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None

    def close(self) -> None:
        self._close_current()
