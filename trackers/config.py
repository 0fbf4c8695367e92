"""TrackerConfig: every threshold of the Kalman tracker as a named, typed field.

Built from YAML with ``dashtrack_core.configtools.from_mapping(TrackerConfig, d, "tracker")``.
Scores are the detector's scores in [0, 1]; times are seconds (never frames),
so skipped frames and variable frame rates need no special case.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dashtrack_core.configtools import ConfigError


@dataclass(frozen=True)
class TrackerConfig:
    # --- detection score split (ByteTrack's two passes) ---------------------
    # Detections >= high_score take part in the first association pass.
    # Higher: fewer false tracks, but weak true detections only reach the second pass.
    high_score: float = 0.6
    # Detections in [low_score, high_score) are used only to extend existing tracks
    # (second pass). Lower: bridges more weak detections, risks feeding tracks clutter.
    low_score: float = 0.1
    # A new track is born only from an unmatched detection >= new_track_score.
    # Higher: fewer spurious tracks; lower: objects are picked up earlier.
    new_track_score: float = 0.7

    # Before association, of two same-class detections overlapping with IoU above
    # this, only the higher-scored one is kept (a detector without 2D NMS, e.g. 3D
    # boxes projected to the image, gives two boxes for one object, and the spare
    # one starts or steals a track). 0 disables; detectors with NMS are unaffected
    # when this is above their NMS IoU.
    dedup_iou: float = 0.0

    # --- association -------------------------------------------------------
    # Similarity used for matching: "iou"; "giou" (also scores non-overlapping
    # boxes, for small fast objects); "centre" (1 - centre distance / diagonal of
    # the track's predicted box).
    similarity: Literal["iou", "giou", "centre"] = "iou"
    # First pass gate: a pair with similarity below this is never matched.
    # Lower: follows fast motion / poor predictions; higher: fewer wrong swaps.
    min_similarity: float = 0.3
    # Second (low-score) pass gate; stricter because these detections are weaker.
    low_min_similarity: float = 0.5
    # Third pass (OC-SORT's observation-centric recovery): still-unmatched tracks
    # are compared by their *last observed* box instead of the predicted one.
    # Recovers tracks whose prediction drifted during a dropout; can re-link a
    # neighbour that took the old position.  Off by default: with relink on, it
    # cost more than it saved on KITTI (Car, 16 sequences, HOTA / IDF1 / IDSW:
    # clean 72.71 / 86.97 / 21 off vs 72.66 / 86.94 / 21 on; dropouts K=10
    # 68.39 / 82.50 / 46 vs 68.17 / 82.04 / 49; K=15 66.33 / 79.67 / 49 vs
    # 66.67 / 80.06 / 50) -- a stale box in a line of parked cars passing
    # through the view overlaps the next car.
    recovery_pass: bool = False
    # The recovery pass only links boxes whose widths and heights agree within
    # this ratio (last observed vs detected). Lower: fewer links to a neighbour
    # of another size; higher: follows objects that grow fast while unseen.
    recovery_max_size_ratio: float = 1.5
    # Last pass: leftover tracks vs leftover strong detections by centre distance
    # (1 - distance / box diagonal), for objects moving more than their own width
    # per frame and drifted predictions. Lower gate: catches faster motion, risks
    # linking neighbours; the size ratio gate keeps it to boxes of similar size.
    centre_pass: bool = True
    centre_pass_min_similarity: float = 0.3
    centre_pass_max_size_ratio: float = 1.5
    # Only tracks with at most this many detections (velocity not yet known)
    # take part. Higher: also rescues drifted established tracks, which on KITTI
    # linked wrong cars (K=10 IDSW 54 with all tracks vs 48 with <= 2 hits).
    centre_pass_max_hits: int = 2
    # Final pass: leftover tracks vs leftover strong detections when the squared
    # Mahalanobis distance of the box (4 dof) is below this (9.49: chi-square 95%);
    # the gate grows with the track's uncertainty (young or long-coasting tracks).
    # 0 disables (the default: on KITTI it linked wrong objects, HOTA -3).
    # Higher: recovers more tracks after drift, risks wrong links.
    mahalanobis_gate: float = 0.0
    # Before a tentative track is confirmed (a new id), an unmatched confirmed
    # track of the same class (group) with GIoU >= relink_min_giou to that detection (by
    # predicted or last observed box) takes it over: a reappearing object keeps
    # its id. Lower: relinks after longer drifts, risks giving one car's id to another.
    relink: bool = True
    relink_min_giou: float = 0.0
    # Relink by motion: for a track whose prediction moved >= relink_motion_min_move
    # box diagonals from its last observation, a detection behind that motion
    # (cosine < relink_motion_min_cos between the detection's offset from the last
    # observation and the predicted offset) is never relinked once the track has
    # been unseen for relink_motion_min_age_s (another car now stands where this one
    # was last seen), and a detection ahead along it may be relinked without overlap
    # (a car being passed accelerates in the image). KITTI Car, HOTA / IDF1 / IDSW,
    # off -> on: clean 72.71 / 86.97 / 21 -> 73.08 / 87.52 / 21, 10-frame dropouts
    # 68.39 / 82.50 / 46 -> 68.63 / 83.03 / 40. Tried: min_move 0.3 / 0.8, min_cos 0,
    # min_age 0 / 0.25 / 0.65 s (each equal or worse on some K).
    relink_motion_check: bool = True
    relink_motion_min_move: float = 0.5
    relink_motion_min_cos: float = 0.5
    relink_motion_min_age_s: float = 0.45
    # Pass 1 matches confirmed tracks before tentative ones, so a track born from
    # a reappearing object cannot steal it from its coasting original.
    confirmed_first: bool = True
    # Only match a detection to a track of the same class (group): with
    # class_groups, a detection may join a track of another class of the same
    # group (paying class_switch_cost), never one of another group; without
    # groups, only a track of the same class id. False: the passes ignore classes (relink still checks them).
    class_consistent: bool = True
    # Class groups by class name (case-insensitive; the detector's class names, or
    # COCO's when the tracker is given none). Detectors flip between the classes of
    # a group from frame to frame (an SUV: car / truck; a motorcycle / bicycle), so
    # within a group association crosses classes and a track's class is the
    # score-weighted vote of its detections (trackers/classes.py). A class in no
    # group is a group of its own. [] turns groups off: only equal class ids match
    # and a track keeps the class it was born with (the behaviour before groups).
    class_groups: tuple[tuple[str, ...], ...] = (
        ("car", "truck", "bus", "van"), ("bicycle", "motorcycle"), ("person",), ("traffic light",))
    # A detection of another class of the track's group has this subtracted from
    # its similarity, scaled by 1 - the share of the detection's class in the
    # track's votes, but never below the pass's gate: it only ranks candidates,
    # so a same-class detection wins a near tie and a lone object whose class
    # flips keeps its track. Higher: class outweighs geometry more often. KITTI
    # Car, 16 sequences, 20% of Car detections relabelled Van/Truck (HOTA / IDF1 /
    # IDSW): 0, 0.02, 0.05 73.08 / 87.52 / 21 (as with no flips); 0.1 72.93 / 87.36 /
    # 39; 0.3 72.92 / 87.31 / 39 (in a line of fast cars, class beat position).
    class_switch_cost: float = 0.05

    # --- lifecycle ----------------------------------------------------------
    # Matches needed before a track is confirmed (emitted). Higher: fewer false
    # tracks but late output. A tentative track that misses one frame is dropped.
    min_hits: int = 2
    # A confirmed track is emitted only once it has this many detections (values
    # <= min_hits change nothing). Higher: short-lived tracks (a detector's double
    # box, a brief false positive) never reach the output and ids switch less, but
    # every new object appears that many frames late (norfair's initialization
    # delay). KITTI Car, 10-frame dropouts, HOTA / IDF1 / IDSW: 1 or 2 (default) 68.63 /
    # 83.03 / 40; 3: 68.12 / 82.60 / 37; 4: 67.51 / 82.04 / 32; 6: 65.93 / 80.46 / 27.
    emit_min_hits: int = 1
    # A confirmed track with no detection is coasted (emitted with coasted=True,
    # its predicted box) for at most this long, then removed. Longer bridges
    # longer dropouts but emits more stale predictions.
    max_coast_seconds: float = 1.5
    # Coasted boxes are emitted only for this long (<= max_coast_seconds); the
    # track stays alive silently after that and can still be recovered.
    # Longer: bridges more visible frames; shorter: fewer wrong predicted boxes.
    emit_coast_seconds: float = 1.5
    # A coasting track whose predicted box has less than this share of its area
    # inside the image is removed (it left the view); only when update() is given
    # the image (else the frame size is unknown). Higher: fewer boxes predicted
    # off-screen; lower: keeps objects that hover at the border.
    min_visible_fraction: float = 0.5
    # Coasted box score: last detection score * 0.5 ** (coast time / half-life)
    # (times the trust factor of trackers/trust.py when coast_trust is on).
    coast_score_half_life_s: float = 0.5
    # Coasted boxes are emitted only while their prediction deserves trust
    # (trackers/trust.py; measured on KITTI in BENCHMARKS.md). Off: every coasting
    # track within emit_coast_seconds is emitted (most of them ghosts on KITTI).
    coast_trust: bool = True
    # A track observed for h seconds is emitted coasted for at most ratio * h.
    # Higher: long gaps of young tracks are bridged; lower: fewer ghosts.
    coast_unseen_ratio: float = 0.3
    # Predicted position std (mean of the 4 box components) above this many box
    # sizes: the prediction is a guess and is not emitted.
    coast_max_pos_std: float = 0.2
    # Share of the predicted box that must lie inside the frame (frame size known).
    coast_min_inside: float = 0.9
    # Not emitted when more than this share of the box lies under a box matched this
    # frame (hidden behind it, or the prediction slid onto another car). 1 disables.
    coast_max_covered: float = 0.8
    # Not emitted when the velocity at the last detection differs from the average
    # velocity over the track's life by more than this many box sizes per second. 0 disables.
    coast_max_vel_change: float = 0.5
    # On re-match after coasting, re-run the filter from the last observation
    # over linearly interpolated virtual observations (OC-SORT's re-update), so
    # the velocity drift accumulated while coasting is undone.
    reupdate_on_recovery: bool = True
    # Matched tracks emit the detection's box (True) or the filtered box (False).
    emit_detection_box: bool = True

    # --- time-to-contact and in-path (trackers/ttc.py) -----------------------
    # Emitted boxes carry the columns ttc_s (seconds to contact at the current
    # closing rate, from the box height's rate of change; NaN when receding,
    # static or unknown) and in_path (ground contact point inside the ego corridor).
    ttc: bool = True
    # TTC only after this much observed history (seconds between first and last detection).
    ttc_min_history_s: float = 0.5
    # Time constant of the moving average of the expansion rate. Higher: steadier, slower to react.
    ttc_smoothing_s: float = 0.3
    # Seconds subtracted from 1 / smoothed expansion rate: the filter's lag (its
    # constant-velocity model trails a box height that grows ever faster) plus the
    # moving average's. A box growing at a constant relative rate reads about
    # 0.09 s late; a car closing at constant speed 0.42 s (tests/test_tracker_ttc.py).
    # KITTI (tools/eval_ttc.py, median relative error for GT TTC <= 4 s):
    # 0: 0.143, 0.1: 0.115, 0.42: 0.168.
    ttc_lag_s: float = 0.1
    # Expansion slower than 1 / ttc_max_s (static, receding) gives NaN.
    ttc_max_s: float = 60.0
    # Camera height above the road in metres (a car dashcam about 1.3; KITTI 1.65).
    camera_height_m: float = 1.3
    # Half-width of the ego corridor in metres (1.75: a 3.5 m lane).
    path_half_width_m: float = 1.75
    # Horizon row as a fraction of the frame height; null: estimated online from
    # boxes of class horizon_class_id (similar-height objects on the road), and
    # horizon_fallback_frac until the estimate exists.
    horizon_frac: float | None = None
    horizon_class_id: int = 2
    horizon_fallback_frac: float = 0.5
    # Straight ahead as a fraction of the frame width (0.5: the image centre).
    ahead_frac: float = 0.5

    # --- Kalman filter (constant velocity in box space) ---------------------
    # State parameterisation: "cxcywh" (centre, width, height) or "xyxy" (corners:
    # an edge pinned at the image border while the other moves is linear here).
    box_param: Literal["cxcywh", "xyxy"] = "xyxy"
    # Measurement noise std, as a fraction of the box size sqrt(w*h).
    meas_noise: float = 0.05
    # Process noise: white-acceleration density for position / size components,
    # in box sizes per s^1.5. Higher: follows manoeuvres, noisier coasting.
    accel_noise_pos: float = 2.0
    accel_noise_size: float = 1.0
    # Initial velocity std of a new track, in box sizes per second.
    init_vel_std: float = 2.0

    # --- camera-motion compensation -----------------------------------------
    # Sparse optical flow between consecutive frames; needs `image` in update().
    cmc: bool = False
    # Frames are downscaled to at most this width for the flow (cost vs accuracy).
    cmc_max_width: int = 320
    # Cap on the number of corners tracked (cost vs robustness).
    cmc_max_corners: int = 100
    # Fewer RANSAC inliers than this: the fit is rejected and no compensation applied.
    cmc_min_inliers: int = 15

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(f"tracker: {msg}")

        need(0.0 <= self.low_score <= self.high_score <= 1.0,
             f"need 0 <= low_score ({self.low_score}) <= high_score ({self.high_score}) <= 1")
        need(0.0 <= self.new_track_score <= 1.0, f"new_track_score {self.new_track_score} not in [0, 1]")
        need(-1.0 <= self.min_similarity <= 1.0, f"min_similarity {self.min_similarity} not in [-1, 1]")
        need(-1.0 <= self.low_min_similarity <= 1.0, f"low_min_similarity {self.low_min_similarity} not in [-1, 1]")
        need(-1.0 <= self.centre_pass_min_similarity <= 1.0, "centre_pass_min_similarity not in [-1, 1]")
        need(self.centre_pass_max_hits >= 1, "centre_pass_max_hits must be >= 1")
        need(self.centre_pass_max_size_ratio >= 1.0, "centre_pass_max_size_ratio must be >= 1")
        need(0.0 <= self.dedup_iou <= 1.0, f"dedup_iou {self.dedup_iou} not in [0, 1]")
        need(self.recovery_max_size_ratio >= 1.0, "recovery_max_size_ratio must be >= 1")
        need(self.mahalanobis_gate >= 0, "mahalanobis_gate must be >= 0")
        need(self.relink_motion_min_move > 0, "relink_motion_min_move must be > 0")
        need(-1.0 <= self.relink_motion_min_cos <= 1.0, "relink_motion_min_cos must be in [-1, 1]")
        need(self.relink_motion_min_age_s >= 0, "relink_motion_min_age_s must be >= 0")
        need(self.class_switch_cost >= 0, f"class_switch_cost {self.class_switch_cost} must be >= 0")
        seen: dict[str, int] = {}
        for g, group in enumerate(self.class_groups):
            need(len(group) > 0, f"class_groups[{g}] is empty; list at least one class name or drop the group")
            for name in group:
                key = name.strip().lower()
                need(key != "", f"class_groups[{g}] has an empty class name")
                need(key not in seen, f"class {name!r} is in class_groups[{seen.get(key)}] and [{g}]; "
                                      "a class belongs to one group")
                seen[key] = g
        need(self.min_hits >= 1, f"min_hits {self.min_hits} must be >= 1")
        need(self.emit_min_hits >= 1, f"emit_min_hits {self.emit_min_hits} must be >= 1")
        need(self.max_coast_seconds >= 0, f"max_coast_seconds {self.max_coast_seconds} must be >= 0")
        need(0 <= self.emit_coast_seconds <= self.max_coast_seconds,
             f"emit_coast_seconds {self.emit_coast_seconds} must be in [0, max_coast_seconds]")
        need(0.0 <= self.min_visible_fraction <= 1.0, "min_visible_fraction must be in [0, 1]")
        need(self.coast_score_half_life_s > 0, "coast_score_half_life_s must be > 0")
        need(self.coast_unseen_ratio >= 0, "coast_unseen_ratio must be >= 0")
        need(self.coast_max_pos_std > 0, "coast_max_pos_std must be > 0")
        need(0.0 <= self.coast_min_inside <= 1.0, "coast_min_inside must be in [0, 1]")
        need(0.0 <= self.coast_max_covered <= 1.0, "coast_max_covered must be in [0, 1]")
        need(self.coast_max_vel_change >= 0, "coast_max_vel_change must be >= 0")
        for name in ("meas_noise", "accel_noise_pos", "accel_noise_size", "init_vel_std"):
            need(getattr(self, name) > 0, f"{name} must be > 0")
        need(self.ttc_min_history_s >= 0, "ttc_min_history_s must be >= 0")
        need(self.ttc_smoothing_s >= 0, "ttc_smoothing_s must be >= 0")
        need(self.ttc_max_s > 0, "ttc_max_s must be > 0")
        need(self.ttc_lag_s >= 0, "ttc_lag_s must be >= 0")
        need(self.camera_height_m > 0, "camera_height_m must be > 0")
        need(self.path_half_width_m > 0, "path_half_width_m must be > 0")
        need(self.horizon_frac is None or 0.0 <= self.horizon_frac < 1.0, "horizon_frac must be in [0, 1) or null")
        need(0.0 <= self.horizon_fallback_frac < 1.0, "horizon_fallback_frac must be in [0, 1)")
        need(0.0 <= self.ahead_frac <= 1.0, "ahead_frac must be in [0, 1]")
        need(self.cmc_max_width >= 64, f"cmc_max_width {self.cmc_max_width} must be >= 64")
        need(self.cmc_max_corners >= 8, f"cmc_max_corners {self.cmc_max_corners} must be >= 8")
        need(self.cmc_min_inliers >= 3, f"cmc_min_inliers {self.cmc_min_inliers} must be >= 3")
