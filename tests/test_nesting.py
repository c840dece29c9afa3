"""Calls nested in a call of the same breaker (issue 10, item 2; the contract's "Nested calls").

In CLOSED a nested call is a call of its own. In HALF_OPEN a call made inside
one of the breaker's own trials, in the same thread or task, rides on that
trial: admitted without a slot of its own, its failure fails the trial at
once, its success counts nothing for the trial (the outermost call decides).
A CircuitOpenError a breaker raises inside one of its own calls is never that
call's failure.
"""

from __future__ import annotations

import threading

import anyio
import pytest
from helpers import CLOSED, HALF_OPEN, OPEN, Boom, boom, half_open, make, settled, trip

from circuitry import CircuitBreaker, CircuitOpenError
from circuitry.testing import FakeClock


def recurse_with_call(breaker: CircuitBreaker, depth: int) -> int:
    if depth == 0:
        return 0
    return 1 + breaker.call(recurse_with_call, breaker, depth - 1)


def recurse_with_blocks(breaker: CircuitBreaker, depth: int) -> int:
    if depth == 0:
        return 0
    with breaker:
        return 1 + recurse_with_blocks(breaker, depth - 1)


@pytest.mark.parametrize("recurse", [recurse_with_call, recurse_with_blocks])
def test_a_recursing_trial_closes_the_circuit_every_time(clock: FakeClock, recurse: object) -> None:
    breaker = make(clock, failure_threshold_count=1, test_request_count=1)
    for _ in range(5):
        half_open(breaker, clock)
        assert recurse(breaker, 4) == 4  # type: ignore[operator]
        assert breaker.state is CLOSED
    m = breaker.metrics()
    assert settled(m)
    assert m.total_rejected == 0
    assert m.total_allowed == 5 + 5 * 4  # the trips, and every nested call admitted


def test_a_nested_call_in_closed_is_a_call_of_its_own(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=2)

    def outer() -> None:
        with pytest.raises(Boom):
            breaker.call(boom)
        with pytest.raises(Boom):
            breaker.call(boom)  # the second failure trips the circuit, inside `outer`

    breaker.call(outer)
    m = breaker.metrics()
    assert m.current_state is OPEN
    assert (m.total_allowed, m.total_failures, m.total_successes) == (3, 2, 1)


def test_a_nested_failure_fails_the_trial_at_once(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, success_threshold_count=3)
    half_open(breaker, clock)
    states = []

    def outer() -> str:
        with pytest.raises(Boom):
            breaker.call(boom)
        states.append(breaker.state)
        return "recovered by the caller"

    assert breaker.call(outer) == "recovered by the caller"
    assert states == [OPEN]  # reopened by the nested failure, before the outer call ended
    assert breaker.state is OPEN  # the outer success came too late to change that
    assert settled(breaker.metrics())


def test_a_nested_success_counts_nothing_for_the_trial(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, success_threshold_count=2)
    half_open(breaker, clock)
    breaker.call(lambda: breaker.call(lambda: breaker.call(lambda: 1)))
    assert breaker.state is HALF_OPEN  # one trial succeeded, not three
    breaker.call(lambda: 1)
    assert breaker.state is CLOSED


def test_riders_take_no_slot_and_other_threads_stay_out(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, test_request_count=1)
    half_open(breaker, clock)
    seen: list[str] = []

    def other_thread() -> None:
        try:
            breaker.call(lambda: None)
            seen.append("admitted")
        except CircuitOpenError:
            seen.append("rejected")

    def outer() -> None:
        breaker.call(lambda: None)  # rides: the only slot is the outer call's
        thread = threading.Thread(target=other_thread, daemon=True)
        thread.start()
        thread.join(60)
        assert not thread.is_alive()

    breaker.call(outer)
    assert seen == ["rejected"]  # another thread is not inside the trial
    assert breaker.state is CLOSED
    assert settled(breaker.metrics())


def test_a_permit_is_not_a_call_that_nested_calls_ride_on(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, test_request_count=1)
    half_open(breaker, clock)
    permit = breaker.try_acquire()
    assert permit is not None
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: None)  # the only slot is the permit's
    permit.record_success()
    assert breaker.state is CLOSED


