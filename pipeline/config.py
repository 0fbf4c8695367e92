"""The application's configuration: YAML -> validated frozen dataclasses, in one place.

``load_config(path, overrides)`` reads a YAML file, applies dotted-key
overrides from the command line and returns an ``AppConfig`` (an override of None
is "not given"; ``NULL`` sets the field to null).  Every error is a
``ConfigError`` naming the file, the key, the bad value and what is allowed.
"""
from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from dashtrack_core.configtools import ConfigError, from_mapping
from dashtrack_core.detector import DASHCAM_CLASSES, Preprocess
from dashtrack_core.paths import expand_shared
from trackers.config import TrackerConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


# Upper bounds: a value past them is a typo or an attack (100000 threads took 16 GB and ignored
# SIGTERM; a queue of 10^12 frames held a whole decoded file in memory), never a setting.
MAX_QUEUE = 64                 # frames per queue between stages (a 720p frame is 2.7 MB)
MAX_TIMEOUT_S = 3600.0         # any timeout or wait
MAX_FRAME_SIDE = 16384         # camera resolution asked for
VIDEO_CONTAINERS = (".mp4", ".mov", ".m4v", ".mkv", ".avi", ".ts", ".flv")   # --save-video, H.264 inside


def max_threads() -> int:
    """The most threads one setting may ask for: 4 per CPU core of this machine, at least 8."""
    return max(8, 4 * (os.cpu_count() or 1))


def _positive(where: str, value: float | int | None) -> None:
    if value is not None and value <= 0:
        raise ConfigError(f"{where}: {value!r} must be > 0")


def _at_most(where: str, value: float | int | None, limit: float | int, why: str = "") -> None:
    if value is not None and value > limit:
        raise ConfigError(f"{where}: {value!r} is too large; use at most {limit}{why}")


def _threads(where: str, value: int) -> None:
    if value < 0:
        raise ConfigError(f"{where}: {value!r} must be >= 0 (0 = auto)")
    _at_most(where, value, max_threads(), f" (4 per CPU core, {os.cpu_count() or 1} cores here; 0 = auto)")


@dataclass(frozen=True)
class SourceConfig:
    fps: float | None = None           # timestamps for image folders (index / fps)
    camera_size: tuple[int, int] = (1280, 720)   # (width, height) asked of a local camera
    camera_fps: float | None = None    # frame rate asked of a local camera; null = the camera's default
    open_timeout_s: float = 5.0        # network streams: connect timeout
    read_timeout_s: float = 5.0        # network streams: no-data timeout
    decode_threads: int = 0            # PyAV codec threads; 0 = FFmpeg's choice
    thread_type: Literal["AUTO", "FRAME", "SLICE", "NONE"] = "AUTO"
    max_frames: int | None = None      # stop after this many frames (all if null)
    # Reopen a live source (stream, camera) that stops: auto = on for live sources, never for files.
    reconnect: Literal["auto", "no"] = "auto"
    reconnect_timeout_s: float = 30.0  # give up when the source is not back within this time
    reconnect_initial_s: float = 0.25  # first wait; doubles on each failed try
    reconnect_max_s: float = 0.5       # longest wait between tries (bounds the delay after a return)
    loop: int = 1                      # files: passes over the file (--loop N); live sources run until they stop
    realtime: bool = False             # files: no faster than their timestamps (--realtime); live sources always are

    def __post_init__(self) -> None:
        if min(self.camera_size) <= 0:
            raise ConfigError(f"source.camera_size: {list(self.camera_size)!r} must be positive (width, height)")
        for name in ("fps", "camera_fps", "open_timeout_s", "read_timeout_s", "max_frames",
                     "reconnect_timeout_s", "reconnect_initial_s", "reconnect_max_s"):
            _positive(f"source.{name}", getattr(self, name))
        for name in ("open_timeout_s", "read_timeout_s", "reconnect_timeout_s", "reconnect_initial_s", "reconnect_max_s"):
            _at_most(f"source.{name}", getattr(self, name), MAX_TIMEOUT_S, " seconds")
        _at_most("source.camera_size width", self.camera_size[0], MAX_FRAME_SIDE)
        _at_most("source.camera_size height", self.camera_size[1], MAX_FRAME_SIDE)
        _threads("source.decode_threads", self.decode_threads)
        if not 1 <= self.loop <= 1_000_000:
            raise ConfigError(f"source.loop: {self.loop!r} must be in 1..1000000 (passes over a file; 1 = once)")


