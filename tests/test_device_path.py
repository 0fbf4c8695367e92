"""The device-side detector path, on the CPU: device preprocessing vs the numpy letterbox,
the NMS backends vs each other and vs the numpy NMS, batched vs one-by-one detection."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models import build_detector, build_model, load_variant
from models import postprocess as pp
from models.detector import TorchDetector
from models.device_preprocess import DevicePreprocessor, shape_runs
from models.postprocess import PostprocessConfig, nms_keep, nms_sorted
from models.registry import Preprocess
from dashtrack_core.detector import Letterbox
from pipeline.onnx_detector import letterbox_image, nms_per_class

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TEACHER = DATA / "teachers" / "yolox_nano" / "yolox_nano.pth"


def synthetic(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth scene with edges and a little noise: rounding differences show, as in a real frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w * 255, yy / h * 255, ((xx // 37 + yy // 23) % 2) * 200 + 20], -1)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def real_frame(name: str) -> np.ndarray:
    import cv2

    path = DATA / "images" / name
    if not path.is_file():
        pytest.skip(f"shared data {path} is absent (tests read ../shared/data beside the repo)")
    return cv2.imread(str(path))


def numpy_reference(image: np.ndarray, prep: Preprocess, in_hw: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """The ONNX backend's preprocessing (cv2 letterbox, colour swap, normalise) as (3, H, W) float32."""
    lb = Letterbox.fit(image.shape[1], image.shape[0], in_hw[0], in_hw[1], prep.letterbox)
    canvas = letterbox_image(image, lb, in_hw[0], in_hw[1], prep.pad_value).astype(np.float32)
    if prep.color == "rgb":
        canvas = canvas[:, :, ::-1]
    canvas = (canvas - np.array(prep.mean, np.float32)) / np.array(prep.std, np.float32)
    return canvas.transpose(2, 0, 1), lb


YOLOX_PREP = Preprocess()  # BGR, 0..255, topleft on 114
FASTDET_PREP = Preprocess(color="rgb", mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375),
                          letterbox="topleft", pad_value=0)


@pytest.mark.parametrize("image_hw, in_hw, prep", [
    ((720, 1280), (384, 640), FASTDET_PREP),
    ((720, 1280), (736, 1280), FASTDET_PREP),                            # no resize, only padding
    ((720, 1280), (416, 416), YOLOX_PREP),
    ((540, 960), (384, 640), Preprocess(letterbox="center", pad_value=114)),
    ((375, 1242), (384, 640), Preprocess(letterbox="stretch")),          # KITTI shape, upscaled height
    ((1080, 1920), (736, 1280), FASTDET_PREP),
], ids=["720p->384x640 rgb", "720p->736x1280 pad only", "720p->416 yolox", "540p centre", "kitti stretch",
        "1080p->736x1280"])
@pytest.mark.parametrize("uint8_resize", [True, False], ids=["uint8 resize (cpu default)", "float resize (cuda default)"])
def test_device_preprocess_matches_numpy_letterbox(image_hw, in_hw, prep, uint8_resize):
    image = synthetic(*image_hw)
    ref, lb = numpy_reference(image, prep, in_hw)
    data, (got_lb,) = DevicePreprocessor(prep, uint8_resize=uint8_resize)([image], in_hw)
    got = data[0].numpy()
    assert got.shape == ref.shape == (3, *in_hw)
    assert (got_lb.new_w, got_lb.new_h, got_lb.pad_x, got_lb.pad_y) == (lb.new_w, lb.new_h, lb.pad_x, lb.pad_y)
    # in 0..255 units: within one grey level (cv2 and torch round a uint8 resize differently;
    # on CUDA torch resizes in float and does not round)
    diff = np.abs(got - ref) * np.array(prep.std, np.float32)[:, None, None]
    assert diff.max() <= 1.01 and diff.mean() < 0.5, (diff.max(), diff.mean())


@pytest.mark.parametrize("name", ["udacity/test1.jpg", "pandaset_002_front/40.jpg"], ids=["720p highway", "1080p city"])
def test_device_preprocess_matches_numpy_on_real_frames(name):
    image = real_frame(name)
    ref, _ = numpy_reference(image, FASTDET_PREP, (384, 640))
    data, _ = DevicePreprocessor(FASTDET_PREP)([image], (384, 640))
    diff = np.abs(data[0].numpy() - ref) * np.array(FASTDET_PREP.std, np.float32)[:, None, None]
    assert diff.max() <= 1.01 and diff.mean() < 0.5, (diff.max(), diff.mean())


