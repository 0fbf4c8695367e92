"""KalmanTracker: online multi-object tracker that keeps boxes through dropouts.

Per frame, in this order:
1. predict every track to ``timestamp`` (dt from the previous call, seconds);
2. optional camera-motion compensation of the predicted states;
3. pass 1: confirmed, then tentative tracks vs detections >= high_score (gated
   Hungarian on IoU of the predicted box);
4. pass 2: unmatched confirmed tracks vs detections in [low_score, high_score);
5. leftovers only: optional recovery by last observed box (off by default), centre-distance pass,
   optional Mahalanobis pass; then relink (a detection about to confirm a new
   track goes to a nearby coasting track instead, so the id survives);
   these live in ``passes.py``;
6. Kalman update of matched tracks; a track that had been coasting is re-run
   from its last observation over interpolated virtual observations;
7. lifecycle: tentative tracks that missed are removed, coasting tracks older
   than max_coast_seconds are removed, unmatched strong detections are born;
8. output: confirmed tracks matched this frame (the detection's box and score,
   the track's voted class, the detection's in the ``det_class`` column) and
   coasting ones whose prediction is trusted (``trust.py``: predicted box,
   ``coasted=True``, decaying score), each with the columns ``ttc_s`` and
   ``in_path`` (``ttc.py``) unless ``ttc`` is off.

Lifecycle: tentative -> confirmed (min_hits) -> coasting -> recovered -> removed.
All track state lives in arrays, so cost grows slowly with the track count.
"""
from __future__ import annotations

import bisect
import time
from typing import Sequence

import numpy as np

from pipeline.records import Detections

from .association import SIMILARITIES, duplicate_free
from .classes import ClassGroups, add_votes, born_votes
from .cmc import CameraMotion, warp_states
from .config import TrackerConfig
from .kalman import DIM, BoxKalman, state_box_to_xyxy, xyxy_to_state_box
from .passes import AssociationPasses
from .state import Tracks, TrackerStats, one_class  # noqa: F401  (TrackerStats: re-exported)
from . import trust, ttc

_SAME_TIME = 1e-9


