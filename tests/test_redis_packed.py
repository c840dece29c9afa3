"""RedisStore's own path to a plain client's connections: redis-py's answers and failures.

On a `redis.Redis` (and a `redis.asyncio.Redis`) with no retries, the store
sends its EVALSHA pre-packed on a connection of the client's pool rather
than through `execute_command` (see `circuitry._redis_packed.run_packed`). These tests
hold it to what redis-py's path does: the same state in Redis for the same
calls, a client of any other kind (a subclass, one that retries, a
single-connection one) still on redis-py's path, a connection that failed
never pooled as it was (the next request connects afresh), the asyncio
client alike, and a forked child on its own connections. The fault tests
(test_redis_faults.py: killed, hung, restarted, scripts flushed, replies
lost) run on this path too, unchanged.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.asyncio
from helpers import Boom, boom, config, script_calls
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis_server import RedisServer

from circuitry import CircuitBreaker, CircuitState
from circuitry.events import Event, StoreRecovered, StoreUnavailable
from circuitry.redis import BACKOFF_START, RedisStore

NAMESPACE = "packed"


def ok() -> str:
    return "ok"


async def ok_async() -> str:
    return "ok"


class Spied:
    """The commands a client sends through redis-py's `execute_command` (an instance attribute)."""

    def __init__(self, client: Any) -> None:
        self.names: list[str] = []
        real = client.execute_command

        def spy(*args: Any, **options: Any) -> Any:
            self.names.append(str(args[0]))
            return real(*args, **options)

        async def spy_async(*args: Any, **options: Any) -> Any:
            self.names.append(str(args[0]))
            return await real(*args, **options)

        is_async = asyncio.iscoroutinefunction(real)
        client.execute_command = spy_async if is_async else spy

    def scripts(self) -> int:
        return sum(name in ("EVALSHA", "EVAL") for name in self.names)


class Subclassed(redis.Redis):
    """A user's own client class: it may have hooks of its own, so redis-py's path serves it."""


@pytest.fixture
def server(own_redis: RedisServer) -> RedisServer:
    """A redis-server of this test's own, to pause and restart (conftest's `own_redis`)."""
    return own_redis


def calls_of(breaker: CircuitBreaker) -> None:
    """Six calls, two of them failures."""
    for i in range(6):
        if i % 3 == 2:
            with pytest.raises(Boom):
                breaker.call(boom)
        else:
            assert breaker.call(ok) == "ok"


def counts(store: RedisStore, name: str) -> tuple[Any, ...]:
    snapshot = store.snapshot(name)
    return (
        snapshot["state"],
        snapshot["window_calls"],
        snapshot["window_failures"],
    )


# Timeouts long enough for a busy machine where no test times out on purpose.
LONG = 5.0
# Where one does: a request to a paused server times out after this.
SHORT = 1.0
# A window, so that the snapshots count every call.
RULES = config(failure_window=60.0, failure_threshold_count=5)


def plain_store(server: RedisServer, stores: list[RedisStore], timeout: float) -> RedisStore:
    store = RedisStore.from_url(server.url, namespace=NAMESPACE, socket_timeout=timeout)
    stores.append(store)
    return store


def retrying(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=LONG, retry=Retry(NoBackoff(), 2))


def subclassed(url: str) -> redis.Redis:
    return Subclassed.from_url(url, socket_timeout=LONG, retry=Retry(NoBackoff(), 0))


def single_connection(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=LONG, retry=Retry(NoBackoff(), 0), single_connection_client=True
    )


def load_script(server: RedisServer) -> None:
    """The script loaded (a first call of a breaker), so that every request is an EVALSHA."""
    store = RedisStore.from_url(server.url, namespace="warm-up", socket_timeout=LONG)
    try:
        CircuitBreaker(RULES, name="warm-up", store=store).call(ok)
    finally:
        store.close()


def warmed_up(breaker: CircuitBreaker, store: RedisStore, events: list[Event]) -> None:
    """Calls until the store answers with no outage (a busy machine can outlast a timeout)."""
    for _ in range(50):
        breaker.call(ok)
        breaker.call(ok)
        if store.usable() and not events:
            return
        events.clear()
        time.sleep(BACKOFF_START + 0.1)
    pytest.fail("the store never answered in time")


