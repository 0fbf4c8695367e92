"""Faults found by the outside attack of issue 19, each on real files (examples/test_video.mp4 and
copies cut or re-encoded in tmp_path): nothing hangs, bad input is one line, nothing written is lost.
The detector is the shipped model (MODEL), so none of this needs ../shared."""
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time

import av
import cv2
import numpy as np
import pytest

from conftest import REPO, need_tool
from pipeline import outputs as outputs_mod
from pipeline import sinks as sinks_mod
from pipeline.config import DEFAULT_CONFIG, SourceConfig, load_config, model_overrides
from pipeline.outputs import OutputError, VideoWriter
from pipeline.runner import Runner
from pipeline.sources import MIN_FRAME_SIDE, SourceError, open_source

pytestmark = pytest.mark.timeout(180)
MODEL = "lite"                     # models/weights/lite.onnx, shipped with the repository
VIDEO = REPO / "examples" / "test_video.mp4"     # 38 frames, 1280x720, 25 fps


def cli(*args, cwd=REPO, timeout=120, preexec_fn=None):
    env = dict(os.environ)
    env.pop("DISPLAY", None)
    return subprocess.run([sys.executable, str(REPO / "run_stream.py"), "--no-show", "--quiet", "--model", MODEL,
                           *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=preexec_fn)


def one_error_line(proc) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def ffmpeg(*args):
    subprocess.run([need_tool("ffmpeg"), "-hide_banner", "-loglevel", "error", "-y", *map(str, args)],
                   check=True, timeout=120)


def config(**over):
    base = {"output.show": "no", "output.progress": False, **model_overrides(MODEL)}
    return load_config(DEFAULT_CONFIG, {**base, **over})


# -- row 1: kill -9 during --save-video --------------------------------------------------------
def test_video_has_a_keyframe_every_second(tmp_path):
    path = tmp_path / "k.mp4"
    w = VideoWriter(str(path), fps_hint=25.0)
    for i in range(60):
        w.write(np.full((64, 96, 3), i * 4, np.uint8), i / 25)
    w.close()
    with av.open(str(path)) as c:
        keys = [i for i, f in enumerate(c.decode(video=0)) if f.key_frame]
    assert keys == [0, 25, 50]


def test_kill_9_leaves_a_video_playable_to_within_a_second(tmp_path):
    out, jl = tmp_path / "k.mp4", tmp_path / "k.jsonl"
    env = dict(os.environ)
    env.pop("DISPLAY", None)
    proc = subprocess.Popen([sys.executable, str(REPO / "run_stream.py"), "--no-show", "--model", MODEL, "--source",
                             "lavfi:testsrc2=size=640x360:rate=25,realtime", "--save-video", str(out),
                             "--save-json", str(jl)], cwd=REPO, env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not jl.exists() or len(jl.read_text().splitlines()) < 40):
            time.sleep(0.05)
        written = len(jl.read_text().splitlines())
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
    assert written >= 40
    with av.open(str(out)) as c:
        playable = sum(1 for _ in c.decode(video=0))
    assert playable >= written - 25 - 5, f"{playable} frames play of {written} written (x264's default: 0)"


# -- row 4: output = input ----------------------------------------------------------------------
@pytest.mark.parametrize("flag, out_name", [("--save-video", "v.mp4"), ("--save-video", "./v.mp4"),
                                            ("--save-json", "v.mp4"), ("--stats-json", "link.mp4"),
                                            ("--save-mot", "hard.mp4")],
                         ids=["video_same_name", "video_dot_path", "json_on_input", "stats_on_symlink", "mot_on_hardlink"])
def test_output_that_is_the_input_is_refused_before_writing(tmp_path, flag, out_name):
    src = tmp_path / "v.mp4"
    src.write_bytes(VIDEO.read_bytes())
    (tmp_path / "link.mp4").symlink_to(src)
    os.link(src, tmp_path / "hard.mp4")
    proc = cli("--source", "v.mp4", flag, out_name, cwd=tmp_path)
    assert proc.returncode == 2
    assert "writing it would destroy the input" in one_error_line(proc)
    assert src.read_bytes() == VIDEO.read_bytes()


def test_multi_source_output_that_is_another_input_is_refused(tmp_path):
    a, b = tmp_path / "a.mp4", tmp_path / "o_1.mp4"
    a.write_bytes(VIDEO.read_bytes())
    b.write_bytes(VIDEO.read_bytes())
    proc = cli("--source", "a.mp4", "o_1.mp4", "--save-video", "o.mp4", cwd=tmp_path)   # o_1.mp4 is source 1's output
    assert proc.returncode == 2 and "o_1.mp4" in one_error_line(proc)
    assert b.read_bytes() == VIDEO.read_bytes()


# -- rows 6, 7: timestamps.json -----------------------------------------------------------------
@pytest.mark.parametrize("stamps, entry", [([0, "x", 0.2], 'entry 1 ("x")'), ([0, 0.1, "NaN"], "entry 2"),
                                           ([0, True, 0.2], "entry 1 (true)"), ([None, 0.1, 0.2], "entry 0 (null)")],
                         ids=["string", "nan", "bool", "null"])
def test_bad_timestamps_json_is_one_line_naming_file_and_entry(tmp_path, stamps, entry):
    frame = next(iter(open_source(str(VIDEO)))).image
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:02d}.jpg"), frame)
    text = json.dumps(stamps).replace('"NaN"', "NaN")
    (tmp_path / "timestamps.json").write_text(text)
    with pytest.raises(SourceError) as e:
        open_source(str(tmp_path))
    assert str(tmp_path / "timestamps.json") in str(e.value) and entry in str(e.value) and "\n" not in str(e.value)


