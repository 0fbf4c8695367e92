"""Export a detector to ONNX (decoded layout + ``dashtrack`` metadata) and/or TorchScript.

    python -m tools.export_model yolox_nano:../shared/data/teachers/yolox_nano/yolox_nano.pth -o yolox_nano.onnx
    python -m tools.export_model mobilenetv2_s16 -o mnv2_s16.onnx --torchscript mnv2_s16.ts

ONNX files get a dynamic height and width (one file serves every input shape; the pipeline picks
the shape from ``detector.imgsz`` and each source's aspect ratio); ``--imgsz N`` sets the default
shape stored in the metadata (long side N, 16:9 frames), ``--input-size H W`` sets it exactly, and
``--fixed-shape`` freezes the file at that shape.
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:      # run by path: the project's packages are not on the path
    raise SystemExit("run it from the repository root as a module: python -m tools.export_model --help")

import argparse
import dataclasses
from pathlib import Path

from models.checkpoint import load_state_strict
from models.detector import resolve
from models.export import export_onnx, export_torchscript
from models.registry import build_model
from dashtrack_core.detector import frame_input_shape


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="variant name, checkpoint path, or variant:path")
    ap.add_argument("-o", "--onnx", type=Path, help="ONNX output file")
    ap.add_argument("--torchscript", type=Path, help="TorchScript output file")
    ap.add_argument("--opset", type=int, default=17)
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--imgsz", type=int, help="default input: long side N, short side of a 16:9 frame "
                                                "(rounded up to 32)")
    size.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="default input, exactly")
    ap.add_argument("--fixed-shape", action="store_true", help="freeze the ONNX input at the default shape")
    args = ap.parse_args(argv)
    if not args.onnx and not args.torchscript:
        ap.error("give --onnx and/or --torchscript")
    hw = frame_input_shape(1280, 720, args.imgsz) if args.imgsz else args.input_size
    if hw is not None and (min(hw) < 32 or hw[0] % 32 or hw[1] % 32):
        ap.error(f"input size {list(hw)}: height and width must be multiples of 32, at least 32")
    spec, state, source = resolve(args.model)
    if hw is not None:
        spec = dataclasses.replace(spec, input_size=tuple(hw))
    model = build_model(spec)
    if state is not None:
        load_state_strict(model, state, source, spec.name)
    if args.onnx:
        out = export_onnx(model, spec, args.onnx, opset=args.opset, dynamic_shape=not args.fixed_shape)
        shape = "fixed" if args.fixed_shape else "dynamic, default"
        print(f"ONNX: {out} ({spec.name}, weights: {source}; input {shape} {spec.input_size[0]}x{spec.input_size[1]})")
    if args.torchscript:
        print(f"TorchScript: {export_torchscript(model, spec, args.torchscript)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
