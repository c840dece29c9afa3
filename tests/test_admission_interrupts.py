"""An interrupt from a callback while a call is admitted holds nothing (issue 22, item 1).

The OPEN -> HALF_OPEN change is made, and its event delivered, while the call
that noticed the open period had passed is being admitted as the trial; a
permit dropped uncompleted is reclaimed, and its `CallIgnored` delivered, at
the next admission. A KeyboardInterrupt (or any BaseException) from a
listener, a manager-wide listener or the alert handler there propagates, and
the call that was being admitted did not run: it counts as ignored, and gives
back its ticket, its trial slot and the trial mark of its thread or task.
"""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from helpers import CLOSED, HALF_OPEN, OPEN, Boom, Interrupt, boom, make, settled, trip

from circuitry import (
    Alert,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerManager,
)
from circuitry._calls import trial_of
from circuitry.events import CallIgnored, Event, StateChanged
from circuitry.redis import RedisStore
from circuitry.testing import FakeClock


def to_half_open(item: object) -> bool:
    """A StateChanged (listeners) or an Alert (the alert handler) into HALF_OPEN."""
    return isinstance(item, (StateChanged, Alert)) and item.new_state is HALF_OPEN


class Raiser:
    """A callback that raises `error` once, on the first item `when` picks."""

    def __init__(self, when: Callable[[Any], bool], error: type[BaseException]) -> None:
        self.when = when
        self.error = error
        self.armed = True

    def __call__(self, item: Any) -> None:
        if self.armed and self.when(item):
            self.armed = False
            raise self.error("from a callback")


# -- how a call enters: every sync path, and the manager's ---------------------------------


def _noop() -> str:
    return "ok"


def via_call(breaker: CircuitBreaker, manager: CircuitBreakerManager) -> object:
    return breaker.call(_noop)


def via_with(breaker: CircuitBreaker, manager: CircuitBreakerManager) -> object:
    with breaker:
        return _noop()


def via_decorator(breaker: CircuitBreaker, manager: CircuitBreakerManager) -> object:
    return breaker(_noop)()


def via_guard(breaker: CircuitBreaker, manager: CircuitBreakerManager) -> object:
    with breaker.guard():
        return _noop()


def via_try_acquire(breaker: CircuitBreaker, manager: CircuitBreakerManager) -> object:
    permit = breaker.try_acquire()
    assert permit is not None
    permit.record_success()
    return "ok"


def via_manager(breaker: CircuitBreaker, manager: CircuitBreakerManager) -> object:
    return manager.call(breaker.name, _noop)


SYNC_ENTRIES = [via_call, via_with, via_decorator, via_guard, via_try_acquire, via_manager]


async def _anoop() -> str:
    return "ok"


async def via_async_with(breaker: CircuitBreaker, manager: CircuitBreakerManager) -> object:
    async with breaker:
        return await _anoop()


async def via_call_async(breaker: CircuitBreaker, manager: CircuitBreakerManager) -> object:
    return await breaker.call_async(_anoop)


async def via_async_decorator(breaker: CircuitBreaker, manager: CircuitBreakerManager) -> object:
    return await breaker(_anoop)()


async def via_async_guard(breaker: CircuitBreaker, manager: CircuitBreakerManager) -> object:
    async with breaker.guard():
        return await _anoop()


async def via_manager_async(breaker: CircuitBreaker, manager: CircuitBreakerManager) -> object:
    return await manager.call_async(breaker.name, _anoop)


ASYNC_ENTRIES = [
    via_async_with,
    via_call_async,
    via_async_decorator,
    via_async_guard,
    via_manager_async,
]

CALLBACKS = ["listener", "manager_listener", "alert_handler"]


def half_open_due(
    callback: str, error: type[BaseException]
) -> tuple[CircuitBreaker, CircuitBreakerManager, FakeClock]:
    """A breaker whose open period has just passed, and `callback` raising on HALF_OPEN."""
    clock = FakeClock()
    raiser = Raiser(to_half_open, error)
    config = CircuitBreakerConfig(
        failure_threshold_count=1,
        reset_timeout=10,
        alert_handler=raiser if callback == "alert_handler" else None,
    )
    manager = CircuitBreakerManager(config, clock=clock)
    breaker = manager.breaker("svc")
    if callback == "listener":
        breaker.subscribe(raiser)
    elif callback == "manager_listener":
        manager.subscribe(raiser)
    trip(breaker)
    clock.advance(10)
    return breaker, manager, clock


def totals(breaker: CircuitBreaker) -> tuple[int, int, int]:
    """(allowed, ignored, successes), read without applying time (a read would move it)."""
    core = breaker._core
    return core.total_allowed, core.total_ignored, core.total_successes


def check_nothing_held(breaker: CircuitBreaker, before: tuple[int, int, int]) -> None:
    after = breaker.metrics()
    assert after.current_state is HALF_OPEN
    assert settled(after), after
    # The call that was being admitted did not run: allowed, and ignored.
    allowed, ignored, successes = before
    assert after.total_allowed == allowed + 1
    assert after.total_ignored == ignored + 1
    assert after.total_successes == successes
    assert breaker._core.in_flight == 0


