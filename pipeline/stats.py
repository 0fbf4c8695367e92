"""Per-stage timing on a monotonic clock, frame-drop counts, and the end-of-run report."""
from __future__ import annotations

import threading
import time
from collections import Counter, deque

import numpy as np

from trackers.health import format_health

# Samples kept per series: enough for stable p99, bounded for long runs.
WINDOW = 20000


def _summary(values) -> dict:
    a = np.asarray(values, np.float64) * 1000.0
    if len(a) == 0:
        return {"count": 0, "p50_ms": None, "p99_ms": None, "mean_ms": None}
    return {
        "count": int(len(a)),
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "mean_ms": round(float(a.mean()), 3),
    }


class Stats:
    """Thread-safe counters shared by all stages."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stage_time: dict[str, deque] = {}
        self.stage_count: Counter = Counter()
        self.latency: deque = deque(maxlen=WINDOW)       # capture -> output, seconds
        # Frames the preview showed: capture -> on screen, and capture -> output for those same frames.
        self.display_latency: deque = deque(maxlen=WINDOW)
        self.shown_output_latency: deque = deque(maxlen=WINDOW)
        self.display_note: str | None = "headless run (no preview window)"   # why display latency is not measured
        self.drops: Counter = Counter()                   # cause -> frames
        self.counts: Counter = Counter()                  # name -> total (e.g. crops run)
        self.frames_in = 0
        self.preview_skips = 0                            # processed frames the window did not show
        self.frames_out = 0
        self.started = time.monotonic()
        self.cpu_started = time.process_time()
        self.ended: float | None = None
        self.cpu_ended: float | None = None
        self.first_out: float | None = None

    def record(self, stage: str, seconds: float, frames: int = 1) -> None:
        with self._lock:
            series = self.stage_time.get(stage)
            if series is None:
                series = self.stage_time[stage] = deque(maxlen=WINDOW)
            series.append(seconds / max(frames, 1))
            self.stage_count[stage] += frames

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def drop(self, cause: str, n: int = 1) -> None:
        with self._lock:
            self.drops[cause] += n

    def preview_skipped(self) -> None:
        with self._lock:
            self.preview_skips += 1

    def captured(self) -> None:
        with self._lock:
            self.frames_in += 1

    def output(self, captured_at: float) -> float:
        """A frame left the output stage; returns the time (for ``displayed``)."""
        now = time.monotonic()
        with self._lock:
            self.frames_out += 1
            self.latency.append(now - captured_at)
            if self.first_out is None:
                self.first_out = now
        return now

    def displayed(self, captured_at: float, output_at: float, shown_at: float) -> None:
        """The main thread put a frame on screen at ``shown_at``."""
        with self._lock:
            self.display_note = None
            self.display_latency.append(shown_at - captured_at)
            self.shown_output_latency.append(output_at - captured_at)

    def finish(self) -> None:
        if self.ended is None:
            self.ended = time.monotonic()
            self.cpu_ended = time.process_time()

    def recent_latency_ms(self, n: int = 30) -> float | None:
        with self._lock:
            if not self.latency:
                return None
            tail = list(self.latency)[-n:]
        return 1000.0 * float(np.median(tail))

    def recent_percentiles_ms(self, series: str = "display_latency", n: int = 100) -> tuple[float, float] | None:
        """(p50, p99) of the last ``n`` samples of ``series``, for the HUD."""
        with self._lock:
            values = getattr(self, series)
            if not values:
                return None
            tail = np.asarray(list(values)[-n:], np.float64) * 1000.0
        return float(np.percentile(tail, 50)), float(np.percentile(tail, 99))

    def stage_samples(self) -> dict[str, list[float]]:
        """Each stage's recent per-frame times in seconds (the last ``WINDOW``), copied."""
        with self._lock:
            return {name: list(series) for name, series in self.stage_time.items()}

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())

    def report(self) -> dict:
        end = self.ended or time.monotonic()
        cpu_end = self.cpu_ended or time.process_time()
        wall = max(end - self.started, 1e-9)
        with self._lock:
            stages = {name: dict(_summary(series), frames=int(self.stage_count[name]))
                      for name, series in self.stage_time.items()}
            latency = _summary(self.latency)
            display = dict(_summary(self.display_latency), measured=bool(self.display_latency),
                           capture_to_output_same_frames=_summary(self.shown_output_latency))
            if not self.display_latency:
                display["note"] = f"display latency not measured: {self.display_note or 'no frame was shown'}"
            drops = dict(self.drops)
            counts = dict(self.counts)
            frames_in, frames_out = self.frames_in, self.frames_out
        return {
            "frames_in": frames_in,
            "frames_out": frames_out,
            "dropped": drops,
            "preview_skipped": self.preview_skips,
            "wall_s": round(wall, 3),
            "fps": round(frames_out / wall, 2),
            "cpu_ms_per_frame": round(1000.0 * (cpu_end - self.cpu_started) / max(frames_out, 1), 2),
            "stages": stages,
            "latency": latency,                 # capture -> output stage, every frame
            "display_latency": display,         # capture -> on screen, frames the preview showed
            **({"counts": counts} if counts else {}),
        }


def format_table(report: dict) -> str:
    """The end-of-run table: one row per stage, then latency, throughput and drops."""
    rows = [("stage", "frames", "p50 ms", "p99 ms", "mean ms")]
    for name, s in report["stages"].items():
        rows.append((name, str(s["frames"]), f"{s['p50_ms']:.2f}" if s["p50_ms"] is not None else "-",
                     f"{s['p99_ms']:.2f}" if s["p99_ms"] is not None else "-",
                     f"{s['mean_ms']:.2f}" if s["mean_ms"] is not None else "-"))
    lat = report["latency"]
    if lat["count"]:
        rows.append(("capture->output", str(lat["count"]), f"{lat['p50_ms']:.2f}", f"{lat['p99_ms']:.2f}",
                     f"{lat['mean_ms']:.2f}"))
    shown = report.get("display_latency") or {}
    if shown.get("count"):
        rows.append(("capture->display", str(shown["count"]), f"{shown['p50_ms']:.2f}", f"{shown['p99_ms']:.2f}",
                     f"{shown['mean_ms']:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if report.get("counts", {}).get("crops") is not None:
        n = report["counts"]["crops"]
        lines.append(f"crops: {n} native-resolution crops batched with {report['frames_out']} frames "
                     f"({n / max(report['frames_out'], 1):.2f} per frame)")
    drops = ", ".join(f"{k}: {v}" for k, v in sorted(report["dropped"].items())) or "none"
    if report.get("tracking"):
        lines.append(format_health(report["tracking"]))
    lines.append(
        f"frames in {report['frames_in']}, out {report['frames_out']}, dropped {sum(report['dropped'].values())} ({drops}); "
        f"{report['fps']:.1f} FPS over {report['wall_s']:.2f} s, {report['cpu_ms_per_frame']:.1f} CPU-ms/frame"
    )
    if shown.get("note"):
        lines.append(shown["note"])
    return "\n".join(lines)
