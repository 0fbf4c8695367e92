"""The threaded stage chain: bounded queues with named drop policies, stage
threads, and one stop path for every way a run ends.

A ``Chain`` owns a stop event and the first error.  Every stage thread loops on
``get`` with a short timeout so it sees the stop event; an ``END`` marker flows
downstream on every path (end of input, error, stop), so nothing waits forever.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .stats import Stats

END = object()          # end-of-stream marker; never dropped
POLL_S = 0.05           # how often a waiting thread looks at the stop event


class Stopped(Exception):
    """Raised inside a stage when the chain is stopping."""


class BoundedQueue:
    """A FIFO with a capacity and a drop policy.

    ``block``:       ``put`` waits for room (files: every frame is kept).
    ``drop_oldest``: ``put`` on a full queue discards the oldest item and counts
                     it under ``drop_cause`` (live sources: the newest frame wins).
    """

    def __init__(self, name: str, maxsize: int, policy: str, stats: Stats, stop: threading.Event,
                 on_drop: Callable[[], None] | None = None):
        if policy not in ("block", "drop_oldest"):
            raise ValueError(f"unknown drop policy {policy!r}")
        self.name, self.maxsize, self.policy = name, maxsize, policy
        self.stats, self.stop = stats, stop
        self._on_drop = on_drop or (lambda: stats.drop(f"{name} full (newest kept)"))
        self._items: deque = deque()
        self._cond = threading.Condition()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put(self, item: Any) -> None:
        with self._cond:
            if item is END:                     # the end marker always gets in
                self._items.append(item)
                self._cond.notify_all()
                return
            while sum(1 for x in self._items if x is not END) >= self.maxsize:
                if self.policy == "drop_oldest":
                    self._drop_oldest()
                    break
                if self.stop.is_set():
                    raise Stopped
                self._cond.wait(POLL_S)
            self._items.append(item)
            self._cond.notify_all()

    def _drop_oldest(self) -> None:
        for i, old in enumerate(self._items):
            if old is not END:                  # the end marker is never dropped
                del self._items[i]
                self._on_drop()
                return

    def get(self) -> Any:
        """The next item; raises ``Stopped`` when the chain stops while waiting."""
        with self._cond:
            while not self._items:
                if self.stop.is_set():
                    raise Stopped
                self._cond.wait(POLL_S)
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def get_nowait(self) -> Any | None:
        with self._cond:
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item


class StageError(RuntimeError):
    """An exception raised in a stage, re-raised in the main thread with the stage's name."""

    def __init__(self, stage: str, error: BaseException):
        super().__init__(f"{stage} stage failed: {error}" if str(error) else f"{stage} stage failed: {type(error).__name__}")
        self.stage, self.error = stage, error


class Many(tuple):
    """A stage result that is several items, passed on one by one in this order
    (a stage that splits a batch of frames back into frames)."""


@dataclass
class StageSpec:
    """A stage: ``fn(item) -> item | Many | None`` (None: nothing to pass on).

    Time is recorded per frame: an item with a ``frames`` attribute (a batch of frames)
    counts as that many.
    """

    name: str
    fn: Callable[[Any], Any]
    close: Callable[[], None] | None = None   # called once when the stage ends, on every path
    # Called once at the end of the input (not on errors or stop), before the end marker
    # goes on: what it returns (None, an item or Many) is passed on, e.g. a partial batch.
    flush: Callable[[], Any] | None = None
    # Threads running ``fn`` on consecutive items at once; outputs keep the input order.
    # For a stage whose work releases the GIL (onnxruntime, torch), on a CPU where one
    # call scales poorly over all cores.
    workers: int = 1


class _Ordered:
    """Shared state of a stage's workers: numbers items as they are taken and lets
    results out in that order, and knows when the last worker has ended."""

    def __init__(self, workers: int, stop: threading.Event):
        self.take_lock = threading.Lock()
        self.turn = threading.Condition()
        self.next_in = 0          # number given to the next item taken
        self.next_out = 0         # number of the next result allowed out
        self.running = workers
        self.stop = stop

    def take(self, inq: BoundedQueue) -> tuple[int, Any]:
        with self.take_lock:
            item = inq.get()
            if item is END:
                inq.put(END)      # the other workers must see the end too
                return -1, END
            seq = self.next_in
            self.next_in += 1
            return seq, item

    def wait_turn(self, seq: int) -> None:
        with self.turn:
            while self.next_out != seq:
                if self.stop.is_set():
                    raise Stopped
                self.turn.wait(POLL_S)

    def done(self, seq: int) -> None:
        with self.turn:
            self.next_out = seq + 1
            self.turn.notify_all()

    def worker_ended(self) -> bool:
        """True for the last worker to end."""
        with self.turn:
            self.running -= 1
            return self.running == 0


