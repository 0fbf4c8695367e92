"""The live preview window, used from the main thread only.

At start the window takes the largest size of the frame's aspect inside a bound:
``preview.max_size`` when configured, else ``screen_fraction`` of the screen (the
primary monitor, asked of the windowing system: X11/XRandR through ctypes, or
Windows' metrics), and never more than the frame itself.  It stays resizable;
``display_scale`` (window pixels per frame pixel) lets the HUD stay readable.
"""
from __future__ import annotations

import ctypes
import ctypes.util
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


class _XRRMonitorInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_ulong), ("primary", ctypes.c_int), ("automatic", ctypes.c_int),
                ("noutput", ctypes.c_int), ("x", ctypes.c_int), ("y", ctypes.c_int),
                ("width", ctypes.c_int), ("height", ctypes.c_int), ("mwidth", ctypes.c_int),
                ("mheight", ctypes.c_int), ("outputs", ctypes.c_void_p)]


def _x11_screen_rect(display: str) -> tuple[int, int, int, int] | None:
    lib = ctypes.util.find_library("X11")
    if not lib:
        return None
    x11 = ctypes.CDLL(lib)
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    for fn in ("XDefaultScreen", "XCloseDisplay"):
        getattr(x11, fn).argtypes = [ctypes.c_void_p]
    for fn in ("XDisplayWidth", "XDisplayHeight"):
        getattr(x11, fn).argtypes = [ctypes.c_void_p, ctypes.c_int]
    x11.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    x11.XDefaultRootWindow.restype = ctypes.c_ulong
    dpy = x11.XOpenDisplay(display.encode())
    if not dpy:
        return None
    try:
        screen = x11.XDefaultScreen(dpy)
        size = (0, 0, x11.XDisplayWidth(dpy, screen), x11.XDisplayHeight(dpy, screen))
        monitor = _primary_monitor(dpy, x11.XDefaultRootWindow(dpy))   # one monitor of a multi-monitor screen
        return monitor or size
    finally:
        x11.XCloseDisplay(dpy)


def _primary_monitor(dpy: int, root: int) -> tuple[int, int, int, int] | None:
    lib = ctypes.util.find_library("Xrandr")
    if not lib:
        return None
    xrr = ctypes.CDLL(lib)
    if not hasattr(xrr, "XRRGetMonitors"):
        return None
    xrr.XRRGetMonitors.restype = ctypes.POINTER(_XRRMonitorInfo)
    xrr.XRRGetMonitors.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    xrr.XRRFreeMonitors.argtypes = [ctypes.POINTER(_XRRMonitorInfo)]
    count = ctypes.c_int(0)
    monitors = xrr.XRRGetMonitors(dpy, root, 1, ctypes.byref(count))
    if not monitors:
        return None
    try:
        found = [monitors[i] for i in range(count.value)]
        chosen = next((m for m in found if m.primary), found[0] if found else None)
        if chosen is None or chosen.width <= 0 or chosen.height <= 0:
            return None
        return chosen.x, chosen.y, chosen.width, chosen.height
    finally:
        xrr.XRRFreeMonitors(monitors)


def screen_rect() -> tuple[int, int, int, int] | None:
    """(x, y, width, height) of the (primary) monitor in pixels, or None when the windowing system does not say."""
    try:
        if sys.platform == "win32":
            user32 = ctypes.windll.user32
            return 0, 0, user32.GetSystemMetrics(0), user32.GetSystemMetrics(1)
        display = os.environ.get("DISPLAY")
        return _x11_screen_rect(display) if display else None
    except (OSError, AttributeError):       # no usable X library: the window keeps the frame's size
        return None


def screen_size() -> tuple[int, int] | None:
    """(width, height) of the (primary) monitor, or None."""
    rect = screen_rect()
    return rect[2:] if rect else None


def fit_size(frame_wh: tuple[int, int], bound_wh: tuple[int, int] | None) -> tuple[int, int]:
    """The largest (width, height) of the frame's aspect inside ``bound_wh``, never above the frame's own size."""
    w, h = frame_wh
    if bound_wh is None:
        return w, h
    scale = min(1.0, bound_wh[0] / w, bound_wh[1] / h)
    return max(1, int(w * scale)), max(1, int(h * scale))


class Preview:
    """A window with keys: q / Esc quit, space pauses.  ``show`` returns 'quit', 'pause' or None."""

    def __init__(self, name: str, *, title: str | None = None, max_size: tuple[int, int] | None = None,
                 screen_fraction: float = 0.9):
        self.name = name
        self._shown = False
        self.display_scale = 1.0          # window pixels per frame pixel, as last shown
        self.size: tuple[int, int] | None = None     # the window size chosen at start
        self.screen = screen = screen_rect()
        if max_size is not None:
            self.bound = tuple(max_size)
        else:
            self.bound = (int(screen[2] * screen_fraction), int(screen[3] * screen_fraction)) if screen else None
        try:
            cv2.namedWindow(name, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
            if title and title != name:
                cv2.setWindowTitle(name, title)
        except cv2.error as e:   # e.g. opencv-python-headless: no GUI support
            raise RuntimeError(f"cannot open a preview window ({str(e).strip().splitlines()[-1]}); use --no-show") from None

    def scale_for(self, image: np.ndarray) -> float:
        """Window pixels per pixel of ``image`` (the window's current size; the user may have resized it)."""
        h, w = image.shape[:2]
        if not self._shown:
            ww, wh = fit_size((w, h), self.bound)
        else:
            try:
                _, _, ww, wh = cv2.getWindowImageRect(self.name)
            except cv2.error:
                return self.display_scale
        if ww > 0 and wh > 0:
            self.display_scale = min(ww / w, wh / h)
        return self.display_scale

    def show(self, image: np.ndarray | None, wait_ms: int = 1) -> str | None:
        if image is not None:
            if not self._shown:
                self.size = fit_size((image.shape[1], image.shape[0]), self.bound)
                cv2.resizeWindow(self.name, *self.size)
            cv2.imshow(self.name, image)
            first, self._shown = not self._shown, True
        else:
            first = False
        key = cv2.waitKey(wait_ms) & 0xFF
        if first:
            self._keep_on_screen()
        if key in (ord("q"), 27):
            return "quit"
        if key == ord(" "):
            return "pause"
        if self._shown and self.closed():
            return "quit"
        return None

    def _keep_on_screen(self) -> None:
        """A window manager placed the window for its empty size; once it has the frame's size, move
        it (only if needed) so that it lies on the monitor."""
        if self.screen is None:
            return
        try:
            x, y, w, h = cv2.getWindowImageRect(self.name)
        except cv2.error:
            return
        sx, sy, sw, sh = self.screen
        nx, ny = min(max(x, sx), sx + max(0, sw - w)), min(max(y, sy), sy + max(0, sh - h))
        if (nx, ny) != (x, y):
            cv2.moveWindow(self.name, nx, ny)

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
