"""The frame source's contract: ``Source`` (iterate ``Frame``s, ``close``) and ``SourceError``.

Every kind of source (``pipeline/sources.py`` files, streams and image folders;
``pipeline/cameras.py``; the reconnecting wrapper of ``pipeline/reconnect.py``)
builds on this module, so none of them imports another to get the base class.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterator

import numpy as np

from dashtrack_core.records import Frame

MIN_FRAME_SIDE = 16        # smaller frames cannot be letterboxed into a detector input


class SourceError(RuntimeError):
    """A source that cannot be opened or read; the message is one line for the user."""


class Source(ABC):
    """A sequence of frames.  ``live`` sources produce frames on their own clock."""

    name: str
    live: bool = False
    fps: float | None = None               # nominal rate, for the video writer and progress
    frame_count_hint: int | None = None    # container metadata: a hint only
    on_warning = None                      # callable(str): set by the runner to report as it happens
    description: str | None = None         # a longer name for window titles (a camera's device name)

    def warn(self, message: str) -> None:
        """A problem the run survives (a skipped packet, a reconnect); reported, never silent."""
        if not hasattr(self, "warnings"):
            self.warnings: list[str] = []
        self.warnings.append(message)
        if self.on_warning is not None:
            self.on_warning(f"{self.name}: {message}")

    def check_size(self, image: np.ndarray, index: int) -> None:
        """A frame too small for the detector is an error; a change of size is reported (the runner
        restarts the tracks and the video writer scales to its first size)."""
        h, w = image.shape[:2]
        if min(h, w) < MIN_FRAME_SIDE:
            raise SourceError(f"{self.name}: frame {index} is {w}x{h} pixels, too small for the detector; "
                              f"it needs at least {MIN_FRAME_SIDE}x{MIN_FRAME_SIDE}")
        last = getattr(self, "_size", None)
        if last is not None and last != (w, h):
            self.warn(f"frame size changed from {last[0]}x{last[1]} to {w}x{h} at frame {index}; "
                      "tracks restart, the saved video scales it to the first size")
        self._size = (w, h)

    @abstractmethod
    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None:
        pass

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
