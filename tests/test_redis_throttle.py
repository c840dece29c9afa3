"""`adaptive_throttle` with a RedisStore: the cluster's requests and accepts (real redis-server).

Each record reports its call to the script's throttle buckets (a request when
it arrived, an accept if it succeeded, and the calls its process throttled
since its last record); the reply carries the circuit's totals over the
window, and the process throttles on them plus its own arrivals not yet
reported. Two stores on one server stand for two processes; the script's
clock and the breakers' are one FakeClock.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from helpers import Boom, boom

from circuitry import AdaptiveThrottle, CircuitBreaker, CircuitBreakerConfig, CircuitOpenError
from circuitry.redis import RedisStore
from circuitry.testing import FakeClock

NEVER = 0.999  # above max_rejection: never throttled


def draws(*values: float) -> Any:
    """A `random` that returns `values` in turn, and fails the test if asked for more."""
    it: Iterator[float] = iter(values)
    return lambda: next(it)


def ok() -> str:
    return "ran"


def rejection(requests: int, accepts: int, k: float = 2.0) -> float:
    return min(0.9, max(0.0, (requests - k * accepts) / (requests + 1)))


def process(redis_url: str, clock: FakeClock, random: Any, **throttle: Any) -> CircuitBreaker:
    """A breaker on the circuit 'svc' with a store of its own (another process's, as it were)."""
    throttle.setdefault("min_requests", 0)
    throttle.setdefault("window", 10.0)
    return CircuitBreaker(
        CircuitBreakerConfig(
            failure_threshold_count=1000, adaptive_throttle=AdaptiveThrottle(**throttle)
        ),
        name="svc",
        store=RedisStore.from_url(redis_url, time_source=clock),
        clock=clock,
        random=random,
    )


def probability(breaker: CircuitBreaker) -> float | None:
    return breaker.metrics().throttle_probability


def test_two_processes_see_each_others_requests_and_accepts(redis_url: str) -> None:
    clock = FakeClock(1000.0)
    a = process(redis_url, clock, lambda: NEVER)
    b = process(redis_url, clock, draws(0.0, 0.99))
    for _ in range(3):
        with pytest.raises(Boom):
            a.call(boom)
    assert probability(a) == rejection(3, 0)  # the cluster's: A's three failures
    assert b.call(ok) == "ran"  # B's round trip brings A's counts with B's own
    assert probability(b) == pytest.approx(rejection(4, 1))
    with pytest.raises(CircuitOpenError) as info:  # draws 0.0 < 0.4: throttled
        b.call(ok)
    assert info.value.throttled
    assert probability(b) == pytest.approx(rejection(5, 1))  # its own, not yet reported
    assert b.call(ok) == "ran"  # draws 0.99: admitted; reports itself and the throttled one
    assert probability(b) == pytest.approx(rejection(6, 2))
    # A's probability is the cluster's as of its own last round trip...
    assert probability(a) == rejection(3, 0)
    with pytest.raises(Boom):
        a.call(boom)
    # ...and follows the cluster's after the next: B's requests and accepts are in it.
    assert probability(a) == pytest.approx(rejection(7, 2))
    # Each process's own counts (its fallback's) are its own.
    assert (a.metrics().total_throttled, b.metrics().total_throttled) == (0, 1)


def test_a_process_throttles_on_the_clusters_counts_after_a_round_trip(redis_url: str) -> None:
    clock = FakeClock(1000.0)
    sick = process(redis_url, clock, lambda: NEVER)
    for _ in range(20):
        with pytest.raises(Boom):
            sick.call(boom)
    fresh = process(redis_url, clock, draws(0.5), min_requests=5)
    assert probability(fresh) == 0.0  # it knows nothing of the cluster yet
    with pytest.raises(Boom):
        fresh.call(boom)  # its first call: admitted by the store, reported, the totals back
    assert probability(fresh) == 0.9  # 21 requests, no accepts: max_rejection
    with pytest.raises(CircuitOpenError):  # draws 0.5 < 0.9
        fresh.call(ok)


def test_the_scripts_counts_expire_with_the_window(redis_url: str) -> None:
    clock = FakeClock(1000.0)
    breaker = process(redis_url, clock, lambda: NEVER)
    throttle_key = breaker._core.keys[4]  # type: ignore[attr-defined]
    with redis.Redis.from_url(redis_url) as client:
        for _ in range(4):
            with pytest.raises(Boom):
                breaker.call(boom)
        assert probability(breaker) == rejection(4, 0)
        assert client.pttl(throttle_key) > 0  # a TTL like the circuit's other keys
        clock.advance(5.0)
        breaker.call(ok)
        assert probability(breaker) == pytest.approx(rejection(5, 1))
        clock.advance(5.0)  # the failures' bucket leaves the window (10 s)
        breaker.call(ok)
        assert probability(breaker) == rejection(2, 2)
        clock.advance(10.0)  # all of it
        with pytest.raises(Boom):
            breaker.call(boom)
        assert probability(breaker) == rejection(1, 0)
        fields = client.hgetall(throttle_key)
        assert len(fields) == 21  # head and ten buckets of each: bounded whatever the traffic


def test_an_ignored_call_is_no_request_in_the_cluster(redis_url: str) -> None:
    clock = FakeClock(1000.0)
    breaker = CircuitBreaker(
        CircuitBreakerConfig(
            ignore_exceptions=Boom, adaptive_throttle=AdaptiveThrottle(min_requests=0)
        ),
        name="svc",
        store=RedisStore.from_url(redis_url, time_source=clock),
        clock=clock,
        random=lambda: NEVER,
    )
    breaker.call(ok)
    with pytest.raises(Boom):
        breaker.call(boom)  # ignored: no record, no request
    breaker.call(ok)
    assert probability(breaker) == rejection(2, 2)


def test_without_a_throttle_the_script_keeps_no_throttle_key(redis_url: str) -> None:
    clock = FakeClock(1000.0)
    store = RedisStore.from_url(redis_url, time_source=clock)
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold_count=1000), name="svc", store=store, clock=clock
    )
    for _ in range(3):
        breaker.call(ok)
        with pytest.raises(Boom):
            breaker.call(boom)
    with redis.Redis.from_url(redis_url) as client:
        assert not client.exists(store.keys("svc")[4])
    assert probability(breaker) is None
