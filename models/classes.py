"""Class-name sets a variant config may name instead of listing its classes."""
from __future__ import annotations

from pipeline.detector import COCO_NAMES as COCO_CLASSES
from pipeline.detector import DASHCAM_CLASSES

CLASS_SETS = {"coco": COCO_CLASSES, "dashcam": DASHCAM_CLASSES}