def test_a_plain_client_sends_the_script_itself_with_redis_pys_outcome(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    load_script(server)
    packed = plain_store(server, stores, LONG)
    usual = RedisStore(subclassed(server.url), namespace=NAMESPACE)
    stores.append(usual)
    spied, spied_usual = Spied(packed.client), Spied(usual.client)
    before = script_calls(server)
    calls_of(CircuitBreaker(RULES, name="usual", store=usual))
    sent = script_calls(server) - before
    assert spied_usual.scripts() == sent > 6
    calls_of(CircuitBreaker(RULES, name="packed", store=packed))
    # As many scripts run for the same calls, none of them through execute_command.
    assert script_calls(server) - before == 2 * sent
    assert spied.scripts() == 0
    assert counts(packed, "packed") == counts(usual, "usual") == ("closed", 6, 2)


_OBSERVED = """
import sys
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from redis.observability.config import MetricGroup, OTelConfig
from redis.observability.providers import get_observability_instance
from circuitry import CircuitBreaker, CircuitBreakerConfig
from circuitry.redis import RedisStore

reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
get_observability_instance().init(OTelConfig(metric_groups=[MetricGroup.COMMAND]))
breaker = CircuitBreaker(
    CircuitBreakerConfig(), name="svc", store=RedisStore.from_url(sys.argv[1], namespace="otel")
)
for _ in range(5):
    breaker.call(lambda: 1)
seen = 0
for resource in reader.get_metrics_data().resource_metrics:
    for scope in resource.scope_metrics:
        for metric in scope.metrics:
            if metric.name == "db.client.operation.duration":
                for point in metric.data.data_points:
                    if point.attributes.get("db.operation.name") == "EVALSHA":
                        seen += point.count
print(seen)
"""


def test_redis_pys_own_metrics_see_every_command_while_they_are_on(server: RedisServer) -> None:
    # redis-py's OpenTelemetry metrics (global, hence a process of its own)
    # record what goes through execute_command: while they are on, the store
    # takes that path, so its EVALSHAs are in them (one per call at least).
    pytest.importorskip("redis.observability", reason="redis-py 8's own metrics")
    done = subprocess.run(
        [sys.executable, "-c", _OBSERVED, server.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert int(done.stdout) >= 5, done.stdout


@pytest.mark.parametrize("make_client", [subclassed, retrying, single_connection])
def test_any_other_client_keeps_redis_pys_path(
    server: RedisServer, stores: list[RedisStore], make_client: Callable[[str], redis.Redis]
) -> None:
    load_script(server)
    store = RedisStore(make_client(server.url), namespace=NAMESPACE)
    stores.append(store)
    spied = Spied(store.client)
    before = script_calls(server)
    calls_of(CircuitBreaker(RULES, name="svc", store=store))
    assert spied.scripts() == script_calls(server) - before > 6
    assert counts(store, "svc") == ("closed", 6, 2)


def test_a_connection_that_timed_out_is_not_pooled_and_the_next_request_connects_afresh(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    store = plain_store(server, stores, SHORT)
    breaker = CircuitBreaker(RULES, name="svc", store=store)
    events: list[Event] = []
    breaker.subscribe(events.append, StoreUnavailable, StoreRecovered)
    pool = store.client.connection_pool
    warmed_up(breaker, store, events)
    before = counts(store, "svc")[1]
    server.pause()  # the next record is sent, and its reply comes only after the timeout
    assert breaker.call(ok) == "ok"  # the store failed, not the call
    assert [type(event) for event in events] == [StoreUnavailable]
    # Not pooled as it was: the late reply cannot be read as a later request's.
    assert all(getattr(c, "_sock", None) is None for c in pool._available_connections)
    server.resume()  # it answers the request it holds, on a socket closed since
    time.sleep(BACKOFF_START + 0.3)
    assert breaker.call(ok) == "ok"  # the store's probe: a new connection, its own reply
    assert [type(event) for event in events] == [StoreUnavailable, StoreRecovered]
    assert breaker.state is CircuitState.CLOSED
    for _ in range(3):
        breaker.call(ok)
    with pytest.raises(Boom):
        breaker.call(boom)
    # The paused request ran when the server resumed (a reply lost, not a request).
    assert counts(store, "svc") == ("closed", before + 6, 1)


def test_a_restarted_server_is_reconnected_to_and_given_the_script(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    store = plain_store(server, stores, LONG)  # (a restart refuses at once)
    breaker = CircuitBreaker(RULES, name="svc", store=store)
    events: list[Event] = []
    breaker.subscribe(events.append, StoreUnavailable, StoreRecovered)
    warmed_up(breaker, store, events)
    server.restart()  # empty, no scripts: the pooled connection is closed
    # The pool finds its connection closed and connects again (as for redis-py's own
    # commands); the script is missing (NOSCRIPT), and sent whole (EVAL).
    assert breaker.call(ok) == "ok"
    assert events == []
    assert server.commandstats().get("eval") == 1
    breaker.call(ok)
    breaker.call(ok)
    state, calls, _ = counts(store, "svc")
    # The state since the restart (the first call there met a state it did not know).
    assert state == "closed"
    assert 2 <= calls <= 3
    assert events == []


def test_asyncio_sends_the_script_itself_and_fails_as_redis_py(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    load_script(server)
    store = plain_store(server, stores, SHORT)
    assert store.async_client is not None
    spied = Spied(store.async_client)
    breaker = CircuitBreaker(RULES, name="svc", store=store)
    events: list[Event] = []
    breaker.subscribe(events.append, StoreUnavailable, StoreRecovered)

    async def main() -> tuple[int, list[bool]]:
        pool = store.async_client.connection_pool  # type: ignore[union-attr]
        for _ in range(50):  # until the store answers with no outage (a busy machine)
            for _ in range(3):
                assert await breaker.call_async(ok_async) == "ok"
            if store.usable() and not events:
                break
            events.clear()
            await asyncio.sleep(BACKOFF_START + 0.1)
        before = counts(store, "svc")[1]
        server.pause()
        try:
            assert await breaker.call_async(ok_async) == "ok"
            # No connection pooled that could read the late reply.
            pooled = [c.is_connected for c in pool._available_connections]
        finally:
            server.resume()
        await asyncio.sleep(BACKOFF_START + 0.3)
        for _ in range(2):
            assert await breaker.call_async(ok_async) == "ok"
        with pytest.raises(Boom):
            await breaker.call_async(boom_async)
        await store.aclose()
        return before, pooled

    async def boom_async() -> None:
        raise Boom("down")

    before, pooled = asyncio.run(main())
    assert not any(pooled)
    assert spied.scripts() == 0
    assert [type(event) for event in events] == [StoreUnavailable, StoreRecovered]
    assert counts(store, "svc") == ("closed", before + 4, 1)


def test_a_forked_child_uses_connections_of_its_own(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    store = plain_store(server, stores, LONG)
    breaker = CircuitBreaker(RULES, name="svc", store=store)
    breaker.call(ok)  # a connection in the pool, inherited
    pool = store.client.connection_pool
    parents = {c._sock.getsockname()[1] for c in pool._available_connections if c._sock}
    assert parents
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer on the pipe, then leave without pytest's cleanup
        try:
            for _ in range(3):
                breaker.call(ok)
            ports = [c._sock.getsockname()[1] for c in pool._available_connections if c._sock]
            answer: Any = {"ports": ports, "state": breaker.state.value}
        except BaseException as exc:
            answer = {"error": repr(exc)}
        os.write(write, json.dumps(answer).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        answer = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert "error" not in answer, answer
    assert answer["state"] == "closed"
    assert answer["ports"]
    assert not set(answer["ports"]) & parents
    breaker.call(ok)  # the parent's connection is still the parent's, and works
    assert {c._sock.getsockname()[1] for c in pool._available_connections if c._sock} == parents
    assert counts(store, "svc")[:2] == ("closed", 5)  # the child's calls counted too


def test_asyncio_loads_a_flushed_script_again(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    load_script(server)
    store = plain_store(server, stores, LONG)
    breaker = CircuitBreaker(RULES, name="svc", store=store)
    events: list[Event] = []
    breaker.subscribe(events.append, StoreUnavailable, StoreRecovered)

    async def main() -> tuple[int, int]:
        for _ in range(2):
            await breaker.call_async(ok_async)
        with server.client() as client:
            client.script_flush()
        before = server.commandstats().get("eval", 0)
        await breaker.call_async(ok_async)  # EVALSHA: NOSCRIPT, then EVAL through redis-py
        after = server.commandstats().get("eval", 0)
        await breaker.call_async(ok_async)
        await store.aclose()
        return before, after

    before, after = asyncio.run(main())
    assert after - before == 1
    assert events == []
    assert counts(store, "svc") == ("closed", 4, 0)
