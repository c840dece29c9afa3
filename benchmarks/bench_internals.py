#!/usr/bin/env python3
"""circuitry internals: window-length flatness, metrics() cost, bytes per idle breaker.

1. Window flatness. One breaker per window length (none, 1 s, 60 s, 1 h), each
   on its own `circuitry.testing.FakeClock` advanced 0.0001 s per call (10k
   calls/s of simulated time). The loop is the CLOSED `with breaker:` path; one
   call in 100 is a failure (`try_acquire().record_failure()`), below the 50 %
   percentage threshold, and the count threshold is out of reach, so nothing
   trips. Chunks of N calls are timed round-robin across the window lengths
   (GC off), the clocks keep running between chunks, so the run covers
   repeats * N calls (repeats * N / 10k seconds of simulated time) per window.
   Reported: best and last chunk ns/call, the harness cost (the same loop around
   a no-op context manager), and the breaker's retained size at the end. Flat
   means: the 1 h row costs what the 1 s row costs, and holds no more memory.

2. metrics() cost: on a fresh breaker, and after 100k recorded calls whose
   durations spread over 1 us .. 100 s (the latency histogram at its widest)
   or over 1 .. 2 ms (narrow), with and without a window. `state` for reference.

3. Bytes per idle breaker: tracemalloc over K breakers built in a row
   (allocation sizes as requested, allocator rounding not included; K is large so
   that free lists do not hide allocations), and a breakdown of one breaker with
   sys.getsizeof over every object it owns (objects two identically built
   breakers share, such as the config, the name, enums and small ints, are not
   counted).

4. Listener cost: the CLOSED `with breaker:` and `breaker.call(fn)` paths (real
   default clock, every call a success) with no listener, with one listener of
   `StateChanged` only (on the breaker, or manager-wide), and with one listener
   of every event (each call then builds a `CallSucceeded` and takes the lock
   to record it). The first two should be level: a listener of state changes
   alone builds no call events.

Usage: python bench_internals.py [--quick] [--repeats R] [--n N] [--listeners-only]
"""

from __future__ import annotations

import argparse
import gc
import math
import platform
import random
import sys
import tracemalloc
import types
from time import perf_counter_ns

from circuitry import AdaptiveThrottle, CircuitBreaker, CircuitBreakerConfig, CircuitBreakerManager
from circuitry.events import StateChanged
from circuitry.testing import FakeClock

try:
    from _common import NoopCM
except ImportError:  # run as `python -m benchmarks.bench_internals`
    from benchmarks._common import NoopCM

STEP = 0.0001  # seconds of simulated time per call: 10k calls/s


class NoopPermit:
    __slots__ = ()

    def record_failure(self, exception=None):
        return None


class NoopAcquire:
    """Stands in for a breaker in the harness loop (same attribute lookups)."""

    __slots__ = ()
    _cm = NoopCM()
    _permit = NoopPermit()

    def __enter__(self):
        return None

    def __exit__(self, et, ev, tb):
        return None

    def try_acquire(self):
        return self._permit


# --------------------------------------------------------------------------- sizes


_SKIP_TYPES = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.CodeType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.GetSetDescriptorType,
    types.MemberDescriptorType,
)


def _slot_names(obj):
    names = []
    for klass in type(obj).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        if isinstance(slots, str):
            slots = (slots,)
        for s in slots:
            if s in ("__weakref__", "__dict__"):
                continue
            if s.startswith("__") and not s.endswith("__"):
                s = f"_{klass.__name__.lstrip('_')}{s}"
            names.append(s)
    return names


def _children(obj):
    """(name, child) pairs of the objects `obj` refers to."""
    if isinstance(obj, _SKIP_TYPES):
        return
    if isinstance(obj, (list, tuple)):
        for i, x in enumerate(obj):
            yield f"[{i}]", x
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield f"[key {k!r}]", k
            yield f"[{k!r}]", v
        return
    seen_any = False
    for name in _slot_names(obj):
        try:
            yield f".{name}", getattr(obj, name)
            seen_any = True
        except AttributeError:
            pass
    d = getattr(obj, "__dict__", None)
    if isinstance(d, dict):
        seen_any = True
        for k, v in d.items():
            yield f".{k}", v
    if not seen_any:
        for x in gc.get_referents(obj):
            if not isinstance(x, _SKIP_TYPES):
                yield "<ref>", x