# -- row 10: --stats-json that cannot be written -------------------------------------------------
@pytest.mark.parametrize("target, message", [("folder", "is a folder"), ("/dev/full", "No space left on device"),
                                             ("missing/s.json", "does not exist")],
                         ids=["directory", "dev_full", "missing_folder"])
def test_unwritable_stats_json_is_refused_before_the_run(tmp_path, target, message):
    (tmp_path / "folder").mkdir()
    proc = cli("--source", VIDEO, "--stats-json", target, "--save-json", "o.jsonl", cwd=tmp_path)
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert f"--stats-json {target}" in line and message in line
    assert not (tmp_path / "o.jsonl").exists()                # refused before any frame was read


def test_stats_json_failing_at_the_end_is_one_error_and_other_outputs_stay(tmp_path, monkeypatch):
    jl = tmp_path / "o.jsonl"
    real = outputs_mod.write_stats_json
    monkeypatch.setattr(sinks_mod, "write_stats_json", lambda path, text: real("/dev/full", text))
    runner = Runner(config(**{"output.save_json": str(jl), "output.stats_json": str(tmp_path / "s.json")}), str(VIDEO))
    with pytest.raises(OutputError, match="--stats-json /dev/full: cannot write"):
        runner.run()
    assert [json.loads(ln)["index"] for ln in jl.read_text().splitlines()] == list(range(38))


# -- row 11: a disk that fills under the JSONL ---------------------------------------------------
def _small_disk():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)        # EFBIG from write(), as ENOSPC on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))   # both files grow past it


@pytest.mark.parametrize("flag", ["--save-json", "--save-mot"], ids=["jsonl", "mot"])
def test_full_disk_keeps_whole_lines_and_names_the_file(tmp_path, flag):
    out = tmp_path / "o.txt"
    proc = cli("--source", VIDEO, flag, out, "--set", "detector.score_threshold=0.01", cwd=tmp_path,
               preexec_fn=_small_disk)
    assert proc.returncode == 1
    assert f"{flag} {out}: write failed" in one_error_line(proc)
    data = out.read_bytes()
    assert 0 < len(data) <= 4000 and data.endswith(b"\n")
    if flag == "--save-json":
        assert all(json.loads(ln) for ln in data.decode().splitlines())
    else:
        assert all(len(ln.split(",")) == 10 for ln in data.decode().splitlines())


