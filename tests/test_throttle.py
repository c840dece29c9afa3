"""`adaptive_throttle`: client-side throttling while CLOSED, exact with an injected `random`."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import CLOSED, OPEN, Boom, Entry, Skipped, boom, entries

from circuitry import (
    AdaptiveThrottle,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerManager,
    CircuitOpenError,
)
from circuitry._config import CircuitBreakerConfig as _Config
from circuitry._throttle import Throttle
from circuitry.events import CallRejected, Event
from circuitry.testing import FakeClock


def draws(*values: float) -> Any:
    """A `random` that returns `values` in turn, and fails the test if asked for more."""
    it: Iterator[float] = iter(values)
    return lambda: next(it)


def throttled(clock: FakeClock, random: Any, **throttle: Any) -> CircuitBreaker:
    return CircuitBreaker(
        CircuitBreakerConfig(
            failure_threshold_count=1000, adaptive_throttle=AdaptiveThrottle(**throttle)
        ),
        clock=clock,
        random=random,
    )


def ok() -> str:
    return "ran"


# -- the formula ---------------------------------------------------------------------------


def test_the_probability_is_the_sre_formula_capped() -> None:
    t = Throttle(AdaptiveThrottle(k=2.0, min_requests=3, max_rejection=0.5))
    assert t.rejection(2, 0) == 0.0  # below min_requests
    assert t.rejection(3, 0) == 0.5  # 3/4, capped
    assert t.rejection(9, 4) == pytest.approx(0.1)  # (9 - 8) / 10
    assert t.rejection(9, 5) == 0.0  # never below zero


def test_counts_leave_the_window() -> None:
    t = Throttle(AdaptiveThrottle(window=10.0, min_requests=0))
    t.arrive(0.0, draws(), False)
    t.arrive(5.0, draws(), False)
    assert t.probability(5.0) == pytest.approx(2 / 3)
    assert t.probability(10.0) == pytest.approx(1 / 2)  # the first is 10 s old: out
    assert t.probability(15.0) == 0.0


def test_memory_is_bounded_whatever_the_traffic() -> None:
    t = Throttle(AdaptiveThrottle(window=10.0, min_requests=0))
    for i in range(100_000):  # 10,000 calls a second over the window
        now = i / 10_000
        t.arrive(now, draws(), False)
        t.ended(now, now, True, False)
    assert (t.requests, t.accepts) == (100_000, 100_000)
    assert len(t.requested) == len(t.accepted) == 10  # the buckets, whatever the rate
    assert all(isinstance(n, int) for n in (*t.requested, *t.accepted))


def test_counts_leave_with_their_bucket() -> None:
    # window 10 s: ten buckets of 1 s; a count leaves when its bucket does.
    t = Throttle(AdaptiveThrottle(window=10.0, min_requests=0))
    t.arrive(0.5, draws(), False)  # bucket 0
    t.arrive(1.0, draws(), False)  # bucket 1
    assert t.probability(9.99) == pytest.approx(2 / 3)  # 9.49 s old: still in
    assert t.probability(10.0) == pytest.approx(1 / 2)  # bucket 0 left (9.5 s old)
    assert t.probability(10.99) == pytest.approx(1 / 2)  # bucket 1 in, 9.99 s old
    assert t.probability(11.0) == 0.0


def test_an_ignored_call_leaves_the_bucket_of_its_arrival() -> None:
    t = Throttle(AdaptiveThrottle(window=10.0, min_requests=0))
    t.arrive(0.0, draws(), False)  # bucket 0
    t.arrive(5.0, draws(), False)  # bucket 5
    t.ended(0.0, 6.0, False, True)  # ignored: out of bucket 0
    assert (t.requests, t.requested[0], t.requested[5]) == (1, 0, 1)
    t.arrive(9.0, draws(), False)  # bucket 9
    t.ended(5.0, 15.5, False, True)  # bucket 5 left the window at 15: nothing to take
    assert (t.requests, t.requested[9]) == (1, 1)


# -- the breaker ---------------------------------------------------------------------------


def test_a_throttled_call_raises_closed_with_no_retry_after_and_does_not_run() -> None:
    clock = FakeClock()
    breaker = throttled(clock, draws(0.49, 0.7), min_requests=1)
    seen: list[Event] = []
    breaker.subscribe(seen.append)
    with pytest.raises(Boom):
        breaker.call(boom)  # requests 1, accepts 0: p = 1/2 for the next
    ran: list[int] = []
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(lambda: ran.append(1))  # draws 0.49 < 0.5: throttled
    error = info.value
    assert ran == []
    assert (error.state, error.retry_after, error.throttled) == (CLOSED, None, True)
    assert "throttling" in str(error)
    assert pickle.loads(pickle.dumps(error)).throttled
    assert seen[-1] == CallRejected("default", 0.0, CLOSED, throttled=True, shadow=False)
    # requests 2, accepts 0: p = 2/3; draws 0.7: admitted.
    with pytest.raises(Boom):
        breaker.call(boom)
    metrics = breaker.metrics()
    assert (metrics.total_throttled, metrics.total_rejected, metrics.total_failures) == (1, 1, 2)
    assert metrics.throttle_probability == pytest.approx(0.75)  # 3 requests, 0 accepts
    assert breaker.state is CLOSED


def test_rejections_from_an_open_circuit_are_not_throttled() -> None:
    assert not CircuitOpenError("svc", OPEN, 1.0).throttled


def test_throttled_calls_are_not_failures_and_never_trip() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        CircuitBreakerConfig(
            failure_threshold_count=3, adaptive_throttle=AdaptiveThrottle(min_requests=0)
        ),
        clock=clock,
        random=lambda: 0.0,  # throttled whenever the probability is above zero
    )
    with pytest.raises(Boom):
        breaker.call(boom)
    for _ in range(20):
        with pytest.raises(CircuitOpenError):
            breaker.call(ok)
    metrics = breaker.metrics()
    assert breaker.state is CLOSED
    assert (metrics.total_failures, metrics.total_throttled) == (1, 20)
    assert metrics.throttle_probability == 0.9  # max_rejection: some calls always pass


def test_no_throttling_below_min_requests_and_random_is_not_drawn() -> None:
    clock = FakeClock()
    breaker = throttled(clock, draws(), min_requests=5)  # draws nothing
    for _ in range(5):
        with pytest.raises(Boom):
            breaker.call(boom)
    assert breaker.metrics().total_throttled == 0


def test_calls_in_flight_count_when_they_arrive() -> None:
    clock = FakeClock()
    breaker = throttled(clock, lambda: 0.0, min_requests=3)
    permits = [breaker.try_acquire() for _ in range(3)]  # a dependency that hangs
    assert all(p is not None for p in permits)
    assert breaker.metrics().throttle_probability == 0.75
    assert breaker.try_acquire() is None  # throttled before any call ended
    assert breaker.metrics().total_throttled == 1


def test_successes_bring_the_probability_down() -> None:
    clock = FakeClock()
    breaker = throttled(clock, draws(), min_requests=0)
    for _ in range(10):
        breaker.call(ok)  # p = (n - 2n) / (n + 1) <= 0: never drawn
    assert breaker.metrics().throttle_probability == 0.0


def test_an_ignored_call_leaves_requests() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        CircuitBreakerConfig(
            ignore_exceptions=Skipped, adaptive_throttle=AdaptiveThrottle(min_requests=0)
        ),
        clock=clock,
        random=draws(),
    )

    def skip() -> None:
        raise Skipped

    with pytest.raises(Skipped):
        breaker.call(skip)
    assert breaker.metrics().throttle_probability == 0.0  # as if it never came
    assert breaker.metrics().total_ignored == 1


def test_the_window_forgets_old_failures() -> None:
    clock = FakeClock()
    breaker = throttled(clock, draws(), min_requests=0, window=10.0)
    with pytest.raises(Boom):
        breaker.call(boom)
    assert breaker.metrics().throttle_probability == 0.5
    clock.advance(10.0)
    assert breaker.metrics().throttle_probability == 0.0


def test_the_throttle_works_beside_the_trip_rules() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        CircuitBreakerConfig(
            failure_threshold_count=2, adaptive_throttle=AdaptiveThrottle(min_requests=100)
        ),
        clock=clock,
        random=draws(),
    )
    for _ in range(2):
        with pytest.raises(Boom):
            breaker.call(boom)
    assert breaker.state is OPEN
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(ok)
    assert not info.value.throttled
    assert breaker.metrics().throttle_probability == 0.0  # only CLOSED throttles


def test_a_manager_passes_random_to_its_breakers() -> None:
    manager = CircuitBreakerManager(
        CircuitBreakerConfig(adaptive_throttle=AdaptiveThrottle(min_requests=0)),
        clock=FakeClock(),
        random=lambda: 0.0,
    )
    with pytest.raises(Boom):
        manager.call("svc", boom)
    with pytest.raises(CircuitOpenError):
        manager.call("svc", ok)


@entries
@pytest.mark.anyio
async def test_async_calls_are_throttled(entry: Entry) -> None:
    clock = FakeClock()
    breaker = throttled(clock, lambda: 0.0, min_requests=0)

    async def fails() -> None:
        raise Boom

    async def works() -> str:
        return "ran"

    with pytest.raises(Boom):
        await entry(breaker, fails)
    with pytest.raises(CircuitOpenError) as info:
        await entry(breaker, works)
    assert info.value.throttled
    assert breaker.metrics().total_throttled == 1


# -- validation and plain data ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "field"),
    [
        ({"k": 0.5}, ValueError, "k"),
        ({"k": "2"}, TypeError, "k"),
        ({"window": 0}, ValueError, "window"),
        ({"min_requests": -1}, ValueError, "min_requests"),
        ({"min_requests": 1.5}, TypeError, "min_requests"),
        ({"max_rejection": 1.0}, ValueError, "max_rejection"),
        ({"max_rejection": 0}, ValueError, "max_rejection"),
    ],
)
def test_a_bad_throttle_is_named(
    options: dict[str, Any], error: type[Exception], field: str
) -> None:
    with pytest.raises(error, match=f"adaptive_throttle.{field}"):
        AdaptiveThrottle(**options)


def test_bad_fields_and_random_are_named() -> None:
    with pytest.raises(TypeError, match="adaptive_throttle"):
        CircuitBreakerConfig(adaptive_throttle={"k": 2})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="shadow"):
        CircuitBreakerConfig(shadow=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="random"):
        CircuitBreaker(random=0.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="random"):
        CircuitBreakerManager(random=0.5)  # type: ignore[arg-type]


def test_both_fields_go_through_plain_data() -> None:
    config = CircuitBreakerConfig(adaptive_throttle=AdaptiveThrottle(k=1.5), shadow=True)
    data = config.to_mapping()
    assert data["adaptive_throttle"] == {
        "k": 1.5,
        "window": 60.0,
        "min_requests": 20,
        "max_rejection": 0.9,
    }
    assert data["shadow"] is True
    assert _Config.from_mapping(data) == config
    with pytest.raises(ValueError, match="adaptive_throttle"):
        _Config.from_mapping({"adaptive_throttle": {"k": 0}})
    with pytest.raises(ValueError, match="adaptive_throttle"):
        _Config.from_mapping({"adaptive_throttle": {"kk": 2}})
