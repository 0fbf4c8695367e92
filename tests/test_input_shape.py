"""The network input follows the frame: the shape rule, dynamic-shape ONNX, fixed-shape files, shared batches."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from conftest import REPO
from pipeline.config import DetectorConfig, load_config
from dashtrack_core.configtools import ConfigError
from dashtrack_core.detector import Batch, Letterbox, frame_input_shape
from dashtrack_core.records import Detections

pytest.importorskip("onnx", reason="ONNX export needs the 'onnx' package (pip install onnx)")
ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("width, height, imgsz, want", [
    (1280, 720, 672, (384, 672)),       # 378 rows rounded up to 384
    (1280, 720, 640, (384, 640)),       # 360 -> 384
    (1280, 720, 416, (256, 416)),       # 234 -> 256
    (1920, 1080, 672, (384, 672)),      # same aspect, same shape
    (1920, 1080, 736, (416, 736)),      # 414 -> 416
    (1242, 375, 832, (256, 832)),       # KITTI 3.3:1: 251 -> 256
    (1242, 375, 640, (224, 640)),       # 193 -> 224
    (720, 1280, 672, (672, 384)),       # portrait: the long side is the height
    (640, 360, 672, (384, 672)),        # upscaled: the long side is imgsz, not the frame's
    (640, 360, 416, (256, 416)),
    (500, 500, 416, (416, 416)),        # square stays square
    (1280, 720, 650, (384, 672)),       # imgsz not a stride multiple: rounded up too
    (4000, 10, 640, (32, 640)),         # the short side is at least one stride
], ids=["720p@672", "720p@640", "720p@416", "1080p@672", "1080p@736", "kitti@832", "kitti@640", "portrait@672",
        "360p@672", "360p@416", "square@416", "720p@650", "sliver@640"])
def test_shape_rule(width, height, imgsz, want):
    assert frame_input_shape(width, height, imgsz, 32) == want
    lb = Letterbox.fit(width, height, *want, "topleft")
    # the letterbox pads only the rounding: less than one stride on each side
    assert 0 <= want[1] - lb.new_w < 32 and 0 <= want[0] - lb.new_h < 32


@pytest.mark.parametrize("text, expected", [
    ("detector: {imgsz: 16}\n", "detector.imgsz: 16 must be in [32, 4096]"),
    ("detector: {imgsz: 0}\n", "detector.imgsz: 0 must be in [32, 4096]"),
    ("detector: {imgsz: big}\n", "config.detector.imgsz: 'big' is not int"),
], ids=["too_small", "zero", "not_int"])
def test_bad_imgsz_is_named(tmp_path, text, expected):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert expected in str(e.value)


# -- exports -------------------------------------------------------------------------------------
def tiny_yolox(input_size=(256, 320)):
    """Random-init YOLOX-Nano with the dashcam classes (no shared data needed)."""
    import dataclasses

    from models import build_model, load_variant

    torch.manual_seed(0)
    spec = dataclasses.replace(load_variant("yolox_nano"), input_size=input_size, classes="dashcam", weights="none")
    return build_model(spec), spec


@pytest.fixture(scope="module")
def dynamic_onnx(tmp_path_factory):
    from models.export import export_onnx

    model, spec = tiny_yolox()
    return model, export_onnx(model, spec, tmp_path_factory.mktemp("dyn") / "dyn.onnx")


@pytest.mark.parametrize("hw", [(384, 672), (256, 832)], ids=["16:9@672", "kitti@832"])
def test_dynamic_export_matches_torch_at_other_shapes(dynamic_onnx, hw):
    from models.export import read_onnx_metadata

    model, path = dynamic_onnx
    meta = read_onnx_metadata(path)
    assert meta["dynamic_shape"] is True and meta["input_size"] == [256, 320] and meta["stride"] == 32
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(2, 3, *hw, generator=torch.Generator().manual_seed(1)) * 255
    got = session.run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    n = sum((hw[0] // s) * (hw[1] // s) for s in (8, 16, 32))
    assert got.shape == want.shape == (2, n, 4 + 7)
    assert np.abs(got[..., :4] - want[..., :4]).max() < 0.05     # pixels
    assert np.abs(got[..., 4:] - want[..., 4:]).max() < 1e-4


@pytest.mark.parametrize("frame_wh, imgsz, want", [
    ((1280, 720), 672, (384, 672)),
    ((1242, 375), 832, (256, 832)),
    ((720, 1280), None, (320, 192)),     # no imgsz: the metadata's default long side (320)
], ids=["16:9@672", "kitti@832", "portrait@default"])
def test_pipeline_backend_reads_a_dynamic_file_at_the_frame_shape(dynamic_onnx, frame_wh, imgsz, want):
    from pipeline.onnx_detector import OnnxDetector

    _, path = dynamic_onnx
    det = OnnxDetector(DetectorConfig(model=str(path), imgsz=imgsz, classes=()))
    batch = det.preprocess([np.zeros((frame_wh[1], frame_wh[0], 3), np.uint8)])
    assert batch.data.shape == (1, 3, *want)
    assert len(det.postprocess(det.infer(batch), batch)) == 1 and det.notes == []


def test_input_size_wins_over_imgsz_with_a_note(dynamic_onnx, capsys):
    from pipeline.onnx_detector import OnnxDetector

    _, path = dynamic_onnx
    det = OnnxDetector(DetectorConfig(model=str(path), imgsz=672, input_size=(320, 320), classes=()))
    assert det.preprocess([np.zeros((720, 1280, 3), np.uint8)]).data.shape == (1, 3, 320, 320)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "input_size [320, 320] and detector.imgsz 672 are both set" in err[0]


@pytest.fixture(scope="module")
def fixed_onnx(tmp_path_factory):
    from models.export import export_onnx

    model, spec = tiny_yolox((256, 320))
    return export_onnx(model, spec, tmp_path_factory.mktemp("fixed") / "fixed.onnx", dynamic_shape=False)


@pytest.mark.parametrize("frame_wh, imgsz, noted", [
    ((1280, 720), 640, True),    # 16:9 at long side 320 wants 192x320: a note, still run at 256x320
    ((1280, 720), None, True),
    ((320, 256), 640, False),    # the file's own aspect: nothing to say; imgsz never reshapes a fixed file
], ids=["16:9_imgsz640", "16:9_no_imgsz", "own_aspect"])
def test_fixed_shape_file_runs_at_its_own_shape(fixed_onnx, capsys, frame_wh, imgsz, noted):
    from pipeline.onnx_detector import OnnxDetector

    det = OnnxDetector(DetectorConfig(model=str(fixed_onnx), imgsz=imgsz, classes=()))
    assert (det.in_h, det.in_w) == (256, 320)
    frame = np.zeros((frame_wh[1], frame_wh[0], 3), np.uint8)
    for _ in range(2):                   # the note comes once
        batch = det.preprocess([frame])
        assert batch.data.shape == (1, 3, 256, 320)
    det.postprocess(det.infer(batch), batch)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    if noted:
        assert len(err) == 1 and "fixed 256x320 input" in err[0] and "would want 192x320" in err[0]
        assert "python -m tools.export_model yolox_nano:" in err[0]
    else:
        assert err == []


def test_fixed_shape_file_refuses_a_contradicting_input_size(fixed_onnx):
    from pipeline.onnx_detector import DetectorError, OnnxDetector

    with pytest.raises(DetectorError) as e:
        OnnxDetector(DetectorConfig(model=str(fixed_onnx), input_size=(416, 416), classes=()))
    assert "fixed 256x320 input but detector.input_size is [416, 416]" in str(e.value)
    assert "\n" not in str(e.value)


def one_op_model(path, shape):
    """An ONNX file whose input has ``shape`` (an Identity op): loadable, but not an image detector."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("shape", [[1, 416, 416], [1, 1, 416, 416], [1, 4, "h", "w"], [1, 3, 416, 416, 1]],
                         ids=["rank3", "one_channel", "four_channels_dynamic", "rank5"])
