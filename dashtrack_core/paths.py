"""Where the shared data lives: one place for the tests, the tools and the detector presets.

The real data (teacher models, clips, KITTI, still images) is not in the repository.
It is read from ``$DASHTRACK_SHARED_DATA`` when that is set, else from ``../shared/data``
beside the repository. A detector YAML names a file in it as
``${DASHTRACK_SHARED_DATA}/teachers/...``; ``expand_shared`` resolves that.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_ENV = "DASHTRACK_SHARED_DATA"
_TOKEN = "${" + SHARED_ENV + "}"


def shared_data_dir() -> Path:
    """``$DASHTRACK_SHARED_DATA``, else ``../shared/data`` beside the repository (it may not exist)."""
    value = os.environ.get(SHARED_ENV, "").strip()
    return Path(value).expanduser() if value else REPO_ROOT.parent / "shared" / "data"


def expand_shared(path: str) -> str:
    """``${DASHTRACK_SHARED_DATA}/x`` -> the shared data folder's ``x``; any other string unchanged."""
    if path.startswith(_TOKEN):
        rest = path[len(_TOKEN):].lstrip("/")
        return str(shared_data_dir() / rest) if rest else str(shared_data_dir())
    return path
