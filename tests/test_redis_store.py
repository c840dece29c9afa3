"""RedisStore in one process, against a real redis-server: arguments, keys, TTLs,
memory, scripts, generations, events and alerts, the manager, fork, asyncio and trio.

Two stores in one process stand for two processes (each has its own mirror,
connections and permit ids). The many-process and fault tests are in
test_redis_processes.py and test_redis_faults.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any

import pytest
import redis
from helpers import CLOSED, HALF_OPEN, OPEN, Boom, boom
from redis_server import RedisServer

from circuitry import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerManager,
    CircuitOpenError,
    CircuitState,
)
from circuitry.events import Alert, Event, StateChanged
from circuitry.redis import RedisStore
from circuitry.testing import FakeClock


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises((Boom, CircuitOpenError)):
            breaker.call(boom)


def config(**options: Any) -> CircuitBreakerConfig:
    options.setdefault("failure_threshold_count", 3)
    options.setdefault("reset_timeout", 60.0)
    options.setdefault("reset_timeout_jitter", 0.0)
    return CircuitBreakerConfig(**options)


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


# -- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "field"),
    [
        ({"namespace": 3}, TypeError, "namespace"),
        ({"lease": 0}, ValueError, "lease"),
        ({"lease": "5"}, TypeError, "lease"),
        ({"lease": float("inf")}, ValueError, "lease"),
        ({"ttl": -1}, ValueError, "ttl"),
        ({"ttl": True}, TypeError, "ttl"),
        ({"on_unavailable": "open"}, ValueError, "on_unavailable"),
        ({"time_source": 5}, TypeError, "time_source"),
        ({"async_client": object()}, TypeError, "async_client"),
    ],
)
def test_a_bad_argument_is_named(
    client: redis.Redis, options: dict[str, Any], error: type[Exception], field: str
) -> None:
    with pytest.raises(error, match=field):
        RedisStore(client, **options)


def test_a_client_that_is_not_redis_and_a_store_that_is_not_a_store_are_named() -> None:
    with pytest.raises(TypeError, match="client"):
        RedisStore(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="store"):
        CircuitBreaker(store=object())
    with pytest.raises(TypeError, match="store"):
        CircuitBreakerManager(store="redis://")


# -- one circuit ----------------------------------------------------------------------------


def test_two_breakers_of_one_name_are_one_circuit_and_others_are_not(redis_url: str) -> None:
    a = CircuitBreaker(config(), name="pay", store=RedisStore.from_url(redis_url))
    b = CircuitBreaker(config(), name="pay", store=RedisStore.from_url(redis_url))
    other_name = CircuitBreaker(config(), name="ship", store=RedisStore.from_url(redis_url))
    other_space = CircuitBreaker(
        config(), name="pay", store=RedisStore.from_url(redis_url, namespace="elsewhere")
    )
    fail(a, 2)
    fail(b, 1)  # the third failure of the circuit: it opens
    assert b.state is OPEN
    assert a.state is OPEN  # learned at its first look
    with pytest.raises(CircuitOpenError):
        a.call(lambda: None)
    assert other_name.state is CLOSED
    assert other_space.state is CLOSED


def test_names_are_escaped_into_one_hash_tag_each(redis_url: str, client: redis.Redis) -> None:
    store = RedisStore.from_url(redis_url, namespace="a:b")
    names = ["c", "b:c", "{x}", "}{", "50%", "naïve ☃", ""]
    for name in names:
        CircuitBreaker(config(), name=name, store=store).call(lambda: None)
    # Namespace "a", name "b:c" would be the same text unescaped: it is another circuit.
    CircuitBreaker(config(), name="b:c", store=RedisStore.from_url(redis_url, namespace="a"))
    keys = sorted(key.decode() for key in client.keys("*"))
    assert len(keys) == len(names)  # one state hash each; no permits without trials
    tags = set()
    for key in keys:
        assert key.count("{") == 1, key  # one tag, never cut short
        assert key.count("}") == 1, key
        tags.add(key[key.index("{") : key.index("}") + 1])
    assert len(tags) == len(names)
    for name in names:
        assert len({key[: key.index("}")] for key in store.keys(name)}) == 1  # one slot each


def test_every_key_has_a_ttl_renewed_at_each_use(redis_url: str, client: redis.Redis) -> None:
    store = RedisStore.from_url(redis_url, ttl=100.0)
    breaker = CircuitBreaker(
        config(failure_threshold_count=1, reset_timeout=0.05), name="svc", store=store
    )
    fail(breaker)
    time.sleep(0.06)
    permit = breaker.try_acquire()  # a trial: the permits key exists too
    assert permit is not None
    state_key, permits_key, _, owed_key, _ = store.keys("svc")
    for key in (state_key, permits_key, owed_key):  # (owed: the transitions made)
        assert 0 < client.pttl(key) <= 100_000
    client.pexpire(state_key, 5_000)
    permit.record_success()
    assert client.pttl(state_key) > 90_000


def test_memory_per_breaker_is_bounded_whatever_the_traffic(
    redis_url: str, client: redis.Redis
) -> None:
    store = RedisStore.from_url(redis_url)
    breaker = CircuitBreaker(
        config(
            failure_threshold_count=None,
            failure_threshold_percentage=90.0,
            failure_window=0.2,
            minimum_calls=10**6,
            slow_call_duration=10.0,
        ),
        name="busy",
        store=store,
    )
    sizes = []
    for _ in range(4):
        deadline = time.monotonic() + 0.25  # more than a window: every bucket used
        while time.monotonic() < deadline:
            breaker.call(lambda: None)
            fail(breaker)
        state, _, window, _, _ = store.keys("busy")
        sizes.append(
            (
                len(client.keys("*")),
                client.hlen(window),
                (client.memory_usage(state) or 0) + (client.memory_usage(window) or 0),
            )
        )
    assert len({s[:2] for s in sizes}) == 1, sizes  # the same keys and fields every round
    assert sizes[0][:2] == (2, 34), sizes  # the state, the window: head, 30 buckets, 3 totals
    assert max(s[2] for s in sizes) < 4096, sizes
    metrics = breaker.metrics()
    assert metrics.total_allowed > 100
    assert metrics.window_calls is not None
    assert 0 < metrics.window_calls <= metrics.total_allowed


# -- scripts and generations ------------------------------------------------------------


def test_flushed_scripts_are_loaded_again_without_a_failed_call(
    redis_url: str, client: redis.Redis
) -> None:
    events: list[Event] = []
    breaker = CircuitBreaker(config(), name="svc", store=RedisStore.from_url(redis_url))
    breaker.subscribe(events.append)
    fail(breaker)
    client.script_flush()
    fail(breaker)
    client.script_flush()
    fail(breaker)
    assert breaker.state is OPEN  # all three counted in Redis
    assert not [e for e in events if type(e).__name__.startswith("Store")]


def test_a_wiped_state_starts_closed_with_a_newer_generation(
    redis_url: str, client: redis.Redis
) -> None:
    store = RedisStore.from_url(redis_url)
    breaker = CircuitBreaker(config(failure_threshold_count=1), name="svc", store=store)
    fail(breaker)
    before = store.snapshot("svc")
    assert before["state"] == "open"
    client.flushall()
    wiped = store.snapshot("svc")
    assert wiped["state"] == "closed"
    assert wiped["generation"] > before["generation"]
    # The breaker still rejects: OPEN is known here until its period ends (no round trip).
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: None)


def test_snapshot_is_plain_data_and_changes_nothing(redis_url: str, client: redis.Redis) -> None:
    store = RedisStore.from_url(redis_url)
    breaker = CircuitBreaker(config(failure_window=30.0), name="svc", store=store)
    fail(breaker, 2)
    breaker.call(lambda: None)
    data = store.snapshot("svc")
    assert data["state"] == "closed"
    assert (data["window_calls"], data["window_failures"]) == (3, 2)
    assert data["trials_in_flight"] == 0
    assert data["open_until"] is None
    assert isinstance(data["generation"], int)
    assert store.snapshot("never-used")["state"] == "closed"
    assert client.keys("*never-used*") == []  # a look creates nothing


def test_a_different_config_for_one_name_is_warned_about_once(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    a = CircuitBreaker(config(), name="svc", store=RedisStore.from_url(redis_url))
    b = CircuitBreaker(
        config(failure_threshold_count=9), name="svc", store=RedisStore.from_url(redis_url)
    )
    a.call(lambda: None)
    with caplog.at_level(logging.WARNING, logger="circuitry"):
        for _ in range(3):
            b.call(lambda: None)
    warnings = [r for r in caplog.records if "different config" in r.getMessage()]
    assert len(warnings) == 1


# -- events and alerts --------------------------------------------------------------------


def test_the_alert_is_sent_only_where_the_transition_was_made(redis_url: str) -> None:
    alerts: dict[str, list[Alert]] = {"a": [], "b": []}
    seen: dict[str, list[Event]] = {"a": [], "b": []}
    breakers = {}
    for who in ("a", "b"):
        breakers[who] = CircuitBreaker(
            config(failure_threshold_count=2, alert_handler=alerts[who].append),
            name="svc",
            store=RedisStore.from_url(redis_url),
        )
        breakers[who].subscribe(seen[who].append, StateChanged)
    breakers["a"].call(lambda: None)
    fail(breakers["b"], 2)  # b opens it
    breakers["a"].call(lambda: None)  # admitted (CLOSED as a knew it); its record tells it
    assert breakers["a"].state is OPEN
    assert [(a.old_state, a.new_state) for a in alerts["b"]] == [(CLOSED, OPEN)]
    assert alerts["a"] == []  # one alert per transition, cluster-wide
    for who in ("a", "b"):  # every process's listeners hear of it
        assert [(e.old_state, e.new_state) for e in seen[who]] == [(CLOSED, OPEN)]  # type: ignore[union-attr]
    assert breakers["a"].metrics().state_changes == 1


def test_a_process_learns_of_an_opening_at_its_next_round_trip(redis_url: str) -> None:
    a = CircuitBreaker(
        config(failure_threshold_count=1), name="svc", store=RedisStore.from_url(redis_url)
    )
    b = CircuitBreaker(
        config(failure_threshold_count=1), name="svc", store=RedisStore.from_url(redis_url)
    )
    a.call(lambda: None)  # a knows CLOSED
    fail(b)  # b opens the circuit
    # a's next call is admitted (CLOSED as far as it knows), and its record tells it.
    assert a.call(lambda: 7) == 7
    with pytest.raises(CircuitOpenError):
        a.call(lambda: None)  # once it knows, it admits nothing more


def test_manual_controls_act_on_every_process(redis_url: str) -> None:
    a = CircuitBreaker(config(), name="svc", store=RedisStore.from_url(redis_url))
    b = CircuitBreaker(config(), name="svc", store=RedisStore.from_url(redis_url))
    a.force_open()
    assert b.state is CircuitState.FORCED_OPEN
    with pytest.raises(CircuitOpenError):
        b.call(lambda: None)
    b.reset()
    assert a.state is CLOSED
    a.force_closed()
    fail(b, 10)
    assert b.state is CircuitState.FORCED_CLOSED
    b.trip(30.0)
    assert a.state is OPEN
    retry_after = a.metrics().retry_after
    assert retry_after is not None
    assert 29.0 < retry_after <= 30.0


def test_a_forced_open_process_learns_of_a_reset_elsewhere_within_a_second(
    redis_url: str,
) -> None:
    a = CircuitBreaker(config(), name="svc", store=RedisStore.from_url(redis_url))
    b = CircuitBreaker(config(), name="svc", store=RedisStore.from_url(redis_url))
    a.force_open()
    with pytest.raises(CircuitOpenError):
        a.call(lambda: None)
    b.reset()
    deadline = time.monotonic() + 5.0
    while True:
        try:
            a.call(lambda: None)
            break
        except CircuitOpenError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


@pytest.mark.parametrize("control", ["reset", "force_closed"])
def test_a_process_that_knows_open_learns_of_a_control_elsewhere_within_a_second(
    redis_url: str, redis_server: Any, control: str
) -> None:
    clock = FakeClock(100.0)  # this process's clock: its mirror's open period is in it
    rules = config(failure_threshold_count=1, reset_timeout=300.0)
    a = CircuitBreaker(rules, name="svc", store=RedisStore.from_url(redis_url), clock=clock)
    b = CircuitBreaker(rules, name="svc", store=RedisStore.from_url(redis_url))
    fail(a)  # a knows OPEN for 300 s
    getattr(b, control)()
    before = evalsha_calls(redis_server)
    for _ in range(50):
        clock.advance(0.01)
        with pytest.raises(CircuitOpenError):
            a.call(lambda: None)  # within the second: OPEN as known, nothing asked
    assert evalsha_calls(redis_server) == before
    clock.advance(0.5)  # a second since a last asked
    assert a.call(lambda: 7) == 7
    assert a.state is (CLOSED if control == "reset" else CircuitState.FORCED_CLOSED)


def test_a_shared_close_is_learned_within_a_second(redis_url: str) -> None:
    clock = FakeClock()
    rules = config(failure_threshold_count=1)
    a = CircuitBreaker(rules, name="svc", store=RedisStore.from_url(redis_url), clock=clock)
    b = CircuitBreaker(rules, name="svc", store=RedisStore.from_url(redis_url))
    b.trip(300.0)
    assert a.state is OPEN  # a knows OPEN for 300 s
    b.trip(0.2)  # a shorter open period, which a has not heard of
    time.sleep(0.3)
    assert b.call(lambda: 1) == 1  # b's trial closes the circuit
    clock.advance(1.0)
    assert a.call(lambda: 2) == 2
    assert a.state is CLOSED


def test_a_process_whose_clock_stepped_back_asks_again(redis_url: str) -> None:
    clock = FakeClock(1000.0)
    rules = config(failure_threshold_count=1, reset_timeout=300.0)
    a = CircuitBreaker(rules, name="svc", store=RedisStore.from_url(redis_url), clock=clock)
    b = CircuitBreaker(rules, name="svc", store=RedisStore.from_url(redis_url))
    fail(a)  # a knows OPEN until 1300 on its clock
    b.reset()
    clock.set(400.0)  # stepped back: what a knows is no guide to when to ask
    assert a.call(lambda: 3) == 3
    assert a.state is CLOSED


def test_a_reading_a_little_older_than_the_last_answer_asks_nothing(
    redis_url: str, redis_server: Any
) -> None:
    # A thread that read the clock, then waited for the lock while another
    # thread's answer came: its reading predates that answer, by a little.
    clock = FakeClock(1000.0)
    a = CircuitBreaker(
        config(failure_threshold_count=1, reset_timeout=300.0),
        name="svc",
        store=RedisStore.from_url(redis_url),
        clock=clock,
    )
    fail(a)
    before = evalsha_calls(redis_server)
    clock.set(999.95)
    with pytest.raises(CircuitOpenError):
        a.call(lambda: None)
    assert evalsha_calls(redis_server) == before
    clock.set(999.5)  # more than a stale reading: the clock went back
    with pytest.raises(CircuitOpenError):
        a.call(lambda: None)
    assert evalsha_calls(redis_server) == before + 1


def test_open_is_asked_about_at_most_once_a_second(redis_url: str, redis_server: Any) -> None:
    clock = FakeClock()
    a = CircuitBreaker(
        config(failure_threshold_count=1, reset_timeout=300.0),
        name="svc",
        store=RedisStore.from_url(redis_url),
        clock=clock,
    )
    fail(a)
    clock.advance(1.0)
    for _ in range(3):
        before = evalsha_calls(redis_server)
        for _ in range(20):
            with pytest.raises(CircuitOpenError) as rejected:
                a.call(lambda: None)
            retry_after = rejected.value.retry_after
            assert retry_after is not None
            assert 290.0 < retry_after <= 300.0  # the open period's end, not the next ask
            clock.advance(0.05)
        assert evalsha_calls(redis_server) - before == 1  # once a second: one round trip
    assert a.state is OPEN


# -- the eviction policy -----------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["volatile-lru", "allkeys-lfu", "volatile-ttl"])
def test_a_policy_that_can_evict_the_keys_is_warned_about_once(
    policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(options=("--maxmemory-policy", policy))
    server.start()
    try:
        store = RedisStore.from_url(server.url)
        try:
            with caplog.at_level(logging.WARNING, logger="circuitry"):
                for name in ("a", "b"):
                    breaker = CircuitBreaker(config(), name=name, store=store)
                    for _ in range(3):
                        breaker.call(lambda: None)
                    breaker.metrics()
        finally:
            store.close()
        warnings = [r for r in caplog.records if "maxmemory-policy" in r.getMessage()]
        assert len(warnings) == 1
        assert policy in warnings[0].getMessage()
    finally:
        server.stop()


@pytest.mark.anyio
async def test_an_evicting_policy_is_warned_about_from_async_code_too(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(options=("--maxmemory-policy", "allkeys-lru"))
    server.start()
    try:
        store = RedisStore.from_url(server.url)  # asyncio: its client; trio: a thread

        async def fine() -> int:
            return 1

        try:
            with caplog.at_level(logging.WARNING, logger="circuitry"):
                breaker = CircuitBreaker(config(), name="svc", store=store)
                for _ in range(3):
                    assert await breaker.call_async(fine) == 1
        finally:
            await store.aclose()
        warnings = [r for r in caplog.records if "maxmemory-policy" in r.getMessage()]
        assert len(warnings) == 1
        assert "allkeys-lru" in warnings[0].getMessage()
    finally:
        server.stop()


def test_noeviction_and_a_refused_config_command_say_nothing(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(options=("--rename-command", "CONFIG", ""))
    server.start()
    try:
        for url in (redis_url, server.url):  # noeviction (the default); CONFIG disabled
            store = RedisStore.from_url(url)
            with caplog.at_level(logging.WARNING, logger="circuitry"):
                breaker = CircuitBreaker(config(), name="svc", store=store)
                for _ in range(3):
                    assert breaker.call(lambda: 5) == 5
            store.close()
        assert caplog.records == []
    finally:
        server.stop()


# -- the manager --------------------------------------------------------------------------


def test_a_manager_with_a_store_gives_each_service_a_shared_circuit(redis_url: str) -> None:
    one = CircuitBreakerManager(
        config(failure_threshold_count=1), store=RedisStore.from_url(redis_url)
    )
    two = CircuitBreakerManager(
        config(failure_threshold_count=1), store=RedisStore.from_url(redis_url)
    )
    with pytest.raises(Boom):
        one.call("search", boom)
    assert two["search"].state is OPEN
    assert two["orders"].state is CLOSED


# -- fork -------------------------------------------------------------------------------------


def test_a_store_used_before_fork_works_in_the_child(redis_url: str) -> None:
    import json
    import warnings

    store = RedisStore.from_url(redis_url)
    breaker = CircuitBreaker(config(failure_threshold_count=2), name="svc", store=store)
    breaker.call(lambda: None)  # connected in the parent
    read, write = os.pipe()
    with warnings.catch_warnings():
        # 3.12+: "This process is multi-threaded, use of fork() may lead to deadlocks".
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: its own connection, the same circuit, its own totals
        report: dict[str, Any] = {"error": "unfinished"}
        try:
            fail(breaker, 2)
            metrics = breaker.metrics()
            report = {
                "state": breaker.state.value,
                "allowed": metrics.total_allowed,
                "successes": metrics.total_successes,
                "failures": metrics.total_failures,
                "state_changes": metrics.state_changes,
            }
        except BaseException as exc:
            report = {"error": repr(exc)}
        finally:
            os.write(write, json.dumps(report).encode())
            os._exit(0)
    os.close(write)
    child = json.loads(os.read(read, 4096))
    os.waitpid(pid, 0)
    # The child counted its own calls only: summed with the parent's, each call once.
    assert child == {
        "state": "open",
        "allowed": 2,
        "successes": 0,
        "failures": 2,
        "state_changes": 1,
    }
    assert breaker.state is OPEN  # the parent sees what the child did
    parent = breaker.metrics()
    assert (parent.total_allowed, parent.total_successes, parent.total_failures) == (1, 1, 0)
    breaker.reset()
    assert breaker.call(lambda: 3) == 3  # and its own connection still works


# -- async ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_breakers_share_a_circuit(redis_url: str, anyio_backend: str) -> None:
    # asyncio: from_url's asyncio client; trio: the sync client in a worker thread.
    stores = [RedisStore.from_url(redis_url), RedisStore.from_url(redis_url)]
    a = CircuitBreaker(config(failure_threshold_count=2), name="svc", store=stores[0])
    b = CircuitBreaker(config(failure_threshold_count=2), name="svc", store=stores[1])
    try:
        await async_breakers_share_a_circuit(a, b)
    finally:
        for store in stores:
            await store.aclose()


async def async_breakers_share_a_circuit(a: CircuitBreaker, b: CircuitBreaker) -> None:

    async def boom() -> None:
        raise Boom

    async def ok() -> int:
        return 1

    assert await a.call_async(ok) == 1
    with pytest.raises(Boom):
        await a.call_async(boom)
    with pytest.raises(Boom):
        async with b:
            raise Boom
    with pytest.raises(CircuitOpenError):
        async with b:
            pass
    # a knew CLOSED: its next call is admitted, and its record tells it of the opening.
    assert await a.call_async(ok) == 1
    with pytest.raises(CircuitOpenError):
        await a.call_async(ok)
    assert a.state is OPEN
    metrics = a.metrics()
    assert (metrics.total_successes, metrics.total_failures) == (2, 1)
    assert metrics.total_rejected == 1


@pytest.mark.anyio
async def test_an_async_trial_takes_two_round_trips_and_closes(
    redis_url: str, redis_server: Any, anyio_backend: str
) -> None:
    store = RedisStore.from_url(redis_url)
    breaker = CircuitBreaker(
        config(failure_threshold_count=1, reset_timeout=0.05), name="svc", store=store
    )
    try:
        with pytest.raises(Boom):
            async with breaker:
                raise Boom
        time.sleep(0.06)
        before = redis_server.commandstats().get("evalsha", 0)
        async with breaker:
            pass
        assert redis_server.commandstats().get("evalsha", 0) - before == 2
        assert breaker.state is CLOSED
    finally:
        await store.aclose()


# -- round trips ------------------------------------------------------------------------------


def evalsha_calls(server: Any) -> int:
    stats = server.commandstats()
    return int(stats.get("evalsha", 0) + stats.get("eval", 0))


def test_what_each_step_costs_in_round_trips(redis_url: str, redis_server: Any) -> None:
    store = RedisStore.from_url(redis_url)
    CircuitBreaker(config(), name="warm-up", store=store).call(lambda: None)  # loads the script
    clock = FakeClock()  # the process's clock: when it asks again while OPEN (REFRESH)
    breaker = CircuitBreaker(
        config(failure_threshold_count=2, reset_timeout=0.1), name="svc", store=store, clock=clock
    )
    before = evalsha_calls(redis_server)
    breaker.call(lambda: None)  # the first call asks first: two
    assert evalsha_calls(redis_server) - before == 2
    before = evalsha_calls(redis_server)
    for _ in range(10):
        breaker.call(lambda: None)  # CLOSED: the record only
    assert evalsha_calls(redis_server) - before == 10
    before = evalsha_calls(redis_server)
    assert breaker.state is CLOSED  # a read: one
    assert evalsha_calls(redis_server) - before == 1
    fail(breaker, 2)  # opens
    before = evalsha_calls(redis_server)
    for _ in range(100):
        with pytest.raises(CircuitOpenError):
            breaker.call(lambda: None)
    assert breaker.state is OPEN
    breaker.metrics()
    assert evalsha_calls(redis_server) - before == 0  # OPEN is known: nothing asked
    time.sleep(0.12)
    clock.advance(0.12)
    before = evalsha_calls(redis_server)
    breaker.call(lambda: None)  # the trial: acquire and record
    assert evalsha_calls(redis_server) - before == 2
    assert breaker.state is CLOSED


def test_a_new_breaker_asks_before_its_first_call(redis_url: str) -> None:
    opener = CircuitBreaker(
        config(failure_threshold_count=1), name="svc", store=RedisStore.from_url(redis_url)
    )
    fail(opener)
    newcomer = CircuitBreaker(
        config(failure_threshold_count=1), name="svc", store=RedisStore.from_url(redis_url)
    )
    ran = []
    with pytest.raises(CircuitOpenError) as caught:
        newcomer.call(lambda: ran.append(1))
    assert ran == []
    assert caught.value.state is OPEN
    assert caught.value.retry_after is not None
    assert 59.0 < caught.value.retry_after <= 60.0


# -- many threads --------------------------------------------------------------------------


def test_threads_of_two_processes_never_run_more_trials_than_allowed(redis_url: str) -> None:
    import threading

    allowed = 2
    cfg = config(
        failure_threshold_count=1,
        reset_timeout=0.02,
        test_request_count=allowed,
        success_threshold_count=10**6,
    )  # stays HALF_OPEN while the trials succeed
    breakers = [
        CircuitBreaker(cfg, name="svc", store=RedisStore.from_url(redis_url)) for _ in range(2)
    ]
    fail(breakers[0])
    time.sleep(0.03)
    lock = threading.Lock()
    running = [0]
    peak = [0]
    admitted = [0]

    def trial() -> None:
        with lock:
            running[0] += 1
            admitted[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.002)
        with lock:
            running[0] -= 1

    stop = time.monotonic() + 1.0

    def worker(breaker: CircuitBreaker) -> None:
        while time.monotonic() < stop:
            with contextlib.suppress(CircuitOpenError):
                breaker.call(trial)

    threads = [threading.Thread(target=worker, args=(breakers[i % 2],)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] <= allowed
    assert admitted[0] > allowed  # slots came back as trials completed
    assert breakers[1].state is HALF_OPEN
    total = sum(b.metrics().total_allowed for b in breakers)
    assert total == admitted[0] + 1  # and the failure that opened it


def test_at_the_deadline_one_request_per_process_asks(redis_url: str, redis_server: Any) -> None:
    import threading

    # A socket timeout of seconds: the due request is held in the paused server
    # while the others arrive, however busy the machine (with from_url's 0.25 s
    # a late start made them arrive after its answer, each then asking HALF_OPEN).
    breaker = CircuitBreaker(
        config(failure_threshold_count=1, reset_timeout=0.3, test_request_count=1),
        name="svc",
        store=RedisStore.from_url(redis_url, socket_timeout=5.0),
    )
    fail(breaker)
    hold, running = threading.Event(), threading.Event()
    outcomes: list[str] = []

    def trial() -> None:
        running.set()
        hold.wait(30)

    def worker() -> None:
        try:
            breaker.call(trial)
            outcomes.append("ran")
        except CircuitOpenError:
            outcomes.append("rejected")

    time.sleep(0.31)
    before = evalsha_calls(redis_server)
    redis_server.pause()
    try:
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(12)]
        for thread in threads:
            thread.start()
        # One request is out (held by the paused server); the other eleven are
        # rejected without one, while it is.
        deadline = time.monotonic() + 30
        while outcomes.count("rejected") < 11:
            assert time.monotonic() < deadline, outcomes
            time.sleep(0.01)
    finally:
        redis_server.resume()
    assert running.wait(30)  # the due request was answered: the trial runs
    asked = evalsha_calls(redis_server) - before
    hold.set()
    for thread in threads:
        thread.join(30)
    assert outcomes.count("ran") == 1
    assert outcomes.count("rejected") == 11
    assert asked == 1  # the due request, and only it


def test_a_client_that_retries_is_warned_about_and_from_url_does_not_retry(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    with caplog.at_level(logging.WARNING, logger="circuitry"):
        RedisStore(redis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 3)))
    assert any("client retries 3 times" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="circuitry"):
        store = RedisStore.from_url(redis_url)
        RedisStore(redis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 0)))
    assert caplog.records == []
    assert store.client.get_retry().get_retries() == 0  # type: ignore[union-attr]
    assert store.client.get_connection_kwargs()["socket_timeout"] == 0.25


def test_a_dropped_trial_permit_holds_its_slot_until_its_lease_runs_out(redis_url: str) -> None:
    import gc

    cfg = config(failure_threshold_count=1, reset_timeout=0.02)
    lease = 3.0  # long enough for the steps below on a busy machine, before it runs out
    holder = CircuitBreaker(cfg, name="svc", store=RedisStore.from_url(redis_url, lease=lease))
    other = CircuitBreaker(cfg, name="svc", store=RedisStore.from_url(redis_url, lease=lease))
    fail(holder)
    time.sleep(0.03)
    taken = time.monotonic()
    permit = holder.try_acquire()
    assert permit is not None
    del permit
    gc.collect()
    holder.metrics()  # the holder counts it as ignored at its next use
    assert holder.metrics().total_ignored == 1
    assert other.try_acquire() is None  # the slot is still out in Redis
    while (permit := other.try_acquire()) is None:
        assert time.monotonic() - taken < lease + 30.0
        time.sleep(0.02)
    assert time.monotonic() - taken >= lease - 0.05  # the lease, not before
    permit.record_success()
    assert other.state is CLOSED


def test_jitter_applies_once_per_opening_and_every_process_sees_that_period(
    redis_url: str,
) -> None:
    cfg = config(failure_threshold_count=1, reset_timeout=100.0, reset_timeout_jitter=0.5)
    periods = set()
    for round_ in range(5):
        name = f"svc-{round_}"
        opener = CircuitBreaker(cfg, name=name, store=RedisStore.from_url(redis_url))
        watcher = CircuitBreaker(cfg, name=name, store=RedisStore.from_url(redis_url))
        fail(opener)
        a, b = opener.metrics().retry_after, watcher.metrics().retry_after
        assert a is not None
        assert b is not None
        assert abs(a - b) < 0.5  # one period, the opener's jitter
        assert 50.0 - 1 <= b <= 150.0
        periods.add(round(b))
    assert len(periods) > 1  # jittered: not the same period every opening


def test_replies_out_of_order_tell_listeners_once_and_alert_once() -> None:
    # Two threads' replies: the newer (a look that learned the opening) takes
    # the lock before the older (the record that made it). No server needed:
    # the replies are handed to the core as the store would.
    from circuitry._redis_wire import parse_reply
    from circuitry._shared import Reply

    alerts: list[Alert] = []
    seen: list[Event] = []
    store = RedisStore(redis.Redis(port=1, retry=None))
    breaker = CircuitBreaker(config(alert_handler=alerts.append), name="svc", store=store)
    breaker.subscribe(seen.append, StateChanged)
    core = breaker._core

    def reply(state: str, generation: int, moves: str = "") -> Reply:
        left = "5.0" if state == "open" else ""
        text = f"{state}|{generation}|0.0|{left}|{moves}|1|0|0|0|0|0|0|0|||||0"
        parsed = parse_reply(text)
        assert parsed is not None
        return parsed

    with breaker._lock:
        core._absorb(1.0, reply("closed", 100), core.epoch)  # synced: CLOSED
        record_epoch = core.epoch  # the record is planned now...
        core._absorb(2.0, reply("open", 200), core.epoch)  # ...a look learns OPEN first
        core._absorb(2.0, reply("open", 200, "closed>open"), record_epoch)  # the record's reply
    breaker._deliver()
    assert [(e.old_state, e.new_state) for e in seen] == [(CLOSED, OPEN)]  # type: ignore[union-attr]
    assert [(a.old_state, a.new_state) for a in alerts] == [(CLOSED, OPEN)]
    assert core.state_changes == 1
    assert core.state is OPEN
