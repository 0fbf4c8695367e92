"""Issue 18 part 4: ``--report out.html``, one self-contained page per run, checked in a real headless
browser (Debian's chromium, installed by .ci/run) and by decoding every embedded image here."""
import base64
import re
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from pipeline.outputs import OutputError
from dashtrack_core.records import Detections, Frame
from pipeline.report import THUMBS, ReportData, report_from_outputs, write_report
from test_reliability import VIDEO, cli

pytestmark = pytest.mark.timeout(180)
NAMES = ("person", "bicycle", "car")


def _frame(i: int, fps: float = 25.0) -> Frame:
    img = np.full((72, 128, 3), 40 + (i % 50), np.uint8)
    return Frame(img, i, i / fps, "synthetic", 0.0)


def _dets(n: int, cls: int = 2, track0: int = 1, ttc=None) -> Detections:
    xyxy = np.array([[4 + 8 * k, 10, 10 + 8 * k, 30] for k in range(n)], np.float32)
    cols = None if ttc is None else {"ttc_s": np.full(n, ttc), "in_path": np.ones(n, bool)}
    return Detections(xyxy, np.full(n, 0.9), np.full(n, cls), np.arange(track0, track0 + n), np.zeros(n, bool), cols)


def _images(page: str) -> list[np.ndarray]:
    srcs = re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    return [cv2.imdecode(np.frombuffer(base64.b64decode(s), np.uint8), cv2.IMREAD_COLOR) for s in srcs]


# -- the busiest frames: three, apart in time, only the kept ones drawn ------------------------------
@pytest.mark.parametrize("counts, kept", [
    ([1, 5, 2, 7, 3, 9], [9, 7, 5]),                # busiest three, spaced by 2 frames < 0.5 s: the nearest wins
    ([0] * 20, []),                                  # no box anywhere: no thumbnail
    ([4] + [0] * 30 + [4] + [0] * 30 + [4] + [0] * 30 + [4], [4, 4, 4]),   # ties: the earliest kept
], ids=["busiest_nearby", "empty", "ties_keep_earliest"])
def test_thumbnails_are_the_busiest_frames_apart(counts, kept):
    data = ReportData(NAMES)
    fps = 25.0 if len(counts) > 10 else 4.0            # 4 fps: frames 0.25 s apart, within THUMB_APART_S
    for i, n in enumerate(counts):
        data.add(_frame(i, fps), _dets(n))
    assert [k.boxes for k in data.thumbs] == kept
    if counts[0] == 4:
        assert [k.index for k in data.thumbs] == [0, 31, 62]
    assert all(k.image.shape[1] <= 480 for k in data.thumbs)


