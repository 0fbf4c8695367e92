"""Official pretrained weights: name -> release URL, input size, classes; cached on first use.

Downloads go to ``~/.cache/dashtrack/weights`` (or ``cache_dir``), are written to a temporary
file and renamed only after the size/sha256 check passes (where known), so a broken download
never sits in the cache.  Offline, the error names the URL, the cache path and the
``variant:path`` form that loads a local file instead (the path the tests use).
"""
from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

RELEASE = "https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0"


@dataclass(frozen=True)
class ZooEntry:
    url: str   # the input size is the variant's (configs/models/<name>.yaml), not repeated here
    classes: str
    size_bytes: int | None = None  # None: not known here, not checked
    sha256: str | None = None


ZOO: dict[str, ZooEntry] = {
    "yolox_nano": ZooEntry(f"{RELEASE}/yolox_nano.pth", "coco"),
    "yolox_tiny": ZooEntry(f"{RELEASE}/yolox_tiny.pth", "coco"),
    "yolox_s": ZooEntry(f"{RELEASE}/yolox_s.pth", "coco"),
}


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "dashtrack" / "weights"


def _verify(path: Path, entry: ZooEntry) -> None:
    if entry.size_bytes is not None and path.stat().st_size != entry.size_bytes:
        raise ValueError(f"{path}: {path.stat().st_size} bytes, expected {entry.size_bytes} from {entry.url}")
    if entry.sha256 is not None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != entry.sha256:
            raise ValueError(f"{path}: sha256 {digest}, expected {entry.sha256} from {entry.url}")


def fetch_weights(name: str, cache_dir: Path | None = None, timeout_s: float = 30.0) -> Path:
    """Local path of the official weights of variant ``name``, downloading them once."""
    if name not in ZOO:
        raise KeyError(f"no official weights for {name!r}; the zoo has {', '.join(sorted(ZOO))}")
    entry = ZOO[name]
    cache = cache_dir or default_cache_dir()
    path = cache / Path(entry.url).name
    if path.is_file():
        _verify(path, entry)
        return path
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".part{os.getpid()}")
    try:
        with urllib.request.urlopen(entry.url, timeout=timeout_s) as resp, open(tmp, "wb") as f:
            while chunk := resp.read(1 << 20):
                f.write(chunk)
        _verify(tmp, entry)
        tmp.replace(path)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise RuntimeError(
            f"could not download the {name} weights from {entry.url} into {path} ({e}); "
            f"download the file by hand into {cache}, or pass a local file as '{name}:/path/to/{path.name}'"
        ) from e
    finally:
        tmp.unlink(missing_ok=True)
    return path
