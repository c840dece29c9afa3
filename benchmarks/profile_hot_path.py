"""Where the time of one protected call goes, piece by piece (CLOSED, no listener).

Each row times one piece of the `with breaker:` / `breaker.call(f)` path in
isolation (best of 7 runs of 300,000), so that the sum can be compared with
the whole. Pieces that complete a call first append the ticket entry an
admission would have appended. Run:

    python benchmarks/profile_hot_path.py
"""

from __future__ import annotations

import sys
import threading
import timeit

from circuitry import CircuitBreaker
from circuitry._base import get_ident
from circuitry._core import SUCCESS

N = 300_000


def main() -> None:
    breaker = CircuitBreaker()
    core = breaker._core
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

    names = {
        "f": f,
        "b": breaker,
        "decorated": breaker(f),
        "core": core,
        "tickets": core.tickets,
        "noop": Noop(),
        "blocks": BlocksOnly(),
        "lock": threading.RLock(),
        "SUCCESS": SUCCESS,
    }
    rows = [
        ("bare call f()", "f()"),
        ("with <empty __enter__/__exit__>: f()", "with noop: f()"),
        ("  + finding the block again (frame-keyed)", "with blocks: f()"),
        ("clock() (time.monotonic via circuitry._clock)", "b._clock()"),
        ("admission without the lock (+ the pop of complete)", "core.admitting; tickets.append(1.0); tickets.pop()"),
        ("lock.acquire() + lock.release()", "lock.acquire(); lock.release()"),
        ("_finish: clock + lock + core.complete", "tickets.append(1.0); b._finish(0, 1.0, SUCCESS, None)"),
        ("  core.complete alone (incl. latency histogram)", "tickets.append(1.0); core.complete(0, 1.0, 1.001, SUCCESS)"),
        ("  latency histogram alone", "core.latency.record(0.001)"),
        ("whole: with b: f()", "with b: f()"),
        ("whole: b.call(f)", "b.call(f)"),
        ("whole: decorated f()", "decorated()"),
    ]
    print(f"# python {sys.version.split()[0]}; best of 7 x {N:,}")
    for label, stmt in rows:
        best = min(timeit.repeat(stmt, globals=names, number=N, repeat=7)) / N * 1e9
        print(f"{label:52} {best:8.1f} ns")


if __name__ == "__main__":
    main()
