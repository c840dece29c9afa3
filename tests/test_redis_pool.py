"""BreakerPool with a RedisStore, against a real redis-server: members are shared circuits,
and the ejection cap holds for the trips this process makes (while the store is down).

Two managers on two stores stand for two processes (see test_redis_store.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import CLOSED, OPEN, Boom
from redis_server import RedisServer

from circuitry import BreakerPool, CircuitBreakerConfig, CircuitBreakerManager
from circuitry.events import Event, StoreUnavailable, TripSuppressed
from circuitry.redis import RedisStore


def _manager(url: str, **fields: Any) -> CircuitBreakerManager:
    fields.setdefault("failure_threshold_count", 1)
    fields.setdefault("reset_timeout", 60.0)
    return CircuitBreakerManager(
        CircuitBreakerConfig(**fields), store=RedisStore.from_url(url, namespace="pool")
    )


def _ask(down: set[str], log: list[str]) -> Any:
    def ask(member: str) -> str:
        log.append(member)
        if member in down:
            raise Boom(member)
        return member

    return ask


def test_members_are_shared_circuits(redis_url: str) -> None:
    here, there = _manager(redis_url), _manager(redis_url)
    pool_here = BreakerPool(here, ["a", "b"], max_ejection_percent=50)
    pool_there = BreakerPool(there, ["a", "b"], max_ejection_percent=50)
    log: list[str] = []
    assert pool_here.call(_ask({"a"}, log)) == "b"
    assert here["a"].state is OPEN
    log.clear()
    assert pool_there.call(_ask(set(), log)) == "b"
    assert log == ["b"]  # the other process skips the member this one saw fail
    assert pool_there.metrics()["a"].current_state is OPEN


def test_the_cap_holds_for_this_processes_trips_while_the_store_is_down(
    redis_url: str, redis_server: RedisServer
) -> None:
    manager = _manager(redis_url, failure_threshold_count=2)
    events: list[Event] = []
    manager.subscribe(events.append, TripSuppressed, StoreUnavailable)
    pool = BreakerPool(manager, ["a", "b", "c", "d"], max_ejection_percent=50)
    assert pool.call(_ask(set(), [])) == "a"  # the store is up, and knows every member
    redis_server.pause()
    try:
        # A member's failure that meets the outage counts in the shared period
        # only (see _shared_fallback.py); the next ones count here, and trip.
        for _ in range(4):
            with pytest.raises(Boom):
                pool.call(_ask({"a", "b", "c", "d"}, []))
        states = [m.current_state for m in pool.metrics().values()]
    finally:
        redis_server.resume()
    assert sorted(s.value for s in states) == ["closed", "closed", "open", "open"]
    suppressed = {e.name for e in events if isinstance(e, TripSuppressed)}
    assert suppressed == {name for name, s in zip("abcd", states, strict=True) if s is CLOSED}
    assert any(isinstance(e, StoreUnavailable) for e in events)
