"""One breaker shared at once by threads, an asyncio loop and a trio loop.

Four plain threads use `with` / `call` / `@breaker`; two more threads each run
an event loop (one asyncio, one trio, through `anyio.run`) whose tasks use
`async with` / `call_async` / `@breaker` and get cancelled. Everybody starts
together (a barrier) and the counts must come out exact.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from helpers import Boom, Skipped, boom, run_in_threads

from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError, CircuitState
from circuitry.events import CallFailed, CallIgnored, CallSucceeded, Event

THREADS = 4
LOOPS = ("asyncio", "trio")
JOIN_TIMEOUT = 30  # seconds: only so that a deadlock fails instead of hanging


class Tally:
    """Outcomes seen by the callers, from every thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n


def run_all(
    thread_worker: Callable[[int], None],
    loop_worker: Callable[[str], Any],
    barrier: threading.Barrier,
) -> None:
    """Run THREADS thread workers and one loop per backend at once; re-raise any error."""
    workers = [functools.partial(thread_worker, i) for i in range(THREADS)]
    workers += [
        functools.partial(anyio.run, loop_worker, backend, backend=backend) for backend in LOOPS
    ]
    # A worker that fails breaks the barrier: the others must not wait for it forever.
    run_in_threads(workers, timeout=JOIN_TIMEOUT, on_error=barrier.abort)