def test_wrong_input_rank_or_channels_is_one_line(tmp_path, shape):
    from pipeline.onnx_detector import DetectorError, OnnxDetector

    path = one_op_model(tmp_path / "bad.onnx", shape)
    with pytest.raises(DetectorError) as e:
        OnnxDetector(DetectorConfig(model=str(path), format="decoded", class_names=("car",), classes=()))
    msg = str(e.value)
    assert "expected (batch, 3, height, width)" in msg and str(path) in msg and "\n" not in msg


# -- torch path ----------------------------------------------------------------------------------
@pytest.mark.parametrize("imgsz, input_size, want", [
    (672, None, (384, 672)),
    (None, None, (256, 320)),            # neither: the variant's own input_size
    (672, (320, 320), (320, 320)),       # input_size wins
], ids=["imgsz", "variant_default", "input_size_wins"])
def test_torch_detector_uses_the_same_rule(imgsz, input_size, want):
    from models.detector import TorchDetector

    model, spec = tiny_yolox((256, 320))
    if input_size is not None:
        import dataclasses
        spec = dataclasses.replace(spec, input_size=input_size)
        imgsz = None                      # what models.build_detector does when input_size is given
    det = TorchDetector(model, spec, imgsz=imgsz)
    batch = det.preprocess([np.zeros((720, 1280, 3), np.uint8)])
    assert tuple(batch.data.shape) == (1, 3, *want)
    assert len(det.postprocess(det.infer(batch), batch)) == 1


