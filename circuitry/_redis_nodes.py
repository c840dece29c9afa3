"""What `RedisStore` keeps per Redis server: the backoff of an outage, and the Sentinel watch.

A plain client has one server; a Redis Cluster client one per master (the
node a breaker's hash slot maps to, `node_name`), so that an outage of one
node is that node's breakers' alone. `watch_master` follows a Sentinel's
master; `retries` reads how often a client retries a command.
"""

from __future__ import annotations

import math
import threading
import weakref
from typing import Any

from ._shared import StoreError

__all__ = [
    "BACKOFF_MAX",
    "BACKOFF_START",
    "MASTER_CHECK",
    "Outage",
    "node_name",
    "retries",
    "watch_master",
]

BACKOFF_START = 1.0
"""Seconds the store leaves Redis alone after a first failure; doubled at each next one."""
BACKOFF_MAX = 30.0

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
            watched._whole.policy_read = False  # the new master's is read at its first request
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
