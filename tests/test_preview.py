"""The live preview window under a real X server (Xvfb): it shows the video with boxes,
and q / Esc end the run cleanly."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, YOLOX_ONNX, car_pixels, grab_screen, need, need_tool, xvfb

pytestmark = pytest.mark.timeout(120)


SCREEN = (1280, 800)


@pytest.fixture(scope="module")
def xdisplay():
    with xvfb(SCREEN) as display:
        yield display


def grab(display: str) -> np.ndarray:
    return grab_screen(display, SCREEN)


def start(display, *args):
    env = dict(os.environ, DISPLAY=display)
    return subprocess.Popen([sys.executable, str(REPO / "run_stream.py"), "--show", "--no-track", *args],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_window_shows_video_with_boxes(xdisplay, small2, tmp_path):
    need(YOLOX_ONNX)
    proc = start(xdisplay, "--source", str(small2))
    best = None
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            shot = grab(xdisplay)
            if best is None or car_pixels(shot) > car_pixels(best):
                best = shot
            time.sleep(0.2)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert best is not None
    import cv2
    cv2.imwrite(str(tmp_path / "screenshot.png"), best)
    assert best.std() > 30, "the screen is blank"
    assert car_pixels(best) > 300, "no car box visible in any screenshot"


@pytest.mark.parametrize("key", ["q", "Escape"])
def test_quit_keys_end_the_run(xdisplay, key):
    need(YOLOX_ONNX)
    xdotool = need_tool("xdotool")
    proc = start(xdisplay, "--source", "lavfi:testsrc2=size=1280x720:rate=25,realtime")
    try:
        env = dict(os.environ, DISPLAY=xdisplay)
        deadline = time.monotonic() + 30
        wid = ""
        while not wid and time.monotonic() < deadline:
            time.sleep(0.5)
            wid = subprocess.run([xdotool, "search", "--name", "dashtrack"], env=env, capture_output=True,
                                 text=True).stdout.split()
        assert wid, "the preview window never appeared"
        time.sleep(1.0)
        subprocess.run([xdotool, "windowactivate", "--sync", wid[0]], env=env, capture_output=True)
        subprocess.run([xdotool, "key", "--window", wid[0], key], env=env, check=True)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped: closed by user" in err
