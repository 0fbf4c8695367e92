"""tools/train_data.augment: the training window (augment.crop) at the deployed scale."""
from __future__ import annotations

import numpy as np
import pytest

from tools.train_data import AugmentConfig, Frame, augment

R0 = 0.525  # 1280x720 into 384x672: min(384 / 720, 672 / 1280)


def frame() -> Frame:
    img = np.random.default_rng(0).integers(0, 255, (360, 640, 3), dtype=np.uint8)  # cached at half size
    xyxy = np.array([[100, 100, 200, 180], [1200, 600, 1270, 700], [560, 300, 720, 420]], np.float32)
    return Frame("f", img, 0.5, 1280, 720, xyxy, np.array([2, 6, 0]), None)  # the 3rd is in every 256x416 window


@pytest.mark.parametrize("cfg, shape, boxes", [
    (AugmentConfig(enabled=False), (384, 672), [[100, 100, 200, 180], [1200, 600, 1270, 700], [560, 300, 720, 420]]),
    (AugmentConfig(enabled=False, crop=(256, 416)), (256, 416), [[100, 100, 200, 180], [560, 300, 720, 420]]),
    (AugmentConfig(crop=(256, 416), scale=(1.0, 1.0), flip=0.0, hue=0, saturation=0, exposure=0, contrast=0,
                   gamma=0), (256, 416), None),  # random window: whatever stays whole keeps the deployed size
], ids=["whole_input", "crop_top_left", "crop_random_window"])
def test_crop_keeps_the_deployed_scale(cfg, shape, boxes):
    img, b, cls = augment(frame(), (384, 672), cfg, np.random.default_rng(1), 114)
    assert img.shape[:2] == shape
    if boxes is not None:
        assert np.allclose(b, np.array(boxes, np.float32) * R0, atol=1e-3)
    else:
        whole = (b[:, 0] > 0) & (b[:, 1] > 0) & (b[:, 2] < shape[1]) & (b[:, 3] < shape[0])
        assert 0 in cls[whole]  # the central box is always whole
        sizes = {2: (100 * R0, 80 * R0), 6: (70 * R0, 100 * R0), 0: (160 * R0, 120 * R0)}
        for box, c in zip(b[whole], cls[whole]):
            assert np.allclose(box[2:] - box[:2], sizes[int(c)], atol=1e-3)


@pytest.mark.parametrize("crop", [(250, 416), (256, 0)], ids=["not_multiple_of_32", "zero"])
def test_crop_must_be_multiples_of_32(crop):
    with pytest.raises(ValueError, match="augment.crop"):
        AugmentConfig(crop=crop)


LETTERBOX_CASES = [
    pytest.param(1280, 720, (384, 672), "topleft", id="16:9_topleft"),
    pytest.param(1242, 375, (256, 832), "center", id="kitti_center"),
    pytest.param(720, 1280, (672, 384), "topleft", id="portrait"),
]


@pytest.mark.parametrize("w, h, in_hw, mode", LETTERBOX_CASES)
def test_training_scale_is_the_detectors_letterbox(w, h, in_hw, mode):
    """The training loader scales frames with the one letterbox of both detector backends."""
    from dashtrack_core.detector import Letterbox
    from tools.train_data import letterbox_scale

    lb = Letterbox.fit(w, h, in_hw[0], in_hw[1], mode)
    assert letterbox_scale(w, h, in_hw, mode) == lb.scale_x == lb.scale_y


def test_training_refuses_stretch_letterbox():
    from tools.train_data import letterbox_scale

    with pytest.raises(ValueError, match="stretch"):
        letterbox_scale(1280, 720, (384, 672), "stretch")