@pytest.mark.parametrize("group_runs", [False, True], ids=["frame by frame (cpu)", "runs in one copy (cuda)"])
def test_device_preprocess_mixed_shapes_equal_one_by_one(group_runs):
    images = [synthetic(720, 1280, 1), synthetic(720, 1280, 2), synthetic(540, 960, 3), synthetic(720, 1280, 4)]
    assert shape_runs(images) == [(0, 2), (2, 3), (3, 4)]
    prep = DevicePreprocessor(FASTDET_PREP, channels_last=True)
    prep.group_runs = group_runs
    batch, lbs = prep(images, (384, 640))
    assert batch.is_contiguous(memory_format=torch.channels_last)
    for i, image in enumerate(images):
        one, (lb,) = prep([image], (384, 640))
        torch.testing.assert_close(batch[i:i + 1], one, rtol=0, atol=1e-5)
        assert (lbs[i].scale_x, lbs[i].new_w) == (lb.scale_x, lb.new_w)


@pytest.mark.parametrize("images, message", [
    ([np.zeros((10, 10), np.uint8)], "image 0: expected (H, W, 3) uint8"),
    ([np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10, 3), np.float32)], "image 1: expected (H, W, 3) uint8"),
    ([], "no images to preprocess"),
], ids=["grey", "float frame", "empty list"])
def test_device_preprocess_bad_input_is_one_clear_error(images, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        DevicePreprocessor(YOLOX_PREP)(images, (64, 64))


def test_half_needs_cuda():
    spec = load_variant("resnet18_s32")
    with pytest.raises(ValueError, match="half=True needs a CUDA device"):
        TorchDetector(build_model(spec), spec, device="cpu", half=True)


# ---- NMS backends -----------------------------------------------------------------------------

def random_boxes(seed: int, n: int = 150, classes: int = 3):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 300, (n, 2))
    wh = rng.uniform(8, 90, (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    return boxes, rng.uniform(0, 1, n).astype(np.float32), rng.integers(0, classes, n)


@pytest.mark.parametrize("seed", range(5))
def test_torch_nms_fallback_matches_numpy_nms(seed):
    boxes, scores, classes = random_boxes(seed)
    order = np.argsort(-scores, kind="stable")
    keep = nms_sorted(torch.from_numpy(boxes[order])[None], torch.from_numpy(classes[order])[None],
                      torch.ones(1, len(order), dtype=torch.bool), 0.45)[0].numpy()
    ref = nms_per_class(boxes, scores, classes, 0.45)
    assert order[keep].tolist() == ref.tolist()
    assert 0 < len(ref) < len(boxes)


def greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float) -> torch.Tensor:
    """torchvision.ops.nms's contract (kept indices by descending score), in plain python."""
    order = torch.argsort(scores, descending=True, stable=True).tolist()
    kept: list[int] = []
    for i in order:
        if all(pp.box_iou(boxes[j:j + 1], boxes[i:i + 1]).item() <= iou for j in kept):
            kept.append(i)
    return torch.tensor(kept, dtype=torch.long)


def batch_case(seed: int, b: int = 3, k: int = 60):
    """(B, K) score-sorted rows with classes and a validity mask; boxes far apart in coordinates."""
    rows = [random_boxes(seed * 10 + i, k) for i in range(b)]
    boxes, classes, valid = [], [], []
    for i, (bx, sc, cl) in enumerate(rows):
        order = np.argsort(-sc, kind="stable")
        boxes.append(bx[order] * (1 + 3 * i))   # images of different coordinate spans
        classes.append(cl[order])
        valid.append(sc[order] > 0.2)
    return (torch.from_numpy(np.stack(boxes)), torch.from_numpy(np.stack(classes)), torch.from_numpy(np.stack(valid)))


@pytest.mark.parametrize("seed", range(3))
def test_torchvision_path_grouping_matches_the_torch_fallback(seed, monkeypatch):
    """The one-call torchvision path (images and classes shifted apart) against the fallback,
    with torchvision's nms contract played by a python greedy NMS where torchvision is absent."""
    monkeypatch.setattr(pp, "_TV_NMS", [greedy_nms])
    boxes, classes, valid = batch_case(seed)
    got = nms_keep(boxes, classes, valid, 0.45, backend="torchvision")
    ref = nms_keep(boxes, classes, valid, 0.45, backend="torch")
    assert torch.equal(got, ref) and 0 < int(ref.sum()) < int(valid.sum())


def test_real_torchvision_nms_matches_the_torch_fallback():
    pp._TV_NMS.clear()
    if pp.torchvision_nms() is None:
        pytest.skip("torchvision is not installed for this torch (the torch fallback NMS runs)")
    boxes, classes, valid = batch_case(7, b=4, k=200)
    assert torch.equal(nms_keep(boxes, classes, valid, 0.45, "torchvision"), nms_keep(boxes, classes, valid, 0.45, "torch"))


@pytest.mark.parametrize("backend, error", [("cudnn", ValueError)], ids=["unknown name"])
def test_nms_backend_names(backend, error):
    with pytest.raises(error, match="nms backend"):
        nms_keep(torch.zeros(1, 1, 4), torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.bool), 0.5, backend)


