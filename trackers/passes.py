"""Association passes of KalmanTracker (a mixin: uses its config, tracks and filter).

Each pass is a gated Hungarian assignment between still-free tracks and
still-free detections; it marks what it matched in ``t_free``/``d_free`` and
appends a (track indices, detection indices) tuple to ``pairs``.
"""
from __future__ import annotations

import numpy as np

from .association import assign, centre_similarity, giou, size_ratio_ok
from .kalman import DIM, box_size, xyxy_to_state_box


class AssociationPasses:
    def _match(self, track_boxes, t_idx, det_xyxy, d_idx, gate, t_free, d_free, pairs,
               max_size_ratio: float | None = None) -> None:
        """One gated assignment pass between tracks t_idx and detections d_idx (both free).

        With ``max_size_ratio``, pairs whose widths or heights differ by more
        than that ratio are never matched.
        """
        t_idx = t_idx[t_free[t_idx]]
        d_idx = d_idx[d_free[d_idx]]
        if len(t_idx) == 0 or len(d_idx) == 0:
            return
        # index arrays are sorted and unique: full length means every row, in order
        tb = track_boxes if len(t_idx) == len(track_boxes) else track_boxes[t_idx]
        db = det_xyxy if len(d_idx) == len(det_xyxy) else det_xyxy[d_idx]
        sim = self._similarity(tb, db)
        if max_size_ratio is not None:
            sim = np.where(size_ratio_ok(tb, db, max_size_ratio), sim, -np.inf)
        cls_t = self.tracks.cls[t_idx] if self.config.class_consistent and self._mixed_classes else None
        found = assign(sim, gate, cls_t, self._det_cls[d_idx] if cls_t is not None else None)
        if len(found):
            tt, dd = t_idx[found[:, 0]], d_idx[found[:, 1]]
            t_free[tt] = False
            d_free[dd] = False
            pairs.append((tt, dd))

    def _centre_pass(self, pred, det_xyxy, high, t_free, d_free, pairs) -> None:
        """Last pass: leftover tracks vs leftover strong detections by centre distance.

        For objects that move more than their width per frame: IoU 0 with the
        prediction of a young track whose velocity is still unknown (only tracks
        with at most ``centre_pass_max_hits`` detections take part).  The track box is the prediction or the last observation,
        whichever is closer; widths and heights must agree within a ratio.
        """
        c, tr = self.config, self.tracks
        t_idx = (t_free & (tr.hits <= c.centre_pass_max_hits)).nonzero()[0]
        d_idx = (d_free & high).nonzero()[0]
        if len(d_idx) == 0 or len(t_idx) == 0:
            return
        dets = det_xyxy[d_idx]
        sim = np.maximum(centre_similarity(pred[t_idx], dets), centre_similarity(tr.z_obs[t_idx], dets))
        sim = np.where(size_ratio_ok(pred[t_idx], dets, c.centre_pass_max_size_ratio), sim, -np.inf)
        cls_t = tr.cls[t_idx] if c.class_consistent and self._mixed_classes else None
        found = assign(sim, c.centre_pass_min_similarity, cls_t,
                       self._det_cls[d_idx] if cls_t is not None else None)
        if len(found):
            tt, dd = t_idx[found[:, 0]], d_idx[found[:, 1]]
            t_free[tt] = False
            d_free[dd] = False
            pairs.append((tt, dd))

    def _relink(self, ti: np.ndarray, di: np.ndarray, pred, det_xyxy, t_free) -> None:
        """Give a detection that would confirm a new track to a coasting track instead.

        A reappearing object often lands too far from its coasting track's
        prediction and starts a tentative track; before that track is confirmed
        (a new id), an unmatched confirmed track of the same class whose
        predicted or last observed box is near (GIoU >= relink_min_giou) takes
        the detection and the tentative track is dropped.  Rewrites the matched
        pairs' track indices ``ti`` in place.
        """
        c, tr = self.config, self.tracks
        row = (~tr.confirmed[ti] & (tr.hits[ti] + 1 >= c.min_hits)).nonzero()[0]
        if len(row) == 0:
            return
        old = (t_free & tr.confirmed).nonzero()[0]
        if len(old) == 0:
            return
        dets = det_xyxy[di[row]]
        sim = np.maximum(giou(pred[old], dets), giou(tr.z_obs[old], dets))
        cls_pair = (tr.cls[old], tr.cls[ti[row]]) if self._mixed_classes else (None, None)
        found = assign(sim, c.relink_min_giou, *cls_pair)
        if len(found):
            ti[row[found[:, 1]]] = old[found[:, 0]]      # the tentative track goes unmatched
            t_free[old[found[:, 0]]] = False
            self.stats.relinks += len(found)

    def _mahalanobis_pass(self, det_xyxy, high, t_free, d_free, pairs) -> None:
        """Leftover tracks vs leftover strong detections by the filter's own uncertainty.

        d^2 = sum over box components of innovation^2 / innovation variance; the
        gate widens by itself for young tracks (unknown velocity) and for tracks
        that have coasted a while.
        """
        c, tr = self.config, self.tracks
        t_idx = t_free.nonzero()[0]
        d_idx = (d_free & high).nonzero()[0]
        z = xyxy_to_state_box(det_xyxy[d_idx], c.box_param)                  # (D, 4)
        r = (self.kf.meas_noise * box_size(z, c.box_param)) ** 2             # (D,)
        S = tr.P[t_idx, 0][:, None, :] + r[None, :, None]                     # (T, D, 4)
        y = z[None, :, :] - tr.x[t_idx, None, :DIM]                           # (T, D, 4)
        d2 = (y * y / S).sum(axis=2)
        cls_t = tr.cls[t_idx] if c.class_consistent and self._mixed_classes else None
        found = assign(-d2, -c.mahalanobis_gate, cls_t, self._det_cls[d_idx] if cls_t is not None else None)
        if len(found):
            tt, dd = t_idx[found[:, 0]], d_idx[found[:, 1]]
            t_free[tt] = False
            d_free[dd] = False
            pairs.append((tt, dd))
