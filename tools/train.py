"""Train a ``models/`` detector on YOLO datasets (tiled-teacher pseudo-labels) from a YAML config.

    python -m tools.train --config configs/train/dashcam.yaml [--resume] [--out runs/train/x]
        [--max-steps N] [--device cpu|cuda] [--no-progress] [--install]

Two families: ``fastdet`` (``configs/train/lite.yaml``, loss ``models/loss.py``) and ``yolox``
(``configs/train/dashcam.yaml``: YOLOX-Nano fine-tuned from the COCO checkpoint named by
``init_from``, its class rows picked by name for ``classes``; SimOTA-lite loss
``models/yolox_loss.py``; ``augment.crop`` trains on windows of the frame at the deployed scale).

The config (validated by ``tools/training/config.py``; an unknown or mistyped key is a one-line error naming it)::

    variant: mobilenetv2_s16           # configs/models/<variant>.yaml, the base of the model
    name: lite                         # the trained model's name (checkpoint / ONNX metadata)
    input_size: [320, 576]             # overrides of the variant (optional)
    fastdet: {channels: 64, ...}       # merged into the variant's fastdet section
    data:
      train: [{path: runs/train_data/pandaset_tiled, select: "0:60"}, ...]
      val:   [{path: runs/train_data/pandaset_tiled, select: "-20:"}, ...]
    schedule: {epochs: 40, batch_size: 8, lr: 0.002, ...}
    loss: {center_radius: [1.0, 1.5], obj_iou: 0.5, giou_weight: 1.0}   # models/loss.py LossConfig
    augment: {scale: [0.75, 1.5], flip: 0.5, ...}
    out: runs/train/lite
    export_onnx: runs/train/lite/lite.onnx   # written at the end (optional)

A dataset entry may name ``source`` (video, image folder) and ``every``: when its folder does
not exist yet, it is pseudo-labelled first with the tiled YOLOX-Nano teacher
(``tools/pseudo_label.py``, native-scale 416 tiles, overlap 0.25) and audited
(``tools/audit_data.py``), so one command retrains from the raw frames.

Training: AdamW, linear warm-up then cosine decay, AMP (fp16 autocast + grad scaling) on CUDA,
the detection loss of the family (fastdet: with the per-scale auxiliary term on the stride-64 map
when the variant has fusion on); optional weight EMA (``schedule.ema``: the average is what is
evaluated, kept and exported) and frozen trunk blocks that join later (``unfreeze_at``, own warm-up,
``trunk_lr``); ``best_by`` picks best.pt by held-out car F1 or AP50.  Each epoch writes ``OUT/last_state.pt`` (model, optimiser,
step, epoch, RNG) which ``--resume`` continues from; evaluation on the validation frames every
``eval_every`` epochs prints car P/R/F1 at IoU 0.5 (score >= ``eval_conf``) and recall of cars
under 25 px, and keeps ``OUT/best.pt`` (highest car F1).  Checkpoints are ``models/checkpoint``
files: ``models.build_detector("OUT/best.pt")`` and ``tools/eval_detection.py`` read them.

Exit codes: 0 done, 2 bad input (config, data).
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:      # run by path: the project's packages are not on the path
    raise SystemExit("run it from the repository root as a module: python -m tools.train --help")

import argparse
import math
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2  # noqa: F401  (before av)
import numpy as np

import torch

from models.checkpoint import save_checkpoint
from models.export import export_onnx
from models.registry import ModelSpec, build_model
from dashtrack_core.configtools import ConfigError, to_mapping
from tools.datasets import DASHCAM_NAMES, DatasetError
from tools.train_data import AugmentConfig, Frame, augment, letterbox_scale, load_frames, to_tensor_batch
from tools.training.config import (DatasetEntry, Schedule, TrainConfig, TrainError,
                                   load_config, model_spec, resolve_path)
from tools.training.ema import WeightEMA
from tools.training.family import compute_loss, freeze_trunk, init_weights, set_bn_eval

ROOT = Path(__file__).resolve().parents[1]
EXIT_OK, EXIT_USAGE = 0, 2
CAR = DASHCAM_NAMES.index("car")


# -- data ----------------------------------------------------------------------------------------
def prepare(entry: DatasetEntry, progress: bool) -> Path:
    """The dataset folder; pseudo-labelled (tiled YOLOX-Nano) and audited first when missing."""
    root = resolve_path(entry.path)
    if root.is_dir():
        return root
    if not entry.source:
        raise TrainError(f"dataset {entry.path}: no such folder (and no 'source' to pseudo-label it from)")
    cmd = [sys.executable, "-m", "tools.pseudo_label"]
    for src in entry.source:
        cmd += ["--source", str(resolve_path(src))]
    cmd += ["--every", str(entry.every),
           "--teacher", "yolox_nano", "--tile-size", "416", "--overlap", "0.25", "--out", str(root),
           "--format", "yolo,coco", "--threads", "2"] + ([] if progress else ["--no-progress"])
    print("prepare: " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    if subprocess.run(cmd, cwd=ROOT).returncode != 0:   # cwd: ``-m tools.X`` finds the package there
        raise TrainError(f"pseudo-labelling {entry.source} into {entry.path} failed (see above)")
    audit = [sys.executable, "-m", "tools.audit_data", "--format", "yolo", "--images", str(root / "images"),
             "--labels", str(root / "labels"), "--json", str(root / "audit.json")]
    print("prepare: " + " ".join(shlex.quote(c) for c in audit), flush=True)
    rc = subprocess.run(audit, cwd=ROOT).returncode
    if rc not in (0, 1):  # 1: warnings or errors listed; the labels are still usable, the log says which
        raise TrainError(f"auditing {entry.path} failed (exit {rc})")
    return root


def load_split(entries, spec: ModelSpec, aug: AugmentConfig, progress: bool) -> list[Frame]:
    frames = []
    for e in entries:
        root = prepare(e, progress)
        # cache at the largest scale a sample can take (letterbox scale x jitter max), never above native
        sizes = _first_image_size(root)
        r0 = letterbox_scale(sizes[0], sizes[1], spec.input_size, spec.preprocess.letterbox)
        frames += load_frames(root, e.select, max_scale=r0 * max(aug.scale[1], 1.0) * 1.05)
    return frames


def _first_image_size(root: Path) -> tuple[int, int]:
    imgs = sorted((root / "images").glob("*"))
    for p in imgs:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is not None:
            return img.shape[1], img.shape[0]
    raise DatasetError(f"{root}/images: no readable image")


# -- evaluation ----------------------------------------------------------------------------------
def evaluate_model(model, spec: ModelSpec, frames: list[Frame], device: torch.device, conf: float) -> dict:
    """Car P/R/F1 at IoU 0.5 and recall by height on the validation frames (full res, as deployed)."""
    from models.detector import TorchDetector
    from models.postprocess import PostprocessConfig
    from tools.detection_metrics import evaluate

    was_training = model.training
    det = TorchDetector(model, spec, device=str(device), post=PostprocessConfig(score_threshold=0.05))
    dets = []
    for f in frames:
        img = cv2.imread(str(f.labels.image), cv2.IMREAD_COLOR)
        d = det.detect([img])[0]
        dets.append((d.xyxy.astype(np.float64), d.score.astype(np.float64), d.class_id.astype(np.int64)))
    model.train(was_training)
    return evaluate([f.labels for f in frames], dets, DASHCAM_NAMES, 0.5, conf)


def summary_line(res: dict) -> str:
    car = res["classes"]["car"]
    tl = res["classes"]["traffic light"]
    bh = car["by_height"]
    return (f"car P {car['precision']:.3f} R {car['recall']:.3f} F1 {car['f1']:.3f} AP50 {car['ap50']:.3f} "
            f"(R<25 {bh['small']['recall']:.3f}, 25-40 {bh['medium']['recall']:.3f}, >=40 {bh['large']['recall']:.3f}); "
            f"traffic light R {tl['recall']:.3f}; all F1 {res['overall']['f1']:.3f}")


# -- training ------------------------------------------------------------------------------------
def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainError(f"schedule.device {name!r}: CUDA is not available on this machine")
    return torch.device(name)


def lr_at(step: int, total: int, s: Schedule, time_frac: float = 0.0) -> float:
    """Linear warm-up, then cosine from lr to lr * min_lr_ratio over the progress (steps or time budget)."""
    if step < s.warmup_steps:
        return s.lr * (step + 1) / s.warmup_steps
    t = max((step - s.warmup_steps) / max(total - s.warmup_steps, 1), time_frac)
    return s.lr * (s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def train(cfg: TrainConfig, out: Path, resume: bool, progress: bool = True, log=print) -> dict:
    spec = model_spec(cfg)
    s = cfg.schedule
    device = pick_device(s.device)
    if s.threads:
        torch.set_num_threads(s.threads)
    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    t_start = time.monotonic()
    train_frames = load_split(cfg.data.train, spec, cfg.augment, progress)
    val_frames = load_split(cfg.data.val, spec, replace(cfg.augment, scale=(1.0, 1.0)), progress)
    log(f"data: {len(train_frames)} train frames ({sum(len(f.cls) for f in train_frames)} boxes), "
        f"{len(val_frames)} val frames; load {time.monotonic() - t_start:.1f} s")

    model = build_model(spec)
    if cfg.init_from:
        sliced = init_weights(model, spec, resolve_path(cfg.init_from))
        log(f"init: {cfg.init_from}" + (f" (class rows picked by name in {len(sliced)} tensors)" if sliced else ""))
    model = model.to(device)
    frozen = freeze_trunk(model, spec, s.freeze_blocks)
    decay, no_decay, trunk_decay, trunk_no_decay = [], [], [], []
    for n, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
        elif s.unfreeze_at:  # frozen ones join the optimiser now and train (with their own warm-up) once unfrozen
            (trunk_no_decay if p.ndim <= 1 else trunk_decay).append(p)
    log(f"model {spec.name}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
        f"{frozen / 1e6:.2f} M frozen; input {list(spec.input_size)}; device {device}")
    groups = [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if trunk_decay or trunk_no_decay:
        groups += [{"params": trunk_decay, "weight_decay": s.weight_decay, "trunk": True},
                   {"params": trunk_no_decay, "weight_decay": 0.0, "trunk": True}]
    opt = torch.optim.AdamW(groups, lr=s.lr)
    unfreeze_step = -1  # the step the frozen blocks started training (-1: not yet)
    use_amp = s.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    steps_per_epoch = max(1, len(train_frames) // s.batch_size)
    total = s.max_steps or s.epochs * steps_per_epoch
    step, epoch, best_f1, history, elapsed0 = 0, 0, -1.0, [], 0.0
    ema = WeightEMA(model, s.ema) if s.ema else None
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "last_state.pt"
    if resume:
        if not state_path.is_file():
            raise TrainError(f"--resume: no {state_path} to continue from")
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        if st["spec"] != to_mapping(spec):
            raise TrainError(f"--resume: {state_path} was trained with a different model config")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        if use_amp and st.get("scaler"):
            scaler.load_state_dict(st["scaler"])
        step, epoch, best_f1, history = st["step"], st["epoch"], st["best_f1"], st["history"]
        unfreeze_step = st.get("unfreeze_step", -1)
        if ema is not None and st.get("ema"):
            ema.load_state_dict(st["ema"])
        elapsed0 = st.get("train_s", 0.0)
        rng = np.random.default_rng(s.seed + 1000 + step)
        torch.manual_seed(s.seed + step)
        log(f"resume: from step {step}, epoch {epoch} ({state_path})")

    p = spec.preprocess
    model.train()
    if s.freeze_bn:
        set_bn_eval(model, spec)
    bar = None
    if time_budget_note := (f"; time budget {s.max_minutes:g} min" if s.max_minutes else ""):
        log(f"schedule: {total} steps max ({steps_per_epoch} per epoch, batch {s.batch_size}){time_budget_note}")
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, initial=step, desc="train", unit="step", file=sys.stderr, dynamic_ncols=True)
    t_train = time.monotonic()
    last_res = None

    def time_frac() -> float:
        return (elapsed0 + time.monotonic() - t_train) / (60 * s.max_minutes) if s.max_minutes else 0.0

    while step < total and time_frac() < 1.0:
        order = rng.permutation(len(train_frames))
        running = {}
        for b in range(steps_per_epoch):
            if step >= total or time_frac() >= 1.0:
                break
            idx = order[b * s.batch_size:(b + 1) * s.batch_size]
            canvases, targets = [], []
            for i in idx:
                img, boxes, cls = augment(train_frames[i], spec.input_size, cfg.augment, rng, p.pad_value, p.letterbox)
                canvases.append(img)
                targets.append((torch.from_numpy(boxes).to(device), torch.from_numpy(cls).to(device)))
            x = torch.from_numpy(to_tensor_batch(canvases, p)).to(device)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, s, time_frac())
            if s.unfreeze_at and frozen and max(step / total, time_frac()) >= s.unfreeze_at:
                freeze_trunk(model, spec, s.freeze_blocks, frozen=False)
                log(f"step {step}: the {frozen / 1e6:.2f} M frozen trunk parameters train from now on")
                frozen, unfreeze_step = 0, (unfreeze_step if unfreeze_step >= 0 else step)
            for g in opt.param_groups:  # unfrozen blocks warm up again: Adam's first steps move every weight by ~lr
                if g.get("trunk"):
                    g["lr"] *= s.trunk_lr * min(1.0, (step - unfreeze_step + 1) / max(s.warmup_steps, 1)) \
                        if unfreeze_step >= 0 else 0
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                losses = compute_loss(model, spec, x, targets, cfg, s.aux_weight)
            loss = losses["total"]
            if not torch.isfinite(loss):
                raise TrainError(f"loss is {loss.item()} at step {step}; lower schedule.lr")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
            scaler.step(opt)
            scaler.update()
            if ema is not None:
                ema.update(model)
            step += 1
            for k, v in losses.items():
                running[k] = running.get(k, 0.0) + float(v.detach())
            running["n"] = running.get("n", 0) + 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", epoch=epoch + 1)
        epoch += 1
        mean = {k: v / running["n"] for k, v in running.items() if k != "n"} if running.get("n") else {}
        entry = {"epoch": epoch, "step": step, "lr": lr_at(step - 1, total, s, time_frac()), "loss": mean,
                 "train_s": round(elapsed0 + time.monotonic() - t_train, 1)}
        msg = f"epoch {epoch} step {step}/{total} loss {mean.get('total', float('nan')):.4f}"
        done = step >= total or time_frac() >= 1.0
        kept = ema.model if ema is not None else model  # what is evaluated, kept and exported
        if val_frames and ((s.eval_every and epoch % s.eval_every == 0) or done):
            res = evaluate_model(kept, spec, val_frames, device, s.eval_conf)
            if s.freeze_bn:
                set_bn_eval(model, spec)
            last_res = res
            car = res["classes"]["car"]
            car_f1 = car["f1"] if s.best_by == "f1" else car["ap50"]
            entry["val"] = {"car_f1": car["f1"], "car_ap50": car["ap50"], "car_p": car["precision"],
                            "car_r": car["recall"], "car_r_small": car["by_height"]["small"]["recall"],
                            "tl_r": res["classes"]["traffic light"]["recall"]}
            msg += " | val " + summary_line(res)
            if car_f1 > best_f1:
                best_f1 = car_f1
                save_checkpoint(out / "best.pt", kept, spec)
        history.append(entry)
        if bar is not None:
            bar.write(msg)
        else:
            log(msg)
        save_checkpoint(out / "last.pt", kept, spec)
        torch.save({"spec": to_mapping(spec), "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "ema": ema.state_dict() if ema is not None else None,
                    "scaler": scaler.state_dict() if use_amp else None, "step": step, "epoch": epoch,
                    "best_f1": best_f1, "history": history, "config": to_mapping(cfg), "unfreeze_step": unfreeze_step,
                    "train_s": elapsed0 + time.monotonic() - t_train}, state_path)
    if bar is not None:
        bar.close()
    if not (out / "best.pt").is_file():
        save_checkpoint(out / "best.pt", ema.model if ema is not None else model, spec)
    wall = time.monotonic() - t_start
    result = {"steps": step, "epochs": epoch, "best_car_f1": best_f1, "wall_s": round(wall, 1),
              "history": history, "val": last_res, "device": str(device)}
    if cfg.export_onnx:
        from models.detector import resolve
        from models.checkpoint import load_state_strict
        best_spec, state, src = resolve(str(out / "best.pt"))
        m = build_model(best_spec)
        load_state_strict(m, state, src, best_spec.name)
        path = export_onnx(m.cpu(), best_spec, export_path(cfg, out), dynamic_batch=False)
        result["onnx"] = str(path)
        log(f"exported {path} ({path.stat().st_size / 1e6:.1f} MB)")
    log(f"done: {step} steps, {epoch} epochs in {wall / 60:.1f} min on {device}; "
        f"best val car {'F1' if s.best_by == 'f1' else 'AP50'} {best_f1:.3f}")
    return result


def export_path(cfg: TrainConfig, out: Path) -> Path:
    """The config's export_onnx; with a run folder other than the config's, the same name inside it."""
    target = resolve_path(cfg.export_onnx)
    return target if out == resolve_path(cfg.out) else out / target.name


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--resume", action="store_true", help="continue from OUT/last_state.pt")
    ap.add_argument("--out", default=None, help="run folder (default: the config's out)")
    ap.add_argument("--max-steps", type=int, default=None, help="override schedule.max_steps")
    ap.add_argument("--device", default=None, help="override schedule.device")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--install", action="store_true",
                    help="copy the exported ONNX and best checkpoint to models/weights/<name>.onnx/.pt "
                         "(what run_stream --model <name> and eval --weights default use)")
    return ap.parse_args(argv)


WEIGHTS_DIR = ROOT / "models" / "weights"


def install(result: dict, out: Path, name: str, dest: Path = WEIGHTS_DIR) -> list[Path]:
    """Copy a finished run's ONNX export and best checkpoint into the shipped weights folder."""
    if not result.get("onnx"):
        raise TrainError("--install needs an ONNX export: set export_onnx in the training config")
    dest.mkdir(parents=True, exist_ok=True)
    pairs = [(Path(result["onnx"]), dest / f"{name}.onnx"), (out / "best.pt", dest / f"{name}.pt")]
    for src, dst in pairs:
        shutil.copyfile(src, dst)
    return [dst for _, dst in pairs]


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(args.config)
        sched = cfg.schedule
        if args.max_steps is not None:
            sched = replace(sched, max_steps=args.max_steps)
        if args.device is not None:
            sched = replace(sched, device=args.device)
        cfg = replace(cfg, schedule=sched)
        out = resolve_path(args.out or cfg.out)
        result = train(cfg, out, args.resume, progress=not args.no_progress)
        if args.install:
            for path in install(result, out, cfg.name):
                print(f"installed {path}", flush=True)
    except (ConfigError, DatasetError, TrainError) as e:
        print(f"train: {e}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