def reachable(root):
    """{id: (path, obj)} of every object reachable from root (first path found)."""
    found = {id(root): ("breaker", root)}
    todo = [("breaker", root)]
    while todo:
        path, obj = todo.pop()
        for name, child in _children(obj):
            if isinstance(child, _SKIP_TYPES) or id(child) in found:
                continue
            found[id(child)] = (path + name, child)
            todo.append((path + name, child))
    return found


def owned(build):
    """Objects owned by one breaker from build(): reachable from it and not from a twin."""
    a, b = build(), build()
    ra, rb = reachable(a), reachable(b)
    rows = []
    for oid, (path, obj) in ra.items():
        if oid in rb:
            continue  # shared by every breaker built this way
        # count an object only where its owner's path is also owned (no double paths)
        rows.append((path, type(obj).__name__, sys.getsizeof(obj)))
    rows.sort()
    return a, b, rows


def traced_bytes_per_breaker(build, k):
    keep = [None] * k
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(k):
            keep[i] = build()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del keep
    return (after - before) / k


def retained_size(breaker):
    """Sum of sys.getsizeof over objects reachable from the breaker that a fresh twin
    with the same config does not reach (so the config, enums, interned values are out)."""
    twin = CircuitBreaker(breaker.config, name=breaker.name)
    r_twin = reachable(twin)
    total = 0
    for oid, (_path, obj) in reachable(breaker).items():
        if oid not in r_twin:
            total += sys.getsizeof(obj)
    return total


# --------------------------------------------------------------------------- flatness


def window_config(window):
    if window == "throttle":  # no window; the adaptive throttle's own (60 s) counts
        return CircuitBreakerConfig(
            failure_threshold_count=10**9,
            reset_timeout=10**6,
            adaptive_throttle=AdaptiveThrottle(),
        )
    if window is None:
        return CircuitBreakerConfig(failure_threshold_count=10**9, reset_timeout=10**6)
    if isinstance(window, int):  # a count window: the last `window` calls
        return CircuitBreakerConfig(
            failure_threshold_count=None,
            failure_threshold_percentage=50,
            minimum_calls=100,
            failure_window_calls=window,
            reset_timeout=10**6,
        )
    return CircuitBreakerConfig(
        failure_threshold_count=10**9,
        failure_threshold_percentage=50,
        minimum_calls=100,
        failure_window=window,
        reset_timeout=10**6,
    )


