"""The stage chain's mechanics: drop policies, END on every path, errors named, no hang."""
import threading
import time

import pytest

from pipeline.stages import END, BoundedQueue, Chain, Many, StageError, StageSpec, Stopped
from pipeline.stats import Stats

pytestmark = pytest.mark.timeout(30)


def drain(chain):
    out = []
    while True:
        try:
            item = chain.output.get()
        except Stopped:
            return out
        if item is END:
            return out
        out.append(item)


def test_block_policy_keeps_every_item():
    stats, stop = Stats(), threading.Event()
    q = BoundedQueue("q", 2, "block", stats, stop)
    got = []

    def consumer():
        for _ in range(50):
            got.append(q.get())
            time.sleep(0.001)

    t = threading.Thread(target=consumer)
    t.start()
    for i in range(50):
        q.put(i)
    t.join(10)
    assert got == list(range(50)) and stats.dropped == 0


def test_drop_oldest_keeps_newest_and_counts():
    stats, stop = Stats(), threading.Event()
    q = BoundedQueue("capture queue", 2, "drop_oldest", stats, stop)
    for i in range(10):
        q.put(i)
    assert [q.get(), q.get()] == [8, 9]
    assert stats.drops == {"capture queue full (newest kept)": 8}


def test_end_marker_is_never_dropped():
    stats, stop = Stats(), threading.Event()
    q = BoundedQueue("q", 1, "drop_oldest", stats, stop)
    q.put(1)
    q.put(END)              # over capacity: the marker still gets in, and 1 is not dropped for it
    assert q.get() == 1 and q.get() is END and stats.dropped == 0
    q.put(END)
    q.put(3)                # a full-policy drop skips the marker
    assert q.get() is END and q.get() == 3


def test_blocked_put_and_get_see_stop():
    stats, stop = Stats(), threading.Event()
    q = BoundedQueue("q", 1, "block", stats, stop)
    q.put(1)
    threading.Timer(0.2, stop.set).start()
    with pytest.raises(Stopped):
        q.put(2)
    q.get()
    with pytest.raises(Stopped):
        q.get()


def test_chain_passes_everything_in_order():
    chain = Chain(range(200), [StageSpec("a", lambda x: x + 1), StageSpec("b", lambda x: x * 2)], Stats(), queue_size=2)
    chain.start()
    assert drain(chain) == [(x + 1) * 2 for x in range(200)]
    assert chain.join(5) == [] and chain.error is None
    assert chain.stats.stage_count["a"] == 200


@pytest.mark.parametrize("workers", [2, 3])
def test_parallel_workers_keep_the_order_and_close_once(workers):
    import random

    rng = random.Random(0)
    active, peak, closed = [0], [0], []
    lock = threading.Lock()

    def slow(x):                           # random durations: results finish out of order
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(rng.random() * 0.004)
        with lock:
            active[0] -= 1
        return x * 10

    chain = Chain(range(300), [StageSpec("infer", slow, close=lambda: closed.append(1), workers=workers),
                               StageSpec("after", lambda x: x + 1)], Stats(), queue_size=2)
    chain.start()
    assert drain(chain) == [x * 10 + 1 for x in range(300)]
    assert chain.join(5) == [] and chain.error is None
    assert closed == [1]                     # the stage's close ran once, by its last worker
    assert peak[0] > 1                       # the calls really overlapped
    assert chain.stats.stage_count["infer"] == 300


def test_parallel_worker_error_stops_every_worker():
    def fn(x):
        if x == 37:
            raise ValueError("injected")
        time.sleep(0.001)
        return x

    chain = Chain(range(10_000), [StageSpec("infer", fn, workers=2), StageSpec("b", lambda x: x)], Stats(), queue_size=2)
    chain.start()
    out = drain(chain)
    assert chain.join(5) == []
    assert isinstance(chain.error, StageError) and chain.error.stage == "infer"
    assert out == list(range(len(out))) and len(out) < 100    # in order, and stopped early


@pytest.mark.parametrize("failing", ["capture", "a", "b", "c"])
def test_error_in_any_stage_stops_all_and_is_named(failing):
    closed = []

    def boom(name):
        def fn(x):
            if name == failing and x == 20:
                raise ValueError(f"injected in {name}")
            return x
        return fn

    def source():
        for i in range(10_000):      # long: the chain must stop early, not run to the end
            if failing == "capture" and i == 20:
                raise OSError("injected in capture")
            yield i

    stages = [StageSpec(n, boom(n), close=lambda n=n: closed.append(n)) for n in "abc"]
    chain = Chain(source(), stages, Stats(), queue_size=2)
    chain.start()
    drain(chain)
    assert chain.join(5) == []
    assert isinstance(chain.error, StageError) and chain.error.stage == failing
    assert f"{failing} stage failed: injected in {failing}" == str(chain.error)
    assert sorted(closed) == ["a", "b", "c"]     # every stage's close ran


def test_stop_from_outside_ends_a_never_ending_source():
    def forever():
        i = 0
        while True:
            yield i
            i += 1

    chain = Chain(forever(), [StageSpec("a", lambda x: x)], Stats(), queue_size=2)
    chain.start()
    time.sleep(0.2)
    chain.stop()
    assert chain.join(5) == [] and chain.error is None


def test_paused_live_capture_drops_with_cause():
    def source():
        for i in range(20):
            time.sleep(0.005)
            yield i

    chain = Chain(source(), [StageSpec("a", lambda x: x)], Stats(), capture_policy="drop_oldest", capture_queue=1)
    chain.pause.set()
    chain.start()
    assert drain(chain) == []
    assert chain.stats.drops["paused"] == 20


def test_many_results_and_flush_pass_on_in_order():
    """A gathering stage: groups of 4, the partial last group from flush at the end, split again."""
    pending = []

    def gather(x):
        pending.append(x)
        if len(pending) == 4:
            group = tuple(pending)
            pending.clear()
            return group
        return None

    def flush():
        group = tuple(pending)
        pending.clear()
        return group or None

    chain = Chain(range(10), [StageSpec("gather", gather, flush=flush), StageSpec("split", lambda g: Many(g))],
                  Stats(), queue_size=2)
    chain.start()
    assert drain(chain) == list(range(10))
    assert chain.join(5) == [] and chain.error is None


@pytest.mark.parametrize("case", ["error upstream", "flush fails"])
def test_flush_not_run_after_an_error_and_its_own_error_is_named(case):
    flushed = []

    def upstream(x):
        if case == "error upstream" and x == 3:
            raise ValueError("injected")
        return x

    def flush():
        flushed.append(1)
        if case == "flush fails":
            raise RuntimeError("flush broke")
        return None

    chain = Chain(range(6), [StageSpec("a", upstream), StageSpec("gather", lambda x: None, flush=flush)],
                  Stats(), queue_size=2)
    chain.start()
    drain(chain)
    assert chain.join(5) == []
    assert isinstance(chain.error, StageError)
    assert (chain.error.stage, flushed) == (("a", []) if case == "error upstream" else ("gather", [1]))


def test_group_items_are_timed_per_frame():
    class Group:
        frames = 4

    stats = Stats()
    chain = Chain([Group(), Group()], [StageSpec("infer", lambda g: (time.sleep(0.02), g)[1])], stats)
    chain.start()
    drain(chain)
    assert stats.stage_count["infer"] == 8
    assert max(stats.stage_time["infer"]) < 0.015     # 20 ms per group of 4 -> ~5 ms per frame
