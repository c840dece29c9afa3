#!/usr/bin/env python3
"""Per-call overhead of circuitry and its peers, side by side in one run.

Peers (whichever are importable): pybreaker, circuitbreaker, purgatory,
aiobreaker, pyresilience, interlock-cb, nopanic, fluxgate. They are
benchmark-only dependencies: install them in the benchmark venv (see run.sh),
never in the project.

Every row times N calls of one API path around a trivial target (`def f():
return 1`, or `async def g(): return 1`), best of R repeats, GC disabled while
timing, time.perf_counter_ns. The repeats are interleaved round-robin over all
the cases (in a shuffled order each round), so that a burst of noise from other
processes hits every case alike instead of one case's whole sample.

Kinds: sync (threads), asyncio, trio (the same coroutines under trio.run).

Shapes (what a user writes; rows are only compared within the same kind and shape):
  with               `with cm: f()`                       (sync context manager)
  call               `b.call(f)` or a decorated function  (sync function call / decorator)
  two_step           `p = b.try_acquire(); f(); p.record_success()` or the peer's
                     non-raising check + record
  reject.with        `with cm:` while OPEN, the rejection raised and caught
  reject.call        `b.call(f)` / decorated function while OPEN, raised and caught
  reject.check       non-raising admission check while OPEN (`try_acquire()` -> None)
  async_with         `async with b: await g()`
  async_call         `await b.call_async(g)` or a decorated `async def`
  reject.async_with, reject.async_call: the same while OPEN

Honesty: before timing, each CLOSED-path row is also run once through the SAME
API on an OPEN breaker of the same library. If the protected function still runs,
that API does not check state (e.g. circuitbreaker's `with` / `call` /
`call_async`): the row is still timed and printed, marked NO-REJECT, and never
used as the peer to beat. Rejection rows must raise (or, for reject.check,
return the library's "no") without running the target, or they are skipped.

Columns: ns/call (best of R); vs bare (sync rows vs `bare sync_call`, asyncio rows
vs `bare asyncio.await`, trio rows vs `bare trio.await`); noise (median/best - 1
over the R repeats); for circuitry rows, circuitry/peer against the fastest honest
peer row of the same kind and shape (ratio < 1: circuitry is faster).

Usage:  python peers_bench.py [--quick] [--repeats R] [--target-ms T | --n N] [--only SUBSTR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import inspect
import platform
import random
import statistics
import sys
import traceback
from datetime import timedelta
from time import perf_counter_ns

try:
    from _common import NoopCM, loop_call
except ImportError:  # run as `python -m benchmarks.peers_bench`
    from benchmarks._common import NoopCM, loop_call

KINDS = ("sync", "asyncio", "trio")

# --------------------------------------------------------------------------- trivial targets


def f():
    return 1


async def g():
    return 1


class Boom(Exception):
    """Failure used to trip breakers."""


def failing():
    raise Boom()


async def afailing():
    raise Boom()


class _BareReject(Exception):
    pass


ran: list = []


def f_probe():
    ran.append(1)
    return 1


async def g_probe():
    ran.append(1)
    return 1


class NoopACM:
    __slots__ = ()

    async def __aenter__(self):
        return None

    async def __aexit__(self, et, ev, tb):
        return None


# --------------------------------------------------------------------------- loop templates
# Each returns run(n) -> elapsed ns (an `async def` for async kinds). The loop body
# is written out per API shape, so no adapter (lambda/partial) cost is charged to
# a library. Every rejection loop catches with `except E as e: e.__traceback__ =
# None`: needed for libraries that re-raise one shared exception instance
# (purgatory), whose traceback would otherwise grow at every raise; applied to all
# rejection rows, bare raise_catch included, so the cost is the same for everyone.


def loop_direct(fn):
    def run(n):
        r = range(n)
        t0 = perf_counter_ns()
        for _ in r:
            fn()
        return perf_counter_ns() - t0

    return run


def loop_with(cm, target):
    def run(n):
        r = range(n)
        t0 = perf_counter_ns()
        for _ in r:
            with cm:
                target()
        return perf_counter_ns() - t0

    return run


def loop_with_factory(mk, target):
    def run(n):
        r = range(n)
        t0 = perf_counter_ns()
        for _ in r:
            with mk():
                target()
        return perf_counter_ns() - t0

    return run


def loop_two_step_circuitry(b, target):
    def run(n):
        r = range(n)
        acquire = b.try_acquire
        t0 = perf_counter_ns()
        for _ in r:
            p = acquire()
            target()
            p.record_success()
        return perf_counter_ns() - t0

    return run


def loop_two_step_bool(allow, record, target):
    def run(n):
        r = range(n)
        t0 = perf_counter_ns()
        for _ in r:
            if allow():
                target()
                record()
        return perf_counter_ns() - t0

    return run


def loop_raise_catch():
    def run(n):
        r = range(n)
        E = _BareReject
        t0 = perf_counter_ns()
        for _ in r:
            try:
                raise E()
            except E as e:
                e.__traceback__ = None
        return perf_counter_ns() - t0

    return run


def reject_direct(fn, exc):
    def run(n):
        r = range(n)
        t0 = perf_counter_ns()
        for _ in r:
            try:
                fn()
            except exc as e:
                e.__traceback__ = None
        return perf_counter_ns() - t0

    return run


def reject_call(call, target, exc):
    def run(n):
        r = range(n)
        t0 = perf_counter_ns()
        for _ in r:
            try:
                call(target)
            except exc as e:
                e.__traceback__ = None
        return perf_counter_ns() - t0

    return run


def reject_with(cm, target, exc):
    def run(n):
        r = range(n)
        t0 = perf_counter_ns()
        for _ in r:
            try:
                with cm:
                    target()
            except exc as e:
                e.__traceback__ = None
        return perf_counter_ns() - t0

    return run


def reject_with_factory(mk, target, exc):
    def run(n):
        r = range(n)
        t0 = perf_counter_ns()
        for _ in r:
            try:
                with mk():
                    target()
            except exc as e:
                e.__traceback__ = None
        return perf_counter_ns() - t0

    return run


def reject_check(check, no):
    """Non-raising admission check: `if check() is <no>: skip` (the common caller code)."""
    if no is None:

        def run(n):
            r = range(n)
            t0 = perf_counter_ns()
            for _ in r:
                if check() is None:
                    pass
            return perf_counter_ns() - t0
    else:

        def run(n):
            r = range(n)
            t0 = perf_counter_ns()
            for _ in r:
                if not check():
                    pass
            return perf_counter_ns() - t0

    return run


def aloop_direct(afn):
    async def run(n):
        r = range(n)
        t0 = perf_counter_ns()
        for _ in r:
            await afn()
        return perf_counter_ns() - t0

    return run


def aloop_call(call, target):
    async def run(n):
        r = range(n)
        t0 = perf_counter_ns()
        for _ in r:
            await call(target)
        return perf_counter_ns() - t0

    return run


def aloop_with(acm, target):
    async def run(n):
        r = range(n)
        t0 = perf_counter_ns()
        for _ in r:
            async with acm:
                await target()
        return perf_counter_ns() - t0

    return run


def areject_direct(afn, exc):
    async def run(n):
        r = range(n)
        t0 = perf_counter_ns()
        for _ in r:
            try:
                await afn()
            except exc as e:
                e.__traceback__ = None
        return perf_counter_ns() - t0

    return run


def aloop_with_factory(mk, target):
    async def run(n):
        r = range(n)
        t0 = perf_counter_ns()
        for _ in r:
            async with mk():
                await target()
        return perf_counter_ns() - t0

    return run


def areject_with_factory(mk, target, exc):
    async def run(n):
        r = range(n)
        t0 = perf_counter_ns()
        for _ in r:
            try:
                async with mk():
                    await target()
            except exc as e:
                e.__traceback__ = None
        return perf_counter_ns() - t0

    return run


def areject_call(call, target, exc):
    async def run(n):
        r = range(n)
        t0 = perf_counter_ns()
        for _ in r:
            try:
                await call(target)
            except exc as e:
                e.__traceback__ = None
        return perf_counter_ns() - t0

    return run


def areject_with(acm, target, exc):
    async def run(n):
        r = range(n)
        t0 = perf_counter_ns()
        for _ in r:
            try:
                async with acm:
                    await target()
            except exc as e:
                e.__traceback__ = None
        return perf_counter_ns() - t0

    return run


# --------------------------------------------------------------------------- case model


class Skip(Exception):
    """The peer cannot run this scenario (no such API, wrong behaviour, wrong loop)."""


class Case:
    """One row. build() -> (runner, check, honesty).

    check(): raises Skip if the path does not work as the scenario needs.
    honesty(): None, or a callable that performs ONE call through the same API on
    an OPEN breaker of the same library; the row is honest if that call raised
    (or said no) without running the target. check and honesty may be `async def`
    for async kinds (they then run under the row's event loop).
    """

    def __init__(self, library, scenario, kind, shape, build, note=""):
        self.library = library
        self.scenario = scenario
        self.kind = kind
        self.shape = shape
        self.build = build
        self.note = note
        # filled in by the runner
        self.runner = None
        self.n = 0
        self.samples: list[float] = []
        self.honest = True
        self.status = ""  # "" ok, else SKIP/ERROR text

    @property
    def label(self):
        return f"{self.library} {self.scenario}"


def run_in(kind, fn, *args):
    """Run fn(*args) (sync or async) under the kind's event loop; return its result."""
    if kind == "sync" or not inspect.iscoroutinefunction(fn):
        return fn(*args)
    if kind == "asyncio":
        return asyncio.run(fn(*args))
    import trio

    return trio.run(fn, *args)


def expect_value(fn, aw=False):
    """fn() must return 1 (aw: fn() returns an awaitable that must give 1)."""
    if aw:

        async def acheck():
            v = await fn()
            if v != 1:
                raise Skip(f"protected call returned {v!r}, expected 1")

        return acheck

    def check():
        v = fn()
        if v != 1:
            raise Skip(f"protected call returned {v!r}, expected 1")

    return check


def _verdict(raised, exc_name):
    if raised is None:
        return "did NOT reject while open (protected function ran)"
    if ran:
        return f"{exc_name} raised but the protected function still ran"
    return None


def probe_reject(invoke, exc, aw=False):
    """A callable that returns None if invoke() rejects with `exc` without running
    the probe target, else a string saying what happened (aw: invoke() is awaited)."""
    if aw:

        async def aprobe():
            ran.clear()
            try:
                await invoke()
            except exc:
                return _verdict(True, exc.__name__)
            except BaseException as e:
                return f"raised {type(e).__name__}: {e} instead of the rejection"
            return _verdict(None, exc.__name__)

        return aprobe

    def probe():
        ran.clear()
        try:
            invoke()
        except exc:
            return _verdict(True, exc.__name__)
        except BaseException as e:
            return f"raised {type(e).__name__}: {e} instead of the rejection"
        return _verdict(None, exc.__name__)

    return probe


def probe_says_no(check, no):
    """For non-raising checks: None if check() answers `no` (None or falsy)."""

    def probe():
        v = check()
        if (v is None) if no is None else (not v):
            return None
        return f"check returned {v!r} while open"

    return probe


def must_reject(probe):
    """Turn a probe into a check for rejection rows (Skip when it does not reject)."""
    if inspect.iscoroutinefunction(probe):

        async def acheck():
            why = await probe()
            if why:
                raise Skip(why)

        return acheck

    def check():
        why = probe()
        if why:
            raise Skip(why)

    return check


# --------------------------------------------------------------------------- baselines


def bare_cases():
    cases = [
        Case(
            "bare",
            "sync_call",
            "sync",
            "bare",
            lambda: (loop_direct(f), None, None),
            "f() called directly: the sync baseline",
        ),
        Case(
            "bare",
            "with_noop",
            "sync",
            "bare",
            lambda: (loop_with(NoopCM(), f), None, None),
            "floor for `with`: empty __enter__/__exit__ (slotted class)",
        ),
        Case(
            "bare",
            "raise_catch",
            "sync",
            "bare",
            lambda: (loop_raise_catch(), None, None),
            "floor for raising rejections: raise + catch a fresh exception",
        ),
    ]
    for kind in ("asyncio", "trio"):
        cases += [
            Case(
                "bare",
                f"{kind}.await",
                kind,
                "bare",
                lambda: (aloop_direct(g), None, None),
                f"await g() under {kind}: the {kind} baseline",
            ),
            Case(
                "bare",
                f"{kind}.async_with_noop",
                kind,
                "bare",
                lambda: (aloop_with(NoopACM(), g), None, None),
                "floor for `async with`: empty __aenter__/__aexit__",
            ),
        ]
    return cases


# --------------------------------------------------------------------------- shared row builders
# Most libraries offer the same API shapes, so their rows are built alike from two
# factories of their own: mk() -> a CLOSED breaker, opened() -> a breaker that is
# OPEN (for the decorator rows: anything that, applied to a function, wraps it in
# such a breaker). Each helper returns the (closed, reject) pair of build()
# functions (see Case) for one shape. Only the setup and the honesty probes are
# shared here; what is timed is still one of the written-out loop templates
# above, given the library's own bound method, breaker or decorated function.
# A breaker is built when its row is prepared, never when the case list is made.


def _with_once(opened):
    """Honesty probe body for `with` rows: one `with b: f_probe()` on a fresh OPEN breaker."""
    b = opened()

    def once():
        with b:
            f_probe()

    return once


def _awith_once(opened):
    """Honesty probe body for `async with` rows: one `async with b: await g_probe()`."""
    b = opened()

    async def once():
        async with b:
            await g_probe()

    return once


def call_rows(mk, opened, exc, method="call"):
    """`b.call(f)` CLOSED, and while OPEN (raising `exc`); `method` names the
    library's call method when it is not `call` (the loop gets the bound method)."""

    def closed():
        call = getattr(mk(), method)
        ocall = getattr(opened(), method)
        return (
            loop_call(call, f),
            expect_value(lambda: call(f)),
            probe_reject(lambda: ocall(f_probe), exc),
        )

    def reject():
        call = getattr(opened(), method)
        return (
            reject_call(call, f, exc),
            must_reject(probe_reject(lambda: call(f_probe), exc)),
            None,
        )

    return closed, reject


def deco_rows(mk, opened, exc):
    """A decorated `def` CLOSED, and while OPEN."""

    def closed():
        w = mk()(f)
        return loop_direct(w), expect_value(w), probe_reject(opened()(f_probe), exc)

    def reject():
        b = opened()
        return reject_direct(b(f), exc), must_reject(probe_reject(b(f_probe), exc)), None

    return closed, reject


def with_rows(mk, opened, exc):
    """`with b: f()` CLOSED, and while OPEN (the probe uses a second OPEN breaker)."""

    def closed():
        return loop_with(mk(), f), None, probe_reject(_with_once(opened), exc)

    def reject():
        return (
            reject_with(opened(), f, exc),
            must_reject(probe_reject(_with_once(opened), exc)),
            None,
        )

    return closed, reject


def acall_rows(mk, opened, exc, method="call_async"):
    """`await b.call_async(g)` CLOSED, and while OPEN; `method` as for call_rows."""

    def closed():
        call = getattr(mk(), method)
        ocall = getattr(opened(), method)

        async def once():
            return await ocall(g_probe)

        return (
            aloop_call(call, g),
            expect_value(lambda: call(g), aw=True),
            probe_reject(once, exc, aw=True),
        )

    def reject():
        call = getattr(opened(), method)

        async def once():
            return await call(g_probe)

        return areject_call(call, g, exc), must_reject(probe_reject(once, exc, aw=True)), None

    return closed, reject


def adeco_rows(mk, opened, exc):
    """A decorated `async def` CLOSED, and while OPEN."""

    def closed():
        w = mk()(g)
        return (
            aloop_direct(w),
            expect_value(w, aw=True),
            probe_reject(opened()(g_probe), exc, aw=True),
        )

    def reject():
        b = opened()
        return (
            areject_direct(b(g), exc),
            must_reject(probe_reject(b(g_probe), exc, aw=True)),
            None,
        )

    return closed, reject


def with_factory_rows(mk, opened, exc, method):
    """`with b.<method>(): f()` (a fresh context manager per block, e.g. nopanic's
    `guard()`) CLOSED, and while OPEN (the probe uses a second OPEN breaker)."""

    def once_on(b):
        cm = getattr(b, method)

        def once():
            with cm():
                f_probe()

        return once

    def closed():
        return (
            loop_with_factory(getattr(mk(), method), f),
            None,
            probe_reject(once_on(opened()), exc),
        )

    def reject():
        return (
            reject_with_factory(getattr(opened(), method), f, exc),
            must_reject(probe_reject(once_on(opened()), exc)),
            None,
        )

    return closed, reject


def awith_factory_rows(mk, opened, exc, method):
    """`async with b.<method>(): await g()` CLOSED, and while OPEN."""

    def once_on(b):
        cm = getattr(b, method)

        async def once():
            async with cm():
                await g_probe()

        return once

    def closed():
        return (
            aloop_with_factory(getattr(mk(), method), g),
            None,
            probe_reject(once_on(opened()), exc, aw=True),
        )

    def reject():
        return (
            areject_with_factory(getattr(opened(), method), g, exc),
            must_reject(probe_reject(once_on(opened()), exc, aw=True)),
            None,
        )

    return closed, reject


def awith_rows(mk, opened, exc):
    """`async with b: await g()` CLOSED, and while OPEN (the probe uses a second OPEN breaker)."""

    def closed():
        return aloop_with(mk(), g), None, probe_reject(_awith_once(opened), exc, aw=True)

    def reject():
        return (
            areject_with(opened(), g, exc),
            must_reject(probe_reject(_awith_once(opened), exc, aw=True)),
            None,
        )

    return closed, reject


# --------------------------------------------------------------------------- peers


def pybreaker_cases():
    import pybreaker as pb

    E = pb.CircuitBreakerError

    def closed():
        return pb.CircuitBreaker(fail_max=5, reset_timeout=10**6)

    def opened():
        b = closed()
        b.open()
        return b

    def open_calling_once():
        b = opened()

        def once():
            with b.calling():
                f_probe()

        return once

    c_call, o_call = call_rows(closed, opened, E)
    c_deco, o_deco = deco_rows(closed, opened, E)

    def c_ctx():
        b = closed()
        return loop_with_factory(b.calling, f), None, probe_reject(open_calling_once(), E)

    def o_ctx():
        b = opened()
        return (
            reject_with_factory(b.calling, f, E),
            must_reject(probe_reject(open_calling_once(), E)),
            None,
        )

    cases = [
        Case("pybreaker", "sync_closed.call", "sync", "call", c_call),
        Case("pybreaker", "sync_closed.decorator", "sync", "call", c_deco),
        Case("pybreaker", "sync_closed.with calling()", "sync", "with", c_ctx),
        Case("pybreaker", "open_reject.call", "sync", "reject.call", o_call),
        Case("pybreaker", "open_reject.decorator", "sync", "reject.call", o_deco),
        Case("pybreaker", "open_reject.with calling()", "sync", "reject.with", o_ctx),
    ]

    def no_async():
        raise Skip(
            "no asyncio/trio API (call_async needs tornado; .call(async_fn) returns the "
            "coroutine unawaited and counts a success before it runs)"
        )

    for kind in ("asyncio", "trio"):
        cases.append(Case("pybreaker", f"{kind}_closed.call_async", kind, "async_call", no_async))
    return cases


def circuitbreaker_cases():
    import circuitbreaker as cbm

    E = cbm.CircuitBreakerError
    counter = iter(range(10**9))

    def mk():
        # names must be unique: decorating registers the breaker in a global monitor
        return cbm.CircuitBreaker(
            failure_threshold=1, recovery_timeout=10**6, name=f"bench-cb-{next(counter)}"
        )

    def tripped():
        br = mk()
        bad = br(failing)
        with contextlib.suppress(Boom):
            bad()
        if not br.opened:
            raise Skip("could not trip breaker")
        return br

    c_deco, o_deco = deco_rows(mk, tripped, E)
    c_with, o_with = with_rows(mk, tripped, E)
    c_call, o_call = call_rows(mk, tripped, E)
    a_deco, ao_deco = adeco_rows(mk, tripped, E)
    a_call, ao_call = acall_rows(mk, tripped, E)

    cases = [
        Case("circuitbreaker", "sync_closed.decorator", "sync", "call", c_deco),
        Case("circuitbreaker", "sync_closed.with", "sync", "with", c_with),
        Case("circuitbreaker", "sync_closed.call", "sync", "call", c_call),
        Case("circuitbreaker", "open_reject.decorator", "sync", "reject.call", o_deco),
        Case("circuitbreaker", "open_reject.with", "sync", "reject.with", o_with),
        Case("circuitbreaker", "open_reject.call", "sync", "reject.call", o_call),
    ]

    for kind in ("asyncio", "trio"):
        cases += [
            Case("circuitbreaker", f"{kind}_closed.decorator", kind, "async_call", a_deco),
            Case("circuitbreaker", f"{kind}_closed.call_async", kind, "async_call", a_call),
            Case("circuitbreaker", f"{kind}_reject.decorator", kind, "reject.async_call", ao_deco),
            Case("circuitbreaker", f"{kind}_reject.call_async", kind, "reject.async_call", ao_call),
        ]
    return cases


def purgatory_cases():
    import purgatory
    from purgatory.domain.model import OpenedState as E

    def sync_factory():
        return purgatory.SyncCircuitBreakerFactory(default_threshold=1, default_ttl=10**6)

    def trip_sync(fac):
        try:
            with fac.get_breaker("svc"):
                raise Boom()
        except Boom:
            pass

    def open_sync():
        fac = sync_factory()
        trip_sync(fac)
        return fac

    # the breakers are the factory's "svc" breaker; the decorator is fac("svc")
    # (a stateless closure that looks the breaker up on every call)
    def closed_breaker():
        return sync_factory().get_breaker("svc")

    def open_breaker():
        return open_sync().get_breaker("svc")

    def closed_deco():
        return sync_factory()("svc")

    def open_deco():
        return open_sync()("svc")

    c_with, o_with = with_rows(closed_breaker, open_breaker, E)
    c_deco, o_deco = deco_rows(closed_deco, open_deco, E)

    cases = [
        Case("purgatory", "sync_closed.with", "sync", "with", c_with),
        Case("purgatory", "sync_closed.decorator", "sync", "call", c_deco),
        Case("purgatory", "open_reject.with", "sync", "reject.with", o_with),
        Case("purgatory", "open_reject.decorator", "sync", "reject.call", o_deco),
    ]

    for kind in ("asyncio", "trio"):

        def async_factory():
            return purgatory.AsyncCircuitBreakerFactory(default_threshold=1, default_ttl=10**6)

        def get(fac, kind=kind):
            return run_in(kind, fac.get_breaker, "svc")

        def open_async(kind=kind):
            fac = async_factory()

            async def trip():
                try:
                    async with await fac.get_breaker("svc"):
                        raise Boom()
                except Boom:
                    pass

            run_in(kind, trip)
            return fac

        def closed_abreaker(kind=kind):
            return get(async_factory(), kind)

        def open_abreaker(kind=kind):
            return get(open_async(kind), kind)

        def closed_adeco():
            return async_factory()("svc")

        def open_adeco(kind=kind):
            return open_async(kind)("svc")

        a_with, ao_with = awith_rows(closed_abreaker, open_abreaker, E)
        a_deco, ao_deco = adeco_rows(closed_adeco, open_adeco, E)

        cases += [
            Case("purgatory", f"{kind}_closed.async_with", kind, "async_with", a_with),
            Case("purgatory", f"{kind}_closed.decorator", kind, "async_call", a_deco),
            Case("purgatory", f"{kind}_reject.async_with", kind, "reject.async_with", ao_with),
            Case("purgatory", f"{kind}_reject.decorator", kind, "reject.async_call", ao_deco),
        ]
    return cases


def aiobreaker_cases():
    import aiobreaker as ab

    E = ab.CircuitBreakerError

    def mk():
        return ab.CircuitBreaker(fail_max=5, timeout_duration=timedelta(days=3650))

    def opened():
        b = mk()
        b.open()
        return b

    c_call, o_call = call_rows(mk, opened, E)
    c_deco, o_deco = deco_rows(mk, opened, E)
    a_call, ao_call = acall_rows(mk, opened, E)
    a_deco, ao_deco = adeco_rows(mk, opened, E)

    cases = [
        Case("aiobreaker", "sync_closed.call", "sync", "call", c_call),
        Case("aiobreaker", "sync_closed.decorator", "sync", "call", c_deco),
        Case("aiobreaker", "open_reject.call", "sync", "reject.call", o_call),
        Case("aiobreaker", "open_reject.decorator", "sync", "reject.call", o_deco),
    ]
    for kind in ("asyncio", "trio"):
        cases += [
            Case("aiobreaker", f"{kind}_closed.call_async", kind, "async_call", a_call),
            Case("aiobreaker", f"{kind}_closed.decorator", kind, "async_call", a_deco),
            Case("aiobreaker", f"{kind}_reject.call_async", kind, "reject.async_call", ao_call),
            Case("aiobreaker", f"{kind}_reject.decorator", kind, "reject.async_call", ao_deco),
        ]
    return cases


def pyresilience_cases():
    import pyresilience as pr

    E = pr.CircuitOpenError

    def cfg():
        return pr.CircuitBreakerConfig(failure_threshold=5, recovery_timeout=1e6)

    def deco_open(fn):
        w = pr.resilient(circuit_breaker=cfg())(fn)
        w._executor._circuit_breaker.force_open()  # the OPEN state (not a separate forced state)
        return w

    def cb_open():
        b = pr.CircuitBreaker(cfg())
        b.force_open()
        return b

    def closed_deco():
        return pr.resilient(circuit_breaker=cfg())

    def open_deco():
        return deco_open  # every function it wraps gets its own OPEN breaker

    c_deco, o_deco = deco_rows(closed_deco, open_deco, E)
    a_deco, ao_deco = adeco_rows(closed_deco, open_deco, E)

    def c_two_step():
        b = pr.CircuitBreaker(cfg())
        o = cb_open()
        return (
            loop_two_step_bool(b.allow_request, b.record_success, f),
            None,
            probe_says_no(o.allow_request, False),
        )

    def o_check():
        b = cb_open()
        return (
            reject_check(b.allow_request, False),
            must_reject(probe_says_no(b.allow_request, False)),
            None,
        )

    cases = [
        Case("pyresilience", "sync_closed.decorator", "sync", "call", c_deco),
        Case(
            "pyresilience",
            "sync_closed.allow_request+record_success",
            "sync",
            "two_step",
            c_two_step,
            "CircuitBreaker.allow_request() -> bool, then record_success()",
        ),
        Case("pyresilience", "open_reject.decorator", "sync", "reject.call", o_deco),
        Case(
            "pyresilience",
            "open_reject.allow_request",
            "sync",
            "reject.check",
            o_check,
            "allow_request() -> False (rejection not counted)",
        ),
    ]
    for kind in ("asyncio", "trio"):
        cases += [
            Case("pyresilience", f"{kind}_closed.decorator", kind, "async_call", a_deco),
            Case("pyresilience", f"{kind}_reject.decorator", kind, "reject.async_call", ao_deco),
        ]
    return cases


def interlock_cases():
    # interlock-cb (import name `interlock`): one CircuitBreaker class for sync and
    # async, a context manager for both `with` and `async with`.
    import interlock as il

    E = il.CircuitOpenError
    # its defaults (50 % failures over at least 10 calls, a window of the last
    # 100), open for 10**6 s
    cfg = il.Config(wait_duration_in_open=10**6)

    def mk():
        return il.CircuitBreaker(name="bench", config=cfg)

    def opened():
        """Tripped into OPEN by real failures (force_open() is FORCED_OPEN, not used)."""
        b = mk()
        for _ in range(cfg.minimum_number_of_calls):
            with contextlib.suppress(Boom):
                b.call(failing)
        if b.state is not il.State.OPEN:
            raise Skip(f"could not trip breaker: {b.state}")
        return b

    c_call, o_call = call_rows(mk, opened, E)
    c_call_sync, o_call_sync = call_rows(mk, opened, E, method="call_sync")
    c_deco, o_deco = deco_rows(mk, opened, E)
    c_with, o_with = with_rows(mk, opened, E)
    a_call, ao_call = acall_rows(mk, opened, E)
    a_deco, ao_deco = adeco_rows(mk, opened, E)
    a_with, ao_with = awith_rows(mk, opened, E)

    cases = [
        Case(
            "interlock-cb",
            "sync_closed.call",
            "sync",
            "call",
            c_call,
            "call() tells a sync fn from an async one at every call",
        ),
        Case("interlock-cb", "sync_closed.call_sync", "sync", "call", c_call_sync),
        Case("interlock-cb", "sync_closed.decorator", "sync", "call", c_deco),
        Case("interlock-cb", "sync_closed.with", "sync", "with", c_with),
        Case("interlock-cb", "open_reject.call", "sync", "reject.call", o_call),
        Case("interlock-cb", "open_reject.call_sync", "sync", "reject.call", o_call_sync),
        Case("interlock-cb", "open_reject.decorator", "sync", "reject.call", o_deco),
        Case("interlock-cb", "open_reject.with", "sync", "reject.with", o_with),
    ]
    for kind in ("asyncio", "trio"):
        cases += [
            Case("interlock-cb", f"{kind}_closed.async_with", kind, "async_with", a_with),
            Case("interlock-cb", f"{kind}_closed.call_async", kind, "async_call", a_call),
            Case("interlock-cb", f"{kind}_closed.decorator", kind, "async_call", a_deco),
            Case("interlock-cb", f"{kind}_reject.async_with", kind, "reject.async_with", ao_with),
            Case("interlock-cb", f"{kind}_reject.call_async", kind, "reject.async_call", ao_call),
            Case("interlock-cb", f"{kind}_reject.decorator", kind, "reject.async_call", ao_deco),
        ]
    return cases


def nopanic_cases():
    # nopanic: a resilience toolkit; its CircuitBreaker is a Policy (decorator,
    # call / acall), and guard() hands out a fresh context manager per block,
    # for `with` and `async with` alike.
    import nopanic as np_

    E = np_.CircuitOpen

    def mk():
        # its defaults (50 % failures over at least 5 calls in a 30 s window),
        # open for 10**6 s
        return np_.CircuitBreaker(reset_timeout=10**6, name="bench")

    def opened():
        """Tripped into OPEN by real failures (force_open() is "forced_open", not used)."""
        b = mk()
        for _ in range(b.min_calls):
            with contextlib.suppress(Boom):
                b.call(failing)
        if b.state != "open":
            raise Skip(f"could not trip breaker: {b.state}")
        return b

    c_call, o_call = call_rows(mk, opened, E)
    c_deco, o_deco = deco_rows(mk, opened, E)
    c_guard, o_guard = with_factory_rows(mk, opened, E, "guard")
    a_call, ao_call = acall_rows(mk, opened, E, method="acall")
    a_deco, ao_deco = adeco_rows(mk, opened, E)
    a_guard, ao_guard = awith_factory_rows(mk, opened, E, "guard")

    cases = [
        Case("nopanic", "sync_closed.call", "sync", "call", c_call),
        Case("nopanic", "sync_closed.decorator", "sync", "call", c_deco),
        Case("nopanic", "sync_closed.with guard()", "sync", "with", c_guard),
        Case("nopanic", "open_reject.call", "sync", "reject.call", o_call),
        Case("nopanic", "open_reject.decorator", "sync", "reject.call", o_deco),
        Case("nopanic", "open_reject.with guard()", "sync", "reject.with", o_guard),
    ]
    for kind in ("asyncio", "trio"):
        cases += [
            Case("nopanic", f"{kind}_closed.async_with guard()", kind, "async_with", a_guard),
            Case("nopanic", f"{kind}_closed.acall", kind, "async_call", a_call),
            Case("nopanic", f"{kind}_closed.decorator", kind, "async_call", a_deco),
            Case(
                "nopanic", f"{kind}_reject.async_with guard()", kind, "reject.async_with", ao_guard
            ),
            Case("nopanic", f"{kind}_reject.acall", kind, "reject.async_call", ao_call),
            Case("nopanic", f"{kind}_reject.decorator", kind, "reject.async_call", ao_deco),
        ]
    return cases


def fluxgate_cases():
    # fluxgate: CircuitBreaker (sync; documented as NOT thread-safe) and
    # AsyncCircuitBreaker (asyncio), each with call() and a decorator; no
    # context manager.
    import fluxgate as fg
    from fluxgate.retries import Cooldown

    E = fg.CallNotPermittedError
    TRIP = 100  # its default tripper: MinRequests(100) & FailureRate(0.5), CountWindow(100)

    def mk():
        # its defaults, with a cooldown (OPEN -> HALF_OPEN) of 10**6 s
        return fg.CircuitBreaker(retry=Cooldown(10**6))

    def opened():
        """Tripped into OPEN by real failures (force_open() is "forced_open", not used)."""
        b = mk()
        for _ in range(TRIP):
            with contextlib.suppress(Boom):
                b.call(failing)
        if b.info().state != "open":
            raise Skip(f"could not trip breaker: {b.info().state}")
        return b

    def amk():
        return fg.AsyncCircuitBreaker(retry=Cooldown(10**6))

    def aopened():
        b = amk()

        async def trip():
            for _ in range(TRIP):
                with contextlib.suppress(Boom):
                    await b.call(afailing)

        run_in("asyncio", trip)
        if b.info().state != "open":
            raise Skip(f"could not trip breaker: {b.info().state}")
        return b

    c_call, o_call = call_rows(mk, opened, E)
    c_deco, o_deco = deco_rows(mk, opened, E)
    a_call, ao_call = acall_rows(amk, aopened, E, method="call")
    a_deco, ao_deco = adeco_rows(amk, aopened, E)

    unsafe = "sync CircuitBreaker: no lock (documented NOT thread-safe), counts lost under threads"
    cases = [
        Case("fluxgate", "sync_closed.call", "sync", "call", c_call, unsafe),
        Case("fluxgate", "sync_closed.decorator", "sync", "call", c_deco, unsafe),
        Case("fluxgate", "open_reject.call", "sync", "reject.call", o_call),
        Case("fluxgate", "open_reject.decorator", "sync", "reject.call", o_deco),
        Case(
            "fluxgate",
            "asyncio_closed.call",
            "asyncio",
            "async_call",
            a_call,
            "AsyncCircuitBreaker: `await b.call(g)`",
        ),
        Case("fluxgate", "asyncio_closed.decorator", "asyncio", "async_call", a_deco),
        Case("fluxgate", "asyncio_reject.call", "asyncio", "reject.async_call", ao_call),
        Case("fluxgate", "asyncio_reject.decorator", "asyncio", "reject.async_call", ao_deco),
    ]

    def no_trio():
        raise Skip(
            "AsyncCircuitBreaker is asyncio-only: under trio.run the call that opens it "
            "raises RuntimeError (no current event loop: asyncio.gather in its listener "
            "notification) in place of the call's own exception"
        )

    cases.append(Case("fluxgate", "trio_closed.call", "trio", "async_call", no_trio))
    return cases


# --------------------------------------------------------------------------- circuitry


def circuitry_cases():
    import circuitry
    from circuitry import CircuitBreaker, CircuitBreakerConfig

    E = circuitry.CircuitOpenError
    # default config (5 consecutive failures, no window); a reset timeout long
    # enough that the tripped breakers stay OPEN for the whole run
    cfg = CircuitBreakerConfig(reset_timeout=10**6)

    def mk():
        return CircuitBreaker(cfg, name="bench")

    def opened():
        """A breaker tripped into OPEN by real failures (not FORCED_OPEN)."""
        b = mk()
        for _ in range(cfg.failure_threshold_count):
            with contextlib.suppress(Boom):
                b.call(failing)
        if b.state is not circuitry.CircuitState.OPEN:
            raise Skip(f"could not trip breaker: {b.state}")
        return b

    c_with, o_with = with_rows(mk, opened, E)
    c_call, o_call = call_rows(mk, opened, E)
    c_deco, o_deco = deco_rows(mk, opened, E)
    a_with, ao_with = awith_rows(mk, opened, E)
    a_call, ao_call = acall_rows(mk, opened, E)
    a_deco, ao_deco = adeco_rows(mk, opened, E)

    def c_two_step():
        b = mk()
        return loop_two_step_circuitry(b, f), None, probe_says_no(opened().try_acquire, None)

    def o_try():
        b = opened()
        return (
            reject_check(b.try_acquire, None),
            must_reject(probe_says_no(b.try_acquire, None)),
            None,
        )

    cases = [
        Case("circuitry", "sync_closed.with", "sync", "with", c_with),
        Case("circuitry", "sync_closed.call", "sync", "call", c_call),
        Case("circuitry", "sync_closed.decorator", "sync", "call", c_deco),
        Case("circuitry", "sync_closed.try_acquire+record_success", "sync", "two_step", c_two_step),
        Case("circuitry", "open_reject.call", "sync", "reject.call", o_call),
        Case("circuitry", "open_reject.with", "sync", "reject.with", o_with),
        Case("circuitry", "open_reject.decorator", "sync", "reject.call", o_deco),
        Case(
            "circuitry",
            "open_reject.try_acquire",
            "sync",
            "reject.check",
            o_try,
            "try_acquire() -> None (rejection counted)",
        ),
    ]

    for kind in ("asyncio", "trio"):
        cases += [
            Case("circuitry", f"{kind}_closed.async_with", kind, "async_with", a_with),
            Case("circuitry", f"{kind}_closed.call_async", kind, "async_call", a_call),
            Case("circuitry", f"{kind}_closed.decorator", kind, "async_call", a_deco),
            Case("circuitry", f"{kind}_reject.async_with", kind, "reject.async_with", ao_with),
            Case("circuitry", f"{kind}_reject.call_async", kind, "reject.async_call", ao_call),
            Case("circuitry", f"{kind}_reject.decorator", kind, "reject.async_call", ao_deco),
        ]
    return cases


PEERS = [
    ("pybreaker", pybreaker_cases),
    ("circuitbreaker", circuitbreaker_cases),
    ("purgatory", purgatory_cases),
    ("aiobreaker", aiobreaker_cases),
    ("pyresilience", pyresilience_cases),
    ("interlock-cb", interlock_cases),
    ("nopanic", nopanic_cases),
    ("fluxgate", fluxgate_cases),
]

# --------------------------------------------------------------------------- timing


def time_once(case, n):
    """One timed run of n calls, GC disabled; returns ns per call."""
    gc.collect()
    gc.disable()
    try:
        if case.kind == "sync":
            el = case.runner(n)
        elif case.kind == "asyncio":
            el = _LOOP.run_until_complete(case.runner(n))
        else:
            import trio

            el = trio.run(case.runner, n)
    finally:
        gc.enable()
    return el / n


_LOOP: asyncio.AbstractEventLoop | None = None


def prepare(case, args):
    """Build, check, honesty-probe, warm up and size one case. Sets case.status on failure."""
    try:
        runner, check, honesty = case.build()
        if check is not None:
            run_in(case.kind, check)
        if honesty is not None:
            why = run_in(case.kind, honesty)
            if why:
                case.honest = False
                case.note = (case.note + "; " if case.note else "") + f"NO-REJECT: same API {why}"
        case.runner = runner
        per_call = time_once(case, 2000)  # warm-up and rough cost
        if args.n:
            case.n = args.n
        else:
            n = int(args.target_ms * 1e6 / max(per_call, 1.0))
            case.n = max(args.min_n, min(args.max_n, n))
    except Skip as e:
        case.status = f"SKIP {e}"
    except Exception as e:
        where = "" if case.kind == "sync" else f" under {case.kind}"
        case.status = f"ERROR{where}: {type(e).__name__}: {e}"
        if args.verbose:
            traceback.print_exc()


def version_of(dist):
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return "not-installed"


def circuitry_source():
    """Where circuitry was imported from, and the git revision of that checkout
    (read-only git calls, without optional locks, so a concurrent commit is not disturbed)."""
    import os
    import subprocess

    try:
        import circuitry
    except ImportError:
        return "circuitry not importable"
    pkg = os.path.dirname(os.path.abspath(circuitry.__file__))
    repo = os.path.dirname(pkg)
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")
    try:
        rev = subprocess.run(
            ["git", "-C", repo, "rev-parse", "--short", "HEAD"],
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", repo, "status", "--porcelain", "--", pkg],
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev, dirty = "", ""
    if not rev:
        return pkg
    return f"{pkg} at git {rev}" + (" + uncommitted changes in circuitry/" if dirty else "")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# --------------------------------------------------------------------------- report


def fastest_peer(cases, kind, shape):
    best = None
    for c in cases:
        if (
            c.library not in ("bare", "circuitry")
            and c.kind == kind
            and c.shape == shape
            and c.honest
            and not c.status
            and c.samples
            and (best is None or min(c.samples) < min(best.samples))
        ):
            best = c
    return best


def report(cases, args, out):
    base = {}
    for c in cases:
        if c.library == "bare" and c.samples:
            base[c.scenario] = min(c.samples)
    base_for = {
        "sync": base.get("sync_call"),
        "asyncio": base.get("asyncio.await"),
        "trio": base.get("trio.await"),
    }

    rows = []
    for c in cases:
        if c.status:
            rows.append((c.library, c.scenario, c.shape, "", "", "", "", c.status))
            continue
        ns = min(c.samples)
        med = statistics.median(c.samples)
        b = base_for.get(c.kind)
        vs_bare = f"{ns / b:.2f}x" if b else "n/a"
        noise = f"{(med / ns - 1) * 100:.0f}%"
        vs_peer = ""
        if c.library == "circuitry":
            p = fastest_peer(cases, c.kind, c.shape)
            vs_peer = (
                f"{ns / min(p.samples):.2f}x {p.library} {p.scenario}" if p else "(no honest peer)"
            )
        rows.append((c.library, c.scenario, c.shape, f"{ns:.1f}", vs_bare, noise, vs_peer, c.note))

    head = (
        "library",
        "scenario",
        "shape",
        "ns/call",
        "vs bare",
        "noise",
        "circuitry/peer (fastest honest peer, same shape)",
        "note",
    )
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        out.append("| " + " | ".join(r) + " |")
    return base_for


def targets(cases, base_for, out):
    by = {(c.library, c.scenario): c for c in cases if not c.status and c.samples}

    def ns(lib, scen):
        c = by.get((lib, scen))
        return min(c.samples) if c else None

    def vs_fastest(scen):
        c = by.get(("circuitry", scen))
        if c is None:
            return None, None, "circuitry row missing"
        p = fastest_peer(cases, c.kind, c.shape)
        if p is None:
            return None, None, "no honest peer of this shape"
        return min(c.samples) / min(p.samples), f"{p.library} {p.scenario}", ""

    out.append("")
    out.append("| target | circuitry row | measured | limit | peer / baseline | met |")
    out.append("|---|---|---|---|---|---|")

    def line(target, scen, ratio, limit, who, why=""):
        if ("circuitry", scen) not in by:
            return  # not measured in this run (--only)
        if ratio is None:
            out.append(f"| {target} | {scen} | n/a | {limit} | {why} | ? |")
            return
        met = "yes" if ratio < limit else "NO"
        out.append(f"| {target} | {scen} | {ratio:.2f}x | < {limit}x | {who} | {met} |")

    fn_rows = [
        "sync_closed.call",
        "sync_closed.decorator",
        "asyncio_closed.call_async",
        "asyncio_closed.decorator",
        "trio_closed.call_async",
        "trio_closed.decorator",
    ]
    for s in fn_rows:
        r, who, why = vs_fastest(s)
        line("function call / decorator faster than fastest peer", s, r, 1.0, who, why)
    rej_rows = [
        "open_reject.call",
        "open_reject.decorator",
        "open_reject.with",
        "open_reject.try_acquire",
        "asyncio_reject.async_with",
        "asyncio_reject.call_async",
        "asyncio_reject.decorator",
        "trio_reject.async_with",
        "trio_reject.call_async",
        "trio_reject.decorator",
    ]
    for s in rej_rows:
        r, who, why = vs_fastest(s)
        line("rejection faster than fastest peer (same shape)", s, r, 1.0, who, why)
    for s, peer in [
        ("sync_closed.with", "sync_closed.with"),
        ("asyncio_closed.async_with", "asyncio_closed.async_with"),
        ("trio_closed.async_with", "trio_closed.async_with"),
    ]:
        a, b = ns("circuitry", s), ns("purgatory", peer)
        line(
            "`with` / `async with` CLOSED within 1.5x purgatory",
            s,
            a / b if a and b else None,
            1.5,
            f"purgatory {peer}",
            "row missing",
        )
    a, b = ns("circuitry", "open_reject.try_acquire"), base_for.get("sync")
    line(
        "try_acquire() rejection within 5x bare call",
        "open_reject.try_acquire",
        a / b if a and b else None,
        5.0,
        "bare sync_call",
        "row missing",
    )


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--repeats", type=int, default=9, help="timed repeats per case, best kept (default 9)"
    )
    ap.add_argument(
        "--target-ms",
        type=float,
        default=80.0,
        help="size each repeat to take about this long (default 80 ms)",
    )
    ap.add_argument(
        "--n", type=int, default=0, help="fixed calls per repeat (overrides --target-ms)"
    )
    ap.add_argument("--min-n", type=int, default=10_000)
    ap.add_argument("--max-n", type=int, default=2_000_000)
    ap.add_argument(
        "--only",
        default=None,
        help="run only cases whose 'library scenario' contains this (baselines always run)",
    )
    ap.add_argument(
        "--quick", action="store_true", help="smoke run: 3 repeats of ~8 ms (well under a minute)"
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("-v", "--verbose", action="store_true", help="print tracebacks for ERROR cases")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.target_ms, args.min_n = 3, 8.0, 1000

    global _LOOP
    _LOOP = asyncio.new_event_loop()
    t_start = perf_counter_ns()

    out: list[str] = []
    dists = [d for d, _ in PEERS] + ["trio", "anyio"]
    header = [
        f"# python {platform.python_version()} {platform.python_implementation()} on {platform.platform()}",
        f"# cpu: {cpu_model()} ({__import__('os').cpu_count()} logical cores)",
        f"# repeats={args.repeats} (best kept, interleaved round-robin), "
        + (f"n={args.n}" if args.n else f"~{args.target_ms:g} ms per repeat")
        + ", GC disabled while timing",
        "# versions: circuitry="
        + version_of("circuitry")
        + ", "
        + ", ".join(f"{d}={version_of(d)}" for d in dists),
        f"# circuitry source: {circuitry_source()}",
    ]
    for h in header:
        print(h, flush=True)

    cases = bare_cases()
    for name, fn in [*PEERS, ("circuitry", circuitry_cases)]:
        try:
            cases.extend(fn())
        except ImportError as e:
            print(f"# {name}: SKIP not importable: {e}", flush=True)
        except Exception as e:
            print(f"# {name}: ERROR building cases: {type(e).__name__}: {e}", flush=True)
    if args.only:
        cases = [c for c in cases if c.library == "bare" or args.only in c.label]

    for c in cases:
        prepare(c, args)
    live = [c for c in cases if not c.status]
    print(f"# {len(live)} cases timed, {len(cases) - len(live)} skipped", flush=True)

    rng = random.Random(args.seed)
    for r in range(args.repeats):
        order = list(live)
        rng.shuffle(order)
        for c in order:
            try:
                c.samples.append(time_once(c, c.n))
            except Exception as e:
                c.status = f"ERROR while timing: {type(e).__name__}: {e}"
                live.remove(c)
        print(f"# round {r + 1}/{args.repeats} done", file=sys.stderr, flush=True)

    base_for = report(cases, args, out)
    targets(cases, base_for, out)
    _LOOP.close()
    out.append("")
    out.append(f"# wall time {(perf_counter_ns() - t_start) / 1e9:.0f} s")
    print("\n".join(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
