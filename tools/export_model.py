"""Export a detector to ONNX (decoded layout + ``dashtrack`` metadata) and/or TorchScript.

    python tools/export_model.py yolox_nano:../shared/data/teachers/yolox_nano/yolox_nano.pth -o yolox_nano.onnx
    python tools/export_model.py mobilenetv2_s16 -o mnv2_s16.onnx --torchscript mnv2_s16.ts
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.checkpoint import load_state_strict  # noqa: E402
from models.detector import resolve  # noqa: E402
from models.export import export_onnx, export_torchscript  # noqa: E402
from models.registry import build_model  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="variant name, checkpoint path, or variant:path")
    ap.add_argument("-o", "--onnx", type=Path, help="ONNX output file")
    ap.add_argument("--torchscript", type=Path, help="TorchScript output file")
    ap.add_argument("--opset", type=int, default=17)
    args = ap.parse_args(argv)
    if not args.onnx and not args.torchscript:
        ap.error("give --onnx and/or --torchscript")
    spec, state, source = resolve(args.model)
    model = build_model(spec)
    if state is not None:
        load_state_strict(model, state, source, spec.name)
    if args.onnx:
        print(f"ONNX: {export_onnx(model, spec, args.onnx, opset=args.opset)} ({spec.name}, weights: {source})")
    if args.torchscript:
        print(f"TorchScript: {export_torchscript(model, spec, args.torchscript)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
