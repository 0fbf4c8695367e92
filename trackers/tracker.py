"""KalmanTracker: online multi-object tracker that keeps boxes through dropouts.

Per frame, in this order (``update``, each step a function of explicit inputs):
1. predict: every track to ``timestamp`` with the motion filter (dt from the previous call,
   seconds; ``motion.py``: injectable, the constant-velocity Kalman filter by default), then
   optional camera-motion compensation;
2. associate (``passes.py``): confirmed, then tentative tracks vs detections >= high_score
   (gated Hungarian on IoU of the predicted box); unmatched confirmed tracks vs detections
   in [low_score, high_score); leftovers only: optional recovery by last observed box (off
   by default), centre-distance pass, optional Mahalanobis pass; then relink (a detection
   about to confirm a new track goes to a nearby coasting track instead, so the id survives);
3. update matched (``steps.py``): the filter's update; a track that had been coasting is
   re-run from its last observation over interpolated virtual observations;
4. coast: which tracks are unseen and how long, which are still in the frame;
5. output: confirmed tracks matched this frame (the detection's box and score,
   the track's voted class, the detection's in the ``det_class`` column) and
   coasting ones whose prediction is trusted (``trust.py``: predicted box,
   ``coasted=True``, decaying score), each with the columns ``ttc_s`` and
   ``in_path`` (``ttc.py``) unless ``ttc`` is off;
6. deaths: tentative tracks that missed, coasting tracks older than max_coast_seconds or
   predicted out of the frame;
7. births: unmatched strong detections (emitted now when confirmed at birth).

Lifecycle: tentative -> confirmed (min_hits) -> coasting -> recovered -> removed.
All track state lives in arrays, so cost grows slowly with the track count.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from dashtrack_core.records import Detections

from .association import SIMILARITIES, duplicate_free
from .classes import ClassGroups
from .cmc import CameraMotion, warp_states
from .config import TrackerConfig
from .kalman import DIM, state_box_to_xyxy
from .motion import FilterFactory, MotionFilter, build as build_filter
from .passes import Matches, associate
from .state import Frame, Tracks, TrackerStats, frame_detections  # noqa: F401  (TrackerStats: re-exported)
from . import steps, ttc


class KalmanTracker:
    """Call ``update(detections, timestamp, image=None)`` once per frame, also with no detections.

    Returns the confirmed tracks as ``Detections`` with ``track_id`` (counting
    from 1 per instance, again after ``reset()``) and ``coasted`` set, boxes in
    image coordinates:
    - tracks matched this frame: the detection's box (or the filtered box when
      ``emit_detection_box`` is off) and score, ``coasted=False``;
    - coasting tracks (no detection this frame, last one at most
      ``emit_coast_seconds`` ago) whose prediction passes ``trust.coast_trust``
      (all of them with ``coast_trust`` off): the predicted box, ``coasted=True``,
      the last detection score times 0.5 ** (coast time / ``coast_score_half_life_s``)
      (times the trust factor).
    With ``ttc`` on, ``columns`` holds ``ttc_s`` (float, NaN when unknown) and
    ``in_path`` (bool; False while the frame size is unknown).
    ``class_id`` is the track's class (the score-weighted vote of its
    detections, ``trackers/classes.py``); the column ``det_class`` is the class of
    this frame's detection (-1 on coasted boxes). ``class_names`` name the class ids
    for ``config.class_groups`` (None: COCO's, the default detector's).
    ``motion_filter``: a factory ``(config) -> MotionFilter`` (``trackers/motion.py``;
    None: the constant-velocity Kalman filter).
    ``image`` (BGR uint8) is used only for camera-motion compensation and the
    frame extent (``set_frame_size`` gives the extent without images). ``stats``
    holds timings (µs per update, CMC ms per call and fallbacks) and counts
    (births, recoveries, relinks).
    """

    def __init__(self, config: TrackerConfig | None = None, class_names: Sequence[str] | None = None,
                 motion_filter: FilterFactory | None = None) -> None:
        self.config = config if config is not None else TrackerConfig()
        c = self.config
        self.groups = ClassGroups(c.class_groups, class_names)     # class_names None: COCO's
        self.motion: MotionFilter = build_filter(motion_filter, c)
        self._similarity = SIMILARITIES[c.similarity]
        self.cmc = CameraMotion(c.cmc_max_width, c.cmc_max_corners, c.cmc_min_inliers) if c.cmc else None
        self.reset()

    def reset(self, keep_ids: bool = False) -> None:
        """Forget every track; ids start again at 1 (``keep_ids``: new ids continue after the
        last one given, e.g. when the source changes size mid-run)."""
        next_id = getattr(self, "_next_id", 1) if keep_ids else 1
        self.tracks = Tracks()
        self._next_id = next_id
        self._last_t: float | None = None
        self._times: list[float] = []                 # recent frame timestamps (for re-updates)
        self._extent = np.array([np.inf, np.inf, -np.inf, -np.inf])   # x1 y1 x2 y2 of the frame
        self.stats = TrackerStats()
        self.horizon = ttc.HorizonEstimator()
        if self.cmc is not None:
            self.cmc.reset()

    # ------------------------------------------------------------------ update
    def update(self, detections: Detections, timestamp: float, image: np.ndarray | None = None) -> Detections:
        t_start = time.perf_counter()
        c, tr = self.config, self.tracks
        timestamp = float(timestamp)
        prev_t, dt = self._last_t, self._step(timestamp)
        pred = self._predict(dt, image)                                          # 1. predict
        frame = self._frame(detections, image)
        m = associate(c, tr, self.groups, self._similarity, self.motion.meas_noise, pred, frame,
                      timestamp)                                                 # 2. associate
        self.stats.relinks += m.relinks
        steps.update_matched(c, tr, self.motion, self.groups, m, frame, timestamp, prev_t, self._times,
                             self.stats)                                         # 3. update matched
        self._rates(dt, frame)
        status = steps.coast_status(c, tr, m, timestamp, pred, self._extent)     # 4. coast
        out = steps.output(c, tr, status, frame, pred, m.ti, self._extent, self.horizon.row)   # 5. output
        steps.deaths(c, tr, status)                                              # 6. deaths
        out = self._births(frame, m, timestamp, out)                             # 7. births
        self._finish(timestamp, t_start)
        return out

    # ------------------------------------------------------------------ steps
    def _step(self, timestamp: float) -> float:
        """Seconds since the previous frame (0 on the first)."""
        if self._last_t is None:
            return 0.0
        dt = timestamp - self._last_t
        if dt < 0:
            raise ValueError(f"timestamps must not go back: {timestamp} after {self._last_t}")
        return dt

    def _predict(self, dt: float, image: np.ndarray | None) -> np.ndarray:
        """Every track predicted by ``dt``, then camera-motion compensated; the predicted boxes (T, 4) xyxy."""
        c, tr = self.config, self.tracks
        self.motion.predict(tr.x, tr.P, dt)
        if self.cmc is not None:
            A = self.cmc.estimate(image)
            if A is not None:
                warp_states(tr.x, A, c.box_param)
                warp_states(tr.x_obs, A, c.box_param)
                tr.z_obs = self._warp_xyxy(tr.z_obs, A)
                tr.z_first = self._warp_xyxy(tr.z_first, A)
        return state_box_to_xyxy(tr.x[:, :DIM], c.box_param)

    def _frame(self, detections: Detections, image: np.ndarray | None) -> Frame:
        """This frame's detections (near-duplicates dropped) split by score; the frame extent
        comes from the image (inferring it from detections was tried: it kills tracks moving into
        parts of the frame no detection has reached yet)."""
        c = self.config
        if c.dedup_iou > 0 and len(detections) > 1:
            detections = detections[duplicate_free(detections, c.dedup_iou)]
        if image is not None:
            self._extent = np.array([0.0, 0.0, image.shape[1], image.shape[0]])
        return frame_detections(detections, self.tracks.cls, c, self.groups)

    def _rates(self, dt: float, frame: Frame) -> None:
        """Smoothed expansion rates (time-to-contact) and a horizon sample now and then."""
        c, tr = self.config, self.tracks
        if c.ttc and len(tr):
            tr.rate = ttc.smooth_rate(tr.rate, ttc.expansion_rate(tr.x, c.box_param), dt, c.ttc_smoothing_s)
        if (c.ttc and c.horizon_frac is None and self._extent[2] > self._extent[0] and len(frame.xyxy)
                and self.horizon.wants_sample()):
            self.horizon.add(frame.xyxy[frame.high & (frame.cls == c.horizon_class_id)], self._extent[3])

    def _births(self, frame: Frame, m: Matches, timestamp: float, out: Detections) -> Detections:
        born = steps.births(self.config, self.tracks, self.motion, self.groups, frame, m.d_free, timestamp,
                            self._next_id)
        if len(born) == 0:
            return out
        self._next_id += len(born)
        self.stats.tracks_born += len(born)
        if self.config.min_hits > 1:
            return out
        # confirmed at birth: emitted now
        return Detections.concat([out, steps.newborn_output(self.config, self.tracks, frame, born, self._extent,
                                                            self.horizon.row)])

    def _finish(self, timestamp: float, t_start: float) -> None:
        c = self.config
        self._last_t = timestamp
        self._times.append(timestamp)
        horizon = timestamp - c.max_coast_seconds - 1.0
        while self._times and self._times[0] < horizon:
            self._times.pop(0)
        if self.cmc is not None:
            self.stats.cmc_calls, self.stats.cmc_seconds = self.cmc.calls, self.cmc.seconds
            self.stats.cmc_fallbacks = self.cmc.fallbacks
        self.stats.updates += 1
        self.stats.update_seconds += time.perf_counter() - t_start

    def set_frame_size(self, width: int, height: int) -> None:
        """The frame extent when ``update`` gets no image (evaluation on detections only)."""
        self._extent = np.array([0.0, 0.0, float(width), float(height)])

    @staticmethod
    def _warp_xyxy(xyxy: np.ndarray, A: np.ndarray) -> np.ndarray:
        pts = xyxy.reshape(-1, 2) @ A[:, :2].T + A[:, 2]
        return pts.reshape(-1, 4)