class KalmanTracker(AssociationPasses):
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
    ``image`` (BGR uint8) is used only for camera-motion compensation and the
    frame extent (``set_frame_size`` gives the extent without images). ``stats``
    holds timings (µs per update, CMC ms per call and fallbacks) and counts
    (births, recoveries, relinks).
    """

    def __init__(self, config: TrackerConfig | None = None, class_names: Sequence[str] | None = None) -> None:
        self.config = config if config is not None else TrackerConfig()
        c = self.config
        self.groups = ClassGroups(c.class_groups, class_names)     # class_names None: COCO's
        self.kf = BoxKalman(c.box_param, c.meas_noise, c.accel_noise_pos, c.accel_noise_size, c.init_vel_std)
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
        self._inside: np.ndarray | None = None       # this frame's share of each predicted box in the frame
        if self.cmc is not None:
            self.cmc.reset()

    # ------------------------------------------------------------------ update
    def update(self, detections: Detections, timestamp: float, image: np.ndarray | None = None) -> Detections:
        t_start = time.perf_counter()
        c, tr = self.config, self.tracks
        timestamp = float(timestamp)
        dt = 0.0 if self._last_t is None else timestamp - self._last_t
        if dt < 0:
            raise ValueError(f"timestamps must not go back: {timestamp} after {self._last_t}")
        prev_t = self._last_t

        # 1-2. predict, then camera-motion compensation
        self.kf.predict(tr.x, tr.P, dt)
        if self.cmc is not None:
            A = self.cmc.estimate(image)
            if A is not None:
                warp_states(tr.x, A, c.box_param)
                warp_states(tr.x_obs, A, c.box_param)
                tr.z_obs = self._warp_xyxy(tr.z_obs, A)
                tr.z_first = self._warp_xyxy(tr.z_first, A)
        pred = state_box_to_xyxy(tr.x[:, :DIM], c.box_param)          # (T, 4)
        if c.dedup_iou > 0 and len(detections) > 1:
            detections = detections[duplicate_free(detections, c.dedup_iou)]
        self._grow_extent(detections, image)

        # 3-5. association
        det_xyxy = detections.xyxy.astype(np.float64)                   # (D, 4)
        det_score, det_cls = detections.score, detections.class_id
        self._det_cls = det_cls
        self._mixed_classes = not one_class(tr.cls, det_cls)   # else class checks are skipped
        self._cross_class = not c.class_consistent     # set by the passes when a pair of two classes matches
        if self._mixed_classes:        # class group keys for this frame's association (trackers/classes.py)
            self._det_key, self._det_named = self.groups.keys_known(det_cls)
        high = det_score >= c.high_score
        low = ~high & (det_score >= c.low_score)
        n_t = len(tr)
        t_free = np.ones(n_t, bool)
        d_free = np.ones(len(detections), bool)
        pairs = []
        strong = high.nonzero()[0]
        # (np.count_nonzero: a third of the cost of .any() / .all() on short arrays)
        n_tentative = n_t - np.count_nonzero(tr.confirmed)
        if c.confirmed_first:    # confirmed first, then tentative tracks on what is left
            self._match(pred, tr.confirmed.nonzero()[0], det_xyxy, strong, c.min_similarity,
                        t_free, d_free, pairs)
            if n_tentative:
                self._match(pred, (~tr.confirmed).nonzero()[0], det_xyxy, strong, c.min_similarity,
                            t_free, d_free, pairs)
        else:
            self._match(pred, np.arange(n_t), det_xyxy, strong, c.min_similarity, t_free, d_free, pairs)
        if np.count_nonzero(low):
            self._match(pred, (t_free & tr.confirmed).nonzero()[0], det_xyxy, low.nonzero()[0],
                        c.low_min_similarity, t_free, d_free, pairs)
        if np.count_nonzero(d_free & high) and np.count_nonzero(t_free):     # later passes only see leftovers
            if c.recovery_pass:
                self._match(tr.z_obs, (t_free & tr.confirmed).nonzero()[0], det_xyxy,
                            (high & d_free).nonzero()[0], c.min_similarity, t_free, d_free, pairs,
                            c.recovery_max_size_ratio)
            if c.centre_pass and np.count_nonzero(t_free) and np.count_nonzero(d_free & high):
                self._centre_pass(pred, det_xyxy, high, t_free, d_free, pairs)
            if c.mahalanobis_gate > 0 and np.count_nonzero(t_free) and np.count_nonzero(d_free & high):
                self._mahalanobis_pass(det_xyxy, high, t_free, d_free, pairs)
        if len(pairs) == 1:
            ti, di = pairs[0]
        elif pairs:
            ti, di = np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])
        else:
            ti = di = np.zeros(0, np.int64)
        if c.relink and n_tentative and len(ti):     # only a tentative track's match is relinked
            self._relink(ti, di, pred, det_xyxy, t_free, timestamp)

        # 6. Kalman update (re-update from the last observation after a gap)
        if len(ti):
            z = xyxy_to_state_box(det_xyxy[di], c.box_param)
            t_last = tr.t_obs[ti]
            gap = t_last < (prev_t if prev_t is not None else timestamp) - _SAME_TIME
            # Replayed only after two or more missed frames: after one, the replay's single
            # virtual observation (the midpoint) changes little (KITTI scores are the same)
            # and it was the costliest step of a frame with a few one-frame misses.
            earlier = self._times[-2] if len(self._times) >= 2 else -np.inf
            replay = t_last < earlier - _SAME_TIME     # (implies gap: earlier < prev_t)
            if c.reupdate_on_recovery and np.count_nonzero(replay):
                self._replay_gap(ti[replay], z[replay], timestamp)
            x_new, P_new = self.kf.update(tr.x[ti], tr.P[ti], z, copy=False)   # gathered rows: copies already
            tr.x[ti], tr.P[ti] = x_new, P_new
            tr.x_obs[ti], tr.P_obs[ti] = x_new, P_new
            self.stats.recoveries += np.count_nonzero(gap)
            tr.hits[ti] += 1
            if self.groups.enabled:       # (without groups no track sees a second class)
                tr.votes = add_votes(tr.votes, tr.cls, ti, det_cls[di], det_score[di], self._mixed_classes,
                                     self._cross_class, self._mixed_classes and not self._det_named)
            tr.score[ti] = det_score[di]
            tr.t_obs[ti] = timestamp
            tr.z_obs[ti] = det_xyxy[di]
            tr.confirmed[ti] |= tr.hits[ti] >= c.min_hits

        if c.ttc and n_t:
            tr.rate = ttc.smooth_rate(tr.rate, ttc.expansion_rate(tr.x, c.box_param), dt, c.ttc_smoothing_s)
        if (c.ttc and c.horizon_frac is None and self._extent[2] > self._extent[0] and len(detections)
                and self.horizon.wants_sample()):
            self.horizon.add(det_xyxy[high & (det_cls == c.horizon_class_id)], self._extent[3])

        # output rows are gathered before removals and births change indices
        matched_now = np.zeros(n_t, bool)
        matched_now[ti] = True
        det_of_track = np.full(n_t, -1)
        det_of_track[ti] = di
        age = timestamp - tr.t_obs
        if self._extent[2] > self._extent[0]:    # frame size known (an image was given)
            self._inside = self._visible_fraction(pred)
            visible = matched_now | (self._inside >= c.min_visible_fraction)
        else:
            self._inside = None
            visible = np.ones(n_t, bool)
        emit = tr.confirmed & visible & (matched_now | (age <= c.emit_coast_seconds + _SAME_TIME))
        if c.emit_min_hits > c.min_hits:
            emit &= tr.hits >= c.emit_min_hits
        out = self._output(emit, matched_now, det_of_track, det_xyxy, det_score, age, pred, ti)

        # 7. lifecycle (a coasting track predicted out of the frame is removed)
        alive = np.where(tr.confirmed, visible & (age <= c.max_coast_seconds + _SAME_TIME), matched_now)
        if np.count_nonzero(alive) < n_t:
            tr.keep(alive)
        born = (d_free & (det_score >= max(c.new_track_score, c.high_score))).nonzero()[0]
        if len(born):
            self._birth(det_xyxy[born], det_score[born], det_cls[born], timestamp)
            if c.min_hits <= 1:   # confirmed at birth: emitted now
                out = Detections.concat([out, self._newborn_output(len(born), det_xyxy[born],
                                                                   det_score[born], det_cls[born])])

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
        return out

    # ---------------------------------------------------------------- helpers
    def _grow_extent(self, detections: Detections, image: np.ndarray | None) -> None:
        """The frame's extent comes from the image; without images it stays unknown.

        (Inferring it from the detections seen so far was tried: it kills tracks
        moving into parts of the frame no detection has reached yet.)
        """
        if image is not None:
            self._extent = np.array([0.0, 0.0, image.shape[1], image.shape[0]])

    def _visible_fraction(self, boxes: np.ndarray) -> np.ndarray:
        """(T,) share of each box's area inside the frame extent (1 when unknown)."""
        e = self._extent
        if e[2] <= e[0] or len(boxes) == 0:
            return np.ones(len(boxes))
        iw = np.minimum(boxes[:, 2], e[2]) - np.maximum(boxes[:, 0], e[0])
        ih = np.minimum(boxes[:, 3], e[3]) - np.maximum(boxes[:, 1], e[1])
        area = np.maximum(boxes[:, 2] - boxes[:, 0], 1e-9) * np.maximum(boxes[:, 3] - boxes[:, 1], 1e-9)
        return np.maximum(iw, 0.0) * np.maximum(ih, 0.0) / area

    def _replay_gap(self, rows: np.ndarray, z: np.ndarray, timestamp: float) -> None:
        """Re-run tracks `rows` from their last observation up to now (OC-SORT's re-update).

        Virtual observations, interpolated linearly between the last detection
        and `z`, are fed at every frame time in between.  Rows whose last
        detection has the same time step together (usually all of them).
        Leaves the rows predicted to `timestamp`; the caller then updates them with `z`.
        """
        t_obs = self.tracks.t_obs[rows]
        self.stats.replays += len(rows)
        times = set(t_obs.tolist())      # (np.unique costs ten times as much on a few rows)
        if len(times) == 1:
            self._replay_group(rows, z, times.pop(), timestamp)
            return
        for t0 in sorted(times):
            same = t_obs == t0
            self._replay_group(rows[same], z[same], t0, timestamp)

    def _replay_group(self, rows: np.ndarray, z: np.ndarray, t_obs: float, timestamp: float) -> None:
        """``_replay_gap`` for rows whose last detection was at ``t_obs``."""
        tr, kf, param = self.tracks, self.kf, self.config.box_param
        x, C = tr.x_obs[rows], tr.P_obs[rows]          # copies (gathered by index)
        z0 = xyxy_to_state_box(tr.z_obs[rows], param)
        step = (z - z0) / (timestamp - t_obs)
        t_prev = t_obs
        first = bisect.bisect_right(self._times, t_obs + _SAME_TIME)
        for t in self._times[first:]:        # frame times strictly between, oldest first
            if t >= timestamp - _SAME_TIME:
                break
            kf.predict(x, C, t - t_prev)
            x, C = kf.update(x, C, z0 + (t - t_obs) * step, copy=False)
            t_prev = t
        kf.predict(x, C, timestamp - t_prev)
        tr.x[rows], tr.P[rows] = x, C

    def _birth(self, xyxy, score, cls, timestamp) -> None:
        n = len(xyxy)
        new = Tracks()
        new.id = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        self._next_id += n
        new.cls = cls.astype(np.int32)
        new.gkey = self.groups.keys(new.cls)
        if self.groups.enabled:
            self.tracks.votes, new.votes = born_votes(self.tracks.votes, self.groups.n_names, new.cls, score)
        else:
            new.votes = np.zeros((n, self.tracks.votes.shape[1]), np.float32)
        new.score = score.astype(np.float32)
        new.hits = np.ones(n, np.int64)
        new.confirmed = np.full(n, self.config.min_hits <= 1)
        new.t_obs = np.full(n, timestamp)
        new.z_obs = xyxy.copy()
        new.x, new.P = self.kf.initiate(xyxy_to_state_box(xyxy, self.config.box_param))
        new.x_obs, new.P_obs = new.x.copy(), new.P.copy()
        new.t_first = new.t_obs.copy()
        new.z_first = new.z_obs.copy()
        new.rate = np.full(n, np.nan)
        self.tracks.extend(new)
        self.stats.tracks_born += n

    def _output(self, emit, matched_now, det_of_track, det_xyxy, det_score, age, pred, ti) -> Detections:
        """``pred``: this frame's predicted boxes (xyxy), which coasting tracks emit; ``ti``: matched tracks."""
        c, tr = self.config, self.tracks
        rows = emit.nonzero()[0]
        if len(rows) == 0:
            return Detections.empty(tracked=True)
        # coasting rows were not updated: their box is the prediction
        boxes = pred[rows] if c.emit_detection_box else state_box_to_xyxy(tr.x[rows, :DIM], c.box_param)
        score = tr.score[rows] * 0.5 ** (age[rows] / c.coast_score_half_life_s)
        live = matched_now[rows]
        li = live.nonzero()[0]                   # (indices: cheaper than the mask twice)
        d = det_of_track[rows[li]]
        if c.emit_detection_box:
            boxes[li] = det_xyxy[d]
        score[li] = det_score[d]
        if len(li) == len(rows):                          # this frame's detector class; -1: coasted
            det_class = self._det_cls[d]
        else:
            det_class = np.full(len(rows), -1, np.int32)
            det_class[li] = self._det_cls[d]
        coast = ~live
        if np.count_nonzero(coast):      # a degenerate predicted box is not emitted
            ok = live | ((boxes[:, 2] - boxes[:, 0] > 1.0) & (boxes[:, 3] - boxes[:, 1] > 1.0))
            if c.coast_trust:        # nor one whose prediction is not trusted (trust.py)
                ci = coast.nonzero()[0]
                cover = det_xyxy[det_of_track[ti]] if len(ti) else np.zeros((0, 4))
                rc = rows[ci]
                inside = self._inside[rc] if self._inside is not None else None
                trusted, factor = trust.coast_trust_rows(c, tr, rc, boxes[ci], age[rc], cover, inside)
                ok[ci] &= trusted
                score[ci] = tr.score[rc] * factor
            if np.count_nonzero(ok) < len(ok):
                rows, boxes, score, coast, det_class = rows[ok], boxes[ok], score[ok], coast[ok], det_class[ok]
        cols = {"det_class": det_class}
        if c.ttc:
            cols.update(ttc.track_columns(c, tr, rows, boxes, self._extent, self.horizon.row))
        return Detections(boxes, score, tr.cls[rows], tr.id[rows], coast, cols)

    def set_frame_size(self, width: int, height: int) -> None:
        """The frame extent when ``update`` gets no image (evaluation on detections only)."""
        self._extent = np.array([0.0, 0.0, float(width), float(height)])

    def _newborn_output(self, n, xyxy, score, cls) -> Detections:
        ids = self.tracks.id[-n:]
        cols = {"det_class": np.asarray(cls, np.int32)}
        if self.config.ttc:
            rows = np.arange(len(self.tracks) - n, len(self.tracks))
            cols.update(ttc.track_columns(self.config, self.tracks, rows, xyxy, self._extent, self.horizon.row))
        return Detections(xyxy, score, cls, ids, np.zeros(n, bool), cols)

    @staticmethod
    def _warp_xyxy(xyxy: np.ndarray, A: np.ndarray) -> np.ndarray:
        pts = xyxy.reshape(-1, 2) @ A[:, :2].T + A[:, 2]
        return pts.reshape(-1, 4)
