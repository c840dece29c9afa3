"""Where the time of one protected call goes, piece by piece (CLOSED, no listener).

Each row times one piece of the `with breaker:` path in isolation (best of 7
runs of 300,000), so that the sum can be compared with the whole. Run:

    python benchmarks/profile_hot_path.py
"""

from __future__ import annotations

import sys
import timeit

from circuitry import CircuitBreaker
from circuitry._core import SUCCESS

N = 300_000


def main() -> None:
    breaker = CircuitBreaker()
    core = breaker._core
    core.in_flight = 10**12  # lets complete() run alone, without a matching acquire()
    getframe = sys._getframe

    class Noop:
        def __enter__(self) -> None:
            pass

        def __exit__(self, *exc: object) -> None:
            pass

    class BlocksOnly:
        def __enter__(self) -> None:
            breaker._open_block(getframe(1), 0, 1.0, None)

        def __exit__(self, *exc: object) -> None:
            breaker._close_block(getframe(1))

    names = {
        "f": lambda: 1,
        "b": breaker,
        "core": core,
        "noop": Noop(),
        "blocks": BlocksOnly(),
        "SUCCESS": SUCCESS,
    }
    rows = [
        ("bare call f()", "f()"),
        ("with <empty __enter__/__exit__>: f()", "with noop: f()"),
        ("  + block bookkeeping (frame-keyed)", "with blocks: f()"),
        ("clock() (time.monotonic via circuitry._clock)", "b._clock()"),
        ("_admit: lock + core.acquire", "b._admit(1.0)"),
        ("  core.acquire alone", "core.acquire(1.0)"),
        ("_finish: clock + lock + core.complete", "b._finish(0, 1.0, SUCCESS, None)"),
        ("  core.complete alone (incl. latency histogram)", "core.complete(0, 1.0, 1.001, SUCCESS)"),
        ("whole: with b: f()", "with b: f()"),
        ("whole: b.call(f)", "b.call(f)"),
    ]
    print(f"# python {sys.version.split()[0]}; best of 7 x {N:,}")
    for label, stmt in rows:
        best = min(timeit.repeat(stmt, globals=names, number=N, repeat=7)) / N * 1e9
        print(f"{label:50} {best:8.1f} ns")


if __name__ == "__main__":
    main()
