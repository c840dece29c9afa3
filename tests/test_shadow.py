"""`shadow=True`: every rule runs and every event is emitted, but nothing is rejected."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from helpers import CLOSED, HALF_OPEN, OPEN, Boom, Entry, boom, entries, make

from circuitry import (
    AdaptiveThrottle,
    Alert,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerManager,
    CircuitOpenError,
)
from circuitry.events import CallRejected, Event, StateChanged
from circuitry.testing import FakeClock


def ok() -> str:
    return "ran"


def _events(breaker: CircuitBreaker) -> list[Event]:
    seen: list[Event] = []
    breaker.subscribe(seen.append)
    return seen


def _run(breaker: CircuitBreaker, fn: Callable[[], Any]) -> str:
    """One call through `call`, whatever it does; what happened."""
    try:
        breaker.call(fn)
    except Boom:
        return "failed"
    except CircuitOpenError:
        return "rejected"
    return "ran"


def test_a_shadow_breaker_moves_as_the_real_one_and_rejects_nothing() -> None:
    clock = FakeClock()
    real = make(clock, failure_threshold_count=2, reset_timeout=10.0, name="real")
    shadow = make(clock, failure_threshold_count=2, reset_timeout=10.0, name="shadow", shadow=True)
    # Failures trip both; while OPEN the real one rejects, the shadow runs
    # (and those runs' outcomes, here successes, must not close it).
    steps: list[Callable[[], Any]] = [boom, boom, ok, ok, ok]
    for fn in steps:
        assert _run(real, fn) in ("failed", "rejected")
        assert _run(shadow, fn) in ("failed", "ran")
        assert shadow.state is real.state
    assert real.state is OPEN
    clock.advance(10.0)
    assert _run(real, ok) == "ran"
    assert _run(shadow, ok) == "ran"
    assert real.state is shadow.state is CLOSED
    r, s = real.metrics(), shadow.metrics()
    assert r.total_rejected == s.total_shadow_rejected == 3
    assert s.total_rejected == 0
    assert r.total_shadow_rejected == 0
    # The shadow's extra runs count nowhere: the totals are the real breaker's.
    assert (s.total_allowed, s.total_successes, s.total_failures) == (
        r.total_allowed,
        r.total_successes,
        r.total_failures,
    )
    assert s.state_changes == r.state_changes == 3


def test_shadow_events_and_alerts_say_shadow() -> None:
    clock = FakeClock()
    alerts: list[Alert] = []
    breaker = make(clock, failure_threshold_count=1, shadow=True, alert_handler=alerts.append)
    seen = _events(breaker)
    _run(breaker, boom)
    assert breaker.call(ok) == "ran"
    changes = [e for e in seen if isinstance(e, StateChanged)]
    assert changes == [StateChanged("svc", 0.0, CLOSED, OPEN, shadow=True)]
    assert [e for e in seen if isinstance(e, CallRejected)] == [
        CallRejected("svc", 0.0, OPEN, throttled=False, shadow=True)
    ]
    assert [a.shadow for a in alerts] == [True]
    assert "shadow" in str(alerts[0])
    # A real breaker's say shadow=False.
    real = make(clock, failure_threshold_count=1, name="real")
    seen = _events(real)
    _run(real, boom)
    assert [e.shadow for e in seen if isinstance(e, (StateChanged, CallRejected))] == [False]


def test_shadow_never_rejects_on_any_sync_entry() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_threshold_count=1, shadow=True)
    _run(breaker, boom)
    assert breaker.state is OPEN
    assert breaker.call(ok) == "ran"
    with breaker:
        pass

    @breaker
    def decorated() -> str:
        return "ran"

    assert decorated() == "ran"
    permit = breaker.try_acquire()
    assert permit is not None
    permit.record_failure()  # counts nowhere: the real breaker rejected it
    permit = breaker.try_acquire()
    assert permit is not None
    permit.release()
    metrics = breaker.metrics()
    assert metrics.total_shadow_rejected == 5
    assert metrics.total_rejected == 0
    assert (metrics.total_failures, metrics.total_ignored) == (1, 0)
    assert breaker.state is OPEN


def test_shadow_half_open_runs_calls_beyond_the_trial_slots() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_threshold_count=1, reset_timeout=5.0, shadow=True)
    _run(breaker, boom)
    clock.advance(5.0)
    trial = breaker.try_acquire()  # the one trial slot
    assert trial is not None
    assert breaker.state is HALF_OPEN
    extra = breaker.try_acquire()  # the real one would reject: runs, decides nothing
    assert extra is not None
    extra.record_failure()
    assert breaker.state is HALF_OPEN
    trial.record_success()
    assert breaker.state is CLOSED
    assert breaker.metrics().total_shadow_rejected == 1


def test_shadow_forced_open_runs_every_call() -> None:
    clock = FakeClock()
    breaker = make(clock, shadow=True)
    breaker.force_open()
    assert [breaker.call(ok) for _ in range(3)] == ["ran"] * 3
    assert breaker.metrics().total_shadow_rejected == 3


def test_a_shadow_throttle_throttles_nothing() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        CircuitBreakerConfig(adaptive_throttle=AdaptiveThrottle(min_requests=0), shadow=True),
        clock=clock,
        random=lambda: 0.0,
    )
    seen = _events(breaker)
    _run(breaker, boom)  # requests 1, accepts 0: the next call's probability is 1/2
    assert breaker.call(ok) == "ran"
    # (The run itself emits no call event: it counts nowhere.)
    assert seen[-1] == CallRejected("default", 0.0, CLOSED, throttled=True, shadow=True)
    metrics = breaker.metrics()
    assert (metrics.total_shadow_rejected, metrics.total_throttled) == (1, 0)
    assert metrics.total_successes == 0  # the run counts nowhere


def test_a_manager_builds_shadow_breakers() -> None:
    clock = FakeClock()
    manager = CircuitBreakerManager(
        CircuitBreakerConfig(failure_threshold_count=1, shadow=True), clock=clock
    )
    with pytest.raises(Boom):
        manager.call("svc", boom)
    assert manager["svc"].state is OPEN
    assert manager.call("svc", ok) == "ran"
    assert manager["svc"].metrics().total_shadow_rejected == 1


@entries
@pytest.mark.anyio
async def test_shadow_never_rejects_async(entry: Entry) -> None:
    clock = FakeClock()
    breaker = make(clock, failure_threshold_count=1, shadow=True)
    _run(breaker, boom)

    async def work() -> str:
        return "ran"

    assert await entry(breaker, work) == "ran"
    assert await entry(breaker, work) == "ran"
    metrics = breaker.metrics()
    assert (metrics.total_shadow_rejected, metrics.total_rejected) == (2, 0)
    assert breaker.state is OPEN


def test_a_shadow_breaker_on_redis_trips_in_the_script_and_rejects_nothing(
    redis_url: str,
) -> None:
    from circuitry.redis import RedisStore

    shadow_config = CircuitBreakerConfig(
        failure_threshold_count=1, reset_timeout_jitter=0.0, shadow=True
    )
    a = CircuitBreaker(shadow_config, name="shadowed", store=RedisStore.from_url(redis_url))
    b = CircuitBreaker(shadow_config, name="shadowed", store=RedisStore.from_url(redis_url))
    seen = _events(b)
    _run(a, boom)
    assert a.state is OPEN
    assert b.call(ok) == "ran"  # b learns OPEN from the store, and runs the call
    assert b.state is OPEN
    assert [e.shadow for e in seen if isinstance(e, (StateChanged, CallRejected))] == [True, True]
    assert b.metrics().total_shadow_rejected == 1
    assert b.metrics().total_rejected == 0


@pytest.mark.anyio
async def test_a_shadow_breaker_on_redis_rejects_nothing_async(
    redis_url: str, anyio_backend: str
) -> None:
    from circuitry.redis import RedisStore

    store = RedisStore.from_url(redis_url)
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold_count=1, reset_timeout_jitter=0.0, shadow=True),
        name=f"shadowed-{anyio_backend}",
        store=store,
    )
    try:
        await _shadow_async(breaker)
    finally:
        await store.aclose()


async def _shadow_async(breaker: CircuitBreaker) -> None:
    async def fails() -> None:
        raise Boom("down")

    async def works() -> str:
        return "ran"

    with pytest.raises(Boom):
        await breaker.call_async(fails)
    assert await breaker.call_async(works) == "ran"
    async with breaker:
        pass
    assert breaker.state is OPEN
    assert breaker.metrics().total_shadow_rejected == 2
