"""`dashtrack fleet`: inputs and drive names, bad arguments, resume markers, and a real fleet on a local Ray."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, VIDEOS, need
from pipeline import fleet
from pipeline.fleet_drive import JSONL, MARKER, input_identity, read_marker, write_marker
from pipeline.fleet_inputs import FleetInputError, discover, drive_names

MAX_FRAMES = "8"      # the real clips cut short: the fleet test is about the fleet, not the detector


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("paths, names", [
    (["/d/a.mp4", "/d/b.mp4"], ["a", "b"]),
    (["/x/drive.mp4", "/y/drive.mp4"], ["x__drive.mp4", "y__drive.mp4"]),
    (["/d/drive.mp4", "/d/drive.mkv"], ["drive.mkv", "drive.mp4"]),
    (["/d/Drive.mp4", "/e/drive.mp4"], ["d__Drive.mp4", "e__drive.mp4"]),
    (["/d/a b#1.mp4"], ["a_b_1"]),
    (["/r/x/day/cam.mp4", "/r/y/day/cam.mp4", "/r/y/day/other.mp4"],
     ["x__day__cam.mp4", "y__day__cam.mp4", "other"]),
], ids=["distinct-stems", "same-basename-two-folders", "same-stem-two-suffixes", "names-differ-only-in-case",
        "odd-characters", "deep-collision"])
def test_drive_names_unique_and_stable(paths, names):
    drives = drive_names([Path(p) for p in sorted(paths)])
    assert sorted(d.name for d in drives) == sorted(names)
    assert drive_names([Path(p) for p in sorted(paths)]) == drives          # same inputs, same folders


def test_discover_files_folders_globs(tmp_path):
    a = _touch(tmp_path / "in" / "a.mp4")
    b = _touch(tmp_path / "in" / "sub" / "b.MKV")
    _touch(tmp_path / "in" / "notes.txt")
    odd = _touch(tmp_path / "odd.bin")
    out_video = _touch(tmp_path / "in" / "fleet_out" / "a" / "video.mp4")     # the fleet's own output
    assert discover([str(tmp_path / "in")], exclude=tmp_path / "in" / "fleet_out") == [a, b]
    assert discover([str(tmp_path / "in" / "**" / "*.mp4")]) == sorted([a, out_video])
    assert discover([str(odd), str(a), str(tmp_path / "in" / "a.mp4")]) == sorted([odd, a])   # named file: any suffix; no duplicates


@pytest.mark.parametrize("make, text, says", [
    (lambda t: None, "missing.mp4", "no such file or folder"),
    (lambda t: None, "*.nothing", "matches nothing"),
    (lambda t: (t / "empty").mkdir(), "empty", "no video files there"),
    (lambda t: _touch(t / "docs" / "a.txt"), "docs", "no video files there"),
], ids=["missing-path", "glob-without-match", "empty-folder", "folder-without-videos"])
def test_discover_refuses(tmp_path, make, text, says):
    make(tmp_path)
    with pytest.raises(FleetInputError, match=says):
        discover([str(tmp_path / text)])


@pytest.mark.parametrize("argv, says", [
    (["{tmp}/missing.mp4", "--out", "{tmp}/o"], "no such file or folder"),
    (["{tmp}/*.nothing", "--out", "{tmp}/o"], "matches nothing"),
    (["{video}", "--out", "{tmp}/o", "--workers", "0"], "--workers '0'"),
    (["{video}", "--out", "{tmp}/o", "--workers", "two"], "--workers 'two'"),
    (["{video}", "--out", "{tmp}/o", "--workers", "100000"], "--workers '100000'"),
    (["{video}", "--out", "{tmp}/o", "--workers", "1", "--address", "auto"], "--workers sizes the local Ray"),
    (["{video}"], "--out"),
    (["{video}", "--out", "{tmp}/file"], "is a file"),
    (["{video}", "--out", "{tmp}/o", "--", "--save-json", "x.jsonl"], "the fleet sets it"),
    (["{video}", "--out", "{tmp}/o", "--", "--bogus"], "unrecognized arguments: --bogus"),
    (["{video}", "--out", "{tmp}/o", "--", "--model", "nope"], "--model nope"),
    (["{video}", "--out", "{tmp}/o", "--", "--set", "detector.workers=-1"], "detector.workers"),
    (["{video}", "--out", "{tmp}/o", "--wrkers", "1"], "unrecognized arguments: --wrkers"),
], ids=["missing-path", "no-matching-files", "workers-zero", "workers-not-a-number", "workers-too-many",
        "workers-with-address", "no-out", "out-is-a-file", "fleet-owned-flag-after-dashdash",
        "unknown-single-run-option", "model-that-does-not-load", "bad-config-value", "no-abbreviations"])
def test_bad_arguments_one_line_exit_2(tmp_path, capsys, example_video, argv, says):
    _touch(tmp_path / "file")
    argv = [a.format(tmp=tmp_path, video=example_video) for a in argv]
    assert fleet.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], err
    assert not (tmp_path / "o").exists()                  # nothing created, nothing started


def test_single_runs_never_import_ray():
    code = ("import sys, run_stream, pipeline.runner, pipeline.multi, pipeline.fleet, pipeline.fleet_drive, "
            "pipeline.fleet_summary, trackers; print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("change, resumes", [
    (None, True),
    ("append", False),
    ("mtime", False),
    ("corrupt-marker", False),
], ids=["unchanged-input", "input-grew", "input-touched", "marker-unreadable"])
def test_marker_matches_input_size_and_mtime(tmp_path, change, resumes):
    video = _touch(tmp_path / "a.mp4", b"0123")
    folder = tmp_path / "out" / "a"
    folder.mkdir(parents=True)
    write_marker(folder, input_identity(video), {"frames": 4})
    if change == "append":
        with open(video, "ab") as f:
            f.write(b"4")
    elif change == "mtime":
        st = video.stat()
        os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    elif change == "corrupt-marker":
        (folder / MARKER).write_text("{not json")
    assert (read_marker(folder, video) == {"frames": 4}) is resumes


def _fleet(args: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    """``python run_stream.py fleet ARGS`` (the documented entry point) in its own process."""
    return subprocess.run([sys.executable, "run_stream.py", "fleet", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def _rows(out: Path) -> dict[str, dict]:
    with open(out / "fleet.csv", newline="") as f:
        return {r["drive"]: r for r in csv.DictReader(f)}


@pytest.mark.slow
def test_fleet_on_local_ray_done_failed_resume(tmp_path, example_video):
    pytest.importorskip("ray", reason="the fleet needs Ray: pip install -e '.[fleet]'")
    small1 = need(VIDEOS / "test_small1.mp4")
    corrupt = tmp_path / "in" / "broken.mp4"
    corrupt.parent.mkdir()
    corrupt.write_bytes(example_video.read_bytes()[:20000])       # the header and a few packets of a real file
    out = tmp_path / "fleet"
    args = [str(example_video), str(small1), str(tmp_path / "in"), "--out", str(out), "--workers", "2",
            "--", "--max-frames", MAX_FRAMES]

    first = _fleet(args)
    assert first.returncode == 1, first.stderr                        # a drive failed
    rows = _rows(out)
    assert {k: r["status"] for k, r in rows.items()} == {"test_video": "done", "test_small1": "done",
                                                         "broken": "failed"}
    assert "corrupt" in rows["broken"]["error"] and "\n" not in rows["broken"]["error"]
    for name in ("test_video", "test_small1"):
        r = rows[name]
        assert r["frames"] == MAX_FRAMES and r["resumed"] == "False"
        assert float(r["fps"]) > 0 and float(r["duration_s"]) == pytest.approx(0.28)   # 8 frames at 25 fps
        assert int(r["tracks"]) > 0                                     # highway clips: cars tracked
        assert r["ttc_events"] != ""                                    # the tracker gives time-to-contact
        assert {"tracks.jsonl", "tracks_mot.txt", "stats.json", "report.html", "run.log", MARKER} <= set(
            os.listdir(out / name))
        assert r["report"] == f"{name}/report.html"
    assert not (out / "broken" / MARKER).exists()
    summary = json.loads((out / "fleet.json").read_text())
    assert [d["drive"] for d in summary["drives"]] == ["broken", "test_small1", "test_video"]
    page = (out / "index.html").read_text()
    assert page.count("<tr class=") == 3 and "addEventListener('click'" in page and "http" not in page
    assert page.count('report.html">') == 3          # every drive links its report (a failed one's says what it saw)
    assert "failed: broken: " in first.stderr

    # The fleet's JSONL is byte for byte that of a single run on the same file.
    single = tmp_path / "single.jsonl"
    run = subprocess.run([sys.executable, "run_stream.py", "--source", str(small1), "--no-show", "--quiet",
                          "--max-frames", MAX_FRAMES, "--save-json", str(single)], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert (out / "test_small1" / JSONL).read_bytes() == single.read_bytes()

    # A re-run skips the two completed drives and tries the failed one again.
    markers = {n: (out / n / MARKER).stat().st_mtime_ns for n in ("test_video", "test_small1")}
    again = _fleet(args)
    assert again.returncode == 1, again.stderr
    rows = _rows(out)
    assert [rows[n]["resumed"] for n in ("test_video", "test_small1", "broken")] == ["True", "True", "False"]
    assert rows["test_video"]["frames"] == MAX_FRAMES and rows["broken"]["status"] == "failed"
    assert {n: (out / n / MARKER).stat().st_mtime_ns for n in markers} == markers
    assert "2 from an earlier run" in again.stderr


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_fleet_stops_cleanly_keeping_finished_drives(tmp_path, example_video, sig, code):
    pytest.importorskip("ray", reason="the fleet needs Ray: pip install -e '.[fleet]'")
    long_drive = need(VIDEOS / "solidWhiteRight_960x540.mp4")
    out = tmp_path / "fleet"
    # One drive at a time; the signal goes to the whole process group once the first drive completed,
    # as Ctrl-C in a terminal does (a background job of a non-interactive shell would ignore SIGINT: reset).
    proc = subprocess.Popen(
        [sys.executable, "run_stream.py", "fleet", str(example_video), str(long_drive), "--out", str(out),
         "--workers", "1"], cwd=REPO, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 180
        while not list(out.glob(f"*/{MARKER}")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "the fleet ended before it could be interrupted"
        os.killpg(proc.pid, sig)
        err = proc.communicate(timeout=90)[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == code, err
    rows = _rows(out)
    statuses = sorted(r["status"] for r in rows.values())
    assert statuses == ["done", "interrupted"], err
    for name, r in rows.items():
        assert (out / name / MARKER).exists() is (r["status"] == "done")
    assert "finished drives are kept" in err and "Traceback" not in err


@pytest.mark.parametrize("setup, extra, says", [
    ("no-ray", [], "pip install 'dashtrack[fleet]'"),
    ("ray", ["--address", "auto"], "could not join the Ray cluster at auto"),
    ("ray", ["--", "--device", "cuda"], "cuda"),        # refused by the fleet (no GPU in Ray) or the single run
], ids=["ray-not-installed", "no-cluster-at-address", "cuda-detector-no-gpu-in-cluster"])
def test_ray_missing_or_unreachable_one_line_exit_2(tmp_path, capsys, monkeypatch, example_video, setup, extra, says):
    if setup == "no-ray":
        monkeypatch.setitem(sys.modules, "ray", None)           # import ray -> ImportError
    else:
        pytest.importorskip("ray", reason="the fleet needs Ray: pip install -e '.[fleet]'")
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    if "cuda" in extra:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is here: the local Ray has one")
    argv = [str(example_video), "--out", str(tmp_path / "o"), *extra]
    if setup == "no-ray":
        assert fleet.main(argv) == 2
        err = capsys.readouterr().err
    else:                         # its own process: ray.init leaves signal handlers behind in this one
        run = _fleet(argv, timeout=120)
        assert run.returncode == 2, run.stderr
        err = run.stderr
    err = err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], err


def test_summary_files_and_index_links_reports(tmp_path):
    from pipeline.fleet_drive import DriveRecord
    from pipeline.fleet_summary import write_summary

    _touch(tmp_path / "b" / "report.html", b"<html></html>")
    records = [DriveRecord("b", "done", False, "/v/b.mp4", frames=100, fps=12.5, tracks=7).as_dict(),
               DriveRecord("a", "failed", False, "/v/a.mp4", exit_code=1, error="a.mp4: <corrupt> & bad").as_dict(),
               DriveRecord("c", "done", True, "/v/c.mp4", frames=9).as_dict()]
    paths = write_summary(tmp_path, records, {"finished": 0})
    assert [p.name for p in paths] == ["fleet.csv", "fleet.json", "index.html"]
    rows = _rows(tmp_path)
    assert list(rows) == ["a", "b", "c"] and list(rows["a"]) == DriveRecord.columns()
    assert rows["b"]["report"] == "b/report.html" and rows["a"]["report"] == "" and rows["c"]["resumed"] == "True"
    assert rows["a"]["error"] == "a.mp4: <corrupt> & bad" and rows["a"]["frames"] == ""
    page = (tmp_path / "index.html").read_text()
    assert page.count('<a href="b/report.html">') == 1 and 'href="a/report.html"' not in page
    assert "&lt;corrupt&gt; &amp; bad" in page and "<corrupt>" not in page        # escaped
    assert "done (earlier run)" in page and "1 failed" in page
    assert json.loads((tmp_path / "fleet.json").read_text())["drives"][1]["tracks"] == 7
