"""Many tasks against one breaker, on asyncio and trio: limits hold, counts add up.

Every test runs on both backends (the `anyio_backend` fixture in conftest.py).
Real sleeps only make cancellations land at varied points; no assertion is
about time.
"""

from __future__ import annotations

import random
import sys
from collections import Counter

import anyio
import pytest
from helpers import CLOSED, HALF_OPEN, Boom, Entry, Interrupt, Skipped, entries, half_open

from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError, CircuitState
from circuitry.testing import FakeClock

pytestmark = pytest.mark.anyio

SAFETY = 60  # seconds: only so that a bug fails the test instead of hanging it


@entries
async def test_thousand_tasks_against_half_open_admit_test_request_count_and_reject_at_once(
    entry: Entry, clock: FakeClock
) -> None:
    tasks, slots = 1000, 5
    breaker = CircuitBreaker(
        CircuitBreakerConfig(
            failure_threshold_count=1,
            reset_timeout=5,
            test_request_count=slots,
            success_threshold_count=slots,
        ),
        clock=clock,
    )
    half_open(breaker, clock)
    before = breaker.metrics()
    release = anyio.Event()
    all_rejected = anyio.Event()
    in_flight = max_in_flight = trials_done = rejected = 0
    trials_done_when_rejected: set[int] = set()
    rejecting_states: set[CircuitState] = set()

    async def trial() -> None:
        nonlocal in_flight, max_in_flight, trials_done
        in_flight += 1
        max_in_flight = max(max_in_flight, in_flight)
        await release.wait()
        in_flight -= 1
        trials_done += 1

    async def caller() -> None:
        nonlocal rejected
        try:
            await entry(breaker, trial)
        except CircuitOpenError as error:
            rejecting_states.add(error.state)
            trials_done_when_rejected.add(trials_done)
            rejected += 1
            if rejected == tasks - slots:
                all_rejected.set()

    with anyio.fail_after(SAFETY):
        async with anyio.create_task_group() as tg:
            for _ in range(tasks):
                tg.start_soon(caller)
            # Every rejected caller finishes while the trials are still held.
            await all_rejected.wait()
            assert trials_done == 0
            assert in_flight == slots
            release.set()

    assert trials_done_when_rejected == {0}
    assert rejecting_states == {HALF_OPEN}
    assert max_in_flight == slots
    assert trials_done == slots
    after = breaker.metrics()
    assert after.total_allowed - before.total_allowed == slots
    assert after.total_rejected - before.total_rejected == tasks - slots
    assert after.current_state is CLOSED


@entries
async def test_cancelled_trials_under_load_never_leak_a_half_open_slot(entry: Entry) -> None:
    clock = FakeClock()
    slots = 3
    breaker = CircuitBreaker(
        CircuitBreakerConfig(
            failure_threshold_count=1,
            reset_timeout=5,
            test_request_count=slots,
            success_threshold_count=10**6,  # stay HALF_OPEN whatever happens
            ignore_exceptions=(Skipped,),
        ),
        clock=clock,
    )
    half_open(breaker, clock)
    before = breaker.metrics()
    rng = random.Random(1234)
    in_flight = max_in_flight = attempts = 0
    seen: Counter[str] = Counter()

    async def trial(hold: float, ending: str) -> None:
        nonlocal in_flight, max_in_flight
        in_flight += 1
        max_in_flight = max(max_in_flight, in_flight)
        try:
            await anyio.sleep(hold)
            if ending == "skipped":
                raise Skipped
            if ending == "interrupt":
                raise Interrupt
        finally:
            in_flight -= 1

    async def caller(patience: float, hold: float, ending: str) -> None:
        nonlocal attempts
        for _ in range(5):
            attempts += 1
            with anyio.move_on_after(patience) as scope:
                try:
                    await entry(breaker, lambda: trial(hold, ending))
                    seen["success"] += 1
                except CircuitOpenError:
                    seen["rejected"] += 1
                except (Skipped, Interrupt):
                    seen["ignored"] += 1
            if scope.cancelled_caught:
                seen["cancelled"] += 1
            await anyio.sleep(0)

    with anyio.fail_after(SAFETY):
        async with anyio.create_task_group() as tg:
            for _ in range(200):
                tg.start_soon(
                    caller,
                    rng.choice([0.0005, 0.001, 0.002]),
                    rng.choice([0, 0.0005, 0.001, 0.003]),
                    rng.choice(["ok", "ok", "skipped", "interrupt"]),
                )

    after = breaker.metrics()
    allowed = after.total_allowed - before.total_allowed
    assert max_in_flight <= slots
    assert in_flight == 0
    assert allowed + after.total_rejected - before.total_rejected == attempts
    assert after.total_successes - before.total_successes == seen["success"]
    assert after.total_failures == before.total_failures
    assert after.total_ignored - before.total_ignored == allowed - seen["success"]
    assert after.current_state is HALF_OPEN
    # Every slot came back: `slots` trials are admitted at once, and no more.
    permits = [breaker.try_acquire() for _ in range(slots + 1)]
    assert [p is not None for p in permits] == [True] * slots + [False]


