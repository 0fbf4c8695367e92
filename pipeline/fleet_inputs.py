"""The fleet's inputs: files, folders (recursive, video suffixes) and globs -> drives with unique names.

No Ray here: the CLI checks its inputs before it starts anything.
"""
from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path

from .sources import VIDEO_SUFFIXES


class FleetInputError(ValueError):
    """A bad fleet input: one line naming it and the fix."""


@dataclass(frozen=True)
class Drive:
    name: str        # the folder under --out: unique within the fleet, stable for the same inputs
    path: Path       # absolute


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _videos_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and (path == folder or folder in path.parents)


def discover(inputs: list[str], exclude: Path | None = None) -> list[Path]:
    """Absolute video paths, sorted and without duplicates. A file named directly is taken whatever its
    suffix; folders (and folders a glob matches) give the videos under them; files under ``exclude``
    (the fleet's own output folder) are left out."""
    exclude = exclude.resolve() if exclude is not None else None
    found: dict[Path, None] = {}
    for text in inputs:
        if _is_glob(text):
            matches = [Path(m) for m in sorted(glob.glob(text, recursive=True))]
            if not matches:
                raise FleetInputError(f"input {text!r}: the pattern matches nothing; check it, quoted so "
                                      "the fleet expands it (e.g. 'drives/**/*.mp4')")
        else:
            path = Path(text)
            if not path.exists():
                raise FleetInputError(f"input {text!r}: no such file or folder")
            matches = [path]
        videos: list[Path] = []
        for m in matches:
            if m.is_dir():
                videos += _videos_under(m)
            elif m.is_file() and (not _is_glob(text) or m.suffix.lower() in VIDEO_SUFFIXES):
                videos.append(m)
        videos = [v.resolve() for v in videos]
        videos = [v for v in videos if not _inside(v, exclude)]
        if not videos:
            suffixes = " ".join(sorted(VIDEO_SUFFIXES))
            raise FleetInputError(f"input {text!r}: no video files there (looked for {suffixes})")
        for v in videos:
            found[v] = None
    return sorted(found)


def _clean(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "drive"


def _candidate(path: Path, level: int) -> str:
    """Level 0: the stem; 1: the file name with its suffix; k >= 2: k - 1 parent folders before it."""
    if level == 0:
        return _clean(path.stem)
    parts = path.parts[-level:] if level >= 2 else (path.name,)
    return "__".join(_clean(p) for p in parts)


def drive_names(paths: list[Path]) -> list[Drive]:
    """One unique folder name per path: the file's stem, lengthened only for the paths whose shorter
    name collides (``a/drive.mp4``, ``b/drive.mp4`` -> ``a__drive.mp4``, ``b__drive.mp4``)."""
    level = {p: 0 for p in paths}
    while True:
        names: dict[str, list[Path]] = {}
        for p in paths:
            names.setdefault(_candidate(p, level[p]).lower(), []).append(p)   # case-insensitive filesystems
        clashes = [group for group in names.values() if len(group) > 1]
        if not clashes:
            break
        progressed = False
        for group in clashes:
            for p in group:
                if level[p] < len(p.parts):
                    level[p] += 1
                    progressed = True
        if not progressed:            # cannot happen for distinct absolute paths; numbered to be safe
            break
    out, seen = [], set()
    for p in paths:
        name, n = _candidate(p, level[p]), 2
        while name.lower() in seen:
            name = f"{_candidate(p, level[p])}-{n}"
            n += 1
        seen.add(name.lower())
        out.append(Drive(name, p))
    return out