# -- row 12: nothing decodes ----------------------------------------------------------------------
def test_no_frame_leaves_no_output_files(tmp_path):
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(VIDEO.read_bytes()[: VIDEO.stat().st_size // 10])
    proc = cli("--source", bad, "--save-json", "o.jsonl", "--save-mot", "o.txt", "--save-video", "o.mp4", cwd=tmp_path)
    assert proc.returncode == 1 and "cut.mp4" in one_error_line(proc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.mp4"]


# -- rows 13, 14: the truncation warning, like with like -------------------------------------------
def _cut(size):
    def make(tmp_path):
        p = tmp_path / "cut.mp4"
        p.write_bytes(VIDEO.read_bytes()[: int(VIDEO.stat().st_size * size) if size < 1 else size])
        return p
    return make


def _remux(name, *args):
    def make(tmp_path):
        p = tmp_path / name
        ffmpeg("-i", VIDEO, "-an", "-c", "copy", *args, p)
        return p
    return make


def _cut_remux(name, fraction, *args):
    def make(tmp_path):
        p = _remux(name, *args)(tmp_path)
        p.write_bytes(p.read_bytes()[: int(p.stat().st_size * fraction)])
        return p
    return make


@pytest.mark.parametrize("make, truncated", [
    (lambda tmp_path: VIDEO, False),
    (_cut(721062), True),                                             # the attack's `head -c 721062`: 32 of 38 frames
    (_cut(0.5), True),
    (_remux("o5.mkv", "-output_ts_offset", "5"), False),              # an intact mkv starting at 5 s
    (_cut_remux("o5cut.mkv", 0.5, "-output_ts_offset", "5"), True),
    (_remux("o.ts"), False),                                          # MPEG-TS: starts at 1.4 s
    (_remux("o.mkv"), False),
], ids=["intact_mp4", "cut_90pct", "cut_50pct", "mkv_offset_5s", "mkv_offset_cut", "intact_ts", "intact_mkv"])
def test_truncation_warning_whenever_decoding_stops_early(tmp_path, make, truncated):
    src = open_source(str(make(tmp_path)))
    frames = list(src)
    assert 0 < len(frames) <= 38
    warned = any("looks truncated" in w for w in getattr(src, "warnings", []))
    assert warned == truncated, getattr(src, "warnings", [])


# -- row 15: resolution change mid-stream ---------------------------------------------------------
class CountingTracker:
    def __init__(self, inner):
        self.inner, self.resets = inner, 0

    def reset(self, keep_ids: bool = False):
        self.resets += 1
        self.inner.reset(keep_ids=keep_ids)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __setattr__(self, name, value):
        if name in ("inner", "resets"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.inner, name, value)


def test_resolution_change_warns_resets_tracks_and_scales_the_video(tmp_path):
    parts = []
    for size in ("1280:720", "640:360", "1920:1080"):
        p = tmp_path / f"{size.split(':')[0]}.ts"
        ffmpeg("-i", VIDEO, "-frames:v", 10, "-vf", f"scale={size}", "-c:v", "libx264", "-preset", "ultrafast", p)
        parts.append(p)
    mixed = tmp_path / "mixed.ts"
    mixed.write_bytes(b"".join(p.read_bytes() for p in parts))
    from trackers import KalmanTracker

    tracker = CountingTracker(KalmanTracker(config().tracker))
    out = tmp_path / "o.mp4"
    runner = Runner(config(**{"output.save_video": str(out)}), str(mixed), tracker=tracker, log=open(os.devnull, "w"))
    report = runner.run()
    changes = [w for w in report["warnings"] if "frame size changed" in w]
    assert len(changes) == 2 and "1280x720 to 640x360 at frame 10" in changes[0]
    assert "640x360 to 1920x1080 at frame 20" in changes[1]
    assert tracker.resets == 2
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    assert len(frames) == 30 and all(f.shape == (720, 1280, 3) for f in frames)
    big = [f.image for f in open_source(str(parts[2]))][-1]
    scaled, cropped = cv2.resize(big, (1280, 720), interpolation=cv2.INTER_AREA), big[:720, :1280]
    diff = lambda a: float(np.abs(frames[-1].astype(int) - a.astype(int)).mean())   # noqa: E731
    assert diff(scaled) < diff(cropped) / 3                     # the whole 1080p frame, not its top-left corner


# -- row 16: frames too small for the detector ------------------------------------------------------
@pytest.mark.parametrize("scale", ["1:720", "1280:1", "8:8"], ids=["1px_wide", "1px_tall", "8x8"])
def test_tiny_frames_are_one_line_stating_the_minimum(tmp_path, scale):
    p = tmp_path / "tiny.mkv"
    ffmpeg("-i", VIDEO, "-frames:v", 3, "-vf", f"scale={scale}", "-c:v", "ffv1", p)
    proc = cli("--source", p, "--save-json", "o.jsonl", cwd=tmp_path)
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "too small for the detector" in line and f"at least {MIN_FRAME_SIDE}x{MIN_FRAME_SIDE}" in line
    assert not (tmp_path / "o.jsonl").exists()


# -- row 3 (also): a peer that accepts and sends nothing --------------------------------------------
def test_silent_server_times_out_within_the_open_timeout():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(SourceError, match=r"timed out while opening, nothing received \(source.open_timeout_s 1 s"):
            open_source(f"http://127.0.0.1:{server.getsockname()[1]}/live",
                        SourceConfig(open_timeout_s=1.0, read_timeout_s=1.0, reconnect="no"))
    finally:
        stop.set()
        t.join(5)
        for s in held:
            s.close()
        server.close()
    assert time.monotonic() - t0 < 15

