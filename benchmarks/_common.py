"""Harness pieces shared by the benchmark scripts (peers_bench.py, bench_internals.py, bench_redis.py).

The scripts import this as a sibling module (`from _common import ...`), which
works when they are run as `python benchmarks/<script>.py` from anywhere (the
script's folder is then on sys.path); they fall back to `benchmarks._common`
when run as `python -m benchmarks.<script>` from the repo root.
"""

from __future__ import annotations

from time import perf_counter_ns


class NoopCM:
    """Empty `with` target (slotted): the floor a `with` loop costs with nothing in it."""

    __slots__ = ()

    def __enter__(self):
        return None

    def __exit__(self, et, ev, tb):
        return None


def loop_call(call, target):
    """A timed loop of `call(target)`: run(n) returns the nanoseconds n calls took."""

    def run(n):
        r = range(n)
        t0 = perf_counter_ns()
        for _ in r:
            call(target)
        return perf_counter_ns() - t0

    return run
