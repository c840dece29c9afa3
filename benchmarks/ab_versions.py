"""A/B in one process: another checkout's circuitry (as `circuitry_old`) against this one's.

    git worktree add /tmp/base <commit>
    python benchmarks/ab_versions.py /tmp/base [ROUNDS]

Both are loaded into one interpreter and timed interleaved (each round runs
every path of both, in alternating order), best of ROUNDS (default 15), so
a noisy machine hits both alike: run across processes, peers_bench.py moved
by +-20 % between rounds on a 2-core VM. Prints old ns, new ns and new/old
per path. Nothing here is timed in the test suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import pathlib
import sys
import time
from collections.abc import Callable, Coroutine
from types import ModuleType
from typing import Any

N = 20_000  # calls per path per round


def load(name: str, path: str) -> ModuleType:
    """Import the `circuitry` package under `path` as module `name`."""
    spec = importlib.util.spec_from_file_location(
        name, f"{path}/circuitry/__init__.py", submodule_search_locations=[f"{path}/circuitry"]
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def f() -> int:
    return 1


async def g() -> int:
    return 1


def boom() -> int:
    return 1 // 0


SyncCase = Callable[[int], None]
AsyncCase = Callable[[int], Coroutine[Any, Any, None]]


def cases(c: Any) -> tuple[dict[str, SyncCase], dict[str, AsyncCase]]:
    """The paths to time, on breakers of package `c`: CLOSED and really OPEN."""
    closed = c.CircuitBreaker(c.CircuitBreakerConfig(failure_threshold_count=5), name="x")
    opened = c.CircuitBreaker(
        c.CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=1e6), name="y"
    )
    with contextlib.suppress(ZeroDivisionError):
        opened.call(lambda: 1 / 0)
    # Failures that never trip: the locked path of every failed call.
    failing = c.CircuitBreaker(c.CircuitBreakerConfig(failure_threshold_count=10**9), name="z")
    dec, odec, adec = closed(f), opened(f), closed(g)
    error = c.CircuitOpenError

    def call(n: int) -> None:
        for _ in range(n):
            closed.call(f)

    def decorator(n: int) -> None:
        for _ in range(n):
            dec()

    def with_(n: int) -> None:
        for _ in range(n):
            with closed:
                f()

    def try_acquire(n: int) -> None:
        for _ in range(n):
            closed.try_acquire().record_success()

    def reject_call(n: int) -> None:
        for _ in range(n):
            try:
                opened.call(f)
            except error as e:
                e.__traceback__ = None

    def reject_with(n: int) -> None:
        for _ in range(n):
            try:
                with opened:
                    f()
            except error as e:
                e.__traceback__ = None

    def reject_decorator(n: int) -> None:
        for _ in range(n):
            try:
                odec()
            except error as e:
                e.__traceback__ = None

    def reject_try(n: int) -> None:
        for _ in range(n):
            opened.try_acquire()

    def fail_call(n: int) -> None:
        for _ in range(n):
            try:
                failing.call(boom)
            except ZeroDivisionError as e:
                e.__traceback__ = None

    async def fail_async_with(n: int) -> None:
        for _ in range(n):
            try:
                async with failing:
                    boom()
            except ZeroDivisionError as e:
                e.__traceback__ = None

    async def call_async(n: int) -> None:
        for _ in range(n):
            await closed.call_async(g)

    async def async_with(n: int) -> None:
        for _ in range(n):
            async with closed:
                await g()

    async def async_decorator(n: int) -> None:
        for _ in range(n):
            await adec()

    async def reject_call_async(n: int) -> None:
        for _ in range(n):
            try:
                await opened.call_async(g)
            except error as e:
                e.__traceback__ = None

    sync: dict[str, SyncCase] = {
        "call": call,
        "decorator": decorator,
        "with": with_,
        "try_acquire": try_acquire,
        "reject_call": reject_call,
        "reject_with": reject_with,
        "reject_decorator": reject_decorator,
        "reject_try": reject_try,
        "fail_call": fail_call,
    }
    asynchronous: dict[str, AsyncCase] = {
        "call_async": call_async,
        "async_with": async_with,
        "async_decorator": async_decorator,
        "reject_call_async": reject_call_async,
        "fail_async_with": fail_async_with,
    }
    return sync, asynchronous


def main() -> None:
    old = load("circuitry_old", sys.argv[1])
    new = load("circuitry", str(pathlib.Path(__file__).resolve().parent.parent))
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    sides = {"old": cases(old), "new": cases(new)}
    results: dict[str, dict[str, list[float]]] = {}
    loop = asyncio.new_event_loop()
    gc.disable()
    for number in range(rounds):
        order = ("old", "new") if number % 2 else ("new", "old")
        for side in order:
            sync, asynchronous = sides[side]
            for name, run in sync.items():
                start = time.perf_counter_ns()
                run(N)
                results.setdefault(name, {}).setdefault(side, []).append(
                    (time.perf_counter_ns() - start) / N
                )
            for name, arun in asynchronous.items():
                start = time.perf_counter_ns()
                loop.run_until_complete(arun(N))
                results.setdefault(name, {}).setdefault(side, []).append(
                    (time.perf_counter_ns() - start) / N
                )
    print(f"{'path':20} {'old ns':>8} {'new ns':>8} {'new/old':>8}   (best of {rounds} rounds)")
    for name, times in results.items():
        before, after = min(times["old"]), min(times["new"])
        print(f"{name:20} {before:8.1f} {after:8.1f} {after / before:8.3f}")


if __name__ == "__main__":
    main()
