"""Redis at cluster scale: a real Redis Cluster and a real Sentinel setup (issue 29).

Each test starts its own servers (tests/redis_server.py: `RedisClusterServers`,
`SentinelServers`) on free loopback ports and kills them at its end, so the
faults it makes (a master SIGKILLed or SIGSTOPped, a failover) stay its own.
The claims: one breaker's keys live on one node (one hash tag), so an outage
of one node affects only the breakers on it; breakers on the other nodes keep
their shared state and emit no StoreUnavailable; a Sentinel-managed store
follows a failover with no error to callers; processes racing on a cluster
get one trial per HALF_OPEN.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import multiprocessing
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio.cluster
import redis.cluster
from helpers import Boom, boom, config
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry
from redis_server import RedisClusterServers, RedisServer, SentinelServers
from test_redis_processes import ANSWERS_WAIT, WAIT, run_workers

from circuitry import CircuitBreaker, CircuitOpenError, CircuitState
from circuitry.events import Event, StoreRecovered, StoreUnavailable
from circuitry.redis import MASTER_CHECK, RedisStore

NAMESPACE = "scale"
CTX = multiprocessing.get_context("forkserver")
CTX.set_forkserver_preload(["circuitry.redis", __name__])

# A socket timeout well past what a busy machine takes to answer: a healthy
# node never times out, so an outage seen here is the one the test made.
TIMEOUT = 1.0
RULES = config(failure_threshold_count=3, reset_timeout=600.0)


def ok() -> str:
    return "ok"


def slot_of(store: RedisStore, name: str) -> int:
    return key_slot(store.keys(name)[0].encode())


def spread(store: RedisStore, cluster: RedisClusterServers, per_node: int) -> dict[int, list[str]]:
    """Breaker names, `per_node` on each master: master's port -> names."""
    masters = {node.port for node in cluster.nodes[: len(cluster.nodes) // (1 + cluster.replicas)]}
    names: dict[int, list[str]] = {port: [] for port in masters}
    for i in range(1000):
        name = f"svc-{i}"
        port = cluster.master_of(slot_of(store, name)).port
        if len(names.setdefault(port, [])) < per_node:
            names[port].append(name)
        if all(len(found) == per_node for found in names.values()):
            return names
    raise AssertionError(names)


class Recorder:
    """The store events of breakers."""

    def __init__(self, *breakers: CircuitBreaker) -> None:
        self.events: list[Event] = []
        self.add(*breakers)

    def add(self, *breakers: CircuitBreaker) -> None:
        for breaker in breakers:
            breaker.subscribe(self.events.append, StoreUnavailable, StoreRecovered)

    def kinds(self) -> list[str]:
        return [type(event).__name__ for event in self.events]


def wait_until(condition: Any, limit: float, step: float = 0.05) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(step)


@pytest.fixture
def cluster() -> Iterator[RedisClusterServers]:
    """Three masters of this test's own, no replicas."""
    servers = RedisClusterServers(masters=3)
    servers.start()
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def replicated() -> Iterator[RedisClusterServers]:
    """Three masters of this test's own, each with a replica (for failovers)."""
    servers = RedisClusterServers(masters=3, replicas=1)
    servers.start()
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def sentinel() -> Iterator[SentinelServers]:
    """A master, a replica and a Sentinel of this test's own."""
    servers = SentinelServers(replicas=1, sentinels=1)
    servers.start()
    try:
        yield servers
    finally:
        servers.stop()


def cluster_store(stores: list[RedisStore], cluster: RedisClusterServers) -> RedisStore:
    store = RedisStore.from_url(
        cluster.url, cluster=True, namespace=NAMESPACE, socket_timeout=TIMEOUT
    )
    stores.append(store)
    return store


# -- the cluster, healthy ---------------------------------------------------------------------


def test_breakers_spread_over_the_masters_are_shared_sync_and_asyncio(
    cluster: RedisClusterServers, stores: list[RedisStore]
) -> None:
    first, second = cluster_store(stores, cluster), cluster_store(stores, cluster)
    assert isinstance(first.client, redis.cluster.RedisCluster)
    assert isinstance(first.async_client, redis.asyncio.cluster.RedisCluster)
    names = [name for found in spread(first, cluster, 2).values() for name in found]
    recorder = Recorder()
    for name in names:  # one process trips each, the other learns of it at its next round trip
        mine, theirs = (CircuitBreaker(RULES, name=name, store=s) for s in (first, second))
        recorder.add(mine, theirs)
        assert theirs.call(ok) == "ok"
        for _ in range(3):
            with pytest.raises(Boom):
                mine.call(boom)
        assert theirs.call(ok) == "ok"  # admitted on the CLOSED it knew; its record learns
        with pytest.raises(CircuitOpenError):
            theirs.call(ok)
        assert second.snapshot(name)["state"] == "open"
    assert recorder.events == []
    # Every key of a breaker is on its master, under one hash tag (no CROSSSLOT ever).
    for name in names:
        slots = {key_slot(key.encode()) for key in first.keys(name)}
        assert len(slots) == 1

    async def on_asyncio() -> None:
        store = RedisStore.from_url(cluster.url, cluster=True, namespace=NAMESPACE)
        try:
            for name in names:
                breaker = CircuitBreaker(RULES, name=name, store=store)
                with pytest.raises(CircuitOpenError):
                    await breaker.call_async(asyncio.sleep, 0)
            fresh = CircuitBreaker(RULES, name="async-fresh", store=store)
            for _ in range(3):
                with pytest.raises(Boom):
                    async with fresh:
                        raise Boom
            assert store._async_here() is store.async_client  # the asyncio client ran
        finally:
            await store.aclose()

    asyncio.run(on_asyncio())
    assert first.snapshot("async-fresh")["state"] == "open"


def test_a_cluster_client_that_retries_is_warned_about(
    cluster: RedisClusterServers, caplog: pytest.LogCaptureFixture
) -> None:
    # redis-py 8's RedisCluster has no get_retry(): its retries are its `retry`.
    retrying = redis.cluster.RedisCluster.from_url(cluster.url)
    quiet = redis.cluster.RedisCluster.from_url(cluster.url, retry=Retry(NoBackoff(), 0))
    try:
        with caplog.at_level(logging.WARNING, logger="circuitry"):
            RedisStore(retrying)
        assert "client retries 10 times" in caplog.text
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="circuitry"):
            RedisStore(quiet, async_client=redis.asyncio.cluster.RedisCluster.from_url(cluster.url))
        assert "async_client retries 10 times" in caplog.text
        assert "RedisStore: client retries" not in caplog.text
        with pytest.raises(TypeError, match="both be Redis Cluster clients or neither"):
            RedisStore(quiet, async_client=redis.asyncio.Redis())
        with pytest.raises(TypeError, match="cluster must be a bool, got 'yes'"):
            RedisStore.from_url(cluster.url, cluster="yes")  # type: ignore[arg-type]
    finally:
        retrying.close()
        quiet.close()


def test_each_nodes_eviction_policy_is_read_and_warned_about_once(
    cluster: RedisClusterServers, stores: list[RedisStore], caplog: pytest.LogCaptureFixture
) -> None:
    # One master may evict; the store reads each node's policy at the first
    # request it sends there, not only the first node's.
    store = cluster_store(stores, cluster)
    names = spread(store, cluster, 1)
    evicting = sorted(names)[1]
    with RedisServer.client(cluster.master_of(slot_of(store, names[evicting][0]))) as node:
        node.config_set("maxmemory-policy", "allkeys-lru")
    with caplog.at_level(logging.WARNING, logger="circuitry"):
        for _ in range(2):
            for port in sorted(names):  # the evicting node's breaker neither first nor last
                assert CircuitBreaker(RULES, name=names[port][0], store=store).call(ok) == "ok"
    warnings = [r.getMessage() for r in caplog.records if "maxmemory-policy" in r.getMessage()]
    assert len(warnings) == 1
    assert f"node 127.0.0.1:{evicting} has maxmemory-policy allkeys-lru" in warnings[0]


# -- one node down: only its breakers fall back -----------------------------------------------


def test_a_hung_master_affects_only_the_breakers_on_it(
    cluster: RedisClusterServers, stores: list[RedisStore]
) -> None:
    first, second = cluster_store(stores, cluster), cluster_store(stores, cluster)
    by_node = spread(first, cluster, 2)
    hung_port, *healthy_ports = sorted(by_node)
    hung = next(node for node in cluster.nodes if node.port == hung_port)
    names = {name: port for port, found in by_node.items() for name in found}
    mine = {name: CircuitBreaker(RULES, name=name, store=first) for name in names}
    theirs = {name: CircuitBreaker(RULES, name=name, store=second) for name in names}
    on_hung = Recorder(*(mine[n] for n in by_node[hung_port]))
    elsewhere = Recorder(
        *(b[n] for b in (mine, theirs) for port in healthy_ports for n in by_node[port])
    )
    for name in names:
        assert mine[name].call(ok) == theirs[name].call(ok) == "ok"
    assert on_hung.events == elsewhere.events == []

    hung.pause()
    try:
        until = time.monotonic() + 3.0  # past the cluster's node timeout (1 s): it is failed
        calls = 0
        while time.monotonic() < until:
            for name in names:
                assert mine[name].call(ok) == "ok"  # never an error, for any breaker
                calls += 1
        # The other masters' breakers kept their shared state: a trip in one
        # process reaches the other.
        tripped = by_node[healthy_ports[0]][0]
        for _ in range(3):
            with pytest.raises(Boom):
                mine[tripped].call(boom)
        theirs[tripped].call(ok)  # the record that learns of it
        with pytest.raises(CircuitOpenError):
            theirs[tripped].call(ok)
        assert elsewhere.events == []
        # The hung master's breakers fell back, once each.
        assert sorted(on_hung.kinds()) == ["StoreUnavailable"] * 2
        assert calls > 30
    finally:
        hung.resume()
    wait_until(
        lambda: (
            [mine[n].call(ok) for n in by_node[hung_port]]
            and on_hung.kinds().count("StoreRecovered") == 2
        ),
        limit=30.0,
    )
    assert elsewhere.events == []


def test_a_killed_master_is_followed_to_its_promoted_replica(
    replicated: RedisClusterServers, stores: list[RedisStore]
) -> None:
    first = cluster_store(stores, replicated)
    by_node = spread(first, replicated, 2)
    killed_port, *healthy_ports = sorted(by_node)
    killed = next(node for node in replicated.nodes if node.port == killed_port)
    doomed, alive = by_node[killed_port]
    breakers = {n: CircuitBreaker(RULES, name=n, store=first) for f in by_node.values() for n in f}
    on_killed = Recorder(breakers[alive])
    elsewhere = Recorder(*(breakers[n] for port in healthy_ports for n in by_node[port]))
    for _ in range(3):  # OPEN on the master that dies; its replica has it
        with pytest.raises(Boom):
            breakers[doomed].call(boom)
    wait_until(lambda: replica_has(replicated, killed, first.keys(doomed)[0]), limit=10.0)

    on_doomed = Recorder(breakers[doomed])

    killed.kill()
    started = time.monotonic()
    # Until both breakers on the killed master answer from its replica again:
    # the OPEN one too, which asks the store again (REFRESH) while it rejects.
    while "StoreRecovered" not in on_killed.kinds() or on_doomed.kinds()[-1:] == [
        "StoreUnavailable"
    ]:
        assert time.monotonic() < started + 30.0, (on_killed.kinds(), on_doomed.kinds())
        for name, breaker in breakers.items():
            try:
                assert breaker.call(ok) == "ok"
            except CircuitOpenError:
                assert name == doomed
        time.sleep(0.01)
    assert on_killed.kinds() == ["StoreUnavailable", "StoreRecovered"]
    assert on_doomed.kinds() in ([], ["StoreUnavailable", "StoreRecovered"])
    assert elsewhere.events == []
    assert replicated.master_of(slot_of(first, doomed)).port != killed_port
    # The new master's state is the circuit's: still OPEN, as replicated, for
    # another process too.
    assert first.snapshot(doomed)["state"] == "open"
    # (a node that is up to start from: redis-py reads the slots when it builds the client)
    other_store = RedisStore.from_url(
        f"redis://127.0.0.1:{healthy_ports[0]}", cluster=True, namespace=NAMESPACE
    )
    stores.append(other_store)
    other = CircuitBreaker(RULES, name=doomed, store=other_store)
    with pytest.raises(CircuitOpenError) as rejected:
        other.call(ok)
    assert rejected.value.state is CircuitState.OPEN


def replica_has(cluster: RedisClusterServers, master: RedisServer, key: str) -> bool:
    """Whether `master`'s replica has `key` (read on the replica: READONLY)."""
    for node in cluster.nodes:
        if node is master or node.process is None:
            continue
        with node.client(single_connection_client=True) as client:
            role = client.execute_command("ROLE")
            if role[0] != b"slave" or int(role[2]) != master.port:
                continue
            client.execute_command("READONLY")
            return bool(client.exists(key))
    return False


# -- many processes on the cluster: one trial per HALF_OPEN -----------------------------------

RACE = config(
    failure_threshold_count=1, reset_timeout=600.0, test_request_count=1, success_threshold_count=1
)
ROUNDS = 3


def race_on_cluster(url: str, names: list[str], sync: Any) -> dict[str, list[int]]:
    """A worker: in each round, one call per breaker; its trial (if admitted) fails."""
    store = RedisStore.from_url(url, cluster=True, namespace=NAMESPACE, socket_timeout=TIMEOUT)
    breakers = [CircuitBreaker(RACE, name=name, store=store) for name in names]
    admitted = {name: [0] * ROUNDS for name in names}
    events: list[Event] = []
    for breaker in breakers:
        breaker.subscribe(events.append, StoreUnavailable)
    try:
        for round_ in range(ROUNDS):
            sync.wait(WAIT)  # the parent tripped them all and waited for HALF_OPEN
            for breaker in breakers:
                try:
                    with breaker:
                        admitted[breaker.name][round_] += 1
                        raise Boom  # the trial fails: OPEN again, for 600 s
                except (Boom, CircuitOpenError):
                    pass
            sync.wait(WAIT)  # all tried
        assert events == []
        return admitted
    finally:
        store.close()


@pytest.mark.timeout(3 * WAIT + ANSWERS_WAIT + 60)
def test_processes_on_a_cluster_get_one_trial_per_half_open(
    cluster: RedisClusterServers, stores: list[RedisStore]
) -> None:
    store = cluster_store(stores, cluster)
    names = [name for found in spread(store, cluster, 2).values() for name in found]
    parents = [CircuitBreaker(RACE, name=name, store=store) for name in names]
    workers = 6
    sync = CTX.Barrier(workers + 1)
    results: list[Any] = []
    runner = threading.Thread(
        target=lambda: results.extend(
            run_workers(race_on_cluster, [(cluster.url, names, sync)] * workers, context=CTX)
        ),
        daemon=True,
    )
    runner.start()
    try:
        for _ in range(ROUNDS):
            for parent in parents:
                parent.trip(1.2)  # past REFRESH: every worker asks again when it is due
            time.sleep(1.3)
            assert {store.snapshot(name)["state"] for name in names} == {"open"}
            sync.wait(WAIT)  # race
            sync.wait(WAIT)  # done
    except BaseException:
        sync.abort()
        raise
    finally:
        runner.join(ANSWERS_WAIT)
    assert len(results) == workers
    for name in names:
        per_round = [sum(result[name][r] for result in results) for r in range(ROUNDS)]
        assert per_round == [1] * ROUNDS, (name, per_round)
    assert {store.snapshot(name)["state"] for name in names} == {"open"}


# -- Sentinel: failovers ---------------------------------------------------------------------


def sentinel_store(stores: list[RedisStore], sentinel: SentinelServers) -> RedisStore:
    store = RedisStore.from_sentinel(
        sentinel.sentinels, sentinel.service, namespace=NAMESPACE, socket_timeout=TIMEOUT
    )
    stores.append(store)
    return store


@pytest.mark.parametrize("how", ["sentinel-failover", "master-killed"])
def test_a_sentinel_store_follows_a_failover_with_no_error_to_callers(
    sentinel: SentinelServers, stores: list[RedisStore], how: str
) -> None:
    store = sentinel_store(stores, sentinel)
    tripped = CircuitBreaker(RULES, name="tripped", store=store)
    live = CircuitBreaker(RULES, name="live", store=store)
    recorder = Recorder(live)
    for _ in range(3):
        with pytest.raises(Boom):
            tripped.call(boom)
    old_port = sentinel.master_port()
    assert old_port == sentinel.master.port
    replica = sentinel.replicas[0]
    with replica.client() as on_replica:
        wait_until(lambda: on_replica.exists(store.keys("tripped")[0]) == 1, limit=10.0)

    stop = threading.Event()
    surprises: list[BaseException] = []
    latencies: list[float] = []

    def keep_calling() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                live.call(ok)
            except BaseException as exc:  # no error may reach a caller
                surprises.append(exc)
            latencies.append(time.monotonic() - started)
            time.sleep(0.005)

    caller = threading.Thread(target=keep_calling, daemon=True)
    caller.start()
    try:
        time.sleep(0.2)
        if how == "sentinel-failover":
            sentinel.failover()
        else:
            sentinel.master.kill()
        wait_until(lambda: sentinel.master_port() == replica.port, limit=30.0, step=0.1)
        named = time.monotonic()
        # The store follows: the live breaker answers from the new master.
        before = replica.commandstats().get("evalsha", 0)
        wait_until(lambda: replica.commandstats().get("evalsha", 0) > before, limit=40.0)
        # Even from an old master that stays up (SENTINEL FAILOVER leaves it a
        # master for seconds, ~10 here): the store asks the Sentinels every
        # MASTER_CHECK (1 s) and moves at once, its writes no longer lost there.
        assert time.monotonic() - named < MASTER_CHECK + 5.0
    finally:
        stop.set()
        caller.join(10.0)
    assert surprises == []
    assert recorder.kinds() in ([], ["StoreUnavailable", "StoreRecovered"])
    # At most one socket timeout a call, and only while the old master fails.
    assert max(latencies) < TIMEOUT + 2.0
    # The state is the new master's: OPEN, as replicated.
    with pytest.raises(CircuitOpenError) as rejected:
        tripped.call(ok)
    assert rejected.value.state is CircuitState.OPEN
    assert store.snapshot("tripped")["state"] == "open"


def test_a_promoted_masters_eviction_policy_is_read_after_a_failover(
    sentinel: SentinelServers, stores: list[RedisStore], caplog: pytest.LogCaptureFixture
) -> None:
    store = sentinel_store(stores, sentinel)
    breaker = CircuitBreaker(RULES, name="svc", store=store)

    def evicting() -> list[str]:
        return [r.getMessage() for r in caplog.records if "maxmemory-policy" in r.getMessage()]

    with caplog.at_level(logging.WARNING, logger="circuitry"):
        assert breaker.call(ok) == "ok"  # the master's policy: noeviction, nothing said
        assert evicting() == []
        replica = sentinel.replicas[0]
        with replica.client() as on_replica:
            on_replica.config_set("maxmemory-policy", "volatile-lru")
        sentinel.failover()
        wait_until(lambda: sentinel.master_port() == replica.port, limit=30.0, step=0.1)

        def warned() -> bool:
            breaker.call(ok)
            return bool(evicting())

        wait_until(warned, limit=MASTER_CHECK + 20.0, step=0.1)
    assert len(evicting()) == 1
    assert "Redis has maxmemory-policy volatile-lru" in evicting()[0]


def test_a_sentinel_store_on_asyncio_follows_a_failover(
    sentinel: SentinelServers, stores: list[RedisStore]
) -> None:
    async def scenario() -> None:
        store = RedisStore.from_sentinel(
            sentinel.sentinels, sentinel.service, namespace=NAMESPACE, socket_timeout=TIMEOUT
        )
        try:
            live = CircuitBreaker(RULES, name="live-async", store=store)
            recorder = Recorder(live)
            assert await live.call_async(asyncio.sleep, 0, "ok") == "ok"
            sentinel.master.kill()
            deadline = time.monotonic() + 40.0
            replica = sentinel.replicas[0]
            while replica.commandstats().get("evalsha", 0) == 0:
                assert time.monotonic() < deadline
                assert await live.call_async(asyncio.sleep, 0, "ok") == "ok"
                await asyncio.sleep(0.02)
            assert store._async_here() is store.async_client  # the asyncio client ran
            assert recorder.kinds() in ([], ["StoreUnavailable", "StoreRecovered"])
        finally:
            await store.aclose()

    asyncio.run(scenario())


def test_from_sentinel_names_its_bad_arguments() -> None:
    with pytest.raises(TypeError, match=r"sentinels must be a non-empty list of \(host, port\)"):
        RedisStore.from_sentinel("127.0.0.1:26379", "mymaster")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sentinels must be"):
        RedisStore.from_sentinel([], "mymaster")
    with pytest.raises(TypeError, match="service_name must be a non-empty str, got ''"):
        RedisStore.from_sentinel([("127.0.0.1", 26379)], "")


# -- the how-to's blocks ---------------------------------------------------------------------

HOW_TO = Path(__file__).resolve().parent.parent / "docs" / "how-to" / "many-processes.md"


def section_blocks(title: str) -> list[str]:
    """The Python blocks of the how-to's section `title` (up to the next `## `)."""
    text = HOW_TO.read_text(encoding="utf-8")
    section = text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def run_blocks(blocks: list[str], replacements: dict[str, str]) -> None:
    """Run `blocks` in one namespace; each `print(...)  # value` must print that value."""
    namespace: dict[str, Any] = {"__name__": "how_to"}
    expected: list[str] = []
    output = io.StringIO()
    try:
        for number, source in enumerate(blocks, 1):
            for placeholder, real in replacements.items():
                source = source.replace(placeholder, real)
            expected += re.findall(r"^print\(.*\)  # (.*)$", source, re.MULTILINE)
            with contextlib.redirect_stdout(output):
                exec(compile(source, f"how-to block {number}", "exec"), namespace)
    finally:
        for value in namespace.values():
            if isinstance(value, RedisStore):
                value.close()
    assert output.getvalue().splitlines() == expected
    assert expected


def test_the_how_to_cluster_and_sentinel_blocks_run(
    cluster: RedisClusterServers, sentinel: SentinelServers
) -> None:
    one, two = (node.port for node in cluster.nodes[:2])
    run_blocks(
        section_blocks("Redis Cluster"),
        {
            "redis-node-1.internal:7000": f"127.0.0.1:{one}",
            '"redis-node-1.internal", 7000': f'"127.0.0.1", {one}',
            '"redis-node-2.internal", 7001': f'"127.0.0.1", {two}',
        },
    )
    (port,) = sentinel.sentinel_ports
    run_blocks(
        section_blocks("Redis Sentinel"),
        {
            '[("sentinel-1.internal", 26379), ("sentinel-2.internal", 26379)]': (
                f'[("127.0.0.1", {port})]'
            ),
            '"shop-redis"': repr(sentinel.service),
        },
    )
