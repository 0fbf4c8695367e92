"""Every source kind, opened for real."""
import time

import numpy as np
import pytest

from conftest import SHARED, VIDEOS, need
from pipeline.config import SourceConfig
from pipeline.cameras import CameraDevice, CameraSource
from pipeline.sources import ImageSource, PyAVSource, SourceError, open_source


@pytest.mark.parametrize("name, decoded, container_says", [
    ("test_small2.mp4", 100, 116),
    ("test_small1.mp4", 88, 91),
    ("project_video_cut.mp4", 76, 76),    # MPEG-4 Part 2
])
def test_file_counts_decoded_frames_not_metadata(name, decoded, container_says):
    src = open_source(str(need(VIDEOS / name)))
    assert isinstance(src, PyAVSource) and not src.live
    assert src.frame_count_hint == container_says
    frames = list(src)
    assert len(frames) == decoded
    assert [f.index for f in frames] == list(range(decoded))
    ts = np.array([f.timestamp for f in frames])
    assert ts[0] == pytest.approx(0.0) and np.all(np.diff(ts) > 0)
    assert ts[-1] == pytest.approx((decoded - 1) / 25, abs=1e-6)   # 25 fps clips
    f = frames[0]
    assert f.image.dtype == np.uint8 and f.image.shape == (720, 1280, 3) and f.source == name


def test_file_frames_are_bgr():
    # A frame of the highway: the sky (top rows) is blue, so in BGR channel 0 is the largest.
    frame = next(iter(open_source(str(need(VIDEOS / "test_video.mp4")))))
    sky = frame.image[:100].reshape(-1, 3).mean(0)
    assert sky[0] > sky[2] + 20


def test_max_frames_stops_early(small2):
    assert len(list(open_source(str(small2), SourceConfig(max_frames=7)))) == 7


def test_image_folder_uses_timestamps_json():
    folder = need(SHARED / "images" / "pandaset_002_front")
    src = open_source(str(folder))
    assert isinstance(src, ImageSource) and src.fps == pytest.approx(10.0, rel=0.01)
    frames = list(src)
    assert len(frames) == 80 and frames[0].image.shape == (1080, 1920, 3)
    assert frames[-1].timestamp == pytest.approx(7.9, abs=0.05)


def test_image_glob_with_fps():
    pattern = str(need(SHARED / "images" / "udacity") / "test*.jpg")
    frames = list(open_source(pattern, SourceConfig(fps=2.0)))
    assert [f.timestamp for f in frames] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert frames[0].source == pattern


def test_image_folder_without_rate_is_a_clear_error():
    with pytest.raises(SourceError, match="pass --fps"):
        open_source(str(need(SHARED / "images" / "udacity")))


def test_lavfi_test_source_is_live():
    src = open_source("lavfi:testsrc2=size=320x240:rate=50")
    assert src.live
    it = iter(src)
    frames = [next(it) for _ in range(5)]
    src.close()
    assert frames[4].timestamp == pytest.approx(0.08) and frames[0].image.shape == (240, 320, 3)


@pytest.mark.parametrize("spec, message", [
    ("camera7", "camera7: no camera at index 7"),
    ("3", "camera3: no camera at index 3"),
    ("no/such/drive.mp4", "no such file or folder"),
    ("", "empty --source"),
])
def test_open_errors_name_the_source(spec, message):
    t0 = time.monotonic()
    with pytest.raises(SourceError) as e:
        open_source(spec)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert time.monotonic() - t0 < 5


def test_absent_camera_is_a_camera_source_error():
    with pytest.raises(SourceError, match="plug one in"):
        CameraSource(CameraDevice(9, "/dev/video9", "camera9", None), SourceConfig())


@pytest.mark.parametrize("url", ["rtsp://127.0.0.1:9/live", "http://127.0.0.1:9/live.mp4"])
def test_closed_port_url_fails_fast(url):
    t0 = time.monotonic()
    with pytest.raises(SourceError) as e:
        open_source(url, SourceConfig(open_timeout_s=2, read_timeout_s=2))
    assert url in str(e.value) and "check the URL" in str(e.value)
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("content, message", [
    (b"", r"empty \(0 bytes\)"),
    (b"this is not a video at all\n" * 100, "cannot open"),
])
def test_bad_files(tmp_path, content, message):
    p = tmp_path / "bad.mp4"
    p.write_bytes(content)
    with pytest.raises(SourceError, match=message):
        open_source(str(p))
