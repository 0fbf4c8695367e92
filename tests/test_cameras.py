"""Cameras named by index, device path, udev link or device name, against a fake sysfs/dev tree;
the live camera path (size/fps request, the note, unplug -> reconnect) against an FFmpeg test
source standing in for the device; the camera config keys."""
import subprocess
import time
from pathlib import Path

import cv2
import pytest

from conftest import need_tool
from pipeline import cameras
from pipeline.cameras import resolve_camera
from pipeline.config import DEFAULT_CONFIG, SourceConfig, load_config
from dashtrack_core.configtools import ConfigError
from pipeline.sources import SourceError, open_source

pytestmark = pytest.mark.timeout(120)

C920 = "HD Pro Webcam C920"
NODES = {   # node: (name, physical device) -- a UVC camera has a capture and a metadata node
    "video0": (C920, "usb1"),
    "video1": (C920, "usb1"),
    "video2": ("Integrated Camera: Integrated C", "pci2"),
    "video3": ("Integrated Camera: Integrated I", "pci3"),
}
BY_ID = "v4l/by-id/usb-046d_HD_Pro_Webcam_C920_8E1A-video-index0"


def make_tree(root: Path, nodes=NODES) -> tuple[Path, Path]:
    sysfs, dev, devices = root / "sys", root / "dev", root / "devices"
    for path in (sysfs, dev / "v4l" / "by-id", devices):
        path.mkdir(parents=True)
    for node, (name, device) in nodes.items():
        (sysfs / node).mkdir()
        (sysfs / node / "name").write_text(name + "\n")
        (devices / device).mkdir(exist_ok=True)
        (sysfs / node / "device").symlink_to(devices / device)
        (dev / node).write_text("")
    (dev / "sda").write_text("")
    (dev / BY_ID).symlink_to("../../video0")
    (dev / "v4l" / "by-id" / "usb-gone-video-index0").symlink_to("../../video9")
    return sysfs, dev


@pytest.fixture
def tree(tmp_path):
    return make_tree(tmp_path)


@pytest.mark.parametrize("spec, index, label, name", [
    ("camera0", 0, "camera0", C920),
    ("0", 0, "camera0", C920),
    ("CAMERA2", 2, "camera2", "Integrated Camera: Integrated C"),
    ("camera1", 1, "camera1", C920),                             # an explicit node is taken as asked
    ("{dev}/video2", 2, "{dev}/video2", "Integrated Camera: Integrated C"),
    ("{dev}/" + BY_ID, 0, "{dev}/" + BY_ID, C920),               # udev link -> the node it points at
    ("c920", 0, "c920", C920),                                   # two nodes of one device: one camera
    ("hd pro WEBCAM", 0, "hd pro WEBCAM", C920),
    ("integrated camera: integrated c", 2, "integrated camera: integrated c", "Integrated Camera: Integrated C"),
], ids=["cameraN", "N", "upper-case", "metadata-node-by-index", "dev-path", "by-id-link", "name-substring",
        "name-case-insensitive", "exact-name-beats-substrings"])
def test_accepted_forms(tree, spec, index, label, name):
    sysfs, dev = tree
    cam = resolve_camera(spec.format(dev=dev), sysfs, dev)
    assert (cam.index, cam.label, cam.name) == (index, label.format(dev=dev), name)
    assert cam.path == str(dev / f"video{index}")


@pytest.mark.parametrize("spec, message", [
    ("integrated", '2 cameras match ({dev}/video2 "Integrated Camera: Integrated C", {dev}/video3 '
                   '"Integrated Camera: Integrated I"); give more of the name or the device path'),
    ("Logitech Brio", 'Logitech Brio: no such file or folder, and no camera by that name; cameras here: '
                      '{dev}/video0 "HD Pro Webcam C920", {dev}/video2 "Integrated Camera: Integrated C", '
                      '{dev}/video3 "Integrated Camera: Integrated I"'),
    ("camera5", "camera5: no camera at index 5 ({dev}/video5); cameras here: {dev}/video0"),
    ("{dev}/sda", "{dev}/sda: not a video device; cameras here:"),
    ("{dev}/video7", "{dev}/video7: no such device (unplugged?); cameras here:"),
    ("{dev}/v4l/by-id/usb-gone-video-index0", "usb-gone-video-index0: no such device (unplugged?)"),
], ids=["name-two-matches", "name-no-match", "index-absent", "path-not-a-video-device", "path-absent",
        "dangling-by-id-link"])