class Chain:
    """Stage threads joined by bounded queues.

    ``source`` is an iterable run on the capture thread; its items enter the first
    queue with ``capture_policy``.  The last stage's outputs go to ``self.output``.
    """

    def __init__(self, source: Iterable[Any], stages: list[StageSpec], stats: Stats, *,
                 capture_policy: str = "block", capture_queue: int = 4, queue_size: int = 4,
                 output_queue: int = 4, output_policy: str = "block", capture_name: str = "capture"):
        self.stats = stats
        self.stop_event = threading.Event()
        self.error: StageError | None = None
        self._error_lock = threading.Lock()
        self.capture_name = capture_name
        self.pause = threading.Event()          # set: capture waits (files) or drops (live)
        self._source = source
        self._capture_policy = capture_policy
        self.queues = [BoundedQueue(f"{capture_name} queue", capture_queue, capture_policy, stats, self.stop_event)]
        for spec in stages[:-1]:
            self.queues.append(BoundedQueue(f"{spec.name} queue", queue_size, "block", stats, self.stop_event))
        # The main thread reads this queue; when it previews with drop_oldest, a skipped
        # preview image is not a lost frame (it was processed and written).
        self.output = BoundedQueue("preview", output_queue, output_policy, stats, self.stop_event,
                                   on_drop=stats.preview_skipped)
        self.queues.append(self.output)
        self.stages = stages
        self.threads = [threading.Thread(target=self._capture, name=capture_name, daemon=True)]
        for i, spec in enumerate(stages):
            shared = _Ordered(spec.workers, self.stop_event)
            self.threads += [threading.Thread(target=self._run_worker,
                                              args=(spec, self.queues[i], self.queues[i + 1], shared),
                                              name=spec.name if spec.workers == 1 else f"{spec.name}-{w}",
                                              daemon=True) for w in range(spec.workers)]

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> "Chain":
        for t in self.threads:
            t.start()
        return self

    def fail(self, stage: str, error: BaseException, drain: bool = False) -> None:
        """Record the first error; stop every thread, or with ``drain`` (a failed source)
        let the frames already captured run through before the error surfaces."""
        with self._error_lock:
            if self.error is None:
                self.error = StageError(stage, error)
        if not drain:
            self.stop_event.set()

    def stop(self) -> None:
        self.stop_event.set()

    def join(self, timeout_s: float) -> list[str]:
        """Join every thread (each with ``timeout_s``); returns the names of any still alive."""
        deadline = time.monotonic() + timeout_s
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()) + 0.05)
        return [t.name for t in self.threads if t.is_alive()]

    @property
    def alive(self) -> bool:
        return any(t.is_alive() for t in self.threads)

    # -- threads -------------------------------------------------------------------
    def _capture(self) -> None:
        out = self.queues[0]
        live = self._capture_policy == "drop_oldest"
        try:
            for item in self._source:
                self.stats.captured()
                if self.pause.is_set():
                    if live:                      # a live source keeps running; paused frames are dropped
                        self.stats.drop("paused")
                        continue
                    while self.pause.is_set() and not self.stop_event.is_set():
                        time.sleep(POLL_S)
                if self.stop_event.is_set():
                    break
                out.put(item)
        except Stopped:
            pass
        except Exception as e:  # surfaces in the main thread, named, after the captured frames
            self.fail(self.capture_name, e, drain=True)
        except BaseException as e:
            self.fail(self.capture_name, e)
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                try:
                    close()
                except BaseException as e:
                    self.fail(self.capture_name, e)
            out.put(END)

    @staticmethod
    def _put(outq: BoundedQueue, result: Any) -> None:
        if isinstance(result, Many):
            for r in result:
                outq.put(r)
        elif result is not None:
            outq.put(result)

    def _run_worker(self, spec: StageSpec, inq: BoundedQueue, outq: BoundedQueue, shared: _Ordered) -> None:
        """One of a stage's ``spec.workers`` threads (usually the only one); results leave in input order."""
        ended = False
        try:
            while True:
                seq, item = shared.take(inq)
                if item is END:
                    ended = True
                    break
                t0 = time.perf_counter()
                result = spec.fn(item)
                self.stats.record(spec.name, time.perf_counter() - t0, getattr(item, "frames", 1))
                shared.wait_turn(seq)
                try:
                    self._put(outq, result)
                finally:
                    shared.done(seq)
        except Stopped:
            pass
        except BaseException as e:
            self.fail(spec.name, e)
        finally:
            last = shared.worker_ended()
            if last and ended and spec.flush is not None and not self.stop_event.is_set():
                try:
                    self._put(outq, spec.flush())
                except Stopped:
                    pass
                except BaseException as e:
                    self.fail(spec.name, e)
            if last:                        # the last one closes the stage and passes the end on
                if spec.close is not None:
                    try:
                        spec.close()
                    except BaseException as e:
                        self.fail(spec.name, e)
                outq.put(END)