# ---- batched detection ------------------------------------------------------------------------

def clip_frames(n: int) -> list[np.ndarray]:
    from pipeline.config import SourceConfig
    from pipeline.sources import open_source

    path = DATA / "videos" / "udacity" / "test_small2.mp4"
    if not path.is_file():
        pytest.skip(f"shared data {path} is absent (tests read ../shared/data beside the repo)")
    src = open_source(str(path), SourceConfig(max_frames=n))
    frames = [f.image for f in src]
    src.close()
    return frames


def assert_same_detections(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.xyxy, y.xyxy, atol=1e-2)
        np.testing.assert_allclose(x.score, y.score, atol=1e-4)
        assert x.class_id.tolist() == y.class_id.tolist()


@pytest.mark.skipif(not TEACHER.is_file(), reason=f"no YOLOX teacher at {TEACHER}")
def test_batch_of_n_gives_the_boxes_of_one_by_one():
    det = build_detector(f"yolox_nano:{TEACHER}", classes=("car", "truck", "person"))
    frames = clip_frames(6)
    one = [det.detect([f])[0] for f in frames]
    together = det.detect(frames)
    assert sum(len(d) for d in one) >= 6, "the clip should hold cars"
    assert_same_detections(together, one)


def test_packed_postprocess_empty_and_cap():
    spec = load_variant("resnet18_s32")
    det = TorchDetector(build_model(spec), spec, post=PostprocessConfig(score_threshold=1.0))
    out = det.detect([synthetic(120, 200), synthetic(90, 160)])
    assert [len(d) for d in out] == [0, 0]
    det = TorchDetector(build_model(spec), spec, post=PostprocessConfig(score_threshold=0.0, max_detections=3))
    out = det.detect([synthetic(120, 200), synthetic(90, 160, 1)])
    assert [len(d) for d in out] == [3, 3]
    assert all(np.all(np.diff(d.score) <= 0) for d in out)


def test_torchvision_nms_failing_at_run_time_falls_back_to_torch(monkeypatch):
    def broken(boxes, scores, iou):
        raise RuntimeError("nms_kernel not implemented for 'Double'")

    monkeypatch.setattr(pp, "_TV_NMS", [broken])
    monkeypatch.setattr(pp, "TV_NMS_ERRORS", [])
    boxes, classes, valid = batch_case(1)
    with pytest.warns(RuntimeWarning, match="torchvision NMS failed"):
        got = nms_keep(boxes, classes, valid, 0.45)
    assert torch.equal(got, nms_sorted(boxes, classes, valid, 0.45))
    assert pp.TV_NMS_ERRORS == ["nms_kernel not implemented for 'Double'"] and pp.nms_backend() == "torch"


def test_missing_or_mismatched_torchvision_selects_the_torch_nms(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torchvision", None)        # import fails, as for a torchvision built
    monkeypatch.setitem(sys.modules, "torchvision.ops", None)    # for another torch ("torchvision::nms does not exist")
    monkeypatch.setattr(pp, "_TV_NMS", [])
    assert pp.torchvision_nms() is None and pp.nms_backend("auto") == "torch"
    with pytest.raises(RuntimeError, match="torchvision is not installed"):
        pp.nms_backend("torchvision")