def test_rejected_forms_list_what_exists(tree, spec, message):
    sysfs, dev = tree
    with pytest.raises(SourceError) as e:
        resolve_camera(spec.format(dev=dev), sysfs, dev)
    text = str(e.value)
    assert message.format(dev=dev) in text and "\n" not in text


def test_no_cameras_at_all_says_so(tmp_path):
    sysfs, dev = make_tree(tmp_path, nodes={})
    with pytest.raises(SourceError, match=r"no camera by that name; no cameras found \(nothing in "):
        resolve_camera("c920", sysfs, dev)


@pytest.fixture
def fake_tree(tree, monkeypatch):
    """The module's roots pointed at the fake tree: open_source goes through the real resolution."""
    sysfs, dev = tree
    monkeypatch.setattr(cameras, "SYSFS_V4L", sysfs)
    monkeypatch.setattr(cameras, "DEV_ROOT", dev)
    return sysfs, dev


@pytest.mark.parametrize("spec, message", [
    ("{dev}/shm/clip.mp4", "shm/clip.mp4: the file is empty (0 bytes)"),      # media in a RAM disk under /dev
    ("{dev}/shm", "shm: folder has no images"),
    ("no/such/drive.mp4", "no/such/drive.mp4: no such file or folder; check the path"),
    ("drive.mp4", "drive.mp4: no such file or folder; check the path"),
    ("Brio", "Brio: no such file or folder, and no camera by that name; cameras here:"),
], ids=["file-under-dev", "folder-under-dev", "missing-path", "missing-media-file", "bare-word-tries-camera-names"])
def test_open_source_tells_files_from_camera_names(fake_tree, spec, message):
    dev = fake_tree[1]
    (dev / "shm").mkdir()
    (dev / "shm" / "clip.mp4").write_bytes(b"")
    with pytest.raises(SourceError) as e:
        open_source(spec.format(dev=dev))
    assert message in str(e.value)


@pytest.fixture
def stand_in(fake_tree, tmp_path, monkeypatch):
    """An FFmpeg test source (25 frames of 320x240 at 25 fps) opened by OpenCV in place of the device:
    each open plays it once, as if the camera were unplugged at its end."""
    ffmpeg = need_tool("ffmpeg")
    clip = tmp_path / "standin.mp4"
    subprocess.run([ffmpeg, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
                    "-t", "1", "-pix_fmt", "yuv420p", str(clip)], check=True, timeout=60)
    opened = []

    def open_capture(device):
        opened.append(device)
        return cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)

    monkeypatch.setattr(cameras, "open_capture", open_capture)
    return opened


def live_cfg(**kw):
    return SourceConfig(**dict(dict(camera_size=(640, 480), camera_fps=30.0, reconnect_timeout_s=1.0,
                                    reconnect_initial_s=0.05, reconnect_max_s=0.1), **kw))


def test_camera_by_name_notes_the_mode_it_gives_and_reconnects(stand_in):
    source = open_source("C920", live_cfg())
    warnings = []
    source.on_warning = warnings.append
    frames = []
    for f in source:
        frames.append(f)
        if len(frames) == 40:
            break
    source.close()
    assert [d.index for d in stand_in] == [0, 0]                    # opened again after the unplug
    assert [f.index for f in frames] == list(range(40))
    assert all(b.timestamp > a.timestamp for a, b in zip(frames, frames[1:]))
    assert frames[0].image.shape == (240, 320, 3) and frames[0].source == "C920"
    assert source.description == 'C920 (HD Pro Webcam C920, {})'.format(cameras.DEV_ROOT / "video0")
    assert len(source.gaps) == 1 and source.gaps[0]["after_frame"] == 24
    note = "C920: asked for 640x480 at 30 fps, the camera gives 320x240 at 25 fps; set source.camera_size"
    assert sum(w.startswith(note) for w in warnings) == 2            # each (re)open checks its mode
    assert any("lost after frame 24" in w and "stopped delivering frames after 25 (unplugged?)" in w for w in warnings)


