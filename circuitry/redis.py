"""One circuit across many processes, its state in Redis (extra `redis`: redis-py).

```python
from circuitry import CircuitBreaker
from circuitry.redis import RedisStore

store = RedisStore.from_url("redis://127.0.0.1:6379/0", namespace="shop")
breaker = CircuitBreaker(config, name="payments", store=store)
```

Breakers with the same namespace and name, in any number of processes, are
one circuit. The rules run in Redis, in one Lua script (`_circuit.lua`, which
mirrors `CircuitCore`), atomically, on Redis' clock (`TIME`); the process
side (`circuitry._shared`) keeps a mirror of the state so that a call while
CLOSED costs one round trip (the record after it) and a rejection while OPEN
costs none. See the "Many processes" how-to (docs/how-to/many-processes.md)
for the failure modes.

Redis Cluster (`from_url(url, cluster=True)`, or a `RedisCluster` client):
each circuit's keys are in one slot, so on one master, and an outage is the
node's (`_redis_nodes.Servers`: a backoff per node, from `BACKOFF_START`
seconds), so only the breakers on a failed node fall back. Redis Sentinel
(`from_sentinel`): the clients ask the Sentinels for the master, and a
thread per process asks again every `MASTER_CHECK` seconds (see there).

Keys: `circuitry:{<namespace>:<name>}:state` (a string: the state),
`...:window` (a hash: the window's buckets, with a window only),
`...:permits` (a sorted set: trial permit -> start, in HALF_OPEN only) and
`...:owed` (a list: the last transitions, by the request that made them, for
a process whose reply was lost to alert) and `...:throttle` (a hash: the
adaptive throttle's buckets of requests and accepts, with one only), one
hash tag per breaker (Redis
Cluster safe), names percent-escaped, each with a TTL renewed at every use.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote

import anyio.to_thread
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.exceptions
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import _fork
from ._config import CircuitBreakerConfig
from ._redis_nodes import BACKOFF_START as BACKOFF_START  # (documented here: see the module doc)
from ._redis_nodes import MASTER_CHECK as MASTER_CHECK  # (and here)
from ._redis_nodes import (
    Outage,
    Servers,
    retries,
    watch_master,
)
from ._redis_packed import observed, packable, run_packed, run_packed_async
from ._redis_wire import SCRIPT, command_for, line_for, packed_for, parse_reply
from ._seconds import seconds
from ._shared import Answer, Mode, Request, SharedCore, StoreError

__all__ = ["RedisStore"]

DEFAULT_TTL = 24 * 3600.0
DEFAULT_LEASE = 30.0

_MODES = {"local": Mode.LOCAL, "allow": Mode.ALLOW, "deny": Mode.DENY}

logger = logging.getLogger("circuitry")

_CLUSTERS = (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster)


class RedisStore:
    """The shared state of circuits, in Redis: pass it as `store=` to breakers and managers.

    Args:
        client: a `redis.Redis` (sync), or a `redis.cluster.RedisCluster`
            (Redis Cluster). Give it a short `socket_timeout` and
            no retries (`retry=Retry(NoBackoff(), 0)`; `from_url` does both):
            a dead or hung Redis then delays a call by one socket timeout,
            once per outage. redis-py's own default retries (10, with backoff,
            in redis-py 8, for a `RedisCluster` too) make that several
            seconds: a warning is logged for a client that retries.
            With a cluster an outage is a node's: only the breakers whose
            keys live on the failed node fall back (`on_unavailable`).
            On a plain `redis.Redis` with no retries (what `from_url`
            makes) the store sends its script call on a connection of the
            client's pool itself, framed once per circuit (`_redis_packed`);
            any other client (a subclass, one that retries, a cluster's)
            goes through redis-py's `execute_command`.
        namespace: circuits of one namespace and name are one circuit.
        async_client: a `redis.asyncio.Redis` (a `redis.asyncio.cluster.RedisCluster`
            with a cluster) for `async with` / `call_async`
            on asyncio, on the event loop it is first used on (its connections
            belong to that loop); without one, on trio and on any other loop
            the sync client runs in a worker thread.
        lease: seconds a trial permit is held at most (a trial whose process
            died or hangs); None: `call_timeout + 5` when the config sets
            `call_timeout`, else `half_open_max_wait` if set, else 30.
        on_unavailable: what a breaker does while Redis fails: `"local"` runs
            the in-process rules from the last known state, `"allow"` admits
            every call, `"deny"` rejects every call.
        ttl: seconds a circuit's keys live after their last use.
        time_source: for tests only: a function the scripts take the time from
            in place of Redis `TIME`.

    Raises:
        TypeError, ValueError: an argument that cannot work, named.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        namespace: str = "circuitry",
        async_client: redis.asyncio.Redis | None = None,
        lease: float | None = None,
        on_unavailable: str = "local",
        ttl: float = DEFAULT_TTL,
        time_source: Callable[[], float] | None = None,
    ) -> None:
        if not hasattr(client, "evalsha"):
            raise TypeError(f"client must be a redis.Redis, got {client!r}")
        if async_client is not None and not hasattr(async_client, "evalsha"):
            raise TypeError(
                f"async_client must be a redis.asyncio.Redis or None, got {async_client!r}"
            )
        if async_client is not None and isinstance(async_client, _CLUSTERS) != isinstance(
            client, _CLUSTERS
        ):
            raise TypeError(
                "client and async_client must both be Redis Cluster clients or neither, "
                f"got {client!r} and {async_client!r}"
            )
        if not isinstance(namespace, str):
            raise TypeError(f"namespace must be a str, got {namespace!r}")
        if lease is not None:
            seconds("lease", lease, above=0.0)
        if on_unavailable not in _MODES:
            raise ValueError(
                f"on_unavailable must be 'local', 'allow' or 'deny', got {on_unavailable!r}"
            )
        seconds("ttl", ttl, above=0.0)
        if time_source is not None and not callable(time_source):
            raise TypeError(f"time_source must be callable or None, got {time_source!r}")
        for field, given in (("client", client), ("async_client", async_client)):
            if retries(given):
                logger.warning(
                    "RedisStore: %s retries %d times: a dead or hung Redis will delay "
                    "calls by that many socket timeouts; pass retry=Retry(NoBackoff(), 0) "
                    "or use RedisStore.from_url",
                    field,
                    retries(given),
                )
        self.client = client
        self.async_client = async_client
        self._async_loop: weakref.ref[asyncio.AbstractEventLoop] | None = None  # see _async_here
        self.namespace = namespace
        self.lease = None if lease is None else float(lease)
        self.on_unavailable = _MODES[on_unavailable]
        self.ttl = float(ttl)
        self._time_source = time_source
        self._prefix = f"circuitry:{{{quote(namespace, safe='')}:"
        self._lock = threading.Lock()
        # The outages, one per server (see _redis_nodes.Servers).
        self._servers = Servers(client, None if isinstance(client, _CLUSTERS) else Outage())
        self._sentinels: tuple[Any, ...] = ()  # from_sentinel's (sync, asyncio) Sentinel
        self._watcher_pid = 0  # the process whose thread watches the master (from_sentinel)
        self._watch_stop = threading.Event()
        self._master_moves = 0  # master changes the watcher saw
        self._async_moves = 0  # ... that the asyncio client's pool has been told of
        self._token = os.urandom(6).hex()
        self._permits = itertools.count()
        # Whether send / send_async take the connection themselves (see _redis_packed).
        self._packed = packable(client, redis.Redis)
        self._packed_async = async_client is not None and packable(
            async_client, redis.asyncio.Redis
        )
        # The config of each name attached in this process, for `snapshot`.
        self._configs: dict[str, CircuitBreakerConfig] = {}
        _fork.register(self)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = "circuitry",
        socket_timeout: float = 0.25,
        lease: float | None = None,
        on_unavailable: str = "local",
        ttl: float = DEFAULT_TTL,
        time_source: Callable[[], float] | None = None,
        cluster: bool = False,
        **client_options: Any,
    ) -> RedisStore:
        """A store on `url`, with clients set for a breaker: short timeouts and no retries.

        redis-py's own defaults retry with backoff, which took 3.7-4.3 s per
        call against a refused port: a breaker must learn of an outage in one
        socket timeout. Both a sync and an asyncio client are made (the
        asyncio one is used only from asyncio). `client_options` go to both.

        `cluster=True`: `url` is one node of a Redis Cluster, and the clients
        are redis-py's `RedisCluster` (sync and asyncio), with no retries.
        The sync one reads the cluster's slots at once, as redis-py builds it:
        with no node reachable this raises `redis.exceptions.RedisClusterException`.
        """
        if not isinstance(cluster, bool):
            raise TypeError(f"cluster must be a bool, got {cluster!r}")
        options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
            "health_check_interval": 0,
            **client_options,
        }
        client: redis.Redis
        async_client: redis.asyncio.Redis
        if cluster:
            client = redis.cluster.RedisCluster.from_url(  # type: ignore[assignment]
                url, retry=Retry(NoBackoff(), 0), **options
            )
            async_client = redis.asyncio.cluster.RedisCluster.from_url(  # type: ignore[assignment]
                url, retry=redis.asyncio.retry.Retry(NoBackoff(), 0), **options
            )
        else:
            client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)
            async_client = redis.asyncio.Redis.from_url(
                url, retry=redis.asyncio.retry.Retry(NoBackoff(), 0), **options
            )
        return cls(
            client,
            namespace=namespace,
            async_client=async_client,
            lease=lease,
            on_unavailable=on_unavailable,
            ttl=ttl,
            time_source=time_source,
        )

    @classmethod
    def from_sentinel(
        cls,
        sentinels: Iterable[tuple[str, int]],
        service_name: str,
        *,
        namespace: str = "circuitry",
        socket_timeout: float = 0.25,
        lease: float | None = None,
        on_unavailable: str = "local",
        ttl: float = DEFAULT_TTL,
        time_source: Callable[[], float] | None = None,
        sentinel_kwargs: Mapping[str, Any] | None = None,
        **client_options: Any,
    ) -> RedisStore:
        """A store on the master that Redis Sentinel names `service_name`, following failovers.

        `sentinels`: the (host, port) of each Sentinel. The clients are
        redis-py's `Sentinel(...).master_for(service_name)` (sync and
        asyncio), with short timeouts and no retries; each new connection
        asks a Sentinel for the master's address. After a failover the
        old master's connections fail (refused, timed out, or READONLY once
        it is demoted): the breakers fall back (`on_unavailable`) as in any
        outage, and the store's next attempt (1 s later, then doubling, at
        most 30 s) connects to the master the Sentinels name then, whose
        state the breakers take. `sentinel_kwargs` go to the connections to
        the Sentinels (default: the socket timeouts); `client_options` to
        the master's.
        """
        listed = list(sentinels) if not isinstance(sentinels, str | bytes) else None
        if not listed or not all(
            isinstance(entry, tuple)
            and len(entry) == 2
            and isinstance(entry[0], str)
            and isinstance(entry[1], int)
            for entry in listed
        ):
            raise TypeError(
                f"sentinels must be a non-empty list of (host, port) pairs, got {sentinels!r}"
            )
        if not isinstance(service_name, str) or not service_name:
            raise TypeError(f"service_name must be a non-empty str, got {service_name!r}")
        options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
            "health_check_interval": 0,
            **client_options,
        }
        to_sentinels = (
            {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_timeout}
            if sentinel_kwargs is None
            else dict(sentinel_kwargs)
        )
        # (Any: some redis-py 8 releases leave Sentinel untyped, others type it)
        sync_kind: Any = redis.sentinel.Sentinel
        async_kind: Any = redis.asyncio.sentinel.Sentinel
        sentinel = sync_kind(listed, sentinel_kwargs=to_sentinels)
        async_sentinel = async_kind(listed, sentinel_kwargs=to_sentinels)
        client = sentinel.master_for(service_name, retry=Retry(NoBackoff(), 0), **options)
        async_client = async_sentinel.master_for(
            service_name, retry=redis.asyncio.retry.Retry(NoBackoff(), 0), **options
        )
        store = cls(
            client,
            namespace=namespace,
            async_client=async_client,
            lease=lease,
            on_unavailable=on_unavailable,
            ttl=ttl,
            time_source=time_source,
        )
        store._sentinels = (sentinel, async_sentinel)
        return store

    def __repr__(self) -> str:
        return f"<RedisStore namespace={self.namespace!r} {self.client!r}>"

    def close(self) -> None:
        """Close the sync client's connections (`aclose()` closes the asyncio one too)."""
        self._watch_stop.set()
        self.client.close()
        for sentinel in self._sentinels[:1]:  # (from_sentinel: its connections to the Sentinels)
            for client in sentinel.sentinels:
                client.close()

    async def aclose(self) -> None:
        """Close both clients; await it on the event loop the asyncio client ran on.

        Off asyncio (trio) the asyncio client was never used: only the sync one is closed.
        """
        client = self._async_here()
        if client is not None:
            await client.aclose()
            for sentinel in self._sentinels[1:]:
                for to_sentinel in sentinel.sentinels:
                    await to_sentinel.aclose()
        self.close()

    # -- what a breaker needs (circuitry._shared.SharedStore) --------------------------------

    def attach(self, config: CircuitBreakerConfig, name: str, now: float) -> SharedCore:
        """The core of a breaker of this store (called by `CircuitBreaker(store=...)`)."""
        self._configs[name] = config
        return SharedCore(config, name, now, self)

    def keys(self, name: str) -> tuple[str, ...]:
        tag = self._prefix + quote(name, safe="") + "}"
        return (
            tag + ":state",
            tag + ":permits",
            tag + ":window",
            tag + ":owed",
            tag + ":throttle",
        )

    def lease_for(self, config: CircuitBreakerConfig) -> float:
        if self.lease is not None:
            return self.lease
        if config.call_timeout is not None:
            return config.call_timeout + 5.0
        if config.half_open_max_wait is not None:
            return config.half_open_max_wait
        return DEFAULT_LEASE

    def ttl_ms(self) -> int:
        return max(1, int(self.ttl * 1000))

    def now_argument(self) -> str:
        source = self._time_source
        return "" if source is None else repr(float(source()))

    def permit_id(self) -> str:
        return f"{self._token}:{next(self._permits)}"

    def usable(self, core: SharedCore | None = None) -> bool:
        """Whether a request of `core` would be sent now (see `Servers.usable`)."""
        return self._servers.usable(core)

    def down(self, core: SharedCore | None = None) -> StoreError:
        """The error of the outage `core`'s requests back off from."""
        return self._servers.down(core)

    def _policy_options(self, client: Any, core: SharedCore) -> dict[str, Any]:
        """CONFIG GET's routing: on a cluster, the breaker's node (redis-py picks one at random)."""
        if self._servers.whole is not None:
            return {}
        return {"target_nodes": client.get_node_from_key(core.keys[0])}

    def send(self, core: SharedCore, request: Request) -> Answer:
        """Run one request on the sync client: the reply, or the error (never raised)."""
        outage = self._servers.of(core, self.client)
        # (_may_send's first check, inlined: no outage is every call's case)
        sent = outage.period if outage.error is None else self._servers.may_send(outage)
        if sent is None:
            return self._servers.unsent(outage)  # backing off: no I/O, no latency
        # (the command: `_redis_wire`'s; `now`: now_argument, inlined)
        now = "" if self._time_source is None else self.now_argument()
        line = line_for(core, request, now)
        client = self.client
        if self._sentinels:
            self._watch_master()
        try:
            if not outage.policy_read:
                try:
                    policy = client.config_get(
                        "maxmemory-policy", **self._policy_options(client, core)
                    )
                except redis.exceptions.ResponseError:  # CONFIG refused or renamed
                    policy = {}
                self._check_policy(policy, outage)
            try:
                if self._packed and not observed():
                    raw = run_packed(client.connection_pool, packed_for(core, request, now, line))
                else:
                    execute: Callable[..., Any] = client.execute_command  # (untyped)
                    raw = execute(*command_for(core, request, now, line))
            except redis.exceptions.NoScriptError:  # a new or restarted server, SCRIPT FLUSH
                evaluate: Callable[..., Any] = client.execute_command
                raw = evaluate("EVAL", SCRIPT, *command_for(core, request, now, line)[2:])
            reply = None if raw == b"=" else parse_reply(raw)  # '=': a CLOSED call recorded
        except Exception as exc:  # any error: the call must not fail for the store
            return self._servers.failed(exc, sent, outage)
        if outage.error is not None:
            self._servers.answered(outage)
        return reply

    async def send_async(self, core: SharedCore, request: Request) -> Answer:
        """Run one request without blocking the loop: the asyncio client, else a thread."""
        client = self._async_here()
        if client is None:
            if not self.usable(core):
                return self._servers.unsent(self._servers.of(core, self.client))
            return await anyio.to_thread.run_sync(self.send, core, request)
        outage = self._servers.of(core, client)
        sent = self._servers.may_send(outage)
        if sent is None:
            return self._servers.unsent(outage)
        now = self.now_argument()
        line = line_for(core, request, now)
        try:
            if self._sentinels:
                self._watch_master()
                moves = self._master_moves
                if moves != self._async_moves:  # the master moved: reconnect (see MASTER_CHECK)
                    self._async_moves = moves
                    await client.connection_pool.disconnect(inuse_connections=False)
            if not outage.policy_read:
                if self._servers.whole is None:  # the slots are read at the first command
                    await client.initialize()
                try:
                    policy = await client.config_get(
                        "maxmemory-policy", **self._policy_options(client, core)
                    )
                except redis.exceptions.ResponseError:
                    policy = {}
                self._check_policy(policy, outage)
            execute: Callable[..., Awaitable[Any]] = client.execute_command
            try:
                if self._packed_async and not observed():
                    raw = await run_packed_async(
                        client.connection_pool, packed_for(core, request, now, line)
                    )
                else:
                    raw = await execute(*command_for(core, request, now, line))
            except redis.exceptions.NoScriptError:
                raw = await execute("EVAL", SCRIPT, *command_for(core, request, now, line)[2:])
            reply = None if raw == b"=" else parse_reply(raw)
        except Exception as exc:
            return self._servers.failed(exc, sent, outage)
        if outage.error is not None:
            self._servers.answered(outage)
        return reply

    def _watch_master(self) -> None:
        """Start this process's thread that follows the Sentinels' master, once (MASTER_CHECK)."""
        if self._watcher_pid == os.getpid():
            return
        with self._lock:
            if self._watcher_pid == os.getpid():
                return
            self._watcher_pid = os.getpid()
        threading.Thread(
            target=watch_master,
            args=(weakref.ref(self), self.client.connection_pool, self._watch_stop),
            name="circuitry-sentinel-master",
            daemon=True,
        ).start()

    def _check_policy(self, answer: Any, server: Outage) -> None:
        """Warn, once per server, when Redis may evict the breakers' keys (`maxmemory-policy`).

        Every key has a TTL, so a `volatile-*` policy picks them first (an
        OPEN circuit's, unused while it rejects, is the coldest), as does any
        `allkeys-*` one: an evicted state is a circuit CLOSED again. Each
        server the store sends to is asked at its first request: each node of
        a cluster (a promoted replica too, a node of its own), and a
        Sentinel's master again after a failover.
        """
        policy = answer.get("maxmemory-policy", "") if isinstance(answer, dict) else ""
        if isinstance(policy, bytes):
            policy = policy.decode(errors="replace")
        with self._lock:
            if server.policy_read:
                return
            server.policy_read = True
        if policy and policy != "noeviction":
            logger.warning(
                "RedisStore: Redis%s has maxmemory-policy %s, which can evict the breakers' "
                "keys (each has a TTL): an evicted circuit starts CLOSED again; use "
                "noeviction, or a Redis of its own for the breakers",
                f" node {server.name}" if server.name else "",
                policy,
            )

    def _async_here(self) -> redis.asyncio.Redis | None:
        """The asyncio client, if the running loop is asyncio's and the one it belongs to.

        redis-py's asyncio connections belong to the loop that opened them: on
        a second loop (`asyncio.run()` per job, a test per loop) the pooled
        ones fail ("Event loop is closed"), which is no outage of Redis.
        """
        client = self.async_client
        if client is None:
            return None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None  # trio
        bound = self._async_loop
        if bound is None:
            with self._lock:
                bound = self._async_loop
                if bound is None:
                    self._async_loop = bound = weakref.ref(loop)
        return client if bound() is loop else None

    # -- reads for people ------------------------------------------------------------------

    def snapshot(self, name: str) -> dict[str, Any]:
        """The shared state of circuit `name` as plain data (one round trip; changes nothing).

        Keys: `state` (a `CircuitState` value), `generation`, `open_until` (Redis'
        clock, seconds; None unless OPEN), `time_in_state`, `window_calls`,
        `window_failures`, `window_slow`, `consecutive_failures`,
        `trials_in_flight`, `trial_successes`, `now` (Redis' clock).

        Raises:
            redis.RedisError: Redis failed (this read is not a breaker's call).
        """
        config = self._configs.get(name) or CircuitBreakerConfig()
        core = SharedCore(config, name, 0.0, self)
        command = command_for(core, Request("peek"), self.now_argument())
        execute: Callable[..., Any] = self.client.execute_command
        try:
            raw = execute(*command)
        except redis.exceptions.NoScriptError:
            raw = execute("EVAL", SCRIPT, *command[2:])
        reply = parse_reply(raw)
        assert reply is not None  # (only a record may answer '=')
        now = reply.now
        return {
            "state": reply.state.value,
            "generation": reply.generation,
            "open_until": None if reply.left is None or now is None else now + reply.left,
            "time_in_state": reply.time_in_state,
            "window_calls": reply.window_calls,
            "window_failures": reply.window_failures,
            "window_slow": reply.window_slow,
            "consecutive_failures": reply.consecutive_failures,
            "trials_in_flight": reply.trials_in_flight,
            "trial_successes": reply.trial_successes,
            "now": reply.now,
        }

    # -- fork (circuitry._fork) -----------------------------------------------------------

    def _before_fork(self) -> None:
        self._lock.acquire()
        self._servers.lock.acquire()

    def _after_fork_in_parent(self) -> None:
        self._servers.lock.release()
        self._lock.release()

    def _after_fork_in_child(self, forking_thread: int) -> None:
        self._lock = threading.Lock()
        self._servers.lock = threading.Lock()
        # The parent's watcher thread is not here: the first use starts one (_watch_master).
        self._watch_stop = threading.Event()
        self._token = os.urandom(6).hex()  # permit ids stay unique across processes
        # redis-py's pools notice the new pid and connect afresh.
