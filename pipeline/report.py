"""``--report out.html``: one self-contained HTML page per run (plots as embedded PNG, no network,
no script).

``ReportData`` aggregates each frame as it is written (a few numbers per frame, one entry per
track, the three busiest frames' thumbnails), so memory stays small on long drives. At the end
``write_report(path, data, report)`` renders the plots (``pipeline/report_plots.py``, matplotlib
imported only there, only then) and writes the page. ``ReportOutput`` is the run's sink
(``pipeline/sinks.py``). Other callers (the fleet):

- a drive run by ``Runner``: set ``output.report`` in its config (``--set output.report=DIR/drive/report.html``
  or ``dataclasses.replace(cfg.output, report=...)``); the runner writes it at the end, as ``--report``;
- a run that is over: ``report_from_outputs(html, jsonl, stats_json, source)`` rebuilds the page from
  the run's ``--save-json`` and ``--stats-json`` files (and the source, for the thumbnails);
- a loop of one's own: ``ReportData.add(frame, detections)`` per frame, then ``write_report(path, data, report)``.
"""
from __future__ import annotations

import base64
import html
import importlib.util
import json
import os
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .drawing import draw_detections
from .outputs import OutputError, probe_stats_json
from dashtrack_core.records import Detections, Frame
from .sources import open_source

THUMBS = 3              # busiest frames kept
THUMB_WIDTH = 480       # pixels
THUMB_APART_S = 0.5     # kept thumbnails are at least this far apart in stream time


@dataclass
class TrackSpan:
    first_s: float
    last_s: float
    class_id: int
    boxes: int = 0
    min_ttc_s: float = float("nan")      # lowest in-path time-to-contact seen
    min_ttc_at_s: float = float("nan")


@dataclass
class Thumb:
    boxes: int
    index: int
    timestamp: float
    image: np.ndarray | None    # BGR, THUMB_WIDTH wide at most, boxes drawn (None: not drawn yet)
    dets: Detections | None = None   # kept only while the image is not drawn

    def png(self) -> bytes:
        ok, buf = cv2.imencode(".png", self.image)
        if not ok:
            raise OutputError("--report: could not encode a thumbnail")
        return buf.tobytes()


