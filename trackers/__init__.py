"""Multi-object tracking: a time-based Kalman tracker that keeps boxes through dropouts.

    from trackers import KalmanTracker, TrackerConfig
    tracker = KalmanTracker(TrackerConfig())
    tracks = tracker.update(detections, timestamp)   # every frame, even with no detections
"""
from .config import TrackerConfig
from .tracker import KalmanTracker, TrackerStats

__all__ = ["KalmanTracker", "TrackerConfig", "TrackerStats"]
