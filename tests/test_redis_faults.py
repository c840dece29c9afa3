"""Redis failing under a shared breaker: restarted empty, scripts flushed, killed, hung (SIGSTOP).

Each test runs its own redis-server (the session's stays healthy). The
protected call is never failed by the store; the added latency is bounded
(one socket timeout on the first error, none during the backoff);
`on_unavailable` decides meanwhile; StoreUnavailable / StoreRecovered come
once per outage per breaker; Redis' state is authoritative once it answers.
Time bounds are wide on purpose (e.g. under 1 s for 100 calls that should
add nothing); the lower bounds are the ones the design guarantees.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from helpers import Boom, boom, config, script_calls
from redis_server import RedisServer, ReplyDropper

from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError, CircuitState
from circuitry.events import Alert, Event, StoreRecovered, StoreUnavailable
from circuitry.redis import BACKOFF_START, RedisStore
from circuitry.testing import FakeClock

NAMESPACE = "faults"


def ok() -> str:
    return "ok"


class Recorder:
    """The store events a breaker emits."""

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.events: list[Event] = []
        breaker.subscribe(self.events.append, StoreUnavailable, StoreRecovered)

    def kinds(self) -> list[str]:
        return [type(event).__name__ for event in self.events]


@pytest.fixture
def server(own_redis: RedisServer) -> RedisServer:
    """A redis-server of this test's own, to kill, restart and pause (conftest's `own_redis`)."""
    return own_redis


def make_store(stores: list[RedisStore], server: RedisServer, **options: Any) -> RedisStore:
    store = RedisStore.from_url(server.url, namespace=NAMESPACE, **options)
    stores.append(store)
    return store


@pytest.fixture
def dropper(server: RedisServer) -> Iterator[ReplyDropper]:
    """A proxy in front of `server` that can lose its replies (after the script ran)."""
    proxy = ReplyDropper(server.port)
    try:
        yield proxy
    finally:
        proxy.close()


def wait_until(condition: Any, limit: float = 5.0) -> None:
    """Poll `condition()` until it holds; fail after `limit` seconds."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


def reached(store: RedisStore, *recorders: Recorder) -> bool:
    """Whether the warm-up calls went to Redis and back with no outage; else forget them.

    On a busy machine a reply can come later than the socket timeout (0.25 s):
    an outage before the one the test makes. The caller then calls again.
    """
    if store.usable() and not any(recorder.events for recorder in recorders):
        return True
    for recorder in recorders:
        recorder.events.clear()
    time.sleep(0.05)
    return False


def wait_for_backoff(since: float) -> None:
    """Sleep until the store's first backoff after a failure at `since` is over."""
    time.sleep(max(0.0, since + BACKOFF_START + 0.1 - time.monotonic()))


# -- 5. restarted empty, scripts flushed -----------------------------------------------------


