"""In a forked child every call is counted exactly once (issue 22, item 3).

Whatever was in flight at the fork (a call of another thread, admitted
before the last transition or after it; a permit the forking thread holds;
a call suspended in a task of the forking thread's event loop), the child's
totals add up once the forking thread's own calls and permits complete:
`total_allowed == total_successes + total_failures + total_ignored`, with
each call counted once, by the outcome it had where it completed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading

import pytest
from helpers import CLOSED, Boom, boom, make
from test_fork import child_ok, exit_child, fork, settled

from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitMetrics
from circuitry.redis import RedisStore
from circuitry.testing import FakeClock

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")


def totals(m: CircuitMetrics) -> tuple[int, int, int, int]:
    return m.total_allowed, m.total_successes, m.total_failures, m.total_ignored


def wait_child(pid: int) -> None:
    _, status = os.waitpid(pid, 0)
    assert child_ok(status), status


def test_a_call_admitted_before_the_last_transition_in_another_thread_is_counted(
    clock: FakeClock,
) -> None:
    breaker = make(clock, failure_threshold_count=5)
    entered, release = threading.Event(), threading.Event()

    def slow_call() -> None:
        with breaker:  # admitted in this CLOSED period, then reset() starts another
            entered.set()
            release.wait(30)

    thread = threading.Thread(target=slow_call)
    thread.start()
    assert entered.wait(30)
    breaker.reset()  # the call in flight is now a late result of the last period
    try:
        before = totals(breaker.metrics())
        pid = fork()
        if pid == 0:  # pragma: no cover - the child: that thread is not here

            def check() -> bool:
                m = breaker.metrics()
                allowed, successes, failures, ignored = totals(m)
                # The parent thread's call never completes here: counted as ignored.
                return settled(m) and (allowed, successes, failures, ignored) == (
                    before[0],
                    before[1],
                    before[2],
                    before[3] + 1,
                )

            exit_child(check)
    finally:
        release.set()
        thread.join(30)
    wait_child(pid)
    assert settled(breaker.metrics())


@pytest.mark.parametrize("outcome", ["success", "failure", "release"])
def test_a_permit_held_by_the_forking_thread_is_counted_once(
    clock: FakeClock, outcome: str
) -> None:
    breaker = make(clock, failure_threshold_count=5)
    breaker.call(lambda: None)
    permit = breaker.try_acquire()
    assert permit is not None
    pid = fork()
    if pid == 0:  # pragma: no cover - the child completes the permit it inherited

        def check() -> bool:
            if outcome == "success":
                permit.record_success()
            elif outcome == "failure":
                permit.record_failure(Boom("down"))
            else:
                permit.release()
            m = breaker.metrics()
            expected = {
                "success": (2, 2, 0, 0),
                "failure": (2, 1, 1, 0),
                "release": (2, 1, 0, 1),
            }[outcome]
            return settled(m) and totals(m) == expected

        exit_child(check)
    permit.record_success()
    wait_child(pid)
    assert totals(breaker.metrics()) == (2, 2, 0, 0)


@pytest.mark.parametrize("entry", ["async_with", "call_async"])
def test_a_call_suspended_in_a_task_is_counted_once_in_the_child(entry: str) -> None:
    breaker = CircuitBreaker(name="svc")

    async def main() -> int:
        release = asyncio.Event()
        entered = asyncio.Event()

        async def waits() -> None:
            entered.set()
            await release.wait()

        async def suspended() -> None:
            # In flight across the fork, in this very loop.
            if entry == "async_with":
                async with breaker:
                    await waits()
            else:
                await breaker.call_async(waits)

        task = asyncio.create_task(suspended())
        await entered.wait()
        pid = fork()
        release.set()
        await task  # completes in the parent and, in the child, in the child's copy
        if pid == 0:  # pragma: no cover - the child
            exit_child(lambda: totals(breaker.metrics()) == (1, 1, 0, 0))
        return pid

    pid = asyncio.run(main())
    wait_child(pid)
    assert totals(breaker.metrics()) == (1, 1, 0, 0)


def test_the_childs_calls_after_the_fork_count_as_usual(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=2)
    permit = breaker.try_acquire()
    assert permit is not None
    pid = fork()
    if pid == 0:  # pragma: no cover

        def check() -> bool:
            breaker.call(lambda: None)
            for _ in range(2):
                with contextlib.suppress(Boom):
                    breaker.call(boom)
            if breaker.state is CLOSED:
                return False  # two failures in a row trip it, as in any process
            permit.record_failure()  # the pre-fork permit: a late result, counted once
            m = breaker.metrics()
            return settled(m) and totals(m) == (4, 1, 3, 0)

        exit_child(check)
    permit.release()
    wait_child(pid)


def test_a_permit_held_by_the_forking_thread_is_counted_once_with_a_store(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url)
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold_count=5), store=store)
    try:
        breaker.call(lambda: None)
        permit = breaker.try_acquire()
        assert permit is not None
        pid = fork()
        if pid == 0:  # pragma: no cover - the child counts from zero: the permit, once

            def check() -> bool:
                permit.record_success()
                m = breaker.metrics()
                return settled(m) and totals(m) == (1, 1, 0, 0)

            exit_child(check)
        permit.record_success()
        wait_child(pid)
        assert totals(breaker.metrics()) == (2, 2, 0, 0)
    finally:
        store.close()
