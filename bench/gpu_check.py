#!/usr/bin/env python3
"""The GPU path in one call: environment, model-only timings, parity with the CPU, end to end.

    python -m bench.gpu_check --out runs/gpu_check                  # on a CUDA machine: < 8 min, no download
    python -m bench.gpu_check --device cpu --quick --out /tmp/gc    # CI: tiny sizes, one variant, < 2 min

Steps (each with its own time budget; a global watchdog writes what is done and exits 3 if the
whole run overstays ``--budget-s``; a step that fails is recorded and the next one runs):

1. ``env``: python, torch, CUDA, cuDNN, driver, GPU name and memory, torchvision, NMS backend.
2. ``models``: resnet18_s16, resnet18_s32, mobilenetv2_s16 and YOLOX-Nano (``../shared``'s .pth)
   at 736x1280 (the stride-32 multiple above 1280x720) and 384x640, fp32 and fp16 (CUDA), batch
   1/8/32, modes ``eager`` (NCHW), ``channels_last``, ``channels_last+cuda_graph`` (CUDA);
   ``compile`` (run last, as it has no internal deadline): ``torch.compile`` of the headline row
   (resnet18_s16, 736x1280, fp16, batch 8).
3. ``parity``: YOLOX-Nano boxes on 20 real frames, CPU fp32 frame by frame against the device in
   fp32 and fp16 as one batch (same class, IoU >= 0.95, scores within 0.02).  Without CUDA: the
   CPU against CPU channels_last, and ``cuda`` says absent.
4. ``e2e``: run_stream.py's configuration (``--model yolox_nano:<pth> --device D``, tracker on,
   headless) on a 1280x720 clip looped to >= 2000 frames: FPS and per-stage p50, against the
   decode-only FPS of the same clip in the same run; then 4 streams at once.

Writes ``gpu_check.json`` and ``gpu_check.md`` into ``--out``.  JSON keys: ``schema``, ``device``,
``quick``, ``budget_s``, ``wall_s``, ``watchdog_fired``, ``steps`` (name -> status ok | failed |
skipped, seconds, error), ``env``, ``models`` (rows: variant, input_hw, precision, batch, mode,
status, ms_per_batch, images_per_s), ``parity``, ``e2e`` (decode_only, runs, ratio_to_decode).
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:      # run by path: the project's packages are not on the path
    raise SystemExit("run it from the repository root as a module: python -m bench.gpu_check --help")

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from bench.common import SHARED, markdown_table  # first: imports cv2 before av

import torch  # noqa: E402

from bench import gpu_steps as steps  # noqa: E402

SCHEMA = 1
KEYS = ("schema", "device", "quick", "budget_s", "wall_s", "watchdog_fired", "steps", "env", "models", "parity", "e2e")


def environment(device: torch.device) -> dict:
    from models.postprocess import nms_backend

    env = {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
           "torch": torch.__version__, "cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "nms_backend": nms_backend("auto")}
    try:
        import torchvision

        env["torchvision"] = torchvision.__version__
    except Exception as e:
        env["torchvision"] = f"absent ({steps.first_line(e)})"
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}")
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=15)
            env["driver"] = out.stdout.strip().splitlines()[0] if out.returncode == 0 else f"nvidia-smi exit {out.returncode}"
        except (OSError, subprocess.TimeoutExpired, IndexError) as e:
            env["driver"] = f"unknown ({steps.first_line(e)})"
    else:
        env["gpu"] = "none: CUDA absent" if not torch.cuda.is_available() else "not used (--device cpu)"
    return env


class Check:
    """The results, the step runner and the watchdog."""

    def __init__(self, args, device: torch.device):
        self.args, self.device = args, device
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.result = {"schema": SCHEMA, "device": str(device), "quick": args.quick, "budget_s": args.budget_s,
                       "wall_s": None, "watchdog_fired": False, "steps": {}, "env": None, "models": [],
                       "parity": None, "e2e": None}
        self.watchdog = threading.Timer(args.budget_s, self._fire)
        self.watchdog.daemon = True

    def _fire(self) -> None:
        with self.lock:
            self.result["watchdog_fired"] = True
        print(f"error: gpu_check overstayed its {self.args.budget_s:g} s budget; writing what is done", file=sys.stderr)
        try:
            self.write()
        finally:
            os._exit(3)

    def left(self) -> float:
        return self.args.budget_s - (time.monotonic() - self.t0)

    def step(self, name: str, budget_s: float, fn) -> None:
        """Run ``fn(deadline)``; its value goes under ``name``; a failure is recorded, never raised."""
        budget = min(budget_s, max(self.left() - 15, 0))
        record = {"status": "skipped", "seconds": 0.0, "budget_s": round(budget, 1)}
        self.result["steps"][name] = record
        if budget <= 1:
            record["error"] = "no time left in the global budget"
            return
        t = time.monotonic()
        try:
            value = fn(t + budget)
            with self.lock:
                if name == "compile":
                    self.result["models"].append(value)
                else:
                    self.result[name] = value
            record["status"] = "ok"
        except Exception as e:
            record.update(status="failed", error=steps.first_line(e),
                          traceback=traceback.format_exc().strip().splitlines()[-6:])
        record["seconds"] = round(time.monotonic() - t, 1)
        print(f"[{self.elapsed():6.1f} s] {name}: {record['status']}" + (f" ({record['error']})" if "error" in record else ""),
              file=sys.stderr, flush=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def write(self) -> None:
        out = Path(self.args.out)
        out.mkdir(parents=True, exist_ok=True)
        with self.lock:
            self.result["wall_s"] = round(self.elapsed(), 1)
            text = json.dumps(self.result, indent=2, default=str) + "\n"
            md = markdown(self.result)
        (out / "gpu_check.json").write_text(text)
        (out / "gpu_check.md").write_text(md)


def fmt(v, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def markdown(r: dict) -> str:
    env = r["env"] or {}
    parts = [f"# gpu_check ({'quick, ' if r['quick'] else ''}device {r['device']})", "",
             f"torch {env.get('torch')}, CUDA {env.get('torch_cuda')}, driver {env.get('driver', '-')}, "
             f"GPU {env.get('gpu')} ({env.get('gpu_memory_gib', '-')} GiB), NMS {env.get('nms_backend')}; "
             f"{r['wall_s']} s" + (" (WATCHDOG FIRED)" if r["watchdog_fired"] else ""), "",
             markdown_table(["step", "status", "seconds", "note"],
                            [[k, v["status"], v["seconds"], v.get("error", "")] for k, v in r["steps"].items()]), "",
             "## Model only", ""]
    rows = [[m["variant"], "x".join(map(str, m.get("input_hw", []))), m.get("precision", "-"), m.get("batch", "-"),
             m.get("mode", "-"), fmt(m.get("ms_per_batch"), ".2f"), fmt(m.get("images_per_s")),
             m["status"] + (f": {m['error']}" if m.get("error") else "")] for m in r["models"]]
    parts += [markdown_table(["variant", "input HxW", "precision", "batch", "mode", "ms/batch", "images/s", "status"], rows), ""]
    p = r["parity"]
    if p:
        parts += ["## Parity (YOLOX-Nano, CPU fp32 frame by frame = reference)", "",
                  f"{p['frames']} frames, {p['boxes']} reference boxes; cuda: {p.get('cuda', '-')}", "",
                  markdown_table(["against", "status", "ref", "got", "matched", "max score diff"],
                                 [[k, v["status"], v.get("ref", "-"), v.get("got", "-"), v.get("matched", "-"),
                                   v.get("max_score_diff", v.get("error", "-"))] for k, v in p["variants"].items()]), ""]
    e = r["e2e"]
    if e:
        parts += ["## End to end (run_stream configuration, tracker on, headless)", "",
                  f"clip {e['clip']} looped to {e['target_frames']} frames per stream; network input "
                  f"{'x'.join(map(str, e['runs'].get('batch 1', {}).get('input_hw', []))) or '-'}"
                  + ("; stage times are host times: CUDA work is asynchronous and shows where the host first "
                     "waits for it (decode)" if r["device"].startswith("cuda") else ""), "",
                  markdown_table(["run", "streams", "frames", "FPS", "vs decode-only", "stage p50 ms"],
                                 [[k, v.get("streams", "-"), v.get("frames", "-"), fmt(v.get("fps")),
                                   fmt(e["ratio_to_decode"].get(k), ".2f"),
                                   ", ".join(f"{s} {fmt(t['p50_ms'], '.2f')}" for s, t in v.get("stages", {}).items())
                                   or v.get("error", "")] for k, v in {**e["decode_only"], **e["runs"]}.items()]), ""]
    return "\n".join(parts)


def real_frames(clip: Path, n: int) -> list:
    from pipeline.config import SourceConfig
    from pipeline.sources import open_source

    src = open_source(str(clip), SourceConfig(max_frames=n))
    try:
        return [f.image for f in src]
    finally:
        src.close()


def plan(args, device: torch.device) -> dict:
    cuda = device.type == "cuda"
    if args.quick:
        return dict(variants=["resnet18_s32"], sizes=[(64, 128)], precisions=["fp32"], batches=[1, 2],
                    modes=["eager", "channels_last"], warmup=1, min_iters=2, max_s=0.2, parity_frames=3,
                    e2e_frames=24, e2e_streams=2, models_s=25, parity_s=35, e2e_s=45, compile=False)
    # Without --quick on the CPU (not a target; a row cannot be cut short): batch 32 left out, fewer calls.
    return dict(variants=list(steps.VARIANTS), sizes=[(736, 1280), (384, 640)],
                precisions=["fp32", "fp16"] if cuda else ["fp32"], batches=[1, 8, 32] if cuda else [1, 8],
                modes=["eager", "channels_last"] + (["channels_last+cuda_graph"] if cuda else []),
                warmup=3 if cuda else 1, min_iters=5 if cuda else 2, max_s=0.3, parity_frames=20,
                e2e_frames=2000, e2e_streams=4,
                models_s=200, parity_s=45, e2e_s=130, compile=cuda)


def run(args) -> int:
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"error: --device {args.device}: CUDA is not available to this torch ({torch.__version__}); "
              "use --device cpu", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    if args.quick and device.type == "cpu":
        # One intra-op thread: on a small shared CI machine two threads wait on each other
        # (measured 0.55 s vs 0.07 s per forward on a loaded 2-core box).
        torch.set_num_threads(1)
    shared = Path(args.shared)
    pth = shared / "teachers" / "yolox_nano" / "yolox_nano.pth"
    clip = Path(args.clip) if args.clip else shared / "videos" / "udacity" / "test_small2.mp4"
    p = plan(args, device)
    check = Check(args, device)
    check.watchdog.start()
    check.step("env", 20, lambda deadline: environment(device))
    check.step("models", p["models_s"], lambda deadline: steps.model_timings(
        device, p["variants"], p["sizes"], p["precisions"], p["batches"], p["modes"], pth, deadline,
        p["warmup"], p["min_iters"], p["max_s"]))
    def parity(deadline):
        if not pth.is_file() or not clip.is_file():
            raise FileNotFoundError(f"needs {pth} and {clip} (pass --shared DIR / --clip FILE)")
        frames = real_frames(clip, p["parity_frames"])
        if device.type == "cuda":
            variants = [("cuda fp32", {"device": args.device}), ("cuda fp16", {"device": args.device, "half": True}),
                        ("cuda fp16 channels_last", {"device": args.device, "half": True, "channels_last": True})]
        else:
            variants = [("cpu fp32 batched", {"device": "cpu"}), ("cpu channels_last", {"device": "cpu", "channels_last": True})]
        out = steps.parity(frames, pth, variants)
        out["cuda"] = "used" if device.type == "cuda" else "absent: compared CPU variants only"
        return out

    check.step("parity", p["parity_s"], parity)

    def e2e(deadline):
        if not pth.is_file() or not clip.is_file():
            raise FileNotFoundError(f"needs {pth} and {clip} (pass --shared DIR / --clip FILE)")
        from pipeline.config import SourceConfig

        n = p["e2e_frames"]            # per stream; >= 2000 on CUDA
        cli = ["--model", f"yolox_nano:{pth}", "--device", args.device, "--no-show", "--track", "--quiet",
               "--set", "output.progress=false"]
        fast = cli + (["--set", "detector.half=true"] if device.type == "cuda" else [])
        slice_s = max((deadline - time.monotonic()) / 6, 5)
        out = {"clip": clip.name, "target_frames": n, "decode_only": {}, "runs": {}, "ratio_to_decode": {}}
        s = p["e2e_streams"]
        for key, fn in (("decode-only", lambda: steps.decode_only(clip, SourceConfig(), n, 1, slice_s)),
                        ("batch 1", lambda: steps.end_to_end(fast, clip, n, 1, slice_s)),
                        ("batch 8", lambda: steps.end_to_end(fast + ["--set", "detector.batch=8"], clip, n, 1, slice_s)),
                        (f"decode-only x{s}", lambda: steps.decode_only(clip, SourceConfig(), n, s, slice_s)),
                        (f"{s} streams, batch 8", lambda: steps.end_to_end(fast + ["--set", "detector.batch=8"],
                                                                           clip, n, s, slice_s))):
            where = out["decode_only"] if key.startswith("decode") else out["runs"]
            if time.monotonic() > deadline:
                where[key] = {"error": "skipped: step time budget spent"}
                continue
            try:
                where[key] = fn()
            except Exception as e:
                where[key] = {"error": steps.first_line(e)}
        for k, v in out["runs"].items():     # against decoding the same number of streams alone
            base = out["decode_only"].get("decode-only" if v.get("streams", 1) == 1 else f"decode-only x{s}", {})
            if v.get("fps") and base.get("fps"):
                out["ratio_to_decode"][k] = round(v["fps"] / base["fps"], 3)
        return out

    check.step("e2e", p["e2e_s"], e2e)
    # last: compiling has no internal deadline, so it must not starve the steps above
    if p["compile"]:
        check.step("compile", 70, lambda deadline: steps.compile_timing(device, "resnet18_s16", (736, 1280), "fp16", 8, pth))
    else:
        check.result["steps"]["compile"] = {"status": "skipped", "seconds": 0.0,
                                            "error": "CUDA only (compiling on the CPU would not fit --quick)"}

    from models.postprocess import TV_NMS_ERRORS

    if TV_NMS_ERRORS and check.result["env"]:
        check.result["env"]["nms_fallback"] = TV_NMS_ERRORS[0]
    check.watchdog.cancel()
    check.write()
    print(markdown(check.result))
    print(f"wrote {Path(args.out) / 'gpu_check.json'} and gpu_check.md", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for gpu_check.json and gpu_check.md")
    ap.add_argument("--device", default="auto", help="auto (cuda when available), cuda, cuda:N or cpu")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one variant, few frames (CI on the CPU)")
    ap.add_argument("--shared", default=str(SHARED), help="the shared data folder (default: ../shared/data)")
    ap.add_argument("--clip", help="1280x720 clip for parity and e2e (default: udacity/test_small2.mp4)")
    ap.add_argument("--budget-s", type=float, default=None, help="global watchdog (default: 450, --quick 110)")
    args = ap.parse_args(argv)
    if args.budget_s is None:
        args.budget_s = 110.0 if args.quick else 450.0
    if args.budget_s <= 20:
        ap.error(f"--budget-s {args.budget_s:g}: give more than 20 seconds")
    try:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"error: --out {args.out}: cannot create the folder ({e.strerror}); pass a writable folder", file=sys.stderr)
        return 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
