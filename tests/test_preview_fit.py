"""The preview fits the screen: window size from the frame's aspect and the screen (or preview.max_size),
a HUD that keeps its size on screen, capture->display latency; under Xvfb with a screen smaller
than the frame (1000x700 against PandaSet's 1920x1080)."""
import ctypes
import ctypes.util
import json
import os
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from conftest import REPO, SHARED, YOLOX_ONNX, car_pixels, grab_screen, need, need_tool, xvfb
from pipeline.config import load_config
from dashtrack_core.configtools import ConfigError
from pipeline.display import _XRRMonitorInfo, fit_size, screen_size
from pipeline.drawing import draw_hud
from pipeline.stats import Stats, format_table

pytestmark = pytest.mark.timeout(180)

SCREEN = (1000, 700)
PANDASET = SHARED / "images" / "pandaset_002_front"     # 1920x1080 JPEGs


@pytest.mark.parametrize("frame, bound, expect", [
    ((1920, 1080), (900, 630), (900, 506)),          # width limits
    ((1080, 1920), (900, 630), (354, 630)),          # portrait: height limits
    ((1920, 1080), (2000, 600), (1066, 600)),        # height limits
    ((640, 480), (900, 630), (640, 480)),            # smaller than the bound: never enlarged at start
    ((1920, 1080), None, (1920, 1080)),              # no screen known, no max_size: the frame's size
    ((4000, 10), (900, 630), (900, 2)),              # extreme aspect
], ids=["wide-frame", "portrait-frame", "short-bound", "small-frame", "no-bound", "strip"])
def test_fit_size(frame, bound, expect):
    got = fit_size(frame, bound)
    assert got == expect
    assert abs(got[0] * frame[1] - got[1] * frame[0]) <= frame[0]      # the aspect, to a pixel


@pytest.mark.parametrize("preview, message", [
    ({"max_size": [0, 400]}, "preview.max_size: [0, 400] must be positive"),
    ({"max_size": [640]}, "preview.max_size: [640] has 1 items"),
    ({"screen_fraction": 0}, "preview.screen_fraction: 0.0 must be in (0, 1]"),
    ({"screen_fraction": 1.5}, "preview.screen_fraction: 1.5 must be in (0, 1]"),
    ({"size": [640, 400]}, "unknown key 'size'"),
], ids=["zero-size", "one-number", "zero-fraction", "fraction-above-one", "unknown-key"])
def test_preview_config_errors(tmp_path, preview, message):
    path = tmp_path / "p.yaml"
    path.write_text(json.dumps({"preview": preview}))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert message in str(e.value) and "\n" not in str(e.value)


def on_screen_hud(frame_wh, window_wh, display_scale):
    """The HUD drawn on a black frame, as the window shows it (resized to the window)."""
    img = np.zeros((frame_wh[1], frame_wh[0], 3), np.uint8)
    draw_hud(img, ["12 FPS  latency 80 ms"], display_scale)
    return cv2.resize(img, window_wh, interpolation=cv2.INTER_AREA)


def text_box(img):
    ys, xs = np.nonzero(img.max(-1) > 200)
    return ys.max() - ys.min() + 1, xs.max() - xs.min() + 1, len(ys)


@pytest.mark.parametrize("frame, window", [
    ((1920, 1080), (900, 506)),      # PandaSet on a 1000x700 screen
    ((3840, 2160), (1280, 720)),     # 4K shrunk to a third
    ((640, 360), (1280, 720)),       # a small camera the user enlarged
    ((1920, 1080), (480, 270)),      # a window made small: the text keeps its smallest readable size
], ids=["1080p-shrunk", "4k-shrunk", "small-enlarged", "small-window"])
def test_hud_keeps_its_size_on_screen(frame, window):
    """Drawn for the window's scale, the HUD looks as if drawn at the window's own resolution."""
    scale = window[0] / frame[0]
    shown = text_box(on_screen_hud(frame, window, scale))
    reference = text_box(on_screen_hud(window, window, 1.0))
    assert abs(shown[0] - reference[0]) <= 3 and abs(shown[1] - reference[1]) <= 0.1 * reference[1]
    if scale < 1:                                                       # shrunk: strokes stay bright, not thinned away
        assert shown[2] >= 0.6 * reference[2]


