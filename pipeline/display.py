"""The live preview window, used from the main thread only."""
from __future__ import annotations

import os
import sys

import cv2
import numpy as np


def display_available() -> bool:
    """True when a window can be opened.  Without a display, OpenCV's Qt backend
    aborts the process (no exception), so this must be checked first."""
    if sys.platform.startswith("linux") or sys.platform.startswith("freebsd"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class Preview:
    """A window with keys: q / Esc quit, space pauses.  ``show`` returns 'quit', 'pause' or None."""

    def __init__(self, name: str):
        self.name = name
        self._shown = False
        try:
            cv2.namedWindow(name, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
        except cv2.error as e:   # e.g. opencv-python-headless: no GUI support
            raise RuntimeError(f"cannot open a preview window ({str(e).strip().splitlines()[-1]}); use --no-show") from None

    def show(self, image: np.ndarray | None, wait_ms: int = 1) -> str | None:
        if image is not None:
            if not self._shown:
                cv2.resizeWindow(self.name, image.shape[1], image.shape[0])
            cv2.imshow(self.name, image)
            self._shown = True
        key = cv2.waitKey(wait_ms) & 0xFF
        if key in (ord("q"), 27):
            return "quit"
        if key == ord(" "):
            return "pause"
        if self._shown and self.closed():
            return "quit"
        return None

    def closed(self) -> bool:
        try:
            return cv2.getWindowProperty(self.name, cv2.WND_PROP_VISIBLE) < 1
        except cv2.error:
            return True

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.name)
            cv2.waitKey(1)
        except cv2.error:
            pass
