"""The report's plots, each a PNG (bytes) from a ``ReportData``; matplotlib's object API on the Agg
canvas (no pyplot, no global backend). Imported only when a report is rendered."""
from __future__ import annotations

import io
import warnings

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

MAX_POINTS = 4000        # per series: long drives are binned down to this many points
MAX_TRACKS = 300         # lifetime bars drawn (the longest)


def _figure(height: float = 3.0, cols: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(10, height), dpi=90, layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, cols, i + 1) for i in range(cols)]
    return fig, axes


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _bin(t: np.ndarray, y: np.ndarray, reduce=np.nanmax) -> tuple[np.ndarray, np.ndarray]:
    """At most MAX_POINTS points: consecutive frames pooled with ``reduce``."""
    if len(t) <= MAX_POINTS:
        return t, y
    edges = np.linspace(0, len(t), MAX_POINTS + 1).astype(int)
    tb = np.array([t[a] for a in edges[:-1]])
    with warnings.catch_warnings():            # an all-NaN bin is NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        yb = np.array([reduce(y[a:b]) if b > a else np.nan for a, b in zip(edges[:-1], edges[1:])])
    return tb, yb


def _rel_t(data) -> np.ndarray:
    t = np.frombuffer(data.t, np.float64) if len(data.t) else np.zeros(0)
    return t - t[0] if len(t) else t


def boxes_per_class(data) -> bytes:
    t = _rel_t(data)
    fig, (ax,) = _figure()
    order = sorted(data.per_class, key=lambda k: -sum(data.per_class[k]))
    for name in order[:10]:
        tb, yb = _bin(t, np.asarray(data.per_class[name], np.float64))
        ax.plot(tb, yb, lw=1, label=name)
    if order:
        ax.legend(loc="upper right", fontsize=8, ncol=min(len(order[:10]), 5))
    else:
        ax.text(0.5, 0.5, "no boxes", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("stream time (s)")
    ax.set_ylabel("boxes per frame")
    return _png(fig)


def track_lifetimes(data) -> bytes:
    fig, (ax, hx) = _figure(3.4, 2)
    t0 = data.t[0] if len(data.t) else 0.0
    spans = sorted(data.tracks.items(), key=lambda kv: kv[1].last_s - kv[1].first_s, reverse=True)
    shown = sorted(spans[:MAX_TRACKS], key=lambda kv: kv[1].first_s)
    names = sorted({data.name(s.class_id) for _, s in shown})
    colors = {n: f"C{i % 10}" for i, n in enumerate(names)}
    for row, (_, s) in enumerate(shown):
        ax.plot([s.first_s - t0, s.last_s - t0], [row, row], lw=2, color=colors[data.name(s.class_id)])
    for n in names:
        ax.plot([], [], lw=3, color=colors[n], label=n)
    if names:
        ax.legend(fontsize=8, loc="upper left")
    ax.set_xlabel("stream time (s)")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("track" + (f" ({MAX_TRACKS} longest of {len(spans)})" if len(spans) > MAX_TRACKS else ""))
    life = np.array([s.last_s - s.first_s for _, s in spans])
    if len(life):
        hx.hist(life, bins=min(40, max(5, len(life) // 3)), color="C0")
    hx.set_xlabel("track lifetime (s)")
    hx.set_ylabel("tracks")
    return _png(fig)


def ttc_events(data) -> bytes:
    t = _rel_t(data)
    ttc = np.asarray(data.min_ttc_s, np.float64)
    fig, (ax,) = _figure()
    tb, yb = _bin(t, ttc, np.nanmin)
    ok = np.isfinite(yb)
    warn = yb < data.ttc_warn_s
    ax.scatter(tb[ok & ~warn], yb[ok & ~warn], s=6, color="C0", label="lowest in-path TTC")
    ax.scatter(tb[ok & warn], yb[ok & warn], s=10, color="red", label=f"below {data.ttc_warn_s:g} s")
    ax.axhline(data.ttc_warn_s, color="red", lw=0.8, ls="--")
    if not ok.any():
        ax.set_title("no in-path track with a known time to contact", fontsize=9)
    ax.set_xlim(0, max(float(t[-1]) if len(t) else 1.0, 1e-3))
    ax.set_ylim(0, max(10.0, data.ttc_warn_s * 2))
    ax.set_xlabel("stream time (s)")
    ax.set_ylabel("time to contact (s)")
    ax.legend(fontsize=8, loc="upper right")
    return _png(fig)


def latency(data, stage_samples: dict) -> bytes:
    fig, (hx, ax) = _figure(3.4, 2)
    for name, secs in stage_samples.items():
        ms = np.asarray(secs, np.float64) * 1000.0
        if len(ms):
            hx.hist(ms, bins=40, histtype="step", lw=1.2, label=name)
    if stage_samples:
        hx.legend(fontsize=8)
    hx.set_xlabel("stage time per frame (ms)")
    hx.set_ylabel("frames")
    t = _rel_t(data)
    tb, yb = _bin(t, np.asarray(data.latency_ms, np.float64))
    ax.plot(tb, yb, lw=1, color="C1")
    ax.set_xlabel("stream time (s)")
    ax.set_ylabel("capture to output (ms)")
    return _png(fig)


def drops_and_gaps(data, gaps: list) -> bytes:
    """Frames missing between outputs (dropped), long steps between timestamps, reconnect waits."""
    t = _rel_t(data)
    t0 = data.t[0] if len(data.t) else 0.0
    fig, (ax,) = _figure(2.6)
    if len(t) > 1:
        dt = np.diff(t)
        tb, yb = _bin(t[1:], dt * 1000.0)
        ax.plot(tb, yb, lw=0.8, color="C0", label="time between frames (ms)")
    if data.skipped:
        st = np.array([s[0] - t0 for s in data.skipped])
        n = np.array([s[1] for s in data.skipped])
        ax2 = ax.twinx()
        ax2.bar(st, n, width=max(float(t[-1]) / 400, 0.02) if len(t) else 0.1, color="red", label="frames dropped")
        ax2.set_ylabel("frames dropped", color="red")
    for g in gaps:
        at = float(g.get("at_s", 0.0)) - t0
        ax.axvspan(at, at + float(g.get("seconds", 0.0)), color="orange", alpha=0.4)
    if not data.skipped and not gaps:
        ax.set_title("no dropped frames, no reconnect gaps", fontsize=9)
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_ylim(0, max(float(np.max(np.diff(t))) * 1300.0 if len(t) > 1 else 1.0, 1.0))
    ax.set_xlabel("stream time (s)")
    ax.set_ylabel("ms between frames")
    return _png(fig)