@pytest.mark.parametrize("callback", CALLBACKS)
@pytest.mark.parametrize("entry", SYNC_ENTRIES, ids=lambda f: f.__name__)
def test_an_interrupt_delivering_half_open_to_a_sync_call_holds_no_trial(
    entry: Callable[[CircuitBreaker, CircuitBreakerManager], object], callback: str
) -> None:
    breaker, manager, _ = half_open_due(callback, KeyboardInterrupt)
    before = totals(breaker)
    assert breaker._core.state is OPEN  # the change to HALF_OPEN is the entry's to make
    with pytest.raises(KeyboardInterrupt):
        entry(breaker, manager)
    check_nothing_held(breaker, before)
    # The same thread's next call is the trial (no mark left to ride on), and closes.
    assert entry(breaker, manager) == "ok"
    assert breaker.state is CLOSED
    assert settled(breaker.metrics())


@pytest.mark.anyio
@pytest.mark.parametrize("callback", CALLBACKS)
@pytest.mark.parametrize("entry", ASYNC_ENTRIES, ids=lambda f: f.__name__)
async def test_an_interrupt_delivering_half_open_to_an_async_call_holds_no_trial(
    entry: Callable[[CircuitBreaker, CircuitBreakerManager], Awaitable[object]], callback: str
) -> None:
    breaker, manager, _ = half_open_due(callback, Interrupt)
    before = totals(breaker)
    assert breaker._core.state is OPEN
    with pytest.raises(Interrupt):
        await entry(breaker, manager)
    check_nothing_held(breaker, before)
    assert await entry(breaker, manager) == "ok"
    assert breaker.state is CLOSED
    assert settled(breaker.metrics())


def test_the_interrupted_threads_later_calls_do_not_ride_on_the_lost_trial() -> None:
    # Before: the thread kept the lost trial's mark, so its calls all rode
    # without a slot, counting nothing for the trial: the circuit never closed.
    breaker, _, _ = half_open_due("listener", KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        breaker.call(_noop)
    assert trial_of(breaker._core) is None
    for _ in range(3):
        breaker.call(_noop)
    assert breaker.state is CLOSED


@pytest.mark.parametrize(
    ("state", "entry"),
    [("closed", via_try_acquire), ("half_open", via_try_acquire), ("half_open", via_call)],
    ids=["closed-try_acquire", "half_open-try_acquire", "half_open-call"],
)
def test_an_interrupt_delivering_a_reclaimed_permits_event_holds_no_ticket(
    state: str, entry: Callable[[CircuitBreaker, CircuitBreakerManager], object], clock: FakeClock
) -> None:
    # (A CLOSED `call` admits without the lock: the permit is reclaimed when
    # the call completes, and the call, which ran, keeps its outcome.)
    breaker = make(
        clock,
        failure_threshold_count=1,
        reset_timeout=10,
        success_threshold_count=2,
        test_request_count=2,
    )
    if state == "half_open":
        trip(breaker)
        clock.advance(10)
        assert breaker.state is HALF_OPEN
    permit = breaker.try_acquire()
    assert permit is not None
    del permit  # dropped uncompleted: reclaimed, as ignored, at the next admission
    gc.collect()

    def on_ignored(event: Event) -> None:
        if isinstance(event, CallIgnored):
            raise KeyboardInterrupt

    unsubscribe = breaker.subscribe(on_ignored)
    with pytest.raises(KeyboardInterrupt):
        entry(breaker, CircuitBreakerManager())
    unsubscribe()
    metrics = breaker.metrics()
    assert settled(metrics), metrics
    assert breaker._core.in_flight == 0
    assert metrics.total_ignored == 2  # the dropped permit, and the call that did not run
    # Every slot is free: two trials (or calls) in a row succeed.
    breaker.call(_noop)
    breaker.call(_noop)
    assert breaker.state is CLOSED


def test_a_failure_after_an_interrupted_admission_is_still_counted() -> None:
    breaker, _, _ = half_open_due("listener", SystemExit)
    with pytest.raises(SystemExit):
        breaker.call(_noop)
    with pytest.raises(Boom):
        breaker.call(boom)  # the trial, and it fails: OPEN again
    assert breaker.state is OPEN
    assert settled(breaker.metrics())


# -- with a shared store: the same, where the trial is Redis's permit ----------------------


def shared_half_open_due(
    redis_url: str, error: type[BaseException]
) -> tuple[CircuitBreaker, RedisStore]:
    clock = FakeClock()
    store = RedisStore.from_url(redis_url, time_source=clock)
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=10, reset_timeout_jitter=0),
        name="shared",
        store=store,
        clock=clock,
    )
    breaker.subscribe(Raiser(to_half_open, error))
    with pytest.raises(Boom):
        breaker.call(boom)
    assert breaker._core.state is OPEN
    clock.advance(10)
    return breaker, store


def test_an_interrupt_delivering_half_open_with_a_store_holds_no_permit(redis_url: str) -> None:
    breaker, store = shared_half_open_due(redis_url, KeyboardInterrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            breaker.call(_noop)
        metrics = breaker.metrics()
        assert metrics.current_state is HALF_OPEN
        assert settled(metrics), metrics
        assert breaker.call(_noop) == "ok"  # the permit came back: this one is the trial
        assert breaker.state is CLOSED
    finally:
        store.close()


@pytest.mark.anyio
async def test_an_interrupt_delivering_half_open_with_a_store_holds_no_permit_async(
    redis_url: str,
) -> None:
    breaker, store = shared_half_open_due(redis_url, Interrupt)
    try:
        with pytest.raises(Interrupt):
            await breaker.call_async(_anoop)
        metrics = breaker.metrics()
        assert metrics.current_state is HALF_OPEN
        assert settled(metrics), metrics
        assert await breaker.call_async(_anoop) == "ok"
        assert breaker.state is CLOSED
    finally:
        await store.aclose()
