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
import math
import os
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import anyio.to_thread
import redis
import redis.asyncio
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import _fork
from ._clock import clock_from
from ._config import CircuitBreakerConfig
from ._redis_wire import SCRIPT, command_for, parse_reply
from ._seconds import seconds
from ._shared import Answer, Mode, Request, SharedCore, StoreError

__all__ = ["RedisStore"]

BACKOFF_START = 1.0
"""Seconds the store leaves Redis alone after a first failure; doubled at each next one."""
BACKOFF_MAX = 30.0

DEFAULT_TTL = 24 * 3600.0
DEFAULT_LEASE = 30.0

_MODES = {"local": Mode.LOCAL, "allow": Mode.ALLOW, "deny": Mode.DENY}

_CLOCK = clock_from(None)
"""The store's own clock, for its backoff: the default breakers' (real monotonic time;
the backoff is the store's, shared by breakers whatever their clocks)."""

logger = logging.getLogger("circuitry")


class RedisStore:
    """The shared state of circuits, in Redis: pass it as `store=` to breakers and managers.

    Args:
        client: a `redis.Redis` (sync). Give it a short `socket_timeout` and
            no retries (`retry=Retry(NoBackoff(), 0)`; `from_url` does both):
            a dead or hung Redis then delays a call by one socket timeout,
            once per outage. redis-py's own default retries (10, with backoff,
            in redis-py 8) make that several seconds: a warning is logged for
            a client that retries.
        namespace: circuits of one namespace and name are one circuit.
        async_client: a `redis.asyncio.Redis` for `async with` / `call_async`
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
            if _retries(given):
                logger.warning(
                    "RedisStore: %s retries %d times: a dead or hung Redis will delay "
                    "calls by that many socket timeouts; pass retry=Retry(NoBackoff(), 0) "
                    "or use RedisStore.from_url",
                    field,
                    _retries(given),
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
        self._outage: StoreError | None = None  # the error of the outage going on
        self._retry_at = -math.inf  # the time (_CLOCK) before which Redis is left alone
        self._backoff = BACKOFF_START
        self._period = 0  # see _may_send
        self._token = os.urandom(6).hex()
        self._permits = itertools.count()
        self._policy_read = False  # see _check_policy
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
        **client_options: Any,
    ) -> RedisStore:
        """A store on `url`, with clients set for a breaker: short timeouts and no retries.

        redis-py's own defaults retry with backoff, which took 3.7-4.3 s per
        call against a refused port: a breaker must learn of an outage in one
        socket timeout. Both a sync and an asyncio client are made (the
        asyncio one is used only from asyncio). `client_options` go to both.
        """
        options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
            "health_check_interval": 0,
            **client_options,
        }
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

    def __repr__(self) -> str:
        return f"<RedisStore namespace={self.namespace!r} {self.client!r}>"

    def close(self) -> None:
        """Close the sync client's connections (`aclose()` closes the asyncio one too)."""
        self.client.close()

    async def aclose(self) -> None:
        """Close both clients; await it on the event loop the asyncio client ran on.

        Off asyncio (trio) the asyncio client was never used: only the sync one is closed.
        """
        client = self._async_here()
        if client is not None:
            await client.aclose()
        self.client.close()

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

    def usable(self) -> bool:
        """Whether a request would be sent now (no outage, or its backoff has passed)."""
        return self._outage is None or _CLOCK.monotonic() >= self._retry_at

    def down(self) -> StoreError:
        outage = self._outage
        return outage if outage is not None else StoreError(ConnectionError("store unavailable"))

    def _unsent(self) -> StoreError:
        """The answer to a request not sent (backing off): nothing of it can have run."""
        return StoreError(self.down().error, sent=False)

    def send(self, core: SharedCore, request: Request) -> Answer:
        """Run one request on the sync client: the reply, or the error (never raised)."""
        # (_may_send's first check, inlined: no outage is every call's case)
        sent = self._period if self._outage is None else self._may_send()
        if sent is None:
            return self._unsent()  # backing off: no I/O, no latency
        # (the command: `_redis_wire.command_for`; `now`: now_argument, inlined)
        command = command_for(
            core, request, "" if self._time_source is None else self.now_argument()
        )
        client = self.client
        execute: Callable[..., Any] = client.execute_command  # (redis-py's is untyped)
        try:
            if not self._policy_read:
                try:
                    policy = client.config_get("maxmemory-policy")
                except redis.exceptions.ResponseError:  # CONFIG refused or renamed
                    policy = {}
                self._check_policy(policy)
            try:
                raw = execute(*command)
            except redis.exceptions.NoScriptError:  # a new or restarted server, SCRIPT FLUSH
                raw = execute("EVAL", SCRIPT, *command[2:])
            reply = None if raw == b"=" else parse_reply(raw)  # '=': a CLOSED call recorded
        except Exception as exc:  # any error: the call must not fail for the store
            return self._failed(exc, sent)
        if self._outage is not None:
            self._answered()
        return reply

    async def send_async(self, core: SharedCore, request: Request) -> Answer:
        """Run one request without blocking the loop: the asyncio client, else a thread."""
        client = self._async_here()
        if client is None:
            if not self.usable():
                return self._unsent()  # not worth a thread
            return await anyio.to_thread.run_sync(self.send, core, request)
        sent = self._may_send()
        if sent is None:
            return self._unsent()
        command = command_for(core, request, self.now_argument())
        execute: Callable[..., Awaitable[Any]] = client.execute_command
        try:
            if not self._policy_read:
                try:
                    policy = await client.config_get("maxmemory-policy")
                except redis.exceptions.ResponseError:
                    policy = {}
                self._check_policy(policy)
            try:
                raw = await execute(*command)
            except redis.exceptions.NoScriptError:
                raw = await execute("EVAL", SCRIPT, *command[2:])
            reply = None if raw == b"=" else parse_reply(raw)
        except Exception as exc:
            return self._failed(exc, sent)
        if self._outage is not None:
            self._answered()
        return reply

    def _check_policy(self, answer: Any) -> None:
        """Warn, once, when Redis may evict the breakers' keys (`CONFIG GET maxmemory-policy`).

        Every key has a TTL, so a `volatile-*` policy picks them first (an
        OPEN circuit's, unused while it rejects, is the coldest), as does any
        `allkeys-*` one: an evicted state is a circuit CLOSED again.
        """
        policy = answer.get("maxmemory-policy", "") if isinstance(answer, dict) else ""
        if isinstance(policy, bytes):
            policy = policy.decode(errors="replace")
        with self._lock:
            if self._policy_read:
                return
            self._policy_read = True
        if policy and policy != "noeviction":
            logger.warning(
                "RedisStore: Redis has maxmemory-policy %s, which can evict the breakers' "
                "keys (each has a TTL): an evicted circuit starts CLOSED again; use "
                "noeviction, or a Redis of its own for the breakers",
                policy,
            )

    # The outage: after a failure nothing is sent until `_retry_at`; then one
    # request (the probe) is let through, and the others keep waiting until it
    # fails (the backoff doubles, up to BACKOFF_MAX) or succeeds (the outage is
    # over). Each request carries the number of the period it was sent in
    # (`_period`: a new one at an outage's start and at each probe), so one
    # that was already out then fails without doubling the backoff.

    def _may_send(self) -> int | None:
        """The period a request is sent in, or None: backing off."""
        if self._outage is None:
            return self._period
        with self._lock:
            if self._outage is None:
                return self._period
            now = _CLOCK.monotonic()
            if now < self._retry_at:
                return None
            self._period += 1
            self._retry_at = now + self._backoff  # the others wait for this probe
            return self._period

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

    def _failed(self, error: Exception, sent: int) -> StoreError:
        with self._lock:
            outage = self._outage
            if outage is None:
                outage = self._outage = StoreError(error)
                self._backoff = BACKOFF_START
            elif sent == self._period:  # the probe failed
                self._backoff = min(self._backoff * 2.0, BACKOFF_MAX)
            else:
                return outage  # out before the outage or the probe: changes nothing
            self._period += 1
            self._retry_at = _CLOCK.monotonic() + self._backoff
        return outage

    def _answered(self) -> None:
        if self._outage is not None:
            with self._lock:
                self._outage = None
                self._backoff = BACKOFF_START

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

    def _after_fork_in_parent(self) -> None:
        self._lock.release()

    def _after_fork_in_child(self, forking_thread: int) -> None:
        self._lock = threading.Lock()
        self._token = os.urandom(6).hex()  # permit ids stay unique across processes
        # redis-py's pools notice the new pid and connect afresh.


def _retries(client: object) -> int:
    """How many times `client` retries a failed command (0 when it cannot tell)."""
    get_retry = getattr(client, "get_retry", None)
    retry = get_retry() if callable(get_retry) else None
    get_retries = getattr(retry, "get_retries", None)
    count = get_retries() if callable(get_retries) else 0
    return count if isinstance(count, int) else 0
