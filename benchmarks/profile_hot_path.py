"""Where the time of one protected call goes, piece by piece (no listener).

Each row times one piece of the `with breaker:` / `breaker.call(f)` path in
CLOSED, or of `try_acquire()` rejecting while OPEN, in isolation (best of 7
runs of 300,000), so that the pieces can be set against the whole. Run:

    python benchmarks/profile_hot_path.py
"""

from __future__ import annotations

import sys
import threading
import timeit

from circuitry import CircuitBreaker, CircuitBreakerConfig
from circuitry._batch import FOLD_AT
from circuitry._delivery import get_ident

N = 300_000


def main() -> None:
    breaker = CircuitBreaker()
    core = breaker._core
    opened = CircuitBreaker(CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=3600))
    permit = opened.try_acquire()
    assert permit is not None
    permit.record_failure()  # OPEN for an hour: rejections from here on
    getframe = sys._getframe
    blocks: dict[object, object] = {}

    class Noop:
        def __enter__(self) -> None:
            pass

        def __exit__(self, *exc: object) -> None:
            pass

    class BlocksOnly:
        """Only what `with breaker:` does to find its block again."""

        def __enter__(self) -> None:
            frame = getframe(1)
            blocks[frame] = (0, 1.0, None, get_ident(), blocks.get(frame))

        def __exit__(self, *exc: object) -> None:
            block = blocks.pop(getframe(1), None)
            if block is None:
                raise AssertionError

    def f() -> int:
        return 1

    def fold_batch() -> None:
        # FOLD_AT admitted calls' worth of successes, then one fold under the lock.
        tickets, pending = core.tickets, core.pending
        for _ in range(FOLD_AT):
            tickets.append(1.0)
            pending.append((0, 1.0, 1.001))
        breaker._fold()

    names = {
        "f": f,
        "b": breaker,
        "decorated": breaker(f),
        "core": core,
        "tickets": core.tickets,
        "pending": core.pending,
        "noop": Noop(),
        "blocks": BlocksOnly(),
        "lock": threading.RLock(),
        "fold_batch": fold_batch,
        "latency": core.latency,
        "opened": opened,
        "open_core": opened._core,
    }
    rows = [
        ("bare call f()", "f()", 1),
        ("with <empty __enter__/__exit__>: f()", "with noop: f()", 1),
        ("  + finding the block again (frame-keyed)", "with blocks: f()", 1),
        ("clock read (b._clock.monotonic(): time.monotonic)", "b._clock.monotonic()", 1),
        (
            "admission without the lock (+ the pop of its fold)",
            "core.admitting; tickets.append(1.0); tickets.pop()",
            1,
        ),
        (
            "a success recorded without the lock",
            "core.deferring; pending.append((0, 1.0, 1.001)); pending.pop()",
            1,
        ),
        ("  its share of a fold, with the 2 appends feeding it", "fold_batch()", FOLD_AT),
        ("  latency histogram alone (LatencyHistogram.record)", "latency.record(0.001)", 1),
        ("lock.acquire() + lock.release() (failures, folds)", "lock.acquire(); lock.release()", 1),
        ("whole: with b: f()", "with b: f()", 1),
        ("whole: b.call(f)", "b.call(f)", 1),
        ("whole: decorated f()", "decorated()", 1),
        (
            "OPEN: the unlocked rejection's check and count",
            "if 1.0 < open_core.reject_until: next(open_core.fast_rejections)",
            1,
        ),
        ("whole: opened.try_acquire() -> None", "opened.try_acquire()", 1),
    ]
    print(f"# python {sys.version.split()[0]}; best of 7 x {N:,}; FOLD_AT={FOLD_AT}")
    for label, stmt, per in rows:
        number = N // per
        best = min(timeit.repeat(stmt, globals=names, number=number, repeat=7)) / (number * per)
        print(f"{label:54} {best * 1e9:8.1f} ns")


if __name__ == "__main__":
    main()