@dataclass
class ReportData:
    """Per-frame aggregates of one run, fed by ``add`` in frame order."""

    class_names: tuple[str, ...]
    ttc_warn_s: float = 2.0
    source: str = ""
    t: array = field(default_factory=lambda: array("d"))            # frame timestamps, s
    latency_ms: array = field(default_factory=lambda: array("f"))   # capture -> report write
    per_class: dict = field(default_factory=dict)                   # class name -> array("H") per frame
    min_ttc_s: array = field(default_factory=lambda: array("f"))    # lowest in-path TTC per frame (NaN: none)
    skipped: list = field(default_factory=list)                     # (t, frames missing before it)
    tracks: dict = field(default_factory=dict)                      # track id -> TrackSpan
    thumbs: list = field(default_factory=list)                      # up to THUMBS ``Thumb``
    has_ttc: bool = False
    draw_thumbs: bool = True      # False: frames carry no image (rebuilt from files); ``draw_thumbnails`` later
    _last_index: int = -1

    @property
    def frames(self) -> int:
        return len(self.t)

    def name(self, cid: int) -> str:
        return self.class_names[cid] if 0 <= cid < len(self.class_names) else str(cid)

    def add(self, frame: Frame, dets: Detections, latency_s: float | None = None) -> None:
        t = float(frame.timestamp)
        n = len(self.t)
        if self._last_index >= 0 and frame.index > self._last_index + 1:
            self.skipped.append((t, frame.index - self._last_index - 1))
        self._last_index = frame.index
        self.t.append(t)
        self.latency_ms.append(float("nan") if latency_s is None else 1000.0 * latency_s)
        ids, counts = np.unique(dets.class_id, return_counts=True) if len(dets) else ((), ())
        for cid, c in zip(ids, counts):
            key = self.name(int(cid))
            col = self.per_class.get(key)
            if col is None:
                col = self.per_class[key] = array("H", bytes(2 * n))    # zeros for the frames before
            col.append(min(int(c), 65535))
        for col in self.per_class.values():
            if len(col) == n:                       # a class absent in this frame
                col.append(0)
        cols = dets.columns or {}
        ttc, path = cols.get("ttc_s"), cols.get("in_path")
        in_path_ttc = None
        if ttc is not None and path is not None:
            self.has_ttc = True
            in_path_ttc = np.where(path.astype(bool) & np.isfinite(ttc), ttc, np.nan)
        finite = in_path_ttc[np.isfinite(in_path_ttc)] if in_path_ttc is not None else ()
        self.min_ttc_s.append(float(np.min(finite)) if len(finite) else float("nan"))
        if dets.track_id is not None:
            self._add_tracks(dets, t, in_path_ttc)
        self._offer_thumb(frame, dets)

    def _add_tracks(self, dets: Detections, t: float, in_path_ttc) -> None:
        for i, tid in enumerate(dets.track_id.tolist()):
            span = self.tracks.get(tid)
            if span is None:
                span = self.tracks[tid] = TrackSpan(t, t, int(dets.class_id[i]))
            span.last_s, span.class_id = t, int(dets.class_id[i])
            span.boxes += 1
            if in_path_ttc is not None and np.isfinite(in_path_ttc[i]) and not in_path_ttc[i] >= span.min_ttc_s:
                span.min_ttc_s, span.min_ttc_at_s = float(in_path_ttc[i]), t

    def _offer_thumb(self, frame: Frame, dets: Detections) -> None:
        """Keep the THUMBS busiest frames, at least THUMB_APART_S apart; drawn only when kept."""
        n, t = len(dets), float(frame.timestamp)
        if n == 0:
            return
        near = [k for k in self.thumbs if abs(k.timestamp - t) < THUMB_APART_S]
        if near:
            if n <= max(k.boxes for k in near):
                return
            drop = near
        elif len(self.thumbs) < THUMBS:
            drop = []
        else:
            low = min(self.thumbs, key=lambda k: k.boxes)
            if n <= low.boxes:
                return
            drop = [low]
        thumb = (Thumb(n, frame.index, t, self._thumb(frame, dets)) if self.draw_thumbs
                 else Thumb(n, frame.index, t, None, dets))
        self.thumbs = [k for k in self.thumbs if k not in drop] + [thumb]
        self.thumbs.sort(key=lambda k: (-k.boxes, k.index))

    def draw_thumbnails(self, frames) -> None:
        """Draw the kept thumbnails not drawn yet from ``frames`` (the run's source again, in order)."""
        todo = {k.index: k for k in self.thumbs if k.image is None}
        for frame in frames:
            k = todo.pop(frame.index, None)
            if k is not None:
                k.image, k.dets = self._thumb(frame, k.dets), None
            if not todo:
                break

    def _thumb(self, frame: Frame, dets: Detections) -> np.ndarray:
        img = draw_detections(frame.image.copy(), dets, self.class_names, self.ttc_warn_s)
        h, w = img.shape[:2]
        if w > THUMB_WIDTH:
            img = cv2.resize(img, (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))), interpolation=cv2.INTER_AREA)
        return img


class ReportOutput:
    """``--report PATH`` (``output.report``): the run's sink; the page is written at close."""

    def __init__(self, path: str, class_names, *, source: str = "", ttc_warn_s: float = 2.0, stats=None):
        self.path = path
        self.data = ReportData(tuple(class_names), ttc_warn_s, source)
        self._stats = stats

    @classmethod
    def from_run(cls, run) -> "ReportOutput | None":
        path = run.cfg.output.report
        if not path:
            return None
        return cls(path, run.class_names, source=run.source, ttc_warn_s=run.cfg.output.ttc_warn_s, stats=run.stats)

    def open(self) -> None:
        if importlib.util.find_spec("matplotlib") is None:
            raise OutputError(f"--report {self.path}: the plots need matplotlib; pip install matplotlib")
        probe_stats_json(self.path, "--report")

    def write(self, frame: Frame, detections: Detections, drawn) -> None:
        self.data.add(frame, detections, time.monotonic() - frame.captured_at if frame.captured_at else None)

    def close(self, report: dict | None) -> None:
        if report is None:
            return
        samples = self._stats.stage_samples() if self._stats is not None else {}
        write_report(self.path, self.data, report, samples)


