"""Drawing on frames: boxes with class, score and track id (coasted boxes dashed), the HUD."""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import cv2
import numpy as np

from dashtrack_core.records import Detections


def track_color(key: int) -> tuple[int, int, int]:
    """The colour a track id is drawn in (boxes and trails)."""
    return _color(key)


def _color(key: int) -> tuple[int, int, int]:
    """A stable, saturated BGR colour per class or track id."""
    hue = (key * 47) % 180
    hsv = np.uint8([[[hue, 220, 255]]])
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def _dashed_rect(img: np.ndarray, p1, p2, color, thickness: int = 1, dash: int = 8) -> None:
    x1, y1 = p1
    x2, y2 = p2
    for x in range(x1, x2, dash * 2):
        cv2.line(img, (x, y1), (min(x + dash, x2), y1), color, thickness)
        cv2.line(img, (x, y2), (min(x + dash, x2), y2), color, thickness)
    for y in range(y1, y2, dash * 2):
        cv2.line(img, (x1, y), (x1, min(y + dash, y2)), color, thickness)
        cv2.line(img, (x2, y), (x2, min(y + dash, y2)), color, thickness)


WARN_COLOR = (0, 0, 255)      # BGR red: an in-path track closer than the TTC warning threshold


def draw_detections(img: np.ndarray, dets: Detections, class_names: Sequence[str],
                    ttc_warn_s: float = 2.0) -> np.ndarray:
    """Draw boxes in place: class, score and track id; coasted boxes dashed and marked.

    With the tracker's ``ttc_s`` / ``in_path`` columns, in-path tracks show their
    time-to-contact and are drawn in the warning colour below ``ttc_warn_s``.
    """
    cols = dets.columns or {}
    ttc, path = cols.get("ttc_s"), cols.get("in_path")
    for i in range(len(dets)):
        x1, y1, x2, y2 = (int(round(v)) for v in dets.xyxy[i])
        cid = int(dets.class_id[i])
        name = class_names[cid] if 0 <= cid < len(class_names) else str(cid)
        coasted = bool(dets.coasted[i]) if dets.coasted is not None else False
        key = int(dets.track_id[i]) if dets.track_id is not None else cid
        color = _color(key)
        label = f"{name} {dets.score[i]:.2f}"
        if dets.track_id is not None:
            label = f"#{int(dets.track_id[i])} " + label
        if ttc is not None and path is not None and path[i] and np.isfinite(ttc[i]):
            label += f" TTC {float(ttc[i]):.1f}s"
            if ttc[i] < ttc_warn_s:
                color = WARN_COLOR
        if coasted:
            _dashed_rect(img, (x1, y1), (x2, y2), color, 2)
            label += " (coast)"
        else:
            cv2.rectangle(img, (x1, y1), (x2, y2), color, 2)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        ty = y1 - 4 if y1 - th - 6 >= 0 else y1 + th + 4
        cv2.rectangle(img, (x1, ty - th - 3), (x1 + tw + 4, ty + base - 1), color, -1)
        cv2.putText(img, label, (x1 + 2, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return img


@lru_cache(maxsize=1)
def _thickness_widens_text() -> bool:
    """OpenCV 4 draws text strokes ``thickness`` pixels wide; OpenCV 5 draws any thickness > 1 as the
    same bold face (and slowly), so there a stroke width is not asked for."""
    a, b = np.zeros((40, 40), np.uint8), np.zeros((40, 40), np.uint8)
    cv2.putText(a, "I", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 255, 2)
    cv2.putText(b, "I", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 255, 6)
    return int(np.count_nonzero(b)) > 1.5 * int(np.count_nonzero(a))


def draw_hud(img: np.ndarray, lines: Sequence[str], display_scale: float = 1.0) -> np.ndarray:
    """White text lines with a black border, at the top left.  ``display_scale`` (window pixels per image
    pixel) keeps the text the same size on screen however the preview window scales the image."""
    if not lines:
        return img
    k = max(display_scale, 1e-3)
    scale = max(0.6, img.shape[0] * k / 900) / k
    thick = max(1, round(2 / k)) if _thickness_widens_text() else 2   # 2 px strokes on screen
    r = max(1, round(1.5 / k))                  # a ~1.5 px black border on screen: readable on a bright sky
    step = int(32 * scale)
    x = int(12 / k)
    # Text drawn once into a mask of the HUD's corner; the border is that mask grown by r
    # (OpenCV 5 draws thick text bold, not wider, so a thicker black pass gives no border).
    width = max(cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][0] for line in lines)
    h = min(img.shape[0], step * len(lines) + step // 2 + r)
    w = min(img.shape[1], x + width + 2 * r + 2)
    mask = np.zeros((h, w), np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(mask, line, (x, step * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thick, cv2.LINE_AA)
    border = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    # Darken under the border (it covers the text), then add the text: anti-aliased edges, uint8 throughout.
    darkened = cv2.multiply(img[:h, :w], cv2.cvtColor(255 - border, cv2.COLOR_GRAY2BGR), scale=1 / 255)
    img[:h, :w] = cv2.add(darkened, cv2.cvtColor(mask, cv2.COLOR_GRAY2BGR))
    return img


# -- writers ---------------------------------------------------------------------