def test_hud_at_scale_one_is_unchanged():
    a = np.zeros((720, 1280, 3), np.uint8)
    b = a.copy()
    draw_hud(a, ["5 FPS"])
    draw_hud(b, ["5 FPS"], 1.0)
    assert np.array_equal(a, b) and a.any()


def test_stats_pair_display_and_output_latency_per_shown_frame():
    stats = Stats()
    t = time.monotonic()
    for i, (out_ms, show_ms) in enumerate([(100, 130), (120, 140), (300, 310), (90, None)]):  # the last one skipped
        captured = t - 1.0 + i * 0.01
        output_at = captured + out_ms / 1000
        with stats._lock:
            stats.frames_out += 1
            stats.latency.append(output_at - captured)
        if show_ms is not None:
            stats.displayed(captured, output_at, captured + show_ms / 1000)
    report = stats.report()
    shown = report["display_latency"]
    assert shown["measured"] and shown["count"] == 3 and "note" not in shown
    assert shown["p50_ms"] == pytest.approx(140) and shown["capture_to_output_same_frames"]["p50_ms"] == pytest.approx(120)
    assert report["latency"]["count"] == 4 and report["latency"]["p50_ms"] == pytest.approx(110)
    p50, p99 = stats.recent_percentiles_ms("display_latency")
    assert p50 == pytest.approx(140) and 300 < p99 <= 310
    row = next(line for line in format_table(report).splitlines() if line.startswith("capture->display"))
    assert row.split()[1:4] == ["3", "140.00", "306.60"]


def test_headless_run_says_display_latency_is_not_measured(tmp_path, example_video):
    stats = tmp_path / "stats.json"
    run = subprocess.run([sys.executable, str(REPO / "run_stream.py"), "--source", str(example_video), "--no-show",
                          "--max-frames", "3", "--stats-json", str(stats)], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    shown = json.loads(stats.read_text())["display_latency"]
    assert shown["measured"] is False and shown["count"] == 0 and shown["p50_ms"] is None
    assert shown["note"] == "display latency not measured: headless run (no preview window)"
    assert shown["note"] in run.stderr


# -- under a real X server -------------------------------------------------------
@pytest.fixture(scope="module")
def small_screen():
    with xvfb(SCREEN) as display:
        yield display


def add_monitors(display, monitors):
    """Virtual RandR monitors on the X screen (as ``xrandr --setmonitor`` makes): (name, x, w, h, primary)."""
    x11 = ctypes.CDLL(ctypes.util.find_library("X11") or pytest.skip("libX11 absent"))
    xrr = ctypes.CDLL(ctypes.util.find_library("Xrandr") or pytest.skip("libXrandr absent"))
    x11.XOpenDisplay.restype, x11.XOpenDisplay.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
    x11.XDefaultRootWindow.restype, x11.XDefaultRootWindow.argtypes = ctypes.c_ulong, [ctypes.c_void_p]
    x11.XInternAtom.restype = ctypes.c_ulong
    x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x11.XSync.argtypes = x11.XCloseDisplay.argtypes = None
    xrr.XRRSetMonitor.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(_XRRMonitorInfo)]
    dpy = x11.XOpenDisplay(display.encode())
    root = x11.XDefaultRootWindow(dpy)
    for name, left, w, h, primary in monitors:
        info = _XRRMonitorInfo(name=x11.XInternAtom(dpy, name.encode(), 0), primary=primary, automatic=0,
                               noutput=0, x=left, y=0, width=w, height=h, mwidth=300, mheight=200, outputs=None)
        xrr.XRRSetMonitor(dpy, root, ctypes.byref(info))
    x11.XSync(ctypes.c_void_p(dpy), 0)
    x11.XCloseDisplay(ctypes.c_void_p(dpy))


@pytest.mark.parametrize("monitors, expect", [
    ([], (2000, 700)),                                                          # one monitor: the X screen
    ([("LEFT", 0, 1200, 700, 0), ("RIGHT", 1200, 800, 600, 1)], (800, 600)),   # the primary one
    ([("LEFT", 0, 1200, 700, 0), ("RIGHT", 1200, 800, 600, 0)], (1200, 700)),  # none primary: the first
], ids=["single", "primary-of-two", "no-primary"])
def test_screen_size_is_one_monitor_not_the_whole_desktop(monkeypatch, monitors, expect):
    with xvfb((2000, 700)) as display:
        add_monitors(display, monitors)
        monkeypatch.setenv("DISPLAY", display)
        assert screen_size() == expect


