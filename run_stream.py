#!/usr/bin/env python3
"""Detect and track objects in a dashcam stream, live or from a file: ``python run_stream.py``
is the ``dashtrack`` command (pipeline/command.py: pipeline/cli.py for one run, pipeline/fleet.py for
``python run_stream.py fleet ...``) run from a clone.

    python run_stream.py --source examples/test_video.mp4
    python run_stream.py --source camera0
    python run_stream.py --source drive.mp4 --no-show --save-video out.mp4 --save-json out.jsonl
"""
import sys

from pipeline.cli import build_config, parse_args, parse_sets  # noqa: F401  (re-exported for tests and tools)
from pipeline.command import main

if __name__ == "__main__":
    sys.exit(main())