def write_report(path: str, data: ReportData, report: dict, stage_samples: dict | None = None) -> None:
    """Render and write the page for a finished run: ``report`` is the run's stats report
    (``Runner.report``, as in ``--stats-json``), ``stage_samples`` stage -> seconds per frame."""
    page = render_report(data, report, stage_samples or {})
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        Path(tmp).write_text(page, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OutputError(f"--report {path}: cannot write ({e.strerror}); the other outputs are complete") from None


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _table(rows: list[tuple], head: tuple | None = None) -> str:
    out = ["<table>"]
    if head:
        out.append("<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in head) + "</tr>")
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>")
    return "\n".join(out + ["</table>"])


STYLE = """body{font-family:sans-serif;margin:24px;max-width:1100px;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
img{max-width:100%;margin:6px 0}.thumbs img{width:32%;margin-right:1%}.note{color:#666}"""


def _ttc_events(data: ReportData) -> str:
    """The in-path tracks whose time-to-contact fell below the warning, closest first."""
    if not data.has_ttc:
        return '<p class="note">No time-to-contact: the run had no tracker columns ttc_s / in_path.</p>'
    events = sorted(((tid, s) for tid, s in data.tracks.items() if s.min_ttc_s < data.ttc_warn_s),
                    key=lambda kv: kv[1].min_ttc_s)
    out = [f"<p>{len(events)} in-path track(s) below the warning of {data.ttc_warn_s:g} s"
           f"{' (the 20 closest)' if len(events) > 20 else ''}.</p>"]
    rows = [(tid, data.name(s.class_id), f"{s.min_ttc_s:.1f}", f"{s.min_ttc_at_s - data.t[0]:.1f}")
            for tid, s in events[:20]]
    if rows:
        out.append(_table(rows, ("track", "class", "lowest TTC (s)", "at stream time (s)")))
    return "\n".join(out)


def render_report(data: ReportData, report: dict, stage_samples: dict) -> str:
    """The page as a string: summary, plots (embedded PNG), health, TTC events, thumbnails."""
    from . import report_plots as plots

    duration = (data.t[-1] - data.t[0]) if data.frames else 0.0
    title = f"dashtrack report: {report.get('source') or data.source}"
    drops = report.get("dropped") or {}
    summary = [("frames", f"{report.get('frames_out', data.frames)} out of {report.get('frames_in', data.frames)} read"),
               ("stream time", f"{duration:.1f} s"), ("throughput", f"{report.get('fps', 0):.1f} FPS over "
                                                                      f"{report.get('wall_s', 0):.1f} s"),
               ("stopped", report.get("stop_reason", "")), ("tracks", len(data.tracks)),
               ("dropped", ", ".join(f"{k}: {v}" for k, v in sorted(drops.items())) or "none")]
    lat = report.get("latency") or {}
    if lat.get("count"):
        summary.append(("capture to output", f"p50 {lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms"))
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>", _table(summary)]
    sections = [("Boxes per class over time", plots.boxes_per_class(data)),
                ("Track lifetimes", plots.track_lifetimes(data)),
                ("Time to contact (in-path tracks)", plots.ttc_events(data) if data.has_ttc else None),
                ("Latency", plots.latency(data, stage_samples)),
                ("Drops and gaps", plots.drops_and_gaps(data, report.get("gaps") or []))]
    for head, png in sections:
        parts.append(f"<h2>{html.escape(head)}</h2>")
        if png is not None:
            parts.append(_img(png, head))
        if head.startswith("Time to contact"):
            parts.append(_ttc_events(data))
    health = report.get("tracking")
    parts.append("<h2>Tracker health</h2>")
    parts.append(_table([(k, v) for k, v in health.items()]) if health
                 else '<p class="note">No tracker ran (--no-track).</p>')
    parts.append("<h2>Busiest frames</h2>")
    drawn = [k for k in data.thumbs if k.image is not None]
    if len(drawn) < len(data.thumbs):
        parts.append('<p class="note">Thumbnails need the frames: give the source to draw them.</p>')
    if data.thumbs:
        parts.append('<div class="thumbs">' + "".join(
            _img(k.png(), f"frame {k.index}: {k.boxes} boxes") for k in drawn) + "</div>")
        parts.append("<p>" + "; ".join(f"frame {k.index} at {k.timestamp:.1f} s: {k.boxes} boxes"
                                      for k in data.thumbs) + "</p>")
    else:
        parts.append('<p class="note">No frame had a box.</p>')
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _row_dets(row: dict, names: dict[int, str]) -> Detections:
    """One JSONL line's boxes (``--save-json``) as ``Detections``, with ttc_s / in_path when written."""
    boxes = row["boxes"]
    for b in boxes:
        names.setdefault(int(b["class_id"]), str(b["class"]))
    tracked = bool(boxes) and all(b.get("track_id") is not None for b in boxes)
    cols = {}
    if boxes and "ttc_s" in boxes[0] and "in_path" in boxes[0]:
        cols = {"ttc_s": np.array([np.nan if b["ttc_s"] is None else b["ttc_s"] for b in boxes], np.float64),
                "in_path": np.array([bool(b["in_path"]) for b in boxes])}
    return Detections(np.array([b["xyxy"] for b in boxes], np.float32).reshape(-1, 4),
                      np.array([b["score"] for b in boxes], np.float32), np.array([b["class_id"] for b in boxes]),
                      np.array([b["track_id"] for b in boxes]) if tracked else None,
                      np.array([b["coasted"] for b in boxes], bool) if tracked else None, cols or None)


def report_from_outputs(html_path: str, jsonl_path: str, stats_json_path: str | None = None,
                        source: str | None = None, ttc_warn_s: float = 2.0) -> ReportData:
    """The page of a run that is over, rebuilt from its ``--save-json`` lines (read as a stream), its
    ``--stats-json`` report (summary, health, drops; without it, counts from the lines) and, for the
    thumbnails, its source decoded again up to the last busiest frame. Returns the data it drew."""
    names: dict[int, str] = {}

    def rows():
        try:
            with open(jsonl_path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            yield json.loads(line)
                        except json.JSONDecodeError:
                            raise OutputError(f"--report: {jsonl_path} line {n} is not JSON; "
                                              "give the run's --save-json file") from None
        except OSError as e:
            raise OutputError(f"--report: cannot read {jsonl_path} ({e.strerror})") from None

    for row in rows():                        # pass 1: the class names the lines use
        _row_dets(row, names)
    class_names = tuple(names.get(i, str(i)) for i in range(max(names, default=-1) + 1))
    data = ReportData(class_names, ttc_warn_s, draw_thumbs=False)
    empty = np.zeros((1, 1, 3), np.uint8)
    for row in rows():                        # pass 2: the per-frame aggregates
        data.add(Frame(empty, int(row["index"]), float(row["timestamp"]), str(row.get("source", ""))),
                 _row_dets(row, names))
    report: dict = {"frames_out": data.frames, "frames_in": data.frames}
    if stats_json_path:
        try:
            report = json.loads(Path(stats_json_path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise OutputError(f"--report: cannot read {stats_json_path} ({e})") from None
    if source is not None and data.thumbs:
        src = open_source(source)
        try:
            data.draw_thumbnails(src)
        finally:
            src.close()
    data.source = report.get("source") or (source or "")
    write_report(html_path, data, report, {})
    return data