def x(display, *args) -> str:
    return subprocess.run(list(args), env=dict(os.environ, DISPLAY=display), capture_output=True, text=True,
                          timeout=20).stdout


def find_window(display, timeout_s=60) -> str:
    xdotool = need_tool("xdotool")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = x(display, xdotool, "search", "--onlyvisible", "--name", "dashtrack").split()
        if found:
            return found[0]
        time.sleep(0.3)
    pytest.fail("the preview window never appeared")


def geometry(display, wid) -> tuple[int, int, int, int]:
    """(x, y, width, height) of the window as the X server has it (xwininfo)."""
    info = x(display, need_tool("xwininfo"), "-id", wid)
    fields = dict(line.strip().split(":", 1) for line in info.splitlines() if ":" in line and "xwininfo" not in line)
    return tuple(int(fields[k]) for k in ("Absolute upper-left X", "Absolute upper-left Y", "Width", "Height"))


QT_EMPTY = (400, 300)      # the size Qt maps a window at before its first frame


def first_frame_geometry(display, wid, timeout_s=60) -> tuple[int, int, int, int]:
    """The window's geometry once the first frame sized it (Qt maps it at a default size before)."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        now = geometry(display, wid)
        if now[2:] != QT_EMPTY and now == last:
            return now
        last = now
        time.sleep(0.3)
    pytest.fail(f"the window never left its empty size {QT_EMPTY} (last {last})")


def grab(display) -> np.ndarray:
    return grab_screen(display, SCREEN)


def run_preview(display, *args):
    env = dict(os.environ, DISPLAY=display)
    return subprocess.Popen([sys.executable, str(REPO / "run_stream.py"), "--show", "--no-track", "--quiet", *args],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def hud_pixels(img: np.ndarray) -> tuple[int, int, int]:
    """White and black pixels (text and its outline) in the HUD band, and the band's white text height."""
    band = img[:60, :450].astype(int)
    white = (band.min(-1) > 235)
    black = (band.max(-1) < 40)
    rows = np.nonzero(white.any(1))[0]
    return int(white.sum()), int(black.sum()), int(rows.max() - rows.min() + 1) if len(rows) else 0


def test_window_fits_a_smaller_screen_shows_boxes_hud_and_display_latency(small_screen, tmp_path):
    need(YOLOX_ONNX)
    frames = need(PANDASET)
    stats = tmp_path / "stats.json"
    # 82 frames paced at 5 FPS: up to 16 s on screen, ended with 'q' once a screenshot shows a car box and
    # the HUD (a loaded CI machine once took most of a 6-second run to map the window: every shot was black).
    proc = run_preview(small_screen, "--source", str(frames), "--fps", "5", "--stats-json", str(stats))
    best = None
    hud = (0, 0, 0)
    try:
        wid = find_window(small_screen)
        left, top, width, height = first_frame_geometry(small_screen, wid)
        title = x(small_screen, "xdotool", "getwindowname", wid).strip()
        while proc.poll() is None:
            shot = grab(small_screen)[top:top + height, left:left + width]
            if best is None or car_pixels(shot) > car_pixels(best):
                best = shot
            hud = max(hud, hud_pixels(shot), key=lambda h: min(h[0], h[1]))
            if car_pixels(best) > 200 and min(hud[0], hud[1]) > 150:
                time.sleep(1.0)                       # a few more shown frames for the display-latency figures
                x(small_screen, "xdotool", "key", "--window", wid, "q")
                break
            time.sleep(0.3)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    # The window: inside the screen, the frame's aspect, the largest such size in 90% of the screen.
    assert 0 <= left and left + width <= SCREEN[0] and 0 <= top and top + height <= SCREEN[1]
    assert abs(width * 1080 - height * 1920) <= 1920
    assert (width, height) == fit_size((1920, 1080), (900, 630)) == (900, 506)
    assert title == f"dashtrack - {frames}"
    cv2.imwrite(str(tmp_path / "screenshot.png"), best)
    assert car_pixels(best) > 200, f"no car box visible in any screenshot ({car_pixels(best)} pixels)"
    white, black, text_height = hud
    assert white > 150 and black > 150, f"no HUD text at the top left ({white} white, {black} black pixels)"
    assert 12 <= text_height <= 40, f"HUD text {text_height} px high on screen"
    report = json.loads(stats.read_text())
    shown = report["display_latency"]
    same = shown["capture_to_output_same_frames"]
    assert shown["measured"] and 0 < shown["count"] == same["count"] <= report["frames_out"]
    assert shown["p50_ms"] >= same["p50_ms"] > 0 and shown["p99_ms"] >= same["p99_ms"]
    assert report["latency"]["count"] == report["frames_out"]           # capture->output is kept, every frame


