"""Export to ONNX and TorchScript in the decoded layout the pipeline's ONNX backend reads.

Graph: input ``images`` (B, 3, H, W) float32, already letterboxed and normalised as
``TorchDetector.preprocess`` does; output ``detections`` (B, N, 4 + C): x1 y1 x2 y2 in
network-input pixels, then C class scores in [0, 1] (objectness multiplied in).  NMS stays
outside the graph.  The preprocessing is stored in the ONNX metadata_props under the key
``dashtrack`` as JSON: format, input_size, letterbox, pad_value, color, mean, std, class_names,
variant, stride and dynamic_shape.  With ``dynamic_shape`` (the default) the height and width
axes are dynamic, so one file serves every input shape (multiples of ``stride``);
``input_size`` is then the default shape.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .registry import ModelSpec

METADATA_KEY = "dashtrack"


STRIDE = 32   # every family's input is a multiple of 32 (ModelSpec checks it)


def onnx_metadata(spec: ModelSpec, dynamic_shape: bool = False) -> dict:
    p = spec.preprocess
    return {
        "format": "decoded",
        "input_size": list(spec.input_size),
        "letterbox": p.letterbox,
        "pad_value": p.pad_value,
        "color": p.color,
        "mean": list(p.mean),
        "std": list(p.std),
        "class_names": list(spec.class_names),
        "variant": spec.name,
        "stride": STRIDE,
        "dynamic_shape": dynamic_shape,
    }


def export_onnx(model: nn.Module, spec: ModelSpec, path: str | Path, opset: int = 17,
                dynamic_batch: bool = True, dynamic_shape: bool = True) -> Path:
    """Write ``model`` (decoded forward) to ``path`` with the ``dashtrack`` metadata; needs ``pip install onnx``.

    ``dynamic_shape``: height and width are free (traced at ``spec.input_size``, its default);
    False fixes them at ``spec.input_size``."""
    try:
        import onnx
    except ImportError as e:
        raise ImportError("ONNX export needs the 'onnx' package: pip install onnx") from e
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.float().eval()
    dummy = torch.zeros(1, 3, *spec.input_size)
    axes_in, axes_out = ({0: "batch"}, {0: "batch"}) if dynamic_batch else ({}, {})
    if dynamic_shape:
        axes_in.update({2: "height", 3: "width"})
        axes_out[1] = "boxes"
    torch.onnx.export(
        model, (dummy,), str(path), input_names=["images"], output_names=["detections"], opset_version=opset,
        dynamic_axes={"images": axes_in, "detections": axes_out} if axes_in else None,
        dynamo=False,
    )
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(onnx_metadata(spec, dynamic_shape))
    onnx.save(proto, str(path))
    return path


def read_onnx_metadata(path: str | Path) -> dict:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            return json.loads(entry.value)
    raise KeyError(f"{path}: no {METADATA_KEY!r} entry in the ONNX metadata_props")


def export_torchscript(model: nn.Module, spec: ModelSpec, path: str | Path) -> Path:
    """A traced module with the same decoded output; the metadata rides along as the ``dashtrack.json`` extra file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.float().eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.zeros(1, 3, *spec.input_size), check_trace=False)
    torch.jit.save(traced, str(path), _extra_files={"dashtrack.json": json.dumps(onnx_metadata(spec))})
    return path
