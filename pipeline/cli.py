"""The ``dashtrack`` command (``python run_stream.py`` in a clone): detect and track objects in a
dashcam stream, live or from a file.

    dashtrack --source examples/test_video.mp4
    dashtrack --source camera0
    dashtrack --source drive.mp4 --no-show --save-video out.mp4 --save-json out.jsonl
    dashtrack --source drive.mp4 --conf 0.4 --classes car,person --imgsz 512 --device cpu
    dashtrack fleet ...                      (many drives at once on Ray: pipeline/fleet.py, via pipeline/command.py)
"""
from __future__ import annotations

import argparse
import signal
import sys
import traceback
from pathlib import Path

import yaml

import cv2  # noqa: F401  (cv2 before av: see pipeline/__init__.py)

from .config import DEFAULT_CONFIG, NULL, REPO_ROOT as PACKAGE_ROOT, load_config, model_overrides
from dashtrack_core.configtools import ConfigError
from .onnx_detector import DetectorError
from .outputs import OutputError
from .multi import MultiRunner
from .runner import Runner, Terminated, interrupt_reason
from .sources import SourceError
from .stages import StageError
from .startup import DEVICE_CHOICES, check_device, describe_run, parse_classes
from .stats import format_table

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="dashtrack", description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
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
    p.add_argument("--report", metavar="OUT.html", help="write a self-contained HTML report with plots")
    p.add_argument("--fps", type=float, help="frame rate for image folders")
    p.add_argument("--max-frames", type=int, help="stop after N frames")
    p.add_argument("--loop", type=int, metavar="N",
                   help="files: play the file N times as one run (ids and timestamps continue); "
                        "a live source runs until it stops, --loop is ignored for it with a note")
    p.add_argument("--realtime", action="store_true",
                   help="files: no faster than their timestamps (every frame is still processed); "
                        "live sources always run at their own pace")
    p.add_argument("--conf", "--score-threshold", dest="score_threshold", type=float, metavar="SCORE",
                   help="detector score threshold, 0..1 (default 0.3; with tracking on, boxes down to "
                        "tracker.low_score reach the tracker's second pass, new tracks still need tracker.new_track)")
    p.add_argument("--classes", metavar="A,B",
                   help="keep only these classes: names or COCO ids, e.g. car,person or 2,0")
    p.add_argument("--device", help=f"{DEVICE_CHOICES} (default auto: CUDA when present)")
    track = p.add_mutually_exclusive_group()
    track.add_argument("--track", action="store_true", default=None, help="run the tracker")
    track.add_argument("--no-track", action="store_true", help="detection only, no track ids")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set detector.workers=1 --set tracker.min_hits=3 "
                        "(VALUE read as YAML; fields: configs/default.yaml)")
    p.add_argument("--quiet", action="store_true", help="no start line and no timing table at the end")
    p.add_argument("--debug", action="store_true", help="full tracebacks on errors")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace):
    overrides = {}
    if args.model:
        overrides.update(model_overrides(packaged(args.model)))
    overrides.update({
        "output.save_video": args.save_video,
        "output.save_json": args.save_json,
        "output.save_mot": args.save_mot,
        "output.stats_json": args.stats_json,
        "output.report": args.report,
        "output.show": "no" if args.no_show else ("yes" if args.show else None),
        "source.fps": args.fps,
        "source.max_frames": args.max_frames,
        "source.loop": args.loop,
        "source.realtime": True if args.realtime else None,
        "detector.classes": list(parse_classes(args.classes)) if args.classes is not None else None,
        "detector.score_threshold": args.score_threshold,
        "detector.imgsz": args.imgsz,
        "detector.device": args.device,
        "pipeline.track": False if args.no_track else args.track,
    })
    sets = parse_sets(args.set)
    overrides.update(sets)
    cfg = load_config(packaged(args.config), overrides)
    check_device(cfg)
    return cfg


def packaged(path: str) -> str:
    """A relative path of the clone (``configs/detectors/lite.yaml``, ``models/weights/dashcam.onnx``) that is not
    in the working folder: the installed package's copy (package data), so they work from any folder."""
    p = Path(path)
    if p.is_absolute() or p.exists() or not p.suffix:
        return path
    inside = PACKAGE_ROOT / p
    return str(inside) if inside.is_file() else path


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
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    runner = None
    try:
        cfg = build_config(args)
        note = check_device(cfg) if args.device == "auto" else None
        if len(args.source) == 1:
            runner = Runner(cfg, args.source[0])
        else:
            runner = MultiRunner(cfg, args.source)
        if not args.quiet:
            _start_lines(cfg, runner, note)
        reports = [runner.run()] if isinstance(runner, Runner) else runner.run()
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
        outputs = [p for _, p in out.files() if p]
        print(f"{report['source']}: {report['frames_out']} frames, {report['fps']:.1f} FPS, stopped: "
              f"{report['stop_reason']}" + (f"; wrote {', '.join(outputs)}" if outputs else ""), file=sys.stderr)
    if runner.interrupted:
        return 143 if any(r.stop_reason.startswith("terminated") for r in runners) else 130
    return 0


def _start_lines(cfg, runner, note: str | None) -> None:
    """The run's one line (detector, input, backend and device, tracker), after any note on it."""
    runners = runner.runners if isinstance(runner, MultiRunner) else [runner]
    if note:
        print(note, file=sys.stderr)
    for r in runners:
        if r.source.live and cfg.source.loop > 1:
            print(f"note: --loop {cfg.source.loop} ignored for {r.source.name}: a live source is not replayed, "
                  "it runs until it stops", file=sys.stderr)
        if r.source.live and cfg.source.realtime:
            print(f"note: --realtime: {r.source.name} is live and runs at its own pace anyway", file=sys.stderr)
    detector = runner.shared if isinstance(runner, MultiRunner) else runner.detector
    print(describe_run(cfg, detector, runners[0].source), file=sys.stderr, flush=True)


def _reports(runner) -> list[dict]:
    if isinstance(runner, MultiRunner):
        return [r for r in runner.reports if r]
    return [runner.report] if getattr(runner, "report", None) else []


if __name__ == "__main__":
    sys.exit(main())