def test_max_size_overrides_the_screen_and_the_window_stays_resizable(small_screen):
    need(YOLOX_ONNX)
    proc = run_preview(small_screen, "--source", "lavfi:testsrc2=size=1280x720:rate=10,realtime",
                       "--set", "preview.max_size=[640,400]", "--max-frames", "200")
    try:
        wid = find_window(small_screen)
        first = first_frame_geometry(small_screen, wid)[2:]
        x(small_screen, "xdotool", "windowsize", "--sync", wid, "960", "540")
        time.sleep(1.0)
        resized = geometry(small_screen, wid)[2:]
        title = x(small_screen, "xdotool", "getwindowname", wid).strip()
        x(small_screen, "xdotool", "key", "--window", wid, "q")
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert first == (640, 360)
    assert resized == (960, 540)
    assert title == "dashtrack - lavfi:testsrc2=size=1280x720:rate=10,realtime"


def text_line_count(img: np.ndarray) -> int:
    """Separate runs of rows holding white HUD text at the top left."""
    rows = (img[:150, :500].min(-1) > 235).any(1)
    runs, inside = 0, False
    for r in rows:
        runs += bool(r and not inside)
        inside = bool(r)
    return runs


def test_pause_puts_paused_under_the_hud_line(small_screen):
    """Space pauses: 'PAUSED' is a second line (it was drawn over the first one, and again on resume)."""
    need(YOLOX_ONNX)
    proc = run_preview(small_screen, "--source", "lavfi:color=c=0x202020:size=1280x720:rate=10,realtime",
                       "--max-frames", "600")

    def lines_shown(want: int, timeout_s: float = 30) -> int:
        deadline = time.monotonic() + timeout_s
        while True:
            got = text_line_count(grab(small_screen)[top:top + height, left:left + width])
            if got == want or time.monotonic() > deadline:
                return got
            time.sleep(0.3)

    try:
        wid = find_window(small_screen)
        left, top, width, height = first_frame_geometry(small_screen, wid)
        running = lines_shown(1)
        x(small_screen, "xdotool", "key", "--window", wid, "space")
        paused = lines_shown(2)
        x(small_screen, "xdotool", "key", "--window", wid, "q")
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert (running, paused) == (1, 2)


PLACED_SCRIPT = """
import sys, time
import cv2, numpy as np
from pipeline.display import Preview
p = Preview("dashtrack", title="dashtrack - placed")
cv2.moveWindow("dashtrack", {x}, {y})          # where a window manager might put the empty window
cv2.waitKey(100)
p.show(np.full((1080, 1920, 3), 90, np.uint8))
for _ in range(20):
    p.show(None, 20)
print(*cv2.getWindowImageRect("dashtrack"))
p.close()
"""


@pytest.mark.parametrize("placed", [(600, 400), (0, 0), (-50, 30)], ids=["bottom-right", "top-left", "off-left"])
def test_window_placed_for_its_empty_size_is_moved_onto_the_screen(small_screen, placed):
    run = subprocess.run([sys.executable, "-c", PLACED_SCRIPT.format(x=placed[0], y=placed[1])], cwd=REPO,
                         env=dict(os.environ, DISPLAY=small_screen, PYTHONPATH=str(REPO)), capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    left, top, width, height = map(int, run.stdout.split()[-4:])
    assert (width, height) == (900, 506)
    assert 0 <= left and left + width <= SCREEN[0] and 0 <= top and top + height <= SCREEN[1]
    if placed == (0, 0):
        assert (left, top) == (0, 0)                # a window already on the screen is not moved
