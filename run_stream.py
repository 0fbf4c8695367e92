#!/usr/bin/env python3
"""Detect and track objects in a dashcam stream, live or from a file.

    python run_stream.py --source examples/test_video.mp4
    python run_stream.py --source camera0
    python run_stream.py --source drive.mp4 --no-show --save-video out.mp4 --save-json out.jsonl
"""
from __future__ import annotations

import argparse
import signal
import sys
import traceback

import yaml

import cv2  # noqa: F401  (cv2 before av: see pipeline/__init__.py)

from pipeline.config import DEFAULT_CONFIG, NULL, load_config, model_overrides
from pipeline.configtools import ConfigError
from pipeline.onnx_detector import DetectorError
from pipeline.outputs import OutputError
from pipeline.multi import MultiRunner
from pipeline.runner import Runner, Terminated, interrupt_reason
from pipeline.sources import SourceError
from pipeline.stages import StageError
from pipeline.stats import format_table


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", required=True, nargs="+",
                   help="video file, cameraN, /dev/videoN or a camera's name, rtsp:// or http(s):// URL, image folder "
                        "or glob, lavfi:<filter>; "
                        "several sources share one detector (outputs get _0, _1, ... suffixes)")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config (default: configs/default.yaml)")
    p.add_argument("--model", help="detector: a preset in configs/detectors (dashcam = the default, lite, "
                                   "yolox_nano, nanodet_m), a detector YAML, an .onnx file, or a models/ variant "
                                   "or checkpoint")
    p.add_argument("--imgsz", type=int, metavar="N",
                   help="detector input long side; the short side follows the source's aspect ratio "
                        "(a fixed-shape model runs at its own shape)")
    show = p.add_mutually_exclusive_group()
    show.add_argument("--no-show", action="store_true", help="no preview window")
    show.add_argument("--show", action="store_true", help="preview window (when a display is present)")
    p.add_argument("--save-video", metavar="OUT.mp4", help="write the annotated video (H.264)")
    p.add_argument("--save-json", metavar="OUT.jsonl", help="write one JSON line per frame")
    p.add_argument("--save-mot", metavar="OUT.txt", help="write tracks in MOTChallenge format")
    p.add_argument("--stats-json", metavar="OUT.json", help="write the timing report as JSON")
    p.add_argument("--fps", type=float, help="frame rate for image folders")
    p.add_argument("--max-frames", type=int, help="stop after N frames")
    p.add_argument("--score-threshold", type=float, help="detector score threshold (with tracking the default lets "
                   "boxes down to tracker.low_score reach the tracker's second pass)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    track = p.add_mutually_exclusive_group()
    track.add_argument("--track", action="store_true", default=None, help="run the tracker")
    track.add_argument("--no-track", action="store_true", help="detection only, no track ids")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set detector.workers=1 --set tracker.min_hits=3 "
                        "(VALUE read as YAML; fields: configs/default.yaml)")
    p.add_argument("--quiet", action="store_true", help="no timing table at the end")
    p.add_argument("--debug", action="store_true", help="full tracebacks on errors")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace):
    overrides = {}
    if args.model:
        overrides.update(model_overrides(args.model))
    overrides.update({
        "output.save_video": args.save_video,
        "output.save_json": args.save_json,
        "output.save_mot": args.save_mot,
        "output.stats_json": args.stats_json,
        "output.show": "no" if args.no_show else ("yes" if args.show else None),
        "source.fps": args.fps,
        "source.max_frames": args.max_frames,
        "detector.score_threshold": args.score_threshold,
        "detector.imgsz": args.imgsz,
        "detector.device": args.device,
        "pipeline.track": False if args.no_track else args.track,
    })
    sets = parse_sets(args.set)
    overrides.update(sets)
    cfg = load_config(args.config, overrides)
    return cfg


def parse_sets(items: list[str]) -> dict:
    """``--set section.key=value`` pairs; the value is read as YAML (numbers, lists, null: the field set to null)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key.count(".") != 1 or not all(key.split(".")):
            raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. --set detector.workers=1")
        try:
            out[key] = yaml.safe_load(value) if value else ""
            if out[key] is None:
                out[key] = NULL
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML; quote strings with spaces") from None
    return out


def _sigterm(signum, frame):
    raise Terminated


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    runner = None
    try:
        cfg = build_config(args)
        if len(args.source) == 1:
            runner = Runner(cfg, args.source[0])
            reports = [runner.run()]
        else:
            runner = MultiRunner(cfg, args.source)
            reports = runner.run()
    except (ConfigError, SourceError, DetectorError, OutputError, StageError) as e:
        if args.debug:
            traceback.print_exc()
        if runner is not None and not args.quiet:
            for r in _reports(runner):
                print(format_table(r), file=sys.stderr)
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, ConfigError) else 1
    except KeyboardInterrupt as e:
        print(interrupt_reason(e), file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    runners = runner.runners if isinstance(runner, MultiRunner) else [runner]
    for r, report in zip(runners, reports):
        if not args.quiet:
            print(format_table(report), file=sys.stderr)
        out = r.cfg.output
        outputs = [p for p in (out.save_video, out.save_json, out.save_mot, out.stats_json) if p]
        print(f"{report['source']}: {report['frames_out']} frames, {report['fps']:.1f} FPS, stopped: "
              f"{report['stop_reason']}" + (f"; wrote {', '.join(outputs)}" if outputs else ""), file=sys.stderr)
    if runner.interrupted:
        return 143 if any(r.stop_reason.startswith("terminated") for r in runners) else 130
    return 0


def _reports(runner) -> list[dict]:
    if isinstance(runner, MultiRunner):
        return [r for r in runner.reports if r]
    return [runner.report] if getattr(runner, "report", None) else []


if __name__ == "__main__":
    sys.exit(main())