def test_a_restart_empty_mid_run_starts_closed_in_a_newer_generation(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    # A restart refuses connections at once: a socket timeout of seconds (not
    # from_url's 0.25 s, which a busy machine can outlast) delays nothing here,
    # and keeps a late reply from being taken for an outage before the restart.
    store = make_store(stores, server, socket_timeout=5.0)
    rules = config(failure_threshold_count=3, reset_timeout=0.3)
    breaker = CircuitBreaker(rules, name="svc", store=store)
    other = CircuitBreaker(rules, name="svc", store=make_store(stores, server, socket_timeout=5.0))
    for _ in range(3):
        with pytest.raises(Boom):
            breaker.call(boom)
    before = store.snapshot("svc")
    assert before["state"] == "open"

    # Another "process" keeps calling through the restart: nothing but
    # rejections ever reaches it (never a Redis error).
    stop = threading.Event()
    surprises: list[BaseException] = []
    outcomes = {"ran": 0, "rejected": 0}

    def hammer() -> None:
        while not stop.is_set():
            try:
                other.call(ok)
                outcomes["ran"] += 1
            except CircuitOpenError:
                outcomes["rejected"] += 1
            except BaseException as exc:  # pragma: no cover - the failure this test looks for
                surprises.append(exc)
            time.sleep(0.005)

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        time.sleep(0.05)
        server.restart()
        # The breakers go on: through the outage (if they saw one) and after it.
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            with contextlib.suppress(CircuitOpenError):
                assert breaker.call(ok) == "ok"
            after = store.snapshot("svc")
            if (
                after["state"] == "closed"
                and outcomes["ran"] > 0
                and breaker.state is (CircuitState.CLOSED)
            ):
                break
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
    assert not surprises
    assert outcomes["ran"] > 0
    after = store.snapshot("svc")
    assert after["state"] == "closed"
    assert after["generation"] > before["generation"]  # newer than any before the wipe
    assert server.commandstats().get("eval", 0) >= 1  # NOSCRIPT on the new server: loaded
    # And it is one shared circuit again: three failures from the two trip it.
    for breaker_ in (breaker, other, breaker):
        with pytest.raises(Boom):
            breaker_.call(boom)
    assert store.snapshot("svc")["state"] == "open"


def test_flushed_scripts_are_reloaded_transparently(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    store = make_store(stores, server)
    breaker = CircuitBreaker(config(failure_threshold_count=3), name="svc", store=store)
    recorder = Recorder(breaker)
    for _ in range(2):
        with pytest.raises(Boom):
            breaker.call(boom)
    with server.client() as client:
        client.script_flush()
    before = server.commandstats()
    with pytest.raises(Boom):
        breaker.call(boom)  # EVALSHA: NOSCRIPT, then EVAL loads it again
    after = server.commandstats()
    assert after.get("eval", 0) - before.get("eval", 0) == 1
    assert after["evalsha"] - before.get("evalsha", 0) == 1
    assert store.snapshot("svc")["state"] == "open"  # the third failure counted
    assert recorder.events == []  # no outage


# -- 6. killed -------------------------------------------------------------------------------


def test_a_killed_redis_adds_latency_once_then_none_during_the_backoff(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    store = make_store(stores, server)
    breaker = CircuitBreaker(config(), name="svc", store=store)
    recorder = Recorder(breaker)
    breaker.call(ok)
    server.kill()
    started = time.monotonic()
    assert breaker.call(ok) == "ok"  # its record finds Redis gone: the call is not failed
    failed_at = time.monotonic()
    assert failed_at - started < 2.0  # at most a socket timeout (0.25 s); refused is quicker
    assert recorder.kinds() == ["StoreUnavailable"]

    server.start()  # back, but the backoff has not passed: the store leaves it alone
    calls = 0
    started = time.monotonic()
    while time.monotonic() - failed_at < 0.5 * BACKOFF_START:
        assert breaker.call(ok) == "ok"
        calls += 1
    assert calls >= 100
    assert script_calls(server) == 0  # not one attempt during the backoff
    started = time.monotonic()
    for _ in range(100):
        breaker.call(ok)
    assert time.monotonic() - started < 1.0
    assert script_calls(server) == 0

    wait_for_backoff(failed_at)
    breaker.call(ok)  # tries Redis again, which answers
    assert script_calls(server) >= 1
    assert recorder.kinds() == ["StoreUnavailable", "StoreRecovered"]
    assert breaker.state is CircuitState.CLOSED


def test_store_events_come_once_per_outage_per_breaker(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    store = make_store(stores, server)
    breakers = [CircuitBreaker(config(), name=name, store=store) for name in ("a", "b")]
    recorders = [Recorder(breaker) for breaker in breakers]
    for breaker in breakers:
        breaker.call(ok)
    while not reached(store, *recorders):  # (a late reply on a busy machine: again)
        for breaker in breakers:
            breaker.call(ok)
    server.kill()
    first = time.monotonic()
    # Calls through two backoffs: the first probe after 1 s fails too.
    while time.monotonic() - first < BACKOFF_START + 0.3:
        for breaker in breakers:
            breaker.call(ok)
        time.sleep(0.01)
    for recorder in recorders:
        assert recorder.kinds() == ["StoreUnavailable"]
        event = recorder.events[0]
        assert isinstance(event, StoreUnavailable)
        assert isinstance(event.error, Exception)
    server.start()
    deadline = time.monotonic() + 4 * BACKOFF_START + 2.0  # the second backoff is 2 s
    while time.monotonic() < deadline and any(
        recorder.kinds() != ["StoreUnavailable", "StoreRecovered"] for recorder in recorders
    ):
        for breaker in breakers:
            breaker.call(ok)
        time.sleep(0.02)
    for recorder in recorders:
        assert recorder.kinds() == ["StoreUnavailable", "StoreRecovered"]
    for breaker in breakers:  # and nothing more while it stays up
        for _ in range(10):
            breaker.call(ok)
    for recorder in recorders:
        assert recorder.kinds() == ["StoreUnavailable", "StoreRecovered"]


def test_local_fallback_trips_on_local_failures(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    store = make_store(stores, server, on_unavailable="local")
    breaker = CircuitBreaker(
        config(failure_threshold_count=3, reset_timeout=60.0), name="svc", store=store
    )
    breaker.call(ok)
    server.kill()
    ran = 0
    for _ in range(20):
        try:
            ran += 1
            breaker.call(boom)
        except Boom:
            pass
        except CircuitOpenError as exc:
            ran -= 1
            rejected = exc
    # The first failure found Redis gone (its outcome is the process's alone);
    # then the in-process rules count three and trip.
    assert 3 <= ran <= 4
    assert rejected.state is CircuitState.OPEN
    assert breaker.state is CircuitState.OPEN


def test_allow_fallback_admits_every_call(server: RedisServer, stores: list[RedisStore]) -> None:
    store = make_store(stores, server, on_unavailable="allow")
    breaker = CircuitBreaker(config(failure_threshold_count=3), name="svc", store=store)
    breaker.call(ok)
    server.kill()
    for _ in range(20):
        with pytest.raises(Boom):  # never a CircuitOpenError
            breaker.call(boom)
    assert breaker.metrics().total_failures == 20


def test_allow_fallback_admits_every_call_while_open_was_known(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    clock = FakeClock()
    store = make_store(stores, server, on_unavailable="allow")
    breaker = CircuitBreaker(config(), name="svc", store=store, clock=clock)
    breaker.trip(60.0)
    server.kill()
    clock.advance(1.0)  # time to ask again (the open period runs): Redis is gone
    for _ in range(5):
        assert breaker.call(ok) == "ok"  # never the OPEN it knew


def test_deny_fallback_rejects_every_call(server: RedisServer, stores: list[RedisStore]) -> None:
    store = make_store(stores, server, on_unavailable="deny")
    breaker = CircuitBreaker(config(), name="svc", store=store)
    breaker.call(ok)
    server.kill()
    assert breaker.call(ok) == "ok"  # admitted on the CLOSED it knew; its record finds out
    ran = []
    for _ in range(20):
        with pytest.raises(CircuitOpenError):
            breaker.call(lambda: ran.append(True))
    assert ran == []
    assert breaker.metrics().total_rejected == 20


def test_deny_fallback_rejects_a_first_call(server: RedisServer, stores: list[RedisStore]) -> None:
    store = make_store(stores, server, on_unavailable="deny")
    breaker = CircuitBreaker(config(), name="svc", store=store)
    server.kill()
    ran = []
    for _ in range(5):  # the first call asks first: it finds Redis gone
        with pytest.raises(CircuitOpenError):
            breaker.call(lambda: ran.append(True))
    assert ran == []


def test_after_recovery_redis_state_is_authoritative(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    store = make_store(stores, server)
    rules = config(failure_threshold_count=3, reset_timeout=60.0)
    breaker = CircuitBreaker(rules, name="svc", store=store)
    recorder = Recorder(breaker)
    breaker.call(ok)
    server.kill()
    breaker.call(ok)  # finds the outage: local rules, CLOSED
    failed_at = time.monotonic()
    server.start()
    # Another process opens the circuit in the new Redis meanwhile.
    other = CircuitBreaker(rules, name="svc", store=make_store(stores, server))
    for _ in range(3):
        with pytest.raises(Boom):
            other.call(boom)
    assert breaker.call(ok) == "ok"  # still in the backoff: the local CLOSED admits
    wait_for_backoff(failed_at)
    with pytest.raises(CircuitOpenError) as rejected:
        breaker.call(ok)  # asks again: the shared OPEN decides
    assert rejected.value.state is CircuitState.OPEN
    assert rejected.value.retry_after is not None
    assert 50.0 < rejected.value.retry_after <= 60.0
    assert recorder.kinds() == ["StoreUnavailable", "StoreRecovered"]
    assert breaker.state is CircuitState.OPEN


# -- 7. hung (SIGSTOP) ------------------------------------------------------------------------


def test_a_hung_redis_delays_one_call_by_the_socket_timeout(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    store = make_store(stores, server)  # from_url: socket_timeout 0.25
    breaker = CircuitBreaker(config(failure_threshold_count=3), name="svc", store=store)
    recorder = Recorder(breaker)
    breaker.call(ok)
    while not reached(store, recorder):
        breaker.call(ok)
    server.pause()
    try:
        started = time.monotonic()
        assert breaker.call(ok) == "ok"
        failed_at = time.monotonic()
        assert 0.2 <= failed_at - started < 2.0  # about one socket timeout
        assert recorder.kinds() == ["StoreUnavailable"]
        started = time.monotonic()
        for _ in range(100):
            assert breaker.call(ok) == "ok"
        assert time.monotonic() - started < 1.0  # the backoff: no attempt, no latency
    finally:
        server.resume()
    wait_for_backoff(failed_at)
    breaker.call(ok)
    assert recorder.kinds() == ["StoreUnavailable", "StoreRecovered"]
    assert breaker.state is CircuitState.CLOSED


def test_a_hung_redis_on_a_first_call_is_bounded_too(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    store = make_store(stores, server)
    breaker = CircuitBreaker(config(), name="svc", store=store)
    server.pause()
    try:
        started = time.monotonic()
        assert breaker.call(ok) == "ok"  # its ask times out: the local rules admit
        assert time.monotonic() - started < 2.0
        started = time.monotonic()
        for _ in range(100):
            breaker.call(ok)
        assert time.monotonic() - started < 1.0
    finally:
        server.resume()


# -- one outage per store: its other breakers neither try Redis nor double the backoff -------


def test_other_breakers_of_the_store_leave_redis_alone_during_the_backoff(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    store = make_store(stores, server)
    breakers = [CircuitBreaker(config(), name=name, store=store) for name in "abcd"]
    recorders = [Recorder(breaker) for breaker in breakers]
    for breaker in breakers:
        breaker.call(ok)  # each knows CLOSED: its next record would be its first request
    while not reached(store, *recorders):  # (a late reply on a busy machine: again)
        for breaker in breakers:
            breaker.call(ok)
    server.kill()
    breakers[0].call(ok)  # finds the outage
    failed_at = time.monotonic()
    server.start()
    for breaker in breakers[1:]:
        assert breaker.call(ok) == "ok"
    assert script_calls(server) == 0  # the store knew: not one of them tried Redis
    assert time.monotonic() - failed_at < BACKOFF_START  # (still in the backoff)
    for recorder in recorders:
        assert recorder.kinds() == ["StoreUnavailable"]
    wait_for_backoff(failed_at)  # one backoff of 1 s, not doubled by the others
    for breaker in breakers:
        breaker.call(ok)
    for recorder in recorders:
        assert recorder.kinds() == ["StoreUnavailable", "StoreRecovered"]


def test_a_hung_redis_delays_one_call_per_store_not_per_breaker(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    store = make_store(stores, server)
    breakers = [CircuitBreaker(config(), name=name, store=store) for name in "abcde"]
    for breaker in breakers:
        breaker.call(ok)
    while not reached(store):  # (a late reply on a busy machine: again)
        for breaker in breakers:
            breaker.call(ok)
    server.pause()
    try:
        started = time.monotonic()
        breakers[0].call(ok)
        assert time.monotonic() - started >= 0.2  # the one socket timeout (0.25 s)
        started = time.monotonic()
        for breaker in breakers[1:]:
            breaker.call(ok)
        assert time.monotonic() - started < 0.5  # not 4 more socket timeouts (1 s)
    finally:
        server.resume()


def test_requests_failing_together_start_one_backoff(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    store = make_store(stores, server)
    breakers = [CircuitBreaker(config(), name=name, store=store) for name in "abcd"]
    recorders = [Recorder(breaker) for breaker in breakers]
    for breaker in breakers:
        breaker.call(ok)
    while not reached(store, *recorders):  # (a late reply on a busy machine: again)
        for breaker in breakers:
            breaker.call(ok)
    server.pause()
    try:
        barrier = threading.Barrier(len(breakers))

        def call(breaker: CircuitBreaker) -> None:
            barrier.wait()
            breaker.call(ok)  # four records in flight at once: all time out together

        threads = [threading.Thread(target=call, args=(breaker,)) for breaker in breakers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        failed_at = time.monotonic()
    finally:
        server.resume()
    for recorder in recorders:
        assert recorder.kinds() == ["StoreUnavailable"]
    wait_for_backoff(failed_at)  # one failure of one outage: 1 s, not 8 s
    breakers[0].call(ok)
    assert recorders[0].kinds() == ["StoreUnavailable", "StoreRecovered"]


# -- 3 (single-flight): when the known open period ends, one request per process ------------


def test_the_due_request_is_single_flight_in_a_process(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    store = make_store(stores, server)
    breaker = CircuitBreaker(
        config(failure_threshold_count=1, reset_timeout=0.2), name="svc", store=store
    )
    with pytest.raises(Boom):
        breaker.call(boom)
    time.sleep(0.3)  # the open period this process knows of is over
    before = script_calls(server)
    # Hung: the one request out waits a socket timeout; every other call meanwhile
    # is rejected at once, sending nothing (the server runs what it was sent on resume).
    server.pause()
    outcomes: list[tuple[str, float]] = []
    barrier = threading.Barrier(8)

    def call() -> None:
        barrier.wait()
        started = time.monotonic()
        try:
            breaker.call(ok)
            outcomes.append(("ran", time.monotonic() - started))
        except CircuitOpenError as exc:
            outcomes.append((exc.state.value, time.monotonic() - started))

    try:
        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        server.resume()
    # The one that asked timed out and went on by the local rules (the trial there).
    assert sorted(kind for kind, _ in outcomes) == ["open"] * 7 + ["ran"]
    deadline = time.monotonic() + 2.0
    while script_calls(server) == before and time.monotonic() < deadline:
        time.sleep(0.01)  # the server catches up with what it was sent
    time.sleep(0.05)
    assert script_calls(server) - before == 1


# -- 7 (async): a hung Redis under asyncio (its client) and trio (the sync one, in a thread) --


@pytest.mark.anyio
async def test_a_hung_redis_delays_one_async_call_by_the_socket_timeout(
    server: RedisServer,
) -> None:
    store = RedisStore.from_url(server.url, namespace=NAMESPACE)
    try:
        breaker = CircuitBreaker(config(), name="svc", store=store)
        recorder = Recorder(breaker)

        async def fine() -> str:
            return "fine"

        assert await breaker.call_async(fine) == "fine"
        while not reached(store, recorder):
            assert await breaker.call_async(fine) == "fine"
        server.pause()
        try:
            started = time.monotonic()
            async with breaker:
                pass
            assert 0.2 <= time.monotonic() - started < 2.0  # one socket timeout
            started = time.monotonic()
            for _ in range(100):
                assert await breaker.call_async(fine) == "fine"
            assert time.monotonic() - started < 1.0
            assert recorder.kinds() == ["StoreUnavailable"]
        finally:
            server.resume()
    finally:
        await store.aclose()


# -- lost replies and outages in a row: the caller only ever sees its own outcome --------------


def test_a_call_in_flight_across_two_outages_returns_its_own_result(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    # Two short hangs (the state survives them): the second outage's local
    # period must not take the number of the first one's.
    store = make_store(stores, server)
    breaker = CircuitBreaker(config(), name="svc", store=store)
    breaker.call(ok)
    server.pause()
    try:
        assert breaker.call(ok) == "ok"  # the first outage: the in-process rules
    finally:
        server.resume()
    failed_at = time.monotonic()
    running, release = threading.Event(), threading.Event()
    results: list[object] = []

    def slow() -> str:
        running.set()
        assert release.wait(10.0)
        return "slow"

    def run() -> None:
        try:
            results.append(breaker.call(slow))  # admitted by the in-process rules
        except BaseException as exc:  # pragma: no cover - the failure this test looks for
            results.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert running.wait(10.0)
        wait_for_backoff(failed_at)
        assert breaker.call(ok) == "ok"  # the store answers: shared again
        server.pause()
        try:
            assert breaker.call(ok) == "ok"  # the second outage
        finally:
            server.resume()
    finally:
        release.set()
        thread.join(10.0)
    assert results == ["slow"]
    metrics = breaker.metrics()
    assert metrics.total_allowed == (
        metrics.total_successes + metrics.total_failures + metrics.total_ignored
    )


def the_slot_comes_back(
    breaker: CircuitBreaker, other: CircuitBreaker, direct: RedisStore, since: float
) -> None:
    """`breaker`'s next answered round trip (after the backoff from `since`) frees the
    trial slot it lost track of, long before its lease runs out: `other` gets it and closes."""
    wait_for_backoff(since)
    breaker.state  # noqa: B018 - its next round trip, which succeeds, gives the slot back
    assert direct.snapshot("svc")["trials_in_flight"] == 0
    assert other.call(ok) == "ok"  # the trial
    assert direct.snapshot("svc")["state"] == "closed"


def half_open_through(
    dropper: ReplyDropper, server: RedisServer, stores: list[RedisStore]
) -> tuple[CircuitBreaker, CircuitBreaker, RedisStore]:
    """A breaker on a store behind `dropper`, another on a direct store: tripped, then due.

    Returns (the lossy one, the direct one, the direct store). The trial lease is 30 s.
    """
    rules = config(failure_threshold_count=1, reset_timeout=0.2)
    lossy = RedisStore.from_url(dropper.url, namespace=NAMESPACE)
    stores.append(lossy)
    direct = make_store(stores, server)
    breaker = CircuitBreaker(rules, name="svc", store=lossy)
    other = CircuitBreaker(rules, name="svc", store=direct)
    with pytest.raises(Boom):
        breaker.call(boom)
    time.sleep(0.3)  # the open period is over
    return breaker, other, direct


def test_a_trial_whose_reply_was_lost_gives_its_slot_back_at_the_next_round_trip(
    server: RedisServer, stores: list[RedisStore], dropper: ReplyDropper
) -> None:
    breaker, other, direct = half_open_through(dropper, server, stores)
    dropper.dropping.set()
    try:
        # Its acquire takes the trial in Redis; the reply is lost: the local rules decide.
        assert breaker.call(ok) == "ok"
        lost_at = time.monotonic()
    finally:
        dropper.dropping.clear()
    wait_until(lambda: direct.snapshot("svc")["trials_in_flight"] == 1)
    assert direct.snapshot("svc")["state"] == "half_open"
    with pytest.raises(CircuitOpenError):
        other.call(ok)  # the only slot is held
    the_slot_comes_back(breaker, other, direct, lost_at)


def test_a_transition_whose_reply_was_lost_is_alerted_once(
    server: RedisServer, stores: list[RedisStore], dropper: ReplyDropper
) -> None:
    alerts: list[tuple[str, Alert]] = []

    def rules(who: str) -> CircuitBreakerConfig:
        return config(
            failure_threshold_count=2,
            reset_timeout=60.0,
            alert_handler=lambda alert: alerts.append((who, alert)),
        )

    lossy = RedisStore.from_url(dropper.url, namespace=NAMESPACE)
    stores.append(lossy)
    direct = make_store(stores, server)
    maker = CircuitBreaker(rules("maker"), name="svc", store=lossy)
    other = CircuitBreaker(rules("other"), name="svc", store=direct)
    maker.call(ok)
    other.call(ok)
    with pytest.raises(Boom):
        other.call(boom)
    dropper.dropping.set()
    try:
        with pytest.raises(Boom):
            maker.call(boom)  # the second failure trips the circuit; the reply is lost
        lost_at = time.monotonic()
    finally:
        dropper.dropping.clear()
    wait_until(lambda: direct.snapshot("svc")["state"] == "open")
    assert other.call(ok) == "ok"  # admitted on the CLOSED it knew; its record learns OPEN
    assert other.state is CircuitState.OPEN
    wait_for_backoff(lost_at)
    assert maker.state is CircuitState.OPEN  # the maker's next round trip that succeeds
    for breaker in (maker, other):
        with pytest.raises(CircuitOpenError):
            breaker.call(ok)
        assert breaker.state is CircuitState.OPEN
    trips = [(who, alert.old_state, alert.new_state) for who, alert in alerts]
    assert trips == [("maker", CircuitState.CLOSED, CircuitState.OPEN)]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # trio's thread is never abandoned
async def test_a_cancelled_trial_request_gives_its_slot_back_at_the_next_round_trip(
    server: RedisServer, dropper: ReplyDropper, anyio_backend: str
) -> None:
    rules = config(failure_threshold_count=1, reset_timeout=0.2)
    lossy = RedisStore.from_url(dropper.url, namespace=NAMESPACE)
    direct = RedisStore.from_url(server.url, namespace=NAMESPACE)
    try:
        breaker = CircuitBreaker(rules, name="svc", store=lossy)
        other = CircuitBreaker(rules, name="svc", store=direct)

        async def fine() -> str:
            return "fine"

        async def boom() -> None:
            raise Boom

        with pytest.raises(Boom):
            await breaker.call_async(boom)
        await anyio.sleep(0.3)  # the open period is over
        dropper.dropping.set()
        try:
            with anyio.move_on_after(0.1):  # before the socket timeout: abandoned
                await breaker.call_async(fine)
        finally:
            dropper.dropping.clear()
        deadline = time.monotonic() + 5.0
        while direct.snapshot("svc")["trials_in_flight"] != 1:  # the acquire ran all the same
            assert time.monotonic() < deadline
            await anyio.sleep(0.01)
        with pytest.raises(CircuitOpenError):
            other.call(ok)
        assert breaker.state is CircuitState.HALF_OPEN  # its next round trip gives it back
        assert direct.snapshot("svc")["trials_in_flight"] == 0
        assert other.call(ok) == "ok"
    finally:
        await lossy.aclose()
        direct.close()


def test_a_trial_in_flight_when_the_store_failed_gives_its_slot_back(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    rules = config(failure_threshold_count=1, reset_timeout=0.2)  # lease: 30 s
    direct = make_store(stores, server)
    breaker = CircuitBreaker(rules, name="svc", store=make_store(stores, server))
    other = CircuitBreaker(rules, name="svc", store=direct)
    with pytest.raises(Boom):
        breaker.call(boom)
    time.sleep(0.3)  # the open period is over
    permit = breaker.try_acquire()  # the trial, its slot taken in Redis
    assert permit is not None
    server.pause()
    try:
        assert breaker.call(ok) == "ok"  # times out: the in-process rules from now on
        failed_at = time.monotonic()
    finally:
        server.resume()
    permit.record_success()  # late here: the shared circuit never hears of it
    assert direct.snapshot("svc")["trials_in_flight"] == 1
    the_slot_comes_back(breaker, other, direct, failed_at)


def test_a_trial_whose_record_never_arrived_gives_its_slot_back(
    server: RedisServer, stores: list[RedisStore], dropper: ReplyDropper
) -> None:
    breaker, other, direct = half_open_through(dropper, server, stores)
    permit = breaker.try_acquire()  # the trial, its slot taken in Redis
    assert permit is not None
    dropper.losing.set()
    try:
        permit.record_success()  # its record never reaches Redis: it times out
        lost_at = time.monotonic()
    finally:
        dropper.losing.clear()
    assert direct.snapshot("svc")["trials_in_flight"] == 1
    the_slot_comes_back(breaker, other, direct, lost_at)