@dataclass(frozen=True)
class DetectorConfig:
    """An ONNX detector (``backend: onnx``) or one of ``models/`` (``backend: torch``)."""

    backend: Literal["onnx", "torch"] = "onnx"
    # onnx: path to the .onnx file (relative paths are relative to the YAML file);
    # torch: a registered variant name or checkpoint path (see models/).
    model: str = ""
    # Output layout (see pipeline/onnx_detector.py); auto: from the model's metadata and outputs.
    format: Literal["auto", "yolox", "nanodet", "decoded"] = "auto"
    # Network input: ``imgsz`` is its long side, the short side follows each source's aspect ratio
    # (rounded up to the model's stride; dashtrack_core.detector.frame_input_shape).  A fixed
    # ``input_size`` (height, width) wins when both are set.  A fixed-shape ONNX file always runs
    # at its own shape.  Both null: the model file's default.
    imgsz: int | None = None
    input_size: tuple[int, int] | None = None
    letterbox: Literal["topleft", "center", "stretch"] = "topleft"
    pad_value: float = 114.0
    color: Literal["bgr", "rgb"] = "bgr"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)   # in 0..255 units
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    class_names: str | tuple[str, ...] = "coco"  # "coco" or an explicit list
    classes: tuple[str, ...] = DASHCAM_CLASSES   # kept classes; [] keeps all
    score_threshold: float = 0.3
    nms_iou: float = 0.45
    max_detections: int = 100
    top_k: int = 1000                            # candidates kept before NMS
    # Inference calls at once on consecutive frames (results stay in order), and
    # onnxruntime intra-op threads per call. 0 = auto: on the CPU 2 workers with
    # cores // 2 threads each (on 2 cores two 1-thread calls beat one 2-thread call:
    # BENCHMARKS.md, "CPU inference split"); on CUDA 1 worker and onnxruntime's threads.
    workers: int = 0
    threads: int = 0
    # onnxruntime's idle workers spin waiting for work; on a small CPU that spinning
    # takes cycles from decode and output threads.
    spin: bool = True
    device: str = "auto"                         # auto | cpu | cuda | cuda:N
    half: bool = False                           # torch backend on CUDA: fp16
    # Native-resolution crops for small objects, guided by the tracker (pipeline/crops.py):
    # per frame up to crop_budget crops (one is a rotating horizon-band tile, the others go
    # around tracked boxes shorter than crop_small_px), batched with the frame.
    crops: bool = False
    crop_budget: int = 2
    crop_small_px: float = 40.0
    crop_size: tuple[int, int] | None = None     # (height, width) in frame pixels; null = the network input
    crop_band: tuple[float, float] = (0.25, 0.6)  # horizon band: top and bottom as fractions of the height
    crop_merge_iou: float = 0.5                  # class-aware NMS merging crops with the full pass
    crop_edge_margin: float = 8.0                # px from an inner crop edge counted as a cut box
    # Consecutive frames of a file run through the network as one batch (a GPU runs 8
    # frames in about the time of one). 1 = frame by frame. Live sources always use 1:
    # waiting for the next frames would add their interval to the latency.
    batch: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ConfigError(f"detector.score_threshold: {self.score_threshold!r} must be in [0, 1]")
        if not 0.0 < self.nms_iou <= 1.0:
            raise ConfigError(f"detector.nms_iou: {self.nms_iou!r} must be in (0, 1]")
        _positive("detector.max_detections", self.max_detections)
        _positive("detector.top_k", self.top_k)
        if self.batch < 1:
            raise ConfigError(f"detector.batch: {self.batch!r} must be >= 1 (1 = frame by frame)")
        if self.crops and self.batch > 1:
            raise ConfigError(f"detector.crops and detector.batch {self.batch}: crops already batch each frame "
                              "with its crops; set detector.batch=1 or detector.crops=false")
        if self.workers < 0 or self.threads < 0:
            raise ConfigError(f"detector.workers {self.workers} / threads {self.threads}: must be >= 0 (0 = auto)")
        _threads("detector.workers", self.workers)
        _threads("detector.threads", self.threads)
        _at_most("detector.workers x detector.threads", self.workers * self.threads, max_threads(),
                 f" threads in all (4 per CPU core, {os.cpu_count() or 1} cores here)")
        if self.imgsz is not None and not 32 <= self.imgsz <= 4096:
            raise ConfigError(f"detector.imgsz: {self.imgsz!r} must be in [32, 4096] (the input's long side in pixels)")
        if self.input_size is not None and min(self.input_size) <= 0:
            raise ConfigError(f"detector.input_size: {list(self.input_size)!r} must be positive (height, width)")
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"detector.std: {list(self.std)!r} must be positive")
        if self.crop_budget < 1:
            raise ConfigError(f"detector.crop_budget: {self.crop_budget!r} must be >= 1 (turn crops off with detector.crops: off)")
        _positive("detector.crop_small_px", self.crop_small_px)
        if self.crop_size is not None and min(self.crop_size) < 32:
            raise ConfigError(f"detector.crop_size: {list(self.crop_size)!r} must be at least 32 px each (height, width), or null")
        top, bottom = self.crop_band
        if not 0.0 <= top < bottom <= 1.0:
            raise ConfigError(f"detector.crop_band: {list(self.crop_band)!r} must be [top, bottom] with 0 <= top < bottom <= 1")
        if not 0.0 < self.crop_merge_iou <= 1.0:
            raise ConfigError(f"detector.crop_merge_iou: {self.crop_merge_iou!r} must be in (0, 1]")
        if self.crop_edge_margin < 0:
            raise ConfigError(f"detector.crop_edge_margin: {self.crop_edge_margin!r} must be >= 0")

    @property
    def preprocess(self) -> Preprocess:
        """The flat ``detector.color/mean/std/letterbox/pad_value`` fields as the one preprocessing record."""
        return Preprocess(self.color, self.mean, self.std, self.letterbox, self.pad_value)


