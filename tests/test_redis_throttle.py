"""`adaptive_throttle` with a RedisStore: the cluster's requests and accepts (real redis-server).

Each record reports its call to the script's throttle buckets (a request when
it arrived, an accept if it succeeded, and the calls its process throttled
since its last record); the reply carries the circuit's totals over the
window, and the process throttles on them plus its own arrivals not yet
reported. Two stores on one server stand for two processes; the script's
clock and the breakers' are one FakeClock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from helpers import Boom, boom
from redis_server import RedisServer, ReplyDropper

from circuitry import (
    AdaptiveThrottle,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitOpenError,
    CircuitState,
)
from circuitry.redis import BACKOFF_START, RedisStore
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
    # A's metrics() is a round trip (a read): it brings the cluster's counts,
    # B's requests and accepts in them...
    assert probability(a) == pytest.approx(rejection(6, 2))
    with pytest.raises(Boom):
        a.call(boom)
    # ...and so does each record.
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
    with pytest.raises(Boom):
        fresh.call(boom)  # its first call: admitted by the store, reported, the totals back
    assert probability(fresh) == 0.9  # 21 requests, no accepts: max_rejection
    with pytest.raises(CircuitOpenError):  # draws 0.5 < 0.9
        fresh.call(ok)


def test_every_round_trip_brings_the_clusters_counts(redis_url: str) -> None:
    # Not only a record's reply: a read's (the first use of a breaker, metrics(),
    # state), an acquire's and a control's bring the totals too, and write none.
    clock = FakeClock(1000.0)
    sick = process(redis_url, clock, lambda: NEVER)
    for _ in range(20):
        with pytest.raises(Boom):
            sick.call(boom)
    reader = process(redis_url, clock, draws(0.5), min_requests=5)
    assert probability(reader) == 0.9  # its first round trip, a read: 20 requests, no accepts
    with pytest.raises(CircuitOpenError) as info:  # draws 0.5 < 0.9: throttled, nothing sent
        reader.call(ok)
    assert info.value.throttled
    assert probability(sick) == 0.9  # a read counts nothing: still 20 (reader's not reported)
    clock.advance(10.0)  # the window (10 s) passes: the read sees the buckets age out
    assert probability(sick) == 0.0
    # An acquire (HALF_OPEN) and a control (trip) bring them too.
    for _ in range(6):
        with pytest.raises(Boom):
            sick.call(boom)
    assert probability(sick) == rejection(6, 0)
    assert reader._core.throttle_cluster == (20, 0)  # type: ignore[attr-defined]
    reader.trip(10.0)  # a control: its reply carries the counts (reader's own throttled
    assert reader._core.throttle_cluster == (6, 0)  # type: ignore[attr-defined]  # call: later)
    assert sick.state is CircuitState.OPEN  # a read: sick learns of the trip
    clock.advance(10.0)  # the open period and the window pass
    permit = sick.try_acquire()  # the trial's acquire: the counts have aged out
    assert permit is not None
    assert sick._core.throttle_cluster == (0, 0)  # type: ignore[attr-defined]
    permit.record_success()  # its record: a request and an accept
    assert sick._core.throttle_cluster == (1, 1)  # type: ignore[attr-defined]


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


# -- throttled calls when a record gets no reply -----------------------------------------


@pytest.fixture
def dropper() -> Iterator[ReplyDropper]:
    """A server of this test's own behind a proxy that can lose replies (or requests)."""
    server = RedisServer()
    server.start()
    proxy = ReplyDropper(server.port)
    try:
        yield proxy
    finally:
        proxy.close()
        server.stop()


def behind(dropper: ReplyDropper, random: Any, name: str = "svc") -> CircuitBreaker:
    """A breaker on a store behind `dropper`, on the real clock (the store's backoff is real)."""
    return CircuitBreaker(
        CircuitBreakerConfig(
            failure_threshold_count=1000,
            adaptive_throttle=AdaptiveThrottle(min_requests=3, window=600.0),
        ),
        name=name,
        store=RedisStore.from_url(dropper.url),
        random=random,
    )


def cluster_counts(dropper: ReplyDropper, breaker: CircuitBreaker) -> tuple[int, int]:
    """The circuit's (requests, accepts) as the script keeps them, read straight from Redis."""
    with redis.Redis(port=dropper.upstream) as client:
        raw = client.hgetall(breaker._core.keys[4])  # type: ignore[attr-defined]
    fields = {key.decode(): int(value) for key, value in raw.items() if key != b"head"}
    return (
        sum(v for k, v in fields.items() if k[0] == "r"),
        sum(v for k, v in fields.items() if k[0] == "a"),
    )


def throttle_one(breaker: CircuitBreaker) -> None:
    """Three failures (min_requests=3: no draw), then a call throttled (`random` draws 0.0)."""
    for _ in range(3):
        with pytest.raises(Boom):
            breaker.call(boom)
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(ok)
    assert info.value.throttled


def wait_for_the_backoff(since: float) -> None:
    time.sleep(max(0.0, since + BACKOFF_START + 0.1 - time.monotonic()))


def test_a_lost_reply_counts_its_throttled_calls_once(dropper: ReplyDropper) -> None:
    breaker = behind(dropper, draws(0.0, 0.99, 0.99))
    throttle_one(breaker)
    dropper.dropping.set()  # the script runs; its reply never comes back
    try:
        assert breaker.call(ok) == "ran"  # the store's error never fails the call
        lost_at = time.monotonic()
    finally:
        dropper.dropping.clear()
    # The record ran: three failures, the throttled call and this one.
    assert cluster_counts(dropper, breaker) == (5, 1)
    wait_for_the_backoff(lost_at)
    assert breaker.call(ok) == "ran"  # back to the store: reports itself alone, not again
    assert cluster_counts(dropper, breaker) == (6, 2)


def test_a_record_not_sent_leaves_its_throttled_calls_to_the_next(
    dropper: ReplyDropper,
) -> None:
    breaker = behind(dropper, draws(0.0, 0.99, 0.99))
    throttle_one(breaker)
    # Another breaker on the same store meets the outage first: the store backs
    # off, so the record planned next is not sent at all.
    other = CircuitBreaker(
        CircuitBreakerConfig(),
        name="other",
        store=breaker._store,  # type: ignore[attr-defined]
    )
    dropper.losing.set()  # requests never reach Redis
    try:
        assert other.call(ok) == "ran"
        failed_at = time.monotonic()
    finally:
        dropper.losing.clear()
    assert breaker.call(ok) == "ran"  # its record: not sent (backing off)
    assert cluster_counts(dropper, breaker) == (3, 0)
    wait_for_the_backoff(failed_at)
    assert breaker.call(ok) == "ran"  # back to the store: its record reports the throttled call
    # The three failures, the throttled call and this one; the call whose record
    # was not sent counts in this process alone, as before.
    assert cluster_counts(dropper, breaker) == (5, 1)
