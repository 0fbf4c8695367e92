"""Class-name sets a variant config may name instead of listing its classes."""
from __future__ import annotations

from dashtrack_core.detector import COCO_NAMES as COCO_CLASSES
from dashtrack_core.detector import DASHCAM_CLASSES

CLASS_SETS = {"coco": COCO_CLASSES, "dashcam": DASHCAM_CLASSES}
