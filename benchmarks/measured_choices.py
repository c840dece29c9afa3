"""The measurements behind choices the code makes for speed or memory, in one run.

Each row times (or weighs) the form circuitry uses against the plainer one it
passed over; the comment at each place in the code points here. Run by hand:

    PYTHONPATH=. python benchmarks/measured_choices.py
"""

from __future__ import annotations

import gc
import itertools
import sys
import time
import timeit
import tracemalloc
import weakref
from typing import Any, NamedTuple

N = 1_000_000


def best(stmt: str, env: dict[str, Any], rounds: int = 5) -> float:
    """ns per run of `stmt`, best of `rounds`."""
    return min(timeit.repeat(stmt, globals=env, number=N, repeat=rounds)) / N * 1e9


class Block(NamedTuple):
    generation: int
    started: float
    scope: Any
    thread: int
    below: Any


class Plain(Exception):
    """As CircuitOpenError: BaseException's C __init__ keeps the arguments."""


class WithInit(Exception):
    def __init__(self, name: str, state: str, retry_after: float | None) -> None:
        super().__init__(name, state, retry_after)
        self.name = name
        self.state = state
        self.retry_after = retry_after


def raise_plain() -> None:
    raise Plain("svc", "open", 1.0)


def raise_with_init() -> None:
    raise WithInit("svc", "open", 1.0)


class Wrapped:
    def monotonic(self) -> float:
        return time.monotonic()


def bytes_per(make: Any, count: int = 20_000) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = [make() for _ in range(count)]
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    return (after - before) / count


class Thing:
    __slots__ = ("__weakref__",)


def main() -> None:
    print(f"# python {sys.version.split()[0]}; ns per operation, best of 5 x {N:,}")
    env: dict[str, Any] = {
        "Block": Block,
        "new": tuple.__new__,
        "g": 1,
        "s": 2.0,
        "i": 5,
        "rep": itertools.repeat(None),
        "cnt": itertools.count(),
        "raise_plain": raise_plain,
        "raise_with_init": raise_with_init,
        "Plain": Plain,
        "WithInit": WithInit,
        "time": time,
        "wrapped": Wrapped(),
    }
    rows = [
        ("a block as a tuple (the code)", "(g, s, None, i, None)"),
        ("a block as NamedTuple via tuple.__new__", "new(Block, (g, s, None, i, None))"),
        ("a block as NamedTuple(...)", "Block(g, s, None, i, None)"),
        ("next() on itertools.repeat (the code)", "next(rep)"),
        ("next() on itertools.count", "next(cnt)"),
        ("time.monotonic() looked up on the module (the code)", "time.monotonic()"),
        ("a wrapper object's monotonic()", "wrapped.monotonic()"),
    ]
    for label, stmt in rows:
        print(f"{label:<55}{best(stmt, env):8.1f}")
    for label, fn in (
        ("raise with C __init__ (CircuitOpenError)", "raise_plain"),
        ("raise with a Python __init__", "raise_with_init"),
    ):
        stmt = f"try:\n    {fn}()\nexcept Exception as e:\n    e.__traceback__ = None"
        print(f"{label:<55}{best(stmt, env):8.1f}")
    keep: list[Any] = []
    refs: list[Any] = []
    weak: weakref.WeakSet[Any] = weakref.WeakSet()

    def alone() -> Any:
        keep.append(Thing())

    def in_list() -> Any:
        thing = Thing()
        keep.append(thing)
        refs.append(weakref.ref(thing))

    def in_weakset() -> Any:
        thing = Thing()
        keep.append(thing)
        weak.add(thing)

    base = bytes_per(alone)
    for label, make in (
        ("bytes: a live object's weakref.ref in a list (the code)", in_list),
        ("bytes: a live object in a WeakSet", in_weakset),
    ):
        print(f"{label:<55}{bytes_per(make) - base:8.1f}")
    counter = itertools.count()

    def waiting() -> Any:
        n = next(counter)
        return (n, float(n), float(n) + 1.0)

    print(f"{'bytes: one waiting success (generation, started, now)':<55}{bytes_per(waiting):8.1f}")


if __name__ == "__main__":
    main()
