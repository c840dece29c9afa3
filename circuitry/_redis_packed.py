"""A request sent pre-packed on a plain client's own connections (issue 24).

On a `redis.Redis` / `redis.asyncio.Redis` with no retries (what
`RedisStore.from_url` and `from_sentinel` make), `RedisStore.send` skips
redis-py's `execute_command` (its argument packing and the machinery around
it, about 6 us a call): the command comes framed from
`_redis_wire.packed_for` (what every request of a circuit sends alike is
framed once), and `run_packed` sends it on a connection of the client's
pool. Any other client (a cluster's, a subclass, one that retries) and every
request while redis-py's own OpenTelemetry metrics are on (`observed`) take
redis-py's path.
"""

from __future__ import annotations

import inspect
from typing import Any

import redis.exceptions

from ._redis_nodes import retries

__all__ = ["observed", "packable", "run_packed", "run_packed_async"]

try:  # redis-py 8: its OpenTelemetry metrics (see packable)
    from redis.observability.recorder import is_enabled as observed
except ImportError:  # pragma: no cover (redis-py before 8: none)

    def observed() -> bool:
        return False


def packable(client: Any, kind: type) -> bool:
    """Whether `RedisStore` may run its requests on `client`'s connections itself.

    Only for a client of exactly redis-py's `kind` (`redis.Redis`, or
    `redis.asyncio.Redis`; a subclass may have hooks of its own, a cluster
    client routes) with the pool's ordinary connections (no client-side
    cache, not a single-connection client), and no retries: redis-py's
    `execute_command` would retry a failed command on a fresh connection,
    which this path does not do. A client that retries (against the advice
    in `RedisStore`'s doc) keeps redis-py's path, retries and all. Decided
    once, when the store is made (a client's retry changed later is not seen).
    """
    if type(client) is not kind or retries(client) != 0:
        return False
    if getattr(client, "connection", None) is not None:
        return False
    if getattr(client, "single_connection_client", False):
        return False
    pool = getattr(client, "connection_pool", None)
    if pool is None or getattr(pool, "cache", None) is not None:
        return False
    try:  # redis-py before 5.3 wants a command name
        named = inspect.signature(pool.get_connection).parameters.get("command_name")
    except (TypeError, ValueError):
        return False
    return named is None or named.default is not inspect.Parameter.empty


def run_packed(pool: Any, command: bytes) -> Any:
    """Run `command` (RESP: `_redis_wire.packed_for`) on a connection of `pool`: its reply.

    What redis-py's `Redis.execute_command` does for a client with no
    retries (`packable`), less the packing and the machinery around it
    (about 6 us a call): the pool's connection (the pool checks the pid:
    a forked child connects afresh), the command, its reply, the
    connection back to the pool. An error is raised as redis-py raises
    it; a connection that failed in any way but a Redis error reply
    (`ResponseError`: NOSCRIPT, a script error) is disconnected before it
    goes back, as redis-py's own path does (its retry's failure callback
    and the connection's own handlers), so the next request connects
    afresh. (redis-py's OpenTelemetry metrics, when enabled, take
    redis-py's path: `RedisStore.send`.)
    """
    connection = pool.get_connection()
    try:
        connection.send_packed_command((command,))
        return connection.read_response()
    except redis.exceptions.ResponseError:
        raise  # the server's answer, read whole: the connection is fine
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)


async def run_packed_async(pool: Any, command: bytes) -> Any:
    """`run_packed` on a `redis.asyncio` pool (a cancelled call's connection disconnected)."""
    connection = await pool.get_connection()
    try:
        await connection.send_packed_command((command,))
        return await connection.read_response()
    except redis.exceptions.ResponseError:
        raise
    except BaseException:
        await connection.disconnect(nowait=True)
        raise
    finally:
        await pool.release(connection)