@pytest.mark.parametrize("size, fps", [((320, 240), None), ((320, 240), 25.0)], ids=["size-only", "size-and-fps"])
def test_camera_asked_for_its_own_mode_gives_no_note(stand_in, size, fps):
    source = open_source("camera2", live_cfg(camera_size=size, camera_fps=fps, reconnect="no", max_frames=10))
    warnings = []
    source.on_warning = warnings.append
    frames = list(source)
    assert len(frames) == 10 and warnings == []


def test_camera_unplug_without_return_ends_with_one_line(stand_in, fake_tree):
    sysfs, _ = fake_tree
    source = open_source(f"{fake_tree[1]}/{BY_ID}", live_cfg())
    t0 = None
    with pytest.raises(SourceError) as e:
        for f in source:
            if f.index == 10:                      # unplugged: the node and its udev link go away
                (fake_tree[1] / BY_ID).unlink()
                t0 = time.monotonic()
    waited = time.monotonic() - t0
    text = str(e.value)
    assert "lost after frame 24 and not back within 1 s" in text and "no such device (unplugged?)" in text
    assert "\n" not in text and waited < 5
    assert len(stand_in) == 1


def test_node_that_will_not_open_is_named_with_the_cameras_here(fake_tree, monkeypatch):
    monkeypatch.setattr(cameras, "open_capture", lambda device: cv2.VideoCapture())    # never opens
    with pytest.raises(SourceError) as e:
        open_source("camera1", live_cfg())
    dev = fake_tree[1]
    assert str(e.value) == (f'camera1: {dev}/video1 ("HD Pro Webcam C920") would not open: another program may be '
                            f'using it, or it is not a capture node; cameras here: {dev}/video0 "HD Pro Webcam C920", '
                            f'{dev}/video2 "Integrated Camera: Integrated C", {dev}/video3 "Integrated Camera: Integrated I"')


def test_real_camera_when_present():
    nodes = sorted(Path("/sys/class/video4linux").glob("video*")) if Path("/sys/class/video4linux").is_dir() else []
    if not nodes:
        pytest.skip("no camera on this machine (/sys/class/video4linux is empty or absent); "
                    "the stand-in tests above cover the code path")
    source = open_source("camera" + nodes[0].name[len("video"):], SourceConfig(max_frames=5, reconnect="no"))
    try:
        frames = list(source)
    finally:
        source.close()
    assert len(frames) == 5 and frames[0].image.ndim == 3


@pytest.mark.parametrize("source, expect", [
    ({"camera_size": [640, 480], "camera_fps": 15}, ((640, 480), 15.0)),
    ({"camera_width": 800, "camera_height": 600}, ((800, 600), None)),      # the old keys still work
    ({"camera_width": 800}, ((800, 720), None)),
    ({"camera_size": [0, 480]}, "source.camera_size: [0, 480] must be positive"),
    ({"camera_size": [640]}, "source.camera_size: [640] has 1 items"),
    ({"camera_fps": 0}, "source.camera_fps: 0.0 must be > 0"),
    ({"camera_width": 800, "camera_size": [640, 480]}, "keep only camera_size"),
], ids=["size-and-fps", "old-width-height", "old-width-only", "zero-size", "one-number", "zero-fps",
        "old-and-new-keys"])
def test_camera_config(tmp_path, source, expect):
    path = tmp_path / "c.yaml"
    import yaml

    path.write_text(yaml.safe_dump({"source": source}))
    if isinstance(expect, str):
        with pytest.raises(ConfigError) as e:
            load_config(path)
        assert expect in str(e.value) and "\n" not in str(e.value)
    else:
        cfg = load_config(path).source
        assert (cfg.camera_size, cfg.camera_fps) == expect


def test_default_config_asks_720p_at_the_cameras_rate():
    cfg = load_config(DEFAULT_CONFIG).source
    assert (cfg.camera_size, cfg.camera_fps) == ((1280, 720), None)