def flat_loop(b, clock):
    adv = clock.advance
    acquire = b.try_acquire

    def run(n):
        outer = range(n // 100)
        inner = range(99)
        t0 = perf_counter_ns()
        for _ in outer:
            for _ in inner:
                adv(STEP)
                with b:
                    pass
            adv(STEP)
            acquire().record_failure()
        return perf_counter_ns() - t0

    return run


def bench_flatness(args, out):
    windows = [
        ("none (5 consecutive)", None),
        ("1 s", 1.0),
        ("60 s", 60.0),
        ("1 h", 3600.0),
        ("last 1000 calls (failure_window_calls)", 1000),
        ("none + adaptive_throttle (60 s)", "throttle"),
    ]
    rows = []
    for label, w in windows:
        clock = FakeClock()
        b = CircuitBreaker(window_config(w), name="flat", clock=clock)
        rows.append(
            {"label": label, "w": w, "b": b, "clock": clock, "run": flat_loop(b, clock), "s": []}
        )
    harness = {"label": "harness (no-op cm)", "w": None, "b": None, "clock": FakeClock(), "s": []}
    harness["run"] = flat_loop(NoopAcquire(), harness["clock"])
    everything = [*rows, harness]
    n = args.n - args.n % 100
    for r in everything:
        r["run"](1000)
    rng = random.Random(1)
    for _ in range(args.repeats):
        order = list(everything)
        rng.shuffle(order)
        for r in order:
            gc.collect()
            gc.disable()
            try:
                r["s"].append(r["run"](n) / n)
            finally:
                gc.enable()
    h = min(harness["s"])
    base = None
    out.append(
        f"## Window flatness ({args.repeats} chunks x {n} calls = "
        f"{args.repeats * n / 10_000:.0f} s simulated per window at 10k calls/s, 1 % failures)"
    )
    out.append("")
    out.append(
        "| failure_window | best ns/call | last chunk ns/call | net of harness | vs 1 s | "
        "state at end | window failures | retained bytes |"
    )
    out.append("|---|---|---|---|---|---|---|---|")
    for r in rows:
        best = min(r["s"])
        if r["w"] == 1.0:
            base = best - h
    for r in rows:
        best = min(r["s"])
        m = r["b"].metrics()
        vs = f"{(best - h) / base:.2f}x" if base and isinstance(r["w"], float) else ""
        out.append(
            f"| {r['label']} | {best:.1f} | {r['s'][-1]:.1f} | {best - h:.1f} | {vs} | "
            f"{m.current_state.value} | {m.window_failures} | {retained_size(r['b'])} |"
        )
    out.append(
        f"| harness (FakeClock.advance + no-op `with`) | {h:.1f} | {harness['s'][-1]:.1f} | | | | | |"
    )
    out.append("")
    return rows, h


# --------------------------------------------------------------------------- metrics()


def timed(fn, n, repeats):
    best = None
    fn()
    for _ in range(repeats):
        r = range(n)
        gc.collect()
        gc.disable()
        try:
            t0 = perf_counter_ns()
            for _ in r:
                fn()
            el = perf_counter_ns() - t0
        finally:
            gc.enable()
        best = el if best is None else min(best, el)
    return best / n


def populated(window, spread, calls):
    clock = FakeClock()
    b = CircuitBreaker(window_config(window), name="metrics", clock=clock)
    rng = random.Random(7)
    lo, hi = spread
    llo, lhi = math.log(lo), math.log(hi)
    for i in range(calls):
        p = b.try_acquire()
        clock.advance(math.exp(rng.uniform(llo, lhi)))
        if i % 100 == 0:
            p.record_failure()
        else:
            p.record_success()
    return b


def bench_metrics(args, out):
    n = max(1000, args.n // 20)
    calls = args.metrics_calls
    cases = [
        ("fresh, no window", CircuitBreaker(window_config(None), name="m")),
        ("fresh, 60 s window", CircuitBreaker(window_config(60.0), name="m")),
        (f"{calls} calls, durations 1-2 ms, no window", populated(None, (1e-3, 2e-3), calls)),
        (f"{calls} calls, durations 1 us-100 s, no window", populated(None, (1e-6, 100.0), calls)),
        (
            f"{calls} calls, durations 1 us-100 s, 60 s window",
            populated(60.0, (1e-6, 100.0), calls),
        ),
    ]
    out.append(f"## metrics() cost (best of {args.repeats} x {n} calls)")
    out.append("")
    out.append("| breaker | metrics() ns | state ns | histogram buckets | p95 |")
    out.append("|---|---|---|---|---|")
    for label, b in cases:
        m_ns = timed(b.metrics, n, args.repeats)
        s_ns = timed(lambda b=b: b.state, n, args.repeats)
        hist = getattr(getattr(b, "_core", None), "latency", None)
        nb = len(hist.buckets) if hist is not None and hasattr(hist, "buckets") else "?"
        p95 = b.metrics().p95_response_time
        p95s = "None" if p95 is None else f"{p95:.3g} s"
        out.append(f"| {label} | {m_ns:.0f} | {s_ns:.0f} | {nb} | {p95s} |")
    out.append("")


# --------------------------------------------------------------------------- memory


def bench_memory(args, out):
    shared = CircuitBreakerConfig()
    windowed = window_config(60.0)
    k = args.k
    variants = [
        ("idle, shared default config", lambda: CircuitBreaker(shared, name="svc")),
        ("idle, own default config (`CircuitBreaker()`)", lambda: CircuitBreaker()),
        ("idle, shared config with 60 s window", lambda: CircuitBreaker(windowed, name="svc")),
    ]

    def used():
        b = CircuitBreaker(shared, name="svc")
        for _ in range(100):
            with b:
                pass
        return b

    variants.append(("after 100 `with` calls (real clock), shared config", used))

    out.append(f"## Bytes per breaker (tracemalloc over {k} breakers; target for idle: < 2048)")
    out.append("")
    out.append(
        "| breaker | traced bytes per breaker | sum of getsizeof over owned objects | under 2 KB |"
    )
    out.append("|---|---|---|---|")
    breakdowns = []
    for label, build in variants:
        kk = k if "after" not in label else max(100, k // 10)
        per = traced_bytes_per_breaker(build, kk)
        _, _, rows = owned(build)
        total = sum(s for _, _, s in rows)
        verdict = ("yes" if per < 2048 else "NO") if label.startswith("idle") else "(not idle)"
        out.append(f"| {label} | {per:.0f} | {total} | {verdict} |")
        if label.startswith("idle, shared"):
            breakdowns.append((label, rows, total))
    out.append("")
    for label, rows, total in breakdowns:
        out.append(f"### Breakdown: {label} (sys.getsizeof, objects this breaker owns)")
        out.append("")
        out.append("| object | type | bytes |")
        out.append("|---|---|---|")
        for path, tname, size in sorted(rows, key=lambda r: -r[2]):
            out.append(f"| `{path}` | {tname} | {size} |")
        out.append(f"| **total** | | **{total}** |")
        out.append("")
    out.append(
        "getsizeof includes the GC header of tracked objects; tracemalloc also sees "
        "allocations getsizeof does not (e.g. the OS mutex behind a lock)."
    )
    out.append("")


# --------------------------------------------------------------------------- listeners


def bench_listeners(args, out):
    n = args.n

    def ignore(event):
        return None

    def noop():
        return None

    def plain():
        return CircuitBreaker(CircuitBreakerConfig(), name="svc")

    def state_changes_only():
        b = plain()
        b.subscribe(ignore, StateChanged)
        return b

    def manager_state_changes_only():
        manager = CircuitBreakerManager()
        manager.subscribe(ignore, StateChanged)
        return manager.breaker("svc")

    def all_events():
        b = plain()
        b.subscribe(ignore)
        return b

    cases = [
        ("no listener", plain()),
        ("StateChanged-only listener", state_changes_only()),
        ("StateChanged-only manager-wide listener", manager_state_changes_only()),
        ("all-events listener", all_events()),
    ]

    def with_loop(b):
        def run(count):
            for _ in range(count):
                with b:
                    pass

        return run

    def call_loop(b):
        call = b.call

        def run(count):
            for _ in range(count):
                call(noop)

        return run

    def best_ns(run):
        run(1000)
        best = None
        for _ in range(args.repeats):
            gc.collect()
            gc.disable()
            try:
                t0 = perf_counter_ns()
                run(n)
                el = perf_counter_ns() - t0
            finally:
                gc.enable()
            best = el if best is None else min(best, el)
        return best / n

    harness = best_ns(with_loop(NoopCM()))
    out.append(
        f"## Listener cost (CLOSED, every call a success; best of {args.repeats} x {n} calls)"
    )
    out.append("")
    out.append(
        f"Harness (the `with` loop around a no-op context manager): {harness:.0f} ns, "
        "subtracted from the `with` column."
    )
    out.append("")
    out.append("| breaker | `with breaker:` ns/call | `breaker.call(fn)` ns/call |")
    out.append("|---|---|---|")
    for label, b in cases:
        w = best_ns(with_loop(b)) - harness
        c = best_ns(call_loop(b))
        out.append(f"| {label} | {w:.0f} | {c:.0f} |")
    out.append("")


# --------------------------------------------------------------------------- pools, chains, fallbacks


def bench_pool(args, out):
    """Per-call cost of a BreakerPool, a chained breaker and a fallback over a bare breaker.

    Every call succeeds (CLOSED), so the pool runs its first member only: the
    row is the pool's own overhead (ordering, the member lookup, the call
    through the member's breaker). Repeats are interleaved in shuffled order.
    """
    from circuitry import BreakerPool

    n = args.n

    def f():
        return 1

    def g(member):
        return 1

    config = CircuitBreakerConfig()
    bare = CircuitBreaker(config, name="bare")
    manager = CircuitBreakerManager(config)
    priority = BreakerPool(manager, ["a", "b", "c"], name="priority")
    capped = BreakerPool(manager, ["d", "e", "f", "g"], max_ejection_percent=25, name="capped")
    rotating = BreakerPool(manager, ["h", "i", "j"], strategy="round_robin", name="rr")
    host = CircuitBreaker(config, name="host")
    child = CircuitBreaker(config, name="child", parent=host)
    plain_decorated = bare(f)
    with_fallback = bare(fallback=lambda exc: 0)(f)

    def loop(call, target):
        def run(count):
            for _ in range(count):
                call(target)

        return run

    def decorated_loop(fn):
        def run(count):
            for _ in range(count):
                fn()

        return run

    cases = [
        ("bare breaker `b.call(f)`", loop(bare.call, f)),
        ("`BreakerPool.call(g)`, priority, 3 members", loop(priority.call, g)),
        ("`BreakerPool.call(g)`, priority, capped (25 % of 4)", loop(capped.call, g)),
        ("`BreakerPool.call(g)`, round robin, 3 members", loop(rotating.call, g)),
        ("chained breaker `child.call(f)` (parent=host)", loop(child.call, f)),
        ("`@b` decorated f()", decorated_loop(plain_decorated)),
        ("`@b(fallback=...)` decorated f()", decorated_loop(with_fallback)),
    ]
    best = {label: math.inf for label, _ in cases}
    for _, run in cases:
        run(1000)
    order = list(cases)
    rng = random.Random(3)
    for _ in range(args.repeats):
        rng.shuffle(order)
        for label, run in order:
            gc.collect()
            gc.disable()
            try:
                t0 = perf_counter_ns()
                run(n)
                el = perf_counter_ns() - t0
            finally:
                gc.enable()
            best[label] = min(best[label], el / n)
    base = best[cases[0][0]]
    decorated = best["`@b` decorated f()"]
    out.append(
        f"## Pools, chains and fallbacks (CLOSED, every call a success; best of "
        f"{args.repeats} x {n} calls, interleaved)"
    )
    out.append("")
    out.append("| path | ns/call | vs bare `b.call(f)` | overhead ns |")
    out.append("|---|---|---|---|")
    for label, _ in cases:
        ref = decorated if "fallback" in label else base
        out.append(
            f"| {label} | {best[label]:.0f} | {best[label] / base:.2f}x | {best[label] - ref:+.0f} |"
        )
    out.append("")
    out.append("(The fallback row's overhead is over the plain `@b` decorated row.)")
    out.append("")


# --------------------------------------------------------------------------- main


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--n", type=int, default=100_000, help="calls per timed chunk (default 100000)")
    ap.add_argument(
        "--k", type=int, default=20_000, help="breakers built for tracemalloc (default 20000)"
    )
    ap.add_argument("--metrics-calls", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="smoke run (a few seconds)")
    ap.add_argument("--listeners-only", action="store_true", help="run section 4 only")
    ap.add_argument("--pool-only", action="store_true", help="run section 5 (pools) only")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.n, args.k, args.metrics_calls = 3, 10_000, 2000, 10_000
    t0 = perf_counter_ns()
    out = [
        f"# circuitry internals: python {platform.python_version()} on {platform.platform()}; "
        f"repeats={args.repeats} n={args.n}",
        "",
    ]
    if not (args.listeners_only or args.pool_only):
        bench_flatness(args, out)
        bench_metrics(args, out)
        bench_memory(args, out)
    if not args.pool_only:
        bench_listeners(args, out)
    bench_pool(args, out)
    out.append(f"# wall time {(perf_counter_ns() - t0) / 1e9:.0f} s")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