@dataclass(frozen=True)
class PipelineConfig:
    # Frame-drop policy: "auto" keeps every frame of a file (block) and the newest
    # frame of a live source (drop_oldest).
    drop_policy: Literal["auto", "block", "drop_oldest"] = "auto"
    queue_size: int = 4             # bounded queue between stages (file sources)
    live_queue_size: int = 1        # capture queue size for live sources
    join_timeout_s: float = 5.0     # per-thread join on shutdown
    track: bool = True              # run the tracking stage (trackers.KalmanTracker)

    def __post_init__(self) -> None:
        _positive("pipeline.queue_size", self.queue_size)
        _positive("pipeline.live_queue_size", self.live_queue_size)
        _positive("pipeline.join_timeout_s", self.join_timeout_s)
        for name in ("queue_size", "live_queue_size"):
            _at_most(f"pipeline.{name}", getattr(self, name), MAX_QUEUE, " frames (each holds a decoded image)")
        _at_most("pipeline.join_timeout_s", self.join_timeout_s, MAX_TIMEOUT_S, " seconds")


@dataclass(frozen=True)
class OutputConfig:
    show: Literal["auto", "yes", "no"] = "auto"   # auto: a window when a display is present
    save_video: str | None = None
    save_json: str | None = None
    save_mot: str | None = None
    stats_json: str | None = None
    report: str | None = None       # a self-contained HTML report of the run (pipeline/report.py)
    video_codec: str = "libx264"
    # Encoder settings chosen by bench/bench_encoder.py on a 2-core CPU (BENCHMARKS.md):
    # superfast + zerolatency + OpenCV's colour conversion + 1 thread costs about a
    # third of the CPU of veryfast with FFmpeg's defaults, for ~20% larger files.
    video_preset: str = "superfast"
    video_crf: int = 23
    video_tune: str | None = "zerolatency"        # x264 --tune; null for none
    video_convert: Literal["opencv", "ffmpeg"] = "opencv"   # who converts BGR to YUV 4:2:0
    video_threads: int = 0          # encoder threads; 0 = 1 on <= 2 cores, else FFmpeg's choice
    progress: bool = True           # progress bar for files (stderr)
    trails: bool = True             # preview / video: each track's last trail_seconds of box-bottom centres
    trail_seconds: float = 1.0
    ttc_warn_s: float = 2.0         # in-path tracks with time-to-contact below this are drawn in red
    hud_health: bool = False        # add a tracking-health line (tracks, churn, coasted share) to the HUD
    window_name: str = "dashtrack"

    def __post_init__(self) -> None:
        if not 0 <= self.video_crf <= 51:
            raise ConfigError(f"output.video_crf: {self.video_crf!r} must be in 0..51 (0 lossless, 23 default, 51 worst)")
        _threads("output.video_threads", self.video_threads)
        if self.save_video and Path(self.save_video).suffix.lower() not in VIDEO_CONTAINERS:
            raise ConfigError(f"--save-video {self.save_video}: unknown container "
                              f"{Path(self.save_video).suffix or '(no extension)'}; use one of {', '.join(VIDEO_CONTAINERS)}")
        if self.report and Path(self.report).suffix.lower() not in (".html", ".htm"):
            raise ConfigError(f"--report {self.report}: the report is an HTML page; give a file name ending in .html")
        seen: dict[str, str] = {}
        for flag, path in self.files():
            if not path:
                continue
            key = os.path.realpath(path)
            if key in seen:
                raise ConfigError(f"{seen[key]} and {flag} both write {path}; give each output its own file")
            seen[key] = flag
        _positive("output.trail_seconds", self.trail_seconds)
        _positive("output.ttc_warn_s", self.ttc_warn_s)

    def files(self) -> list[tuple[str, str | None]]:
        """Every file output as (flag, path or None), in the order they are reported."""
        return [("--save-video", self.save_video), ("--save-json", self.save_json), ("--save-mot", self.save_mot),
                ("--stats-json", self.stats_json), ("--report", self.report)]


