"""`breaker.backpressure(duration)`: open for the delay a dependency asked for,
counting no failure (in process and on a real Redis; the rules in all three
places are in tests/vectors/scenarios.json)."""

from __future__ import annotations

import datetime
import math
from pathlib import Path

import httpx2
import pytest
from helpers import CLOSED, FORCED_CLOSED, FORCED_OPEN, HALF_OPEN, OPEN
from loopback import http_server

import circuitry.httpx2
from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError
from circuitry.events import Event, StateChanged
from circuitry.redis import RedisStore
from circuitry.simulation import Call, simulate, simulate_rows
from circuitry.simulation._errors import InputError
from circuitry.simulation._trace import Trace
from circuitry.testing import FakeClock


def make(clock: FakeClock, store: RedisStore | None = None, **options: object) -> CircuitBreaker:
    options.setdefault("reset_timeout_jitter", 0.0)
    config = CircuitBreakerConfig(**options)  # type: ignore[arg-type]
    return CircuitBreaker(config, name="svc", clock=clock, store=store)


def test_backpressure_opens_for_the_delay_and_counts_no_failure() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_threshold_count=1, reset_timeout=30.0)
    events: list[Event] = []
    breaker.subscribe(events.append)
    breaker.backpressure(1.5)
    assert events == [StateChanged("svc", 0.0, CLOSED, OPEN)]
    with pytest.raises(CircuitOpenError) as info, breaker:
        pass
    assert info.value.retry_after == pytest.approx(1.5)
    metrics = breaker.metrics()
    assert (metrics.total_failures, metrics.state_changes) == (0, 1)
    clock.advance(1.5)
    assert breaker.state is HALF_OPEN


def test_a_backpressured_trial_reopens_for_the_delay_not_the_backoff() -> None:
    """The issue's 30 s lockout: two rate-limit replies must not cost reset_timeout."""
    clock = FakeClock()
    breaker = make(clock, reset_timeout=30.0, reset_timeout_multiplier=2.0)
    breaker.backpressure(1.0)
    clock.advance(1.0)
    with breaker:  # the trial; the dependency says "slow down" again
        assert breaker.state is HALF_OPEN
        breaker.backpressure(1.0)
    assert breaker.metrics().retry_after == pytest.approx(1.0)
    clock.advance(1.0)
    with breaker:  # the slot the backpressured trial held is free again
        pass
    assert breaker.state is CLOSED
    # The backoff level was never raised: a real failure now opens for reset_timeout's step.
    breaker.trip()
    assert breaker.metrics().retry_after == pytest.approx(30.0)


def test_a_backpressured_trial_given_back_as_ignored_frees_its_slot() -> None:
    clock = FakeClock()
    breaker = make(clock, reset_timeout=5.0, test_request_count=1)
    breaker.trip()
    clock.advance(5.0)
    permit = breaker.try_acquire()
    assert permit is not None
    breaker.backpressure(2.0)
    permit.release()  # a late result: counts in the totals only
    clock.advance(2.0)
    assert breaker.try_acquire() is not None  # not wedged
    assert breaker.metrics().total_failures == 0


def test_backpressure_never_shortens_an_open_period() -> None:
    clock = FakeClock()
    breaker = make(clock)
    breaker.trip(10.0)
    breaker.backpressure(2.0)
    assert breaker.metrics().retry_after == pytest.approx(10.0)
    breaker.backpressure(12.0)
    assert breaker.metrics().retry_after == pytest.approx(12.0)
    assert breaker.metrics().state_changes == 1


@pytest.mark.parametrize("control", ["force_open", "force_closed"])
def test_backpressure_leaves_a_forced_breaker_alone(control: str) -> None:
    clock = FakeClock()
    breaker = make(clock)
    getattr(breaker, control)()
    breaker.backpressure(5.0)
    assert breaker.state in (FORCED_OPEN, FORCED_CLOSED)
    assert breaker.metrics().state_changes == 1


def test_backpressure_takes_a_timedelta() -> None:
    clock = FakeClock()
    breaker = make(clock)
    breaker.backpressure(datetime.timedelta(milliseconds=250))
    assert breaker.metrics().retry_after == pytest.approx(0.25)


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, math.nan, math.inf, 1e308 * 10])
def test_backpressure_refuses_a_duration_not_finite_and_positive(bad: float) -> None:
    breaker = make(FakeClock())
    with pytest.raises(ValueError, match=r"duration must be .*got"):
        breaker.backpressure(bad)
    assert breaker.state is CLOSED


@pytest.mark.parametrize("bad", ["1", None, True, [1.0]])
def test_backpressure_refuses_a_duration_that_is_not_seconds(bad: object) -> None:
    breaker = make(FakeClock())
    with pytest.raises(TypeError, match=r"duration must be seconds"):
        breaker.backpressure(bad)  # type: ignore[arg-type]
    assert breaker.state is CLOSED


def test_a_duration_past_the_largest_float_is_refused() -> None:
    breaker = make(FakeClock(start=1e308))
    with pytest.raises(ValueError, match="stay finite"):
        breaker.backpressure(1.7e308)


def test_backpressure_is_shared_through_redis(redis_url: str) -> None:
    clock = FakeClock()
    stores = [RedisStore.from_url(redis_url, namespace="bp", time_source=clock) for _ in range(2)]
    try:
        one, two = (make(clock, store, reset_timeout=30.0) for store in stores)
        one.backpressure(2.0)
        with pytest.raises(CircuitOpenError) as info, two:
            pass
        assert info.value.retry_after == pytest.approx(2.0)
        clock.advance(2.0)
        with two:  # the trial: backpressured again, by the other process's view
            one.backpressure(3.0)
        assert two.metrics().retry_after == pytest.approx(3.0)
        assert two.metrics().total_failures == 0
    finally:
        for store in stores:
            store.close()


