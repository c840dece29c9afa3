"""BreakerPool with a RedisStore, against a real redis-server: members are shared circuits,
and the ejection cap holds for the trips this process makes, whether the script makes
them (the store up: a record says whether it may trip) or the local rules (the store down).

Two managers on two stores stand for two processes (see test_redis_store.py): each caps
its own trips; together they may open more members than the cap.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
import warnings
from typing import Any

import anyio
import pytest
from helpers import CLOSED, INTERRUPTS, OPEN, Boom, run_in_threads
from redis_server import RedisServer, ReplyDropper

from circuitry import BreakerPool, CircuitBreakerConfig, CircuitBreakerManager, CircuitOpenError
from circuitry._pool import _EjectionCap
from circuitry._shared import REFRESH
from circuitry.events import Alert, Event, StoreUnavailable, TripSuppressed
from circuitry.redis import BACKOFF_START, RedisStore


def _manager(url: str, socket_timeout: float = 0.25, **fields: Any) -> CircuitBreakerManager:
    fields.setdefault("failure_threshold_count", 1)
    fields.setdefault("reset_timeout", 60.0)
    store = RedisStore.from_url(url, namespace="pool", socket_timeout=socket_timeout)
    return CircuitBreakerManager(CircuitBreakerConfig(**fields), store=store)


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


# -- the cap while the store is up: the script trips, the process decides whether it may --


def _states(pool: BreakerPool) -> dict[str, str]:
    return {name: m.current_state.value for name, m in pool.metrics().items()}


def _gate(manager: CircuitBreakerManager, member: str) -> _EjectionCap:
    gate = manager[member]._core.trip_gate
    assert isinstance(gate, _EjectionCap)
    return gate


def test_the_cap_holds_while_the_store_is_up(redis_url: str) -> None:
    here = _manager(redis_url, socket_timeout=30.0, failure_threshold_count=2)
    there = _manager(redis_url, socket_timeout=30.0)
    events: list[Event] = []
    here.subscribe(events.append, TripSuppressed, StoreUnavailable)
    pool = BreakerPool(here, ["a", "b", "c", "d"], max_ejection_percent=50)
    for _ in range(4):
        with pytest.raises(Boom):
            pool.call(_ask({"a", "b", "c", "d"}, []))
    assert _states(pool) == {"a": "open", "b": "open", "c": "closed", "d": "closed"}
    assert {e.name for e in events} == {"c", "d"}  # TripSuppressed, by the store's reply
    assert not any(isinstance(e, StoreUnavailable) for e in events)  # the store made the trips
    # In Redis too: another process finds c and d CLOSED, their failures counted.
    assert [there[m].state for m in "abcd"] == [OPEN, OPEN, CLOSED, CLOSED]
    assert there["c"].metrics().window_failures >= 2
    assert _gate(here, "a")._held == {}  # every record's place given back

    # A member closed through the store (a reset, here) frees its place: the next
    # failure of a held-back member (its count still meets the rule) trips it.
    here["a"].reset()
    assert not here["a"]._core.ejected
    with pytest.raises(Boom):
        pool.call(_ask({"a", "b", "c", "d"}, []))  # a: 1 failure; b rejects; c trips; d held
    assert _states(pool) == {"a": "closed", "b": "open", "c": "open", "d": "closed"}


def test_a_close_made_by_another_process_frees_the_place_here(redis_url: str) -> None:
    here, there = _manager(redis_url, 30.0), _manager(redis_url, 30.0)
    pool = BreakerPool(here, ["a", "b"], max_ejection_percent=50)
    with pytest.raises(Boom):
        pool.call(_ask({"a", "b"}, []))
    assert _states(pool) == {"a": "open", "b": "closed"}
    there["a"].reset()  # the other process closes it: this one learns at its next ask
    time.sleep(REFRESH + 0.2)
    assert here["a"].state is CLOSED
    assert not here["a"]._core.ejected
    log: list[str] = []
    with pytest.raises(Boom):
        BreakerPool(here, ["b"], name="b alone").call(_ask({"b"}, log))
    assert here["b"].state is OPEN  # the place a held is b's now
    assert log == ["b"]


def test_each_process_caps_its_own_trips_under_threads(redis_url: str) -> None:
    """Every member failing, eight threads in one process, then eight in each of two:
    neither opens more than the cap by its own trips; together they open more (the cap
    is per process)."""
    members = ["a", "b", "c", "d"]
    own: dict[str, list[Alert]] = {"here": [], "there": []}
    pools = {}
    for side in own:
        # (a long socket timeout: on a busy machine no reply is lost, no trip made locally)
        manager = _manager(redis_url, socket_timeout=30.0, alert_handler=own[side].append)
        pools[side] = BreakerPool(manager, members, max_ejection_percent=50)

    def hammer(pool: BreakerPool, barrier: threading.Barrier) -> None:
        barrier.wait()
        for _ in range(20):
            with contextlib.suppress(Boom, CircuitOpenError):
                pool.call(_ask(set(members), []))

    def run(sides: tuple[str, ...]) -> None:
        barrier = threading.Barrier(8 * len(sides))
        run_in_threads(
            [lambda side=side: hammer(pools[side], barrier) for side in sides for _ in range(8)],
            timeout=120.0,
            on_error=barrier.abort,
        )

    run(("here",))  # alone, it opens as many as its cap lets it
    assert sum(m.current_state is OPEN for m in pools["here"].metrics().values()) == 2
    run(("here", "there"))
    trips = {
        side: [a.name for a in alerts if (a.old_state, a.new_state) == (CLOSED, OPEN)]
        for side, alerts in own.items()
    }
    for side, names in trips.items():
        assert len(names) == len(set(names)) == 2, (side, names)  # the cap: never more
    assert not set(trips["here"]) & set(trips["there"])  # a member trips once, in one process
    opened = set(trips["here"]) | set(trips["there"])
    assert {m for m in members if pools["here"]._manager[m].state is OPEN} == opened
    assert len(opened) == 4  # together, past the cap: each process capped its own
    for pool in pools.values():
        assert _gate(pool._manager, "a")._held == {}


def test_a_lost_reply_gives_its_place_back(redis_server: RedisServer) -> None:
    server = RedisServer()  # one of its own, paused (SIGSTOP) while a record is out
    server.start()
    try:
        manager = _manager(server.url, failure_threshold_count=3)
        pool = BreakerPool(manager, ["a", "b", "c", "d"], max_ejection_percent=50)
        assert pool.call(_ask(set(), [])) == "a"  # a knows the store: its record is sent
        gate = _gate(manager, "a")
        server.pause()
        outcome: list[object] = []
        caller = threading.Thread(
            target=lambda: outcome.append(pool.call(_ask({"a"}, []))), daemon=True
        )
        caller.start()
        deadline = time.monotonic() + 30.0
        while not gate._held and caller.is_alive():  # a's failure, out with "may trip"
            assert time.monotonic() < deadline
            time.sleep(0.001)
        held_while_out = dict(gate._held)
        caller.join(30.0)
        assert outcome == ["b"]  # a's failure moved on; b ran on the local rules
        assert list(held_while_out) == [manager["a"]._core]
        assert gate._held == {}  # the lost reply gave the place back
        assert not manager["a"]._core.ejected
        server.resume()
        # No place is held for ever: once the store answers again, two members trip.
        deadline = time.monotonic() + 30.0
        while {manager[m].state for m in "bc"} != {OPEN}:
            assert time.monotonic() < deadline, _states(pool)
            for member in "bc":  # (each breaker asks the pool's cap, called alone too)
                with contextlib.suppress(Boom, CircuitOpenError):
                    manager[member].call(_ask({"b", "c"}, []), member)
            time.sleep(0.05)
        assert gate._held == {}
    finally:
        server.stop()


@pytest.mark.anyio
async def test_a_cancelled_record_gives_its_place_back() -> None:
    server = RedisServer()
    server.start()
    try:
        manager = CircuitBreakerManager(
            CircuitBreakerConfig(failure_threshold_count=3, reset_timeout=60.0),
            # (trio's thread is never abandoned: its cancellation waits this long)
            store=RedisStore.from_url(server.url, namespace="pool", socket_timeout=5.0),
        )
        pool = BreakerPool(manager, ["a", "b"], max_ejection_percent=50)

        async def ask(member: str) -> str:
            if member == "a":
                raise Boom(member)
            return member

        async def fine(member: str) -> str:
            return member

        assert await pool.call_async(fine) == "a"  # a knows the store
        gate = _gate(manager, "a")
        server.pause()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pool.call_async, ask)
            with anyio.fail_after(30.0):
                while not gate._held:  # a's failure: out, with "may trip", hung
                    await anyio.sleep(0.001)
            tasks.cancel_scope.cancel()
        assert gate._held == {}  # cancelled: the place is given back
        assert not manager["a"]._core.ejected
        server.resume()
        await manager["a"]._store.aclose()
    finally:
        server.stop()


def test_many_threads_never_open_more_members_than_the_cap(redis_url: str) -> None:
    """Stress: six members failing half the time, trips and closes all along; an atomic
    look at the store (MULTI) never finds more than the cap open or half-open."""
    members = [f"m{i}" for i in range(6)]
    manager = CircuitBreakerManager(
        CircuitBreakerConfig(
            failure_threshold_count=1, reset_timeout=0.02, reset_timeout_jitter=0.0
        ),
        store=RedisStore.from_url(redis_url, namespace="pool", socket_timeout=30.0),
    )
    suppressed: list[Event] = []
    manager.subscribe(suppressed.append, TripSuppressed)
    pool = BreakerPool(manager, members, strategy="round_robin", max_ejection_percent=34)
    assert pool.max_ejected == 2
    store = manager[members[0]]._store
    assert isinstance(store, RedisStore)
    keys = [store.keys(m)[0] for m in members]
    done = threading.Event()
    worst = [0, 0]  # members out: in the store, as this process counts them
    looks = [0]

    def look() -> None:
        client = store.client
        while not done.is_set():
            pipe = client.pipeline(transaction=True)
            for key in keys:
                pipe.get(key)
            states = [(raw or b"closed|").split(b"|")[0].decode() for raw in pipe.execute()]
            out = sum(s in ("open", "half_open") for s in states)
            worst[0] = max(worst[0], out)
            looks[0] += 1
            gate = _gate(manager, members[0])
            with gate._lock:
                counted = sum(
                    manager[m]._core.ejected or manager[m]._core in gate._held for m in members
                )
            worst[1] = max(worst[1], counted)

    rng = random.Random(7)
    flips = [rng.random() < 0.5 for _ in range(4096)]

    def work(offset: int) -> None:
        for i in range(150):
            fail = flips[(offset * 151 + i) % len(flips)]
            with contextlib.suppress(Boom, CircuitOpenError):
                pool.call(_ask(set(members) if fail else set(), []))

    looker = threading.Thread(target=look, daemon=True)
    looker.start()
    try:
        run_in_threads([lambda k=k: work(k) for k in range(12)], timeout=300.0)
    finally:
        done.set()
        looker.join(30.0)
    assert looks[0] > 0
    assert 1 <= worst[0] <= 2, worst
    assert worst[1] <= 2, worst
    assert suppressed  # the cap held trips back
    assert _gate(manager, members[0])._held == {}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_holds_none_of_the_parents_places() -> None:
    server = RedisServer()
    server.start()
    try:
        manager = _manager(server.url, failure_threshold_count=3)
        pool = BreakerPool(manager, ["a", "b"], max_ejection_percent=50)
        assert pool.call(_ask(set(), [])) == "a"
        gate = _gate(manager, "a")
        server.pause()

        def call() -> None:
            with contextlib.suppress(Boom):
                pool.call(_ask({"a", "b"}, []))

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        deadline = time.monotonic() + 30.0
        while not gate._held:  # a's record is out, its place held, in a parent thread
            assert time.monotonic() < deadline
            time.sleep(0.001)
        held, go = threading.Event(), threading.Event()

        def hold_the_lock() -> None:
            with gate._lock:  # (a parent thread mid-count at the fork)
                held.set()
                go.wait(30.0)

        holder = threading.Thread(target=hold_the_lock, daemon=True)
        holder.start()
        held.wait(30.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: multi-threaded fork
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                signal.alarm(30)
                if gate._lock.acquire(timeout=5.0) and not gate._held:
                    code = 0
            finally:
                os._exit(code)
        go.set()
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status)
        assert os.WEXITSTATUS(status) == 0
        caller.join(30.0)
        assert gate._held == {}
    finally:
        server.stop()


def test_a_trip_whose_reply_was_lost_counts_once_it_comes_back() -> None:
    server = RedisServer()
    server.start()
    dropper = ReplyDropper(server.port)
    try:
        manager = CircuitBreakerManager(
            CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=60.0),
            store=RedisStore.from_url(dropper.url, namespace="pool"),
        )
        suppressed: list[Event] = []
        manager.subscribe(suppressed.append, TripSuppressed)
        pool = BreakerPool(manager, ["a", "b"], max_ejection_percent=50)
        for member in "ab":
            assert manager[member].call(_ask(set(), []), member) == member  # both synced
        dropper.dropping.set()
        try:
            with pytest.raises(Boom):  # a trips in Redis; its reply is lost
                manager["a"].call(_ask({"a"}, []), "a")
            lost_at = time.monotonic()
        finally:
            dropper.dropping.clear()
        assert not manager["a"]._core.ejected  # its place given back: the reply never came
        time.sleep(max(0.0, lost_at + BACKOFF_START + 0.2 - time.monotonic()))
        deadline = time.monotonic() + 30.0
        while manager["a"].state is not OPEN:  # its next request brings the lost trip back
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert manager["a"]._core.ejected  # this process's trip: counted from now
        with pytest.raises(Boom):
            manager["b"].call(_ask({"b"}, []), "b")
        assert manager["b"].state is CLOSED  # the cap (1) is a's
        assert [e.name for e in suppressed] == ["b"]
        assert _states(pool) == {"a": "open", "b": "closed"}
    finally:
        dropper.close()
        server.stop()


@pytest.mark.parametrize("interrupt", INTERRUPTS)
def test_an_interrupt_while_recording_gives_the_place_back(
    redis_url: str, interrupt: type[BaseException]
) -> None:
    armed = threading.Event()

    def time_source() -> float:  # the store's: read as the record is sent
        if armed.is_set():
            armed.clear()
            raise interrupt
        return time.time()

    manager = CircuitBreakerManager(
        CircuitBreakerConfig(failure_threshold_count=3, reset_timeout=60.0),
        store=RedisStore.from_url(
            redis_url, namespace="pool", time_source=time_source, socket_timeout=30.0
        ),
    )
    BreakerPool(manager, ["a", "b"], max_ejection_percent=50)
    assert manager["a"].call(_ask(set(), []), "a") == "a"
    armed.set()
    with pytest.raises(interrupt):
        manager["a"].call(_ask({"a"}, []), "a")  # its record reserved a place, then broke off
    assert not armed.is_set()
    assert _gate(manager, "a")._held == {}
    assert not manager["a"]._core.ejected


@pytest.mark.anyio
async def test_the_cap_holds_for_concurrent_tasks(redis_url: str) -> None:
    manager = _manager(redis_url, socket_timeout=30.0, failure_threshold_count=2)
    suppressed: list[Event] = []
    manager.subscribe(suppressed.append, TripSuppressed)
    members = ["a", "b", "c", "d", "e", "f"]
    pool = BreakerPool(manager, members, strategy="round_robin", max_ejection_percent=50)

    async def ask(member: str) -> str:
        await anyio.sleep(0)
        raise Boom(member)

    async def caller() -> None:
        for _ in range(5):
            with contextlib.suppress(Boom, CircuitOpenError):
                await pool.call_async(ask)

    try:
        async with anyio.create_task_group() as tasks:
            for _ in range(30):
                tasks.start_soon(caller)
    finally:
        await manager["a"]._store.aclose()
    opened = [m for m, state in _states(pool).items() if state == "open"]
    assert len(opened) == 3, _states(pool)  # the cap: 3 of 6, however the tasks interleave
    assert {e.name for e in suppressed} == set(members) - set(opened)
    assert _gate(manager, "a")._held == {}