@dataclass(frozen=True)
class PreviewConfig:
    """The preview window: at start, the largest size of the frame's aspect inside ``screen_fraction``
    of the screen (never larger than the frame); ``max_size`` (width, height) replaces the screen."""

    max_size: tuple[int, int] | None = None
    screen_fraction: float = 0.9

    def __post_init__(self) -> None:
        if self.max_size is not None and min(self.max_size) <= 0:
            raise ConfigError(f"preview.max_size: {list(self.max_size)!r} must be positive (width, height)")
        if not 0.0 < self.screen_fraction <= 1.0:
            raise ConfigError(f"preview.screen_fraction: {self.screen_fraction!r} must be in (0, 1]")


@dataclass(frozen=True)
class AppConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    preview: PreviewConfig = field(default_factory=PreviewConfig)


class _Null:
    """An override that sets a field to null (``--set KEY=null``); a plain None means "not given"."""

    def __repr__(self) -> str:
        return "NULL"


NULL = _Null()


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted}: {k!r} is not a section")
        node = child
    node[keys[-1]] = value


def read_yaml(path: Path) -> dict:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found; pass an existing YAML file with --config") from None
    except OSError as e:
        raise ConfigError(f"config file {path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path}: not UTF-8 text (byte {e.start}); save it as UTF-8 YAML") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(f"config file {path}: malformed YAML{where}: {problem}; fix the syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of sections at the top, got {type(data).__name__}")
    return data


def resolve_model_path(model: str, base_dir: Path) -> str:
    """A relative model path in a YAML file is relative to that file; names (no slash, no suffix) stay as they are;
    ``${DASHTRACK_SHARED_DATA}/...`` is in the shared data folder (dashtrack_core/paths.py)."""
    model = expand_shared(model)
    p = Path(model)
    if not model or p.is_absolute() or ("/" not in model and p.suffix == ""):
        return model
    return str((base_dir / p).resolve())


def load_config(path: Path | str | None = None, overrides: Mapping[str, Any] | None = None) -> AppConfig:
    path = Path(path) if path is not None else DEFAULT_CONFIG
    data = copy.deepcopy(read_yaml(path))
    detector = data.get("detector")
    if isinstance(detector, dict) and isinstance(detector.get("model"), str):
        detector["model"] = resolve_model_path(detector["model"], path.parent)
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, key, None if value is NULL else value)
    _migrate_camera_keys(data.get("source"), path)
    try:
        return from_mapping(AppConfig, data, "config")
    except ConfigError as e:
        raise ConfigError(_blame(str(e), path, overrides or {})) from None


def _blame(message: str, path: Path, overrides: Mapping[str, Any]) -> str:
    """Name the YAML file only when the bad value came from it: a value given on the command line
    (``--set``, ``--fps``, ``--save-json``) is not the file's fault."""
    if message.startswith("--"):
        return message                       # names its own command-line flags
    for key, value in overrides.items():
        if value is not None and re.search(rf"(^|config\.){re.escape(key)}(\W|$)", message):
            return message
    return f"{path}: {message}"


def _migrate_camera_keys(source: Any, path: Path) -> None:
    """``source.camera_width`` / ``camera_height`` (before camera_size) still work: they become camera_size."""
    if not isinstance(source, dict) or not ({"camera_width", "camera_height"} & set(source)):
        return
    if "camera_size" in source:
        raise ConfigError(f"{path}: source.camera_width/camera_height and source.camera_size both given; "
                          "keep only camera_size: [width, height]")
    source["camera_size"] = [source.pop("camera_width", 1280), source.pop("camera_height", 720)]


def model_overrides(model: str) -> dict:
    """A ``--model`` value (preset name or YAML, .onnx file, or ``models/`` variant / checkpoint) as
    config overrides of the detector section."""
    path = Path(model)
    if path.suffix in (".yaml", ".yml") or (CONFIG_DIR / "detectors" / f"{model}.yaml").is_file():
        return {f"detector.{k}": v for k, v in detector_preset(model).items()}
    if path.suffix == ".onnx":
        return {"detector.backend": "onnx", "detector.model": str(path.resolve()), "detector.format": "auto"}
    # format describes the shipped ONNX file's outputs; a torch model decodes its own (pipeline/build.py)
    return {"detector.backend": "torch", "detector.model": model, "detector.format": "auto"}


def detector_preset(name_or_path: str) -> dict:
    """A detector section from ``configs/detectors/<name>.yaml`` or a YAML path, model path resolved."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        path = p
    else:
        path = CONFIG_DIR / "detectors" / f"{name_or_path}.yaml"
    data = read_yaml(path)
    section = data.get("detector", data)
    if isinstance(section.get("model"), str):
        section = dict(section, model=resolve_model_path(section["model"], path.parent))
    return section