def test_threads_and_two_event_loops_keep_exact_counts() -> None:
    rounds, tasks_per_loop = 150, 20
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold_count=10**9, ignore_exceptions=(Skipped,)),
        name="shared",
    )
    events: Counter[type] = Counter()
    events_lock = threading.Lock()

    def listener(event: Event) -> None:
        with events_lock:
            events[type(event)] += 1

    breaker.subscribe(listener)
    barrier = threading.Barrier(THREADS + len(LOOPS))
    tally = Tally()

    def sync_op(kind: str) -> str:
        if kind == "fail":
            raise Boom
        if kind == "skip":
            raise Skipped
        return kind

    protected_sync_op = breaker(sync_op)

    def thread_worker(index: int) -> None:
        barrier.wait()
        for i in range(rounds):
            kind = ("ok", "fail", "skip")[(i + index) % 3]
            try:
                if i % 3 == 0:
                    with breaker:
                        sync_op(kind)
                elif i % 3 == 1:
                    breaker.call(sync_op, kind)
                else:
                    protected_sync_op(kind)
            except (Boom, Skipped):
                pass
            tally.add(kind)

    async def async_op(kind: str) -> str:
        await anyio.sleep(0)
        if kind == "fail":
            raise Boom
        if kind == "skip":
            raise Skipped
        if kind == "cancel":
            await anyio.sleep_forever()
        return kind

    protected_async_op = breaker(async_op)

    async def loop_worker(backend: str) -> None:
        await anyio.to_thread.run_sync(barrier.wait)

        async def task(index: int) -> None:
            for i in range(rounds // 5):
                kind = ("ok", "fail", "skip", "cancel")[(i + index) % 4]
                with anyio.move_on_after(0.001 if kind == "cancel" else 60):
                    try:
                        if i % 3 == 0:
                            async with breaker:
                                await async_op(kind)
                        elif i % 3 == 1:
                            await breaker.call_async(async_op, kind)
                        else:
                            await protected_async_op(kind)
                    except (Boom, Skipped):
                        pass
                tally.add(kind)
                tally.add(backend)

        async with anyio.create_task_group() as tg:
            for index in range(tasks_per_loop):
                tg.start_soon(task, index)

    run_all(thread_worker, loop_worker, barrier)

    seen = tally.counts
    assert seen["asyncio"] == seen["trio"] == tasks_per_loop * (rounds // 5)
    calls = THREADS * rounds + len(LOOPS) * tasks_per_loop * (rounds // 5)
    m = breaker.metrics()
    assert m.current_state is CircuitState.CLOSED
    assert m.total_allowed == calls
    assert m.total_rejected == 0
    assert m.total_successes == seen["ok"]
    assert m.total_failures == seen["fail"]
    assert m.total_ignored == seen["skip"] + seen["cancel"]
    assert m.total_successes + m.total_failures + m.total_ignored == calls
    assert events[CallSucceeded] == seen["ok"]
    assert events[CallFailed] == seen["fail"]
    assert events[CallIgnored] == seen["skip"] + seen["cancel"]


def test_half_open_limit_holds_across_threads_and_event_loops() -> None:
    slots, attempts_per_worker = 3, 200
    breaker = CircuitBreaker(
        CircuitBreakerConfig(
            failure_threshold_count=1,
            reset_timeout=0.001,
            test_request_count=slots,
            success_threshold_count=10**6,  # stays HALF_OPEN: successes never close it
            ignore_exceptions=(Skipped,),
        ),
        name="trials",
    )
    with pytest.raises(Boom):
        breaker.call(boom)
    time.sleep(0.002)
    assert breaker.state is CircuitState.HALF_OPEN

    in_flight = 0
    max_in_flight = 0
    flight_lock = threading.Lock()

    def enter() -> None:
        nonlocal in_flight, max_in_flight
        with flight_lock:
            in_flight += 1
            max_in_flight = max(max_in_flight, in_flight)

    def leave() -> None:
        nonlocal in_flight
        with flight_lock:
            in_flight -= 1

    barrier = threading.Barrier(THREADS + len(LOOPS))
    tally = Tally()

    def thread_worker(index: int) -> None:
        barrier.wait()
        for i in range(attempts_per_worker):
            try:
                with breaker:
                    enter()
                    tally.add("thread")
                    time.sleep(0.0002)
                    leave()
                    if i % 2:
                        raise Skipped
                tally.add("success")
            except CircuitOpenError:
                tally.add("rejected")
            except Skipped:
                tally.add("ignored")
            time.sleep(0.0002)  # leave the event loops a chance at the slots

    async def loop_worker(backend: str) -> None:
        await anyio.to_thread.run_sync(barrier.wait)

        async def task(index: int) -> None:
            for i in range(attempts_per_worker // 10):
                with anyio.move_on_after(0.0005) as scope:
                    try:
                        async with breaker:
                            enter()
                            tally.add(backend)
                            try:
                                await anyio.sleep(0.0004 * (i % 4))  # the longest get cancelled
                            finally:
                                leave()
                        tally.add("success")
                    except CircuitOpenError:
                        tally.add("rejected")
                if scope.cancelled_caught:
                    tally.add("cancelled")
                await anyio.sleep(0.0002)

        async with anyio.create_task_group() as tg:
            for index in range(10):
                tg.start_soon(task, index)

    before = breaker.metrics()
    run_all(thread_worker, loop_worker, barrier)
    after = breaker.metrics()

    seen = tally.counts
    attempts = THREADS * attempts_per_worker + len(LOOPS) * 10 * (attempts_per_worker // 10)
    allowed = after.total_allowed - before.total_allowed
    rejected = after.total_rejected - before.total_rejected
    assert max_in_flight <= slots
    assert in_flight == 0
    assert after.current_state is CircuitState.HALF_OPEN
    assert allowed + rejected == attempts
    assert rejected == seen["rejected"]
    assert after.total_successes - before.total_successes == seen["success"]
    assert after.total_failures == before.total_failures
    # Cancelled callers were either admitted (and their trial ignored) or not yet.
    ignored = after.total_ignored - before.total_ignored
    assert ignored == allowed - seen["success"]
    assert seen["ignored"] <= ignored <= seen["ignored"] + seen["cancelled"]
    # No slot leaked: `slots` trials are admitted at once, and no more.
    permits = [breaker.try_acquire() for _ in range(slots + 1)]
    assert [p is not None for p in permits] == [True] * slots + [False]
