#!/usr/bin/env python3
"""Reconnect figures: ffmpeg serves a real clip over HTTP on loopback; the server is killed
and restarted --trials times while the pipeline runs, then killed for good.  Prints, per
outage, the reported gap and how long after the server's return frames flowed again, and
how long after the final loss the run ended with its error.

    python -m bench.reconnect --trials 3 --outage 3 --json bench/results/reconnect.json
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:      # run by path: the project's packages are not on the path
    raise SystemExit("run it from the repository root as a module: python -m bench.reconnect --help")

import argparse
import json
import sys
import threading
import time
from pathlib import Path

from bench.common import SHARED, StreamServer, clip_file, free_port, wait_until

from pipeline.config import DEFAULT_CONFIG, load_config
from pipeline.runner import Runner


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=clip_file, default=str(SHARED / "videos" / "udacity" / "test_small2.mp4"))
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--outage", type=float, default=3.0, help="seconds the server stays down")
    ap.add_argument("--timeout", type=float, default=5.0, help="source.reconnect_timeout_s")
    ap.add_argument("--json")
    args = ap.parse_args()
    server = StreamServer(args.clip, free_port())
    cfg = load_config(DEFAULT_CONFIG, {"output.show": "no", "output.progress": False,
                                       "source.reconnect_timeout_s": args.timeout})
    server.start()
    runner = Runner(cfg, server.url)
    outcome: dict = {}

    def run():
        try:
            runner.run()
        except Exception as e:  # the expected end: the stream never returns
            outcome["error"] = str(e)
        outcome["ended"] = time.monotonic()

    t = threading.Thread(target=run, daemon=True)
    rows = []
    try:
        t.start()
        if not wait_until(lambda: runner.stats.frames_out >= 25, 60):
            print("error: no frames from the stream", file=sys.stderr)
            return 1
        for trial in range(args.trials):
            server.kill()
            killed = time.monotonic()
            time.sleep(args.outage)
            returned = server.start()
            if not wait_until(lambda: len(runner.source.gaps) > trial, 30):
                print(f"error: trial {trial}: no reconnect", file=sys.stderr)
                return 1
            gap = runner.source.gaps[trial]
            rows.append({"down_s": round(returned - killed, 2), "reported_gap_s": gap["seconds"],
                         "resumed_after_return_s": round(gap["resumed_monotonic"] - returned, 2)})
            wait_until(lambda: False, 3.0)           # let it run a little between outages
        server.kill()
        lost = time.monotonic()
        t.join(args.timeout + 30)
    finally:
        server.kill()
    report = runner.report
    print("| outage | server down s | reported gap s | frames again after return s |")
    print("| --- | --- | --- | --- |")
    for i, r in enumerate(rows, 1):
        print(f"| {i} | {r['down_s']:.2f} | {r['reported_gap_s']:.2f} | {r['resumed_after_return_s']:.2f} |")
    end_s = outcome["ended"] - lost
    print(f"\nfinal loss: run ended {end_s:.1f} s later (timeout {args.timeout:.0f} s) with: {outcome.get('error')}")
    print(f"frames in {report['frames_in']}, out {report['frames_out']}, dropped {report['dropped']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"outages": rows, "end_after_final_loss_s": end_s,
                                               "error": outcome.get("error"), "report": report}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