def test_a_long_drive_keeps_per_frame_numbers_and_three_thumbnails():
    data = ReportData(NAMES)
    for i in range(3000):
        n = (i * 7) % 11
        data.add(_frame(i), _dets(n, cls=i % 3, track0=i // 50 * 10, ttc=1.5 if i % 100 == 0 else None))
    assert len(data.thumbs) == THUMBS and data.frames == 3000
    assert all(len(col) == 3000 for col in data.per_class.values())     # a class seen late: zeros before
    assert len(data.tracks) <= 3000 // 50 * 10 + 11
    assert data.has_ttc and np.nanmin(np.asarray(data.min_ttc_s)) == pytest.approx(1.5)


def test_dropped_frames_are_placed_on_the_time_axis():
    data = ReportData(NAMES)
    for i in (0, 1, 2, 7, 8, 20):
        data.add(_frame(i), _dets(1))
    assert data.skipped == [(7 / 25, 4), (20 / 25, 11)]


def test_the_page_is_self_contained_and_every_image_decodes(tmp_path):
    data = ReportData(NAMES, ttc_warn_s=2.0, source="synthetic")
    for i in range(60):
        data.add(_frame(i), _dets(1 + i % 4, ttc=5.0 - i * 0.07), latency_s=0.02)
    path = tmp_path / "r.html"
    write_report(str(path), data, {"source": "synthetic", "frames_in": 60, "frames_out": 60, "fps": 20.0,
                                   "wall_s": 3.0, "stop_reason": "end of input", "dropped": {},
                                   "gaps": [{"after_frame": 30, "at_s": 1.2, "seconds": 0.4}],
                                   "tracking": {"tracks_born": 4}}, {"inference": [0.01, 0.02, 0.015]})
    page = path.read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page
    images = _images(page)
    assert len(images) == 5 + THUMBS               # five plots (two with two panels), the thumbnails
    assert all(im is not None and im.size and im.std() > 1 for im in images)
    assert "in-path track(s) below the warning of 2 s" in page and "<td>4</td>" in page


@pytest.mark.parametrize("frames, boxes, ttc", [(0, 0, None), (1, 0, 3.0), (5, 2, float("nan"))],
                         ids=["no_frame", "one_empty_frame", "ttc_never_known"])
def test_a_run_with_little_in_it_still_gives_a_page(tmp_path, frames, boxes, ttc):
    data = ReportData(NAMES)
    for i in range(frames):
        data.add(_frame(i), _dets(boxes, ttc=ttc))
    path = tmp_path / "r.html"
    write_report(str(path), data, {"frames_out": frames, "stop_reason": "error" if not frames else "end of input"})
    page = path.read_text()
    plots = 5 if data.has_ttc else 4
    assert len(_images(page)) == plots + len(data.thumbs) and all(im is not None for im in _images(page))
    assert ("No frame had a box." in page) == (boxes == 0)


def test_a_report_that_cannot_be_written_is_one_line(tmp_path):
    with pytest.raises(OutputError, match=r"--report .*/nope/r.html: cannot write .*the other outputs are complete"):
        write_report(str(tmp_path / "nope" / "r.html"), ReportData(NAMES), {"frames_out": 0})


# -- the real run, in a real browser -----------------------------------------------------------------
HARNESS = """<script>
window.addEventListener("load", () => {
  const bad = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0));
  console.log("IMAGES " + document.images.length + " BROKEN " + bad.length);
});
</script>"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no chromium on PATH (.ci/run installs Debian's chromium: apt-get install chromium)")


def _browse(page_path, tmp_path) -> tuple[str, np.ndarray]:
    """Load the page in headless chromium: its console lines (stderr) and a screenshot."""
    shot = tmp_path / "shot.png"
    proc = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
                           f"--screenshot={shot}", "--window-size=1200,2400", page_path.as_uri()],
                          capture_output=True, text=True, timeout=90)
    assert shot.exists(), proc.stderr[-2000:]
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]
    return "\n".join(console), cv2.imread(str(shot))


def test_the_harness_sees_console_errors_and_broken_images(tmp_path):
    """The browser check itself catches what it is for: a page with a script error and a broken image."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><p>x</p><img src="data:image/png;base64,AAAA">'
                   '<script>throw new Error("planted");</script>' + HARNESS + "</body></html>")
    console, _ = _browse(bad, tmp_path)
    assert "Uncaught Error: planted" in console and "IMAGES 1 BROKEN 1" in console


def test_report_of_a_real_run_loads_in_headless_chromium(tmp_path):
    _chromium()
    proc = cli("--source", VIDEO, "--report", "r.html", "--save-json", "o.jsonl", "--stats-json", "s.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "r.html").read_text()
    images = _images(page)
    assert len(images) == 5 + THUMBS and all(im is not None and im.std() > 1 for im in images)
    assert "<script" not in page and "https://" not in page
    probe = tmp_path / "probe.html"                   # the page plus a script that counts undecoded images
    probe.write_text(page.replace("</body>", HARNESS + "</body>"))
    console, shot = _browse(probe, tmp_path)
    lines = console.splitlines()
    assert [ln for ln in lines if "IMAGES" not in ln] == [], console        # no error, no warning, nothing else
    assert f"IMAGES {len(images)} BROKEN 0" in console, console
    assert shot is not None and shot.shape[0] >= 2000
    ink = np.mean(shot.min(axis=2) < 200)             # share of pixels that are not page white
    assert ink > 0.01 and shot.std() > 10, (ink, shot.std())   # blank: 0 and 0; this page: about 0.04 and 30


def _busiest_line(page: str) -> str:
    return re.search(r"<p>(frame \d+ at [^<]*)</p>", page).group(1)


def test_a_finished_run_is_reported_again_from_its_files(tmp_path):
    """The fleet's other way: the page rebuilt from --save-json / --stats-json and the source."""
    proc = cli("--source", VIDEO, "--report", "live.html", "--save-json", "o.jsonl", "--stats-json", "s.json",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = report_from_outputs(str(tmp_path / "again.html"), str(tmp_path / "o.jsonl"), str(tmp_path / "s.json"),
                               str(VIDEO))
    live, again = (tmp_path / "live.html").read_text(), (tmp_path / "again.html").read_text()
    assert _busiest_line(live) == _busiest_line(again) and data.frames == 38
    assert len(_images(again)) == 5 + THUMBS
    for key in ("<td>tracks</td><td>", "<td>stopped</td><td>"):
        assert live.split(key)[1].split("<")[0] == again.split(key)[1].split("<")[0]


@pytest.mark.parametrize("content, message", [
    ("not json\n", "o.jsonl line 1 is not JSON"),
    (None, "cannot read"),
], ids=["not_jsonl", "missing"])
def test_reporting_from_bad_files_is_one_line(tmp_path, content, message):
    jl = tmp_path / "o.jsonl"
    if content is not None:
        jl.write_text(content)
    with pytest.raises(OutputError, match=message):
        report_from_outputs(str(tmp_path / "r.html"), str(jl))