# -- several sources -----------------------------------------------------------------------------
class ShapeRecorder:
    """A detector whose input shape is the frame's own; records the shapes of every infer call."""

    class_names = ("car",)

    def __init__(self, workers=1):
        self.workers = workers
        self.calls: list[list[tuple]] = []

    def preprocess(self, images):
        h, w = images[0].shape[:2]
        return Batch(np.zeros((len(images), 3, h, w), np.float32),
                     tuple(Letterbox(1, 1, 0, 0, w, h, w, h) for _ in images))

    def infer(self, batch):
        self.calls.append([tuple(batch.data.shape[1:])] * len(batch))
        return batch

    def postprocess(self, raw, batch):
        return [Detections(np.array([[0, 0, lb.width, lb.height]], np.float32), np.ones(1, np.float32),
                           np.zeros(1, np.int64)) for lb in batch.letterboxes]


@pytest.mark.parametrize("workers", [1, 2], ids=["one_server", "two_servers"])
def test_shared_batches_group_equal_shapes(workers):
    """Two server threads: one may find the queue emptied by the other after its gather wait."""
    from pipeline.batching import SharedDetector

    for _ in range(5):                   # the race between servers is timing-dependent: several rounds
        rec = ShapeRecorder(workers)
        shared = SharedDetector(rec, max_batch=8, gather_s=0.05)
        sizes = [(720, 1280), (375, 1242), (720, 1280), (375, 1242)] * 2
        results = [None] * len(sizes)

        def stream(i):
            h, w = sizes[i]
            results[i] = shared.detect([np.zeros((h, w, 3), np.uint8)])

        threads = [threading.Thread(target=stream, args=(i,)) for i in range(len(sizes))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
        alive = [t.is_alive() for t in shared._threads]
        shared.close()
        assert all(alive)                                           # no server thread died
        assert all(len(set(call)) == 1 for call in rec.calls)      # never two shapes in one call
        assert sum(len(c) for c in rec.calls) == len(sizes)
        for (h, w), dets in zip(sizes, results):                    # each stream got its own frame back
            assert dets[0].xyxy[0].tolist() == [0, 0, w, h]


# -- the shipped default ---------------------------------------------------------------------------
def test_run_stream_default_needs_nothing_from_shared(tmp_path):
    """A machine without ../shared: the README command gives boxes on the cars, no fallback note."""
    empty = tmp_path / "no_shared"
    empty.mkdir()
    out = tmp_path / "out.jsonl"
    env = dict(os.environ, DASHTRACK_SHARED_DATA=str(empty), PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "run_stream.py", "--source", "examples/test_video.mp4", "--no-show",
                           "--quiet", "--save-json", str(out)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "note" not in proc.stderr and "shared" not in proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    cfg = load_config()
    assert cfg.detector.model.endswith("models/weights/dashcam.onnx") and cfg.detector.imgsz
    assert len(rows) == 38
    cars = [[b for b in r["boxes"] if b["class"] == "car"] for r in rows]
    assert sum(1 for c in cars if c) >= 30                        # cars in nearly every frame
    # frame 5's two cars sit right of centre, their bottoms about 500 px down (checked by eye)
    first = cars[5]
    assert any(b["xyxy"][0] > 640 and 380 < b["xyxy"][3] < 560 for b in first)


@pytest.mark.parametrize("flags, want_shape, want_meta", [
    (["--imgsz", "640"], ["batch", 3, "height", "width"], {"input_size": [384, 640], "dynamic_shape": True}),
    (["--input-size", "256", "832", "--fixed-shape"], ["batch", 3, 256, 832],
     {"input_size": [256, 832], "dynamic_shape": False}),
], ids=["dynamic_imgsz", "fixed_input_size"])
def test_export_model_cli_shapes(tmp_path, flags, want_shape, want_meta):
    from models.export import read_onnx_metadata

    weights = tmp_path / "w.pth"
    torch.save({"model": build_coco_state()}, weights)
    out = tmp_path / "m.onnx"
    proc = subprocess.run([sys.executable, "-m", "tools.export_model", f"yolox_nano:{weights}", "-o", str(out)] + flags,
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert ort.InferenceSession(str(out)).get_inputs()[0].shape == want_shape
    meta = read_onnx_metadata(out)
    assert {k: meta[k] for k in want_meta} == want_meta


def build_coco_state() -> dict:
    """A random-init YOLOX-Nano state dict in the official release layout (80 COCO classes)."""
    from models import build_model, load_variant

    torch.manual_seed(0)
    return build_model(load_variant("yolox_nano")).state_dict()


def test_export_model_cli_refuses_a_bad_size(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tools.export_model", "yolox_nano", "-o", str(tmp_path / "m.onnx"),
                           "--input-size", "100", "200"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "input size [100, 200]: height and width must be multiples of 32" in proc.stderr.strip().splitlines()[-1]
