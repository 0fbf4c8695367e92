"""Real-time detection and tracking pipeline for dashcam video.

cv2 is imported before av on purpose: both wheels bundle libxcb, and when
PyAV's copy loads first, OpenCV's Qt window hangs in ``namedWindow`` (measured
with opencv-python 5.0 and av 18 under Xvfb).
"""
import cv2  # noqa: F401  (must precede av)
import av  # noqa: F401
