"""What `RedisStore` keeps per Redis server: the backoff of an outage, and the Sentinel watch.

A plain client has one server; a Redis Cluster client one per master (the
node a breaker's hash slot maps to, `node_name`), so that an outage of one
node is that node's breakers' alone. `Servers` keeps each one's `Outage`
and decides, per request, whether it is sent (the backoff). `watch_master`
follows a Sentinel's master; `retries` reads how often a client retries a
command.
"""

from __future__ import annotations

import math
import threading
import weakref
from typing import Any

from redis.crc import key_slot

from ._clock import clock_from
from ._shared import SharedCore, StoreError

__all__ = [
    "BACKOFF_MAX",
    "BACKOFF_START",
    "MASTER_CHECK",
    "Outage",
    "Servers",
    "node_name",
    "retries",
    "watch_master",
]

BACKOFF_START = 1.0
"""Seconds the store leaves Redis alone after a first failure; doubled at each next one."""
BACKOFF_MAX = 30.0

_CLOCK = clock_from(None)
"""The store's own clock, for its backoff: the default breakers' (real monotonic time;
the backoff is the store's, shared by breakers whatever their clocks)."""

MASTER_CHECK = 1.0
"""Seconds between two asks of the Sentinels for the master's address (`from_sentinel`).

A failover Sentinel makes while the old master runs (`SENTINEL FAILOVER`, a
partition) leaves it a master for a while (11 s in a test) before it is
demoted: connections to it would go on writing there, and their writes
would be lost. A thread asks every `MASTER_CHECK` seconds and, when the
address changed, closes the idle connections, so that the next request
connects to the new master.
"""


class Outage:
    """The backoff of one Redis server (a cluster's node; the one server of a plain client).

    After a failure nothing is sent to it until `retry_at`; then one request
    (the probe) is let through, and the others keep waiting until it fails
    (the backoff doubles, up to BACKOFF_MAX) or succeeds (the outage is over).
    Each request carries the number of the period it was sent in (`period`:
    a new one at an outage's start and at each probe), so one that was
    already out then fails without doubling the backoff. It also says
    whether the store has read the server's `maxmemory-policy` (`policy_read`).
    """

    __slots__ = ("backoff", "error", "name", "period", "policy_read", "retry_at")

    def __init__(self, name: str = "") -> None:
        self.name = name  # a cluster node's "host:port" ('' for a plain client's server)
        self.error: StoreError | None = None  # the error of the outage going on
        self.retry_at = -math.inf  # the time (_CLOCK) before which the server is left alone
        self.backoff = BACKOFF_START
        self.period = 0
        # Whether its maxmemory-policy was read (RedisStore._check_policy):
        # once per server, again after a Sentinel failover.
        self.policy_read = False