@pytest.mark.anyio
async def test_the_async_twin_awaits_the_store(redis_url: str, anyio_backend: str) -> None:
    clock = FakeClock()
    store = RedisStore.from_url(redis_url, namespace="bp-async", time_source=clock)
    try:
        breaker = make(clock, store)
        await breaker._backpressure_async(4.0)
        assert (await breaker._read_async(lambda core, now: core.state)) is OPEN
        assert breaker.metrics().retry_after == pytest.approx(4.0)
    finally:
        await store.aclose()


# -- the simulator ----------------------------------------------------------------------------

LOCKOUT = CircuitBreakerConfig(
    failure_threshold_count=1, reset_timeout=30.0, reset_timeout_jitter=0.0
)
# The lockout as calls: a 429 with Retry-After: 1, the retry (the trial)
# the same, then the retries after it.
LOCKOUT_CALLS = [(0.0, "429"), (1.5, "429"), (3.0, "200"), (4.0, "200")]


def lockout_calls(backpressure: bool) -> list[Call]:
    return [
        Call(start, 0.1, "backpressure", retry_after=1.0)
        if status == "429" and backpressure
        else Call(start, 0.1, "failure" if status == "429" else "success")
        for start, status in LOCKOUT_CALLS
    ]


def test_the_simulator_replays_backpressure_as_the_transports_do() -> None:
    report = simulate(lockout_calls(True), {"c": LOCKOUT})["c"]
    assert (report.admitted, report.rejected, report.failures_admitted) == (4, 0, 0)
    assert [(at, old.value, new.value) for at, old, new in report.transitions] == [
        (0.1, "closed", "open"),
        (1.1, "open", "half_open"),
        (1.6, "half_open", "open"),  # the backpressured trial: open for 1 s, not 30
        (2.6, "open", "half_open"),
        (3.1, "half_open", "closed"),
    ]
    # The same replies as failures: the first opens for reset_timeout, 30 s.
    failed = simulate(lockout_calls(False), {"c": LOCKOUT})["c"]
    assert (failed.admitted, failed.rejected) == (1, 3)


def test_a_trace_429_with_retry_after_is_backpressure(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    rows = [f"{start},0.1,{status},1" for start, status in LOCKOUT_CALLS]
    trace.write_text("start,duration,status,retry_after\n" + "\n".join(rows) + "\n")
    report = simulate_rows(Trace(str(trace)).rows(), {"c": LOCKOUT})["c"]
    assert report == simulate(lockout_calls(True), {"c": LOCKOUT})["c"]
    # A 429 without a hint (empty, 0) is a failure, and so is the outcome word's.
    trace.write_text("start,duration,status,retry_after\n0,0.1,429,\n1,0.1,429,0\n")
    report = simulate_rows(Trace(str(trace)).rows(), {"c": LOCKOUT})["c"]
    assert (report.failures_admitted, report.rejected) == (1, 1)


def test_a_trace_outcome_backpressure_needs_retry_after(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"start": 0, "duration": 1, "outcome": "backpressure", "retry_after": 2}\n')
    report = simulate_rows(Trace(str(trace)).rows(), {"c": LOCKOUT})["c"]
    assert report.transitions[0][1:] == (CLOSED, OPEN)
    trace.write_text('{"start": 0, "duration": 1, "outcome": "backpressure"}\n')
    with pytest.raises(InputError, match=r"t.jsonl:1: outcome 'backpressure' needs .*retry_after"):
        Trace(str(trace))
    trace.write_text('{"start": 0, "duration": 1, "status": 429, "retry_after": "soon"}\n')
    with pytest.raises(InputError, match=r"field 'retry_after' must be .* got 'soon'"):
        Trace(str(trace))


@pytest.mark.parametrize(
    ("outcome", "retry_after"), [("backpressure", None), ("failure", 1.0), ("backpressure", 0.0)]
)
def test_a_call_s_retry_after_goes_with_backpressure_only(
    outcome: str, retry_after: float | None
) -> None:
    with pytest.raises(ValueError, match="retry_after"):
        Call(0.0, 1.0, outcome, retry_after=retry_after)


@pytest.mark.anyio
async def test_an_async_transport_backpressures_a_shared_breaker(
    redis_url: str, anyio_backend: str
) -> None:
    """A 429 with Retry-After through httpx2's async transport opens the Redis-shared circuit."""
    store = RedisStore.from_url(redis_url, namespace="bp-transport")
    other = RedisStore.from_url(redis_url, namespace="bp-transport")
    config = CircuitBreakerConfig(reset_timeout=30.0)
    try:
        with http_server() as server:
            breaker = CircuitBreaker(config, name="api", store=store)
            transport = circuitry.httpx2.AsyncCircuitBreakerTransport(breaker=breaker)
            async with httpx2.AsyncClient(transport=transport) as client:
                response = await client.get(f"{server.url}/status/429?retry_after=20")
            assert response.status_code == 429
        elsewhere = CircuitBreaker(config, name="api", store=other)  # another process's view
        metrics = elsewhere.metrics()
        assert metrics.current_state is OPEN
        assert metrics.retry_after is not None
        assert 15 < metrics.retry_after <= 20
        assert breaker.metrics().total_failures == 0
    finally:
        await store.aclose()
        other.close()