def test_a_call_after_the_trial_is_over_takes_a_slot_again(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, success_threshold_count=2)
    half_open(breaker, clock)
    breaker.call(lambda: None)  # a trial, over
    breaker.call(lambda: None)  # a trial of its own, not a ride on the last one
    assert breaker.state is CLOSED


def test_own_rejection_inside_own_call_is_not_its_failure(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1)

    def outer() -> None:
        breaker.force_open()
        breaker.call(lambda: None)  # rejected by its own breaker

    with pytest.raises(CircuitOpenError):
        breaker.call(outer)
    m = breaker.metrics()
    assert (m.total_failures, m.total_ignored, m.total_rejected) == (0, 1, 1)


def test_another_breakers_rejection_is_a_failure_as_any_exception(clock: FakeClock) -> None:
    # Same name on purpose: what decides is which breaker raised it.
    outer_breaker = make(clock, name="same", failure_threshold_count=5)
    inner_breaker = make(clock, name="same", failure_threshold_count=1)
    trip(inner_breaker)
    with pytest.raises(CircuitOpenError):
        outer_breaker.call(inner_breaker.call, lambda: None)
    assert outer_breaker.metrics().total_failures == 1


# -- async: the same, per task ---------------------------------------------------------------


@pytest.mark.anyio
async def test_a_recursing_async_trial_closes_the_circuit(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, test_request_count=1)

    async def recurse(depth: int) -> int:
        if depth == 0:
            return 0
        if depth % 2:
            return 1 + await breaker.call_async(recurse, depth - 1)
        async with breaker:
            return 1 + await recurse(depth - 1)

    for _ in range(5):
        half_open(breaker, clock)
        assert await recurse(4) == 4
        assert breaker.state is CLOSED
    assert settled(breaker.metrics())


@pytest.mark.anyio
async def test_another_task_does_not_ride_on_the_trial(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, test_request_count=1)
    half_open(breaker, clock)
    seen: list[str] = []

    async def other_task() -> None:
        try:
            await breaker.call_async(anyio.sleep, 0)
            seen.append("admitted")
        except CircuitOpenError:
            seen.append("rejected")

    async def trial() -> None:
        await breaker.call_async(anyio.sleep, 0)  # rides
        async with anyio.create_task_group() as tg:
            tg.start_soon(other_task)  # copies this context, but runs as a task of its own

    async with breaker:
        await trial()
    # A task started inside the trial copies its context: it counts as inside.
    assert seen == ["admitted"]
    assert breaker.state is CLOSED

    half_open(breaker, clock)
    seen.clear()
    entered, release = anyio.Event(), anyio.Event()

    async def holder() -> None:
        async with breaker:
            entered.set()
            await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await entered.wait()
        await other_task()  # a task that was not started inside the trial
        release.set()
    assert seen == ["rejected"]
    assert breaker.state is CLOSED


def test_the_core_rides_only_on_a_trial_in_flight() -> None:
    from circuitry import CircuitBreakerConfig
    from circuitry._classify import FAILURE, SUCCESS
    from circuitry._core import REJECTED, RIDING, CircuitCore

    core = CircuitCore(CircuitBreakerConfig(failure_threshold_count=1), "svc", 0.0)
    assert core.ride(0.0, (0, 0.0)) is None  # CLOSED: nothing to ride on
    ticket = core.acquire(0.0)
    core.complete(ticket, 0.0, 1.0, FAILURE)
    assert core.acquire(2.0) == REJECTED
    trial = core.acquire(61.0)  # HALF_OPEN
    rider = core.ride(61.5, (trial, 61.0))
    assert rider == RIDING - trial
    assert core.ride(61.5, (trial, 60.0)) is None  # not a trial in flight
    assert core.in_flight == 1  # the rider took no slot
    core.complete(rider, 61.5, 62.0, SUCCESS)
    assert (core.trial_successes, core.state) == (0, HALF_OPEN)
    rider = core.ride(62.0, (trial, 61.0))
    assert rider is not None
    core.complete(rider, 62.0, 62.5, FAILURE)
    assert core.state is OPEN  # the ride's failure failed the trial
    core.complete(trial, 61.0, 63.0, SUCCESS)  # the trial itself, late now
    assert core.state is OPEN
    assert core.total_allowed == core.total_successes + core.total_failures + core.total_ignored