class Servers:
    """The outages of a store's servers: whether a request is sent now, and what failed.

    One `Outage` for a plain client's server (`whole`); with a cluster one
    per node, by name ("host:port"), made at its first use. `lock` guards
    their changes (the store holds it across a fork, see `RedisStore`).
    """

    __slots__ = ("client", "lock", "nodes", "slots", "whole")

    def __init__(self, client: Any, whole: Outage | None) -> None:
        self.client = client  # the sync client, whose slot map a cluster's nodes are read from
        self.whole = whole
        self.nodes: dict[str, Outage] = {}
        self.slots: dict[str, int] = {}  # a breaker's first key -> its hash slot (cluster)
        self.lock = threading.Lock()

    def of(self, core: SharedCore, client: Any) -> Outage:
        """The outage of the server that serves `core`'s keys, as `client` knows.

        With a cluster: all of a breaker's keys have one hash tag, so one slot,
        and the node is the one `client`'s slot map names now (after a
        failover, once redis-py has read the new map, the new master, whose
        outage is its own). An asyncio client that has not yet read the map
        goes by the sync one's; a slot no node serves is an outage of its own.
        """
        whole = self.whole
        if whole is not None:
            return whole
        key = core.keys[0]
        slot = self.slots.get(key)
        if slot is None:
            slot = self.slots[key] = key_slot(key.encode())
        node = node_name(client, slot) or node_name(self.client, slot) or f"slot {slot}"
        outage = self.nodes.get(node)
        if outage is None:
            with self.lock:
                outage = self.nodes.setdefault(node, Outage(node))
        return outage

    def usable(self, core: SharedCore | None = None) -> bool:
        """Whether a request of `core` would be sent now (no outage, or its backoff has passed).

        With a cluster, the outage of the node serving `core`'s keys (None: of
        every node).
        """
        if core is None and self.whole is None:
            now = _CLOCK.monotonic()
            return all(o.error is None or now >= o.retry_at for o in list(self.nodes.values()))
        outage = self.of(core, self.client)  # type: ignore[arg-type]
        return outage.error is None or _CLOCK.monotonic() >= outage.retry_at

    def down(self, core: SharedCore | None = None) -> StoreError:
        """The error of the outage `core`'s requests back off from."""
        if core is None and self.whole is None:
            errors = [o.error for o in list(self.nodes.values()) if o.error is not None]
            error = errors[0] if errors else None
        else:
            error = self.of(core, self.client).error  # type: ignore[arg-type]
        return error if error is not None else StoreError(ConnectionError("store unavailable"))

    def may_send(self, outage: Outage) -> int | None:
        """The period a request is sent in, or None: backing off."""
        if outage.error is None:
            return outage.period
        with self.lock:
            if outage.error is None:
                return outage.period
            now = _CLOCK.monotonic()
            if now < outage.retry_at:
                return None
            outage.period += 1
            outage.retry_at = now + outage.backoff  # the others wait for this probe
            return outage.period

    @staticmethod
    def unsent(outage: Outage) -> StoreError:
        """The answer to a request not sent (backing off): nothing of it can have run."""
        error = outage.error
        return StoreError(
            ConnectionError("store unavailable") if error is None else error.error, sent=False
        )

    def failed(self, error: Exception, sent: int, outage: Outage) -> StoreError:
        """A request sent in period `sent` failed with `error`: the outage's error."""
        with self.lock:
            failure = outage.error
            if failure is None:
                failure = outage.error = StoreError(error)
                outage.backoff = BACKOFF_START
            elif sent == outage.period:  # the probe failed
                outage.backoff = min(outage.backoff * 2.0, BACKOFF_MAX)
            else:
                return failure  # out before the outage or the probe: changes nothing
            outage.period += 1
            outage.retry_at = _CLOCK.monotonic() + outage.backoff
        return failure

    def answered(self, outage: Outage) -> None:
        """A request was answered: the outage, if any, is over."""
        if outage.error is not None:
            with self.lock:
                outage.error = None
                outage.backoff = BACKOFF_START


def watch_master(store: weakref.ref[Any], pool: Any, stop: threading.Event) -> None:
    """Ask the Sentinels for the master every MASTER_CHECK seconds until `stop` or the store goes.

    redis-py's `SentinelConnectionPool.get_master_address` closes the idle
    connections when the address changed; the asyncio client's pool is told
    at its next request (`_master_moves`).
    """
    last = None
    while not stop.wait(MASTER_CHECK):
        try:
            address = pool.get_master_address()
        except Exception:  # the Sentinels are down: the master's own connections tell
            continue
        watched = store()
        if watched is None:
            return
        if last is not None and address != last:
            watched._master_moves += 1
            # The new master's policy is read at its first request.
            watched._servers.whole.policy_read = False
        last = address
        del watched


def node_name(client: Any, slot: int) -> str | None:
    """The name ("host:port") of the master that `client` (a RedisCluster) maps `slot` to."""
    nodes = getattr(getattr(client, "nodes_manager", None), "slots_cache", {}).get(slot)
    return nodes[0].name if nodes else None


def retries(client: object) -> int:
    """How many times `client` retries a failed command (0 when it cannot tell).

    A `redis.Redis` tells by `get_retry()`; a `RedisCluster` (redis-py 8) has
    none, its retries are its `retry` (built from `cluster_error_retry_attempts`,
    10 by default in redis-py 8, when not given).
    """
    get_retry = getattr(client, "get_retry", None)
    retry = get_retry() if callable(get_retry) else getattr(client, "retry", None)
    get_retries = getattr(retry, "get_retries", None)
    count = get_retries() if callable(get_retries) else 0
    return count if isinstance(count, int) else 0