@entries
@pytest.mark.parametrize("call_timeout", [None, 0.2], ids=["no-call-timeout", "call-timeout"])
async def test_mixed_outcomes_and_cancellations_keep_exact_counts(
    entry: Entry, call_timeout: float | None
) -> None:
    breaker = CircuitBreaker(
        CircuitBreakerConfig(
            failure_threshold_count=10**9,  # never trips: every call is allowed
            ignore_exceptions=(Skipped,),
            call_timeout=call_timeout,
        ),
        clock=FakeClock(),
    )
    rng = random.Random(99)
    kinds = ["ok", "fail", "skipped", "interrupt", "outer-deadline", "group-cancel"]
    if call_timeout is not None:
        kinds.append("call-timeout")
    plan = [rng.choice(kinds) for _ in range(400)]
    entered: Counter[str] = Counter()
    group_cancel = anyio.CancelScope()

    async def body(kind: str) -> str:
        entered[kind] += 1
        # No checkpoint before the outcome for calls that end by themselves:
        # only the calls meant to hang can be cancelled.
        if kind == "fail":
            raise Boom
        if kind == "skipped":
            raise Skipped
        if kind == "interrupt":
            raise Interrupt
        if kind != "ok":
            await anyio.sleep_forever()
        return kind

    async def caller(kind: str) -> None:
        for _ in range(rng.randrange(3)):
            await anyio.sleep(0)
        try:
            if kind == "outer-deadline":
                with anyio.move_on_after(0.005):
                    await entry(breaker, lambda: body(kind))
            else:
                await entry(breaker, lambda: body(kind))
        except (Boom, Skipped, Interrupt, TimeoutError):
            pass

    with anyio.fail_after(SAFETY):
        async with anyio.create_task_group() as tg:
            # A scope can be entered once: the group-cancel calls share one
            # task that runs them one after another inside it.
            async def group_cancelled_calls() -> None:
                with group_cancel:
                    async with anyio.create_task_group() as inner:
                        for kind in plan:
                            if kind == "group-cancel":
                                inner.start_soon(entry, breaker, lambda: body("group-cancel"))

            for kind in plan:
                if kind != "group-cancel":
                    tg.start_soon(caller, kind)
            tg.start_soon(group_cancelled_calls)
            expected_hanging = plan.count("group-cancel")
            while entered["group-cancel"] < expected_hanging:
                await anyio.sleep(0.001)
            group_cancel.cancel()

    planned = Counter(plan)
    assert entered == planned
    m = breaker.metrics()
    assert m.total_allowed == len(plan)
    assert m.total_rejected == 0
    assert m.total_successes == planned["ok"]
    assert m.total_failures == planned["fail"] + planned["call-timeout"]
    assert m.total_ignored == (
        planned["skipped"]
        + planned["interrupt"]
        + planned["outer-deadline"]
        + planned["group-cancel"]
    )
    assert m.current_state is CLOSED


async def test_many_tasks_nesting_through_trials_ride_per_task_and_settle(clock: FakeClock) -> None:
    # 200 tasks, each a call that recurses through the breaker across awaits, while
    # the clock moves the circuit back to HALF_OPEN and failing riders reopen it.
    # A task's nested calls ride on its own trial, never on another task's: trials in
    # flight stay within test_request_count, and every ticket settles.
    breaker = CircuitBreaker(
        CircuitBreakerConfig(
            failure_threshold_count=1,
            reset_timeout=5,
            test_request_count=3,
            success_threshold_count=4,
        ),
        clock=clock,
    )
    half_open(breaker, clock)
    rng = random.Random(7)
    most = [0]

    async def recurse(depth: int, fails: bool, entered: int) -> None:
        most[0] = max(most[0], len(breaker._core.trial_starts))
        await anyio.sleep(0)
        if depth == 0:
            if fails:
                raise Boom
            return
        try:
            await breaker.call_async(recurse, depth - 1, fails, entered)
        except CircuitOpenError:
            # Only once the period its task's call entered in is over: a trial still
            # in flight carries its nested calls.
            assert breaker._core.generation != entered
            raise

    async def task(depth: int, fails: bool) -> None:
        frame = sys._getframe()
        try:
            async with breaker:
                await recurse(depth, fails, breaker._blocks[frame][0])
        except (CircuitOpenError, Boom):
            pass

    async def ticker() -> None:
        for _ in range(20):
            await anyio.sleep(0.001)
            clock.advance(5)

    with anyio.fail_after(SAFETY):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            for _ in range(200):
                tg.start_soon(task, rng.randint(1, 3), rng.random() < 0.1)
    m = breaker.metrics()
    assert most[0] <= 3
    assert m.total_allowed == m.total_successes + m.total_failures + m.total_ignored
    assert breaker._core.in_flight == 0
    assert breaker._blocks == {}
