"""`BreakerPool`: failover across members, and the ejection cap (also under concurrency)."""

from __future__ import annotations

import contextlib
import random
import threading
from typing import Any

import anyio
import pytest
from helpers import CLOSED, HALF_OPEN, OPEN, Boom, run_in_threads, switching_often

from circuitry import (
    BreakerPool,
    CircuitBreakerConfig,
    CircuitBreakerManager,
    CircuitOpenError,
    CircuitState,
)
from circuitry.events import Event, StateChanged, TripSuppressed
from circuitry.testing import FakeClock


def _manager(clock: FakeClock | None = None, **fields: Any) -> CircuitBreakerManager:
    fields.setdefault("failure_threshold_count", 1)
    fields.setdefault("reset_timeout", 30)
    return CircuitBreakerManager(CircuitBreakerConfig(**fields), clock=clock)


def _answer_from(healthy: set[str], log: list[str] | None = None) -> Any:
    def ask(member: str, prompt: str) -> str:
        if log is not None:
            log.append(member)
        if member not in healthy:
            raise Boom(f"{member} is down")
        return f"{member}: {prompt}"

    return ask


def test_priority_fails_over_to_the_next_member(clock: FakeClock) -> None:
    manager = _manager(clock)
    pool = BreakerPool(manager, ["a", "b", "c"])
    log: list[str] = []
    assert pool.call(_answer_from({"b", "c"}, log), "hi") == "b: hi"
    assert log == ["a", "b"]
    assert manager["a"].state is OPEN  # its failure was recorded (threshold 1)
    log.clear()
    assert pool.call(_answer_from({"b", "c"}, log), prompt="again") == "b: again"
    assert log == ["b"]  # a rejected: skipped without running
    assert pool.metrics()["a"].total_rejected == 1
    assert pool.members == ("a", "b", "c")


def test_round_robin_starts_one_further_each_call(clock: FakeClock) -> None:
    pool = BreakerPool(_manager(clock), ["a", "b", "c"], strategy="round_robin")
    ask = _answer_from({"a", "b", "c"})
    assert [pool.call(ask, "x")[0] for _ in range(4)] == ["a", "b", "c", "a"]


def test_every_member_rejecting_raises_the_pools_rejection(clock: FakeClock) -> None:
    manager = _manager(clock)
    pool = BreakerPool(manager, ["a", "b"], name="llm")
    manager["a"].trip(10)
    manager["b"].trip(4)
    with pytest.raises(CircuitOpenError) as info:
        pool.call(_answer_from({"a", "b"}), "x")
    assert info.value.name == "llm"
    assert info.value.retry_after == pytest.approx(4)
    assert "circuit 'llm' is open; retry after 4.0s" in str(info.value)


def test_attempts_running_out_raise_the_last_failure_unchanged(clock: FakeClock) -> None:
    manager = _manager(clock, failure_threshold_count=5)
    pool = BreakerPool(manager, ["a", "b", "c"], max_attempts=2)
    log: list[str] = []
    errors: list[Boom] = []

    def ask(member: str) -> str:
        log.append(member)
        errors.append(Boom(member))
        raise errors[-1]

    with pytest.raises(Boom) as info:
        pool.call(ask)
    assert info.value is errors[-1]
    assert log == ["a", "b"]
    assert [m.total_failures for m in pool.metrics().values()] == [1, 1, 0]


def test_an_unrecorded_exception_ends_the_call(clock: FakeClock) -> None:
    manager = _manager(clock, record_exceptions=(ConnectionError,))
    pool = BreakerPool(manager, ["a", "b"])
    log: list[str] = []

    def ask(member: str) -> str:
        log.append(member)
        raise ValueError("bad request")  # the service answered: no failover

    with pytest.raises(ValueError, match="bad request"):
        pool.call(ask)
    assert log == ["a"]


def test_a_failed_result_moves_on_and_is_returned_when_attempts_run_out(
    clock: FakeClock,
) -> None:
    manager = _manager(clock, failure_threshold_count=5, result_is_failure=lambda r: r == 503)
    pool = BreakerPool(manager, ["a", "b"])
    assert pool.call(lambda member: 503 if member == "a" else 200) == 200
    assert pool.call(lambda member: 503) == 503
    assert pool.metrics()["b"].total_failures == 1


def test_the_ejection_cap_keeps_members_closed_and_says_so(clock: FakeClock) -> None:
    manager = _manager(clock, failure_threshold_count=2)
    everything: list[Event] = []
    manager.subscribe(everything.append)
    pool = BreakerPool(manager, ["a", "b", "c", "d"], max_ejection_percent=50)
    assert pool.max_ejected == 2
    own: list[Event] = []
    manager["c"].subscribe(own.append, TripSuppressed)
    failing = _answer_from(set())
    for _ in range(2):
        with pytest.raises(Boom):
            pool.call(failing, "x")
    states = {name: m.current_state for name, m in pool.metrics().items()}
    assert states == {"a": OPEN, "b": OPEN, "c": CLOSED, "d": CLOSED}
    assert own == [TripSuppressed("c", clock())]
    assert TripSuppressed("d", clock()) in everything
    assert pool.metrics()["c"].window_failures == 2  # still counted
    # One member recovers: the next failure of a capped member trips it.
    clock.advance(30)
    assert pool.call(_answer_from({"a"}), "x") == "a: x"
    assert manager["a"].state is CLOSED
    assert manager["b"].state is HALF_OPEN  # still counted: c trips, d is capped again
    with pytest.raises(Boom):
        manager["c"].call(failing, "c", "x")
    assert manager["c"].state is OPEN
    with pytest.raises(Boom):
        manager["d"].call(failing, "d", "x")
    assert manager["d"].state is CLOSED


def test_a_half_open_member_still_counts_until_it_closes(clock: FakeClock) -> None:
    manager = _manager(clock)
    pool = BreakerPool(manager, ["a", "b"], max_ejection_percent=50)
    with pytest.raises(Boom):
        manager["a"].call(_answer_from(set()), "a", "x")
    clock.advance(30)
    assert manager["a"].state is HALF_OPEN
    with pytest.raises(Boom):
        manager["b"].call(_answer_from(set()), "b", "x")
    assert manager["b"].state is CLOSED
    assert pool.call(_answer_from({"a"}), "x") == "a: x"  # the trial closes a
    with pytest.raises(Boom):
        manager["b"].call(_answer_from(set()), "b", "x")
    assert manager["b"].state is OPEN


def test_a_held_back_rule_trips_at_the_next_call_that_may_even_a_success(
    clock: FakeClock,
) -> None:
    # A window: successes would skip the lock (no listener, no slow-call rule) while
    # no success can trip; a rule met and held back by the cap is not that case.
    manager = _manager(clock, failure_window=60.0)
    pool = BreakerPool(manager, ["a", "b"], max_ejection_percent=50)
    with pytest.raises(Boom):
        manager["a"].call(_answer_from(set()), "a", "x")
    with pytest.raises(Boom):
        manager["b"].call(_answer_from(set()), "b", "x")
    assert manager["b"].state is CLOSED  # held back: its window still meets the rule
    assert manager["b"]._core.deferring is None
    manager["a"].reset()  # the place is free again
    assert manager["b"].call(_answer_from({"b"}), "b", "x") == "b: x"
    assert manager["b"].state is OPEN  # the rule, still met, trips at this call
    assert [m.value for m in (manager["a"].state, manager["b"].state)] == ["closed", "open"]
    assert pool.max_ejected == 1


def test_manual_controls_are_not_capped_nor_counted(clock: FakeClock) -> None:
    manager = _manager(clock)
    BreakerPool(manager, ["a", "b", "c"], max_ejection_percent=34)
    manager["a"].trip()
    manager["b"].force_open()
    with pytest.raises(Boom):
        manager["c"].call(_answer_from(set()), "c", "x")
    assert manager["c"].state is OPEN  # the one member the cap allows, by its own trip
    manager["c"].reset()
    assert manager["c"]._core.ejected is False


def test_a_replaced_member_breaker_keeps_the_cap(clock: FakeClock) -> None:
    manager = _manager(clock)
    BreakerPool(manager, ["a", "b"], max_ejection_percent=50)
    manager.configure_service("b", CircuitBreakerConfig(failure_threshold_count=1))
    with pytest.raises(Boom):
        manager["a"].call(_answer_from(set()), "a", "x")
    with pytest.raises(Boom):
        manager["b"].call(_answer_from(set()), "b", "x")
    assert (manager["a"].state, manager["b"].state) == (OPEN, CLOSED)


def test_a_member_in_two_capped_pools_is_refused(clock: FakeClock) -> None:
    manager = _manager(clock)
    BreakerPool(manager, ["a", "b"], max_ejection_percent=50, name="one")
    with pytest.raises(ValueError, match="'b' is in the BreakerPool 'one'"):
        BreakerPool(manager, ["b", "c"], max_ejection_percent=50, name="two")
    BreakerPool(manager, ["b", "c"], name="uncapped")  # no cap: nothing to share


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"members": "ab"}, TypeError, "members must be a list of service names, got 'ab'"),
        ({"members": []}, ValueError, "at least one"),
        ({"members": ["a", 1]}, TypeError, "service names .str., got 1"),
        ({"members": ["a", "a"]}, ValueError, "each be named once"),
        ({"strategy": "random"}, ValueError, "strategy must be .*'random'"),
        ({"max_ejection_percent": 0}, ValueError, r"max_ejection_percent .*\(0, 100\], got 0"),
        ({"max_ejection_percent": 101}, ValueError, "got 101"),
        ({"max_ejection_percent": float("nan")}, ValueError, "got nan"),
        ({"max_ejection_percent": True}, ValueError, "got True"),
        ({"max_attempts": 0}, ValueError, "max_attempts must be an int >= 1 or None, got 0"),
        ({"max_attempts": 1.5}, ValueError, "got 1.5"),
        ({"name": 3}, TypeError, "name must be a str, got 3"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], error: type, match: str) -> None:
    args: dict[str, Any] = {"members": ["a", "b"], **kwargs}
    members = args.pop("members")
    with pytest.raises(error, match=match):
        BreakerPool(CircuitBreakerManager(), members, **args)


@pytest.mark.anyio
async def test_wrong_kinds_of_function_are_refused_before_any_member_runs() -> None:
    manager = _manager()
    pool = BreakerPool(manager, ["a", "b"])

    async def ask(member: str) -> str:
        return member

    with pytest.raises(TypeError, match=r"needs a plain function.*call_async"):
        pool.call(ask)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs a callable, got 3"):
        await pool.call_async(3)  # type: ignore[arg-type]
    assert [m.total_allowed for m in pool.metrics().values()] == [0, 0]


def test_manager_must_be_a_manager() -> None:
    with pytest.raises(TypeError, match="manager must be a CircuitBreakerManager"):
        BreakerPool(object(), ["a"])  # type: ignore[arg-type]


def test_at_least_one_member_may_be_ejected(clock: FakeClock) -> None:
    pool = BreakerPool(_manager(clock), ["a", "b", "c"], max_ejection_percent=1)
    assert pool.max_ejected == 1


# -- async --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_call_async_fails_over(clock: FakeClock) -> None:
    manager = _manager(clock)
    pool = BreakerPool(manager, ["a", "b"], name="llm")

    async def ask(member: str, prompt: str) -> str:
        await anyio.sleep(0)
        if member == "a":
            raise Boom("a is down")
        return f"{member}: {prompt}"

    assert await pool.call_async(ask, "hi") == "b: hi"
    assert manager["a"].state is OPEN
    manager["b"].trip(5)
    with pytest.raises(CircuitOpenError) as info:
        await pool.call_async(ask, "hi")
    assert info.value.name == "llm"


@pytest.mark.anyio
async def test_call_async_cancellation_ends_the_call() -> None:
    manager = _manager()
    pool = BreakerPool(manager, ["a", "b"])
    ran: list[str] = []

    async def ask(member: str) -> None:
        ran.append(member)
        await anyio.sleep(60)

    with anyio.move_on_after(0.05):
        await pool.call_async(ask)
    assert ran == ["a"]
    assert manager["a"].metrics().total_ignored == 1


@pytest.mark.anyio
async def test_call_timeout_expiry_moves_on() -> None:
    manager = _manager(call_timeout=0.05)
    pool = BreakerPool(manager, ["slow", "fast"])

    async def ask(member: str) -> str:
        if member == "slow":
            await anyio.sleep(60)
        return member

    assert await pool.call_async(ask) == "fast"
    assert manager["slow"].metrics().total_failures == 1


# -- the cap under concurrency ------------------------------------------------------------

MEMBERS = [f"m{i}" for i in range(10)]


def test_the_cap_holds_when_every_member_fails_in_many_threads(clock: FakeClock) -> None:
    manager = _manager(clock, failure_threshold_count=3)
    pool = BreakerPool(manager, MEMBERS, max_ejection_percent=30)
    suppressed: list[Event] = []
    manager.subscribe(suppressed.append, TripSuppressed)
    start = threading.Barrier(16)

    def worker() -> None:
        start.wait()
        order = MEMBERS[:]
        for _ in range(40):
            random.shuffle(order)
            for member in order:
                with contextlib.suppress(Boom, CircuitOpenError):
                    manager[member].call(_answer_from(set()), member, "x")

    with switching_often():
        run_in_threads([worker] * 16, timeout=120, on_error=start.abort)
    states = [m.current_state for m in pool.metrics().values()]
    assert states.count(OPEN) == 3
    assert states.count(CLOSED) == 7
    assert suppressed


def test_the_cap_holds_while_members_trip_and_recover_in_many_threads() -> None:
    # A real clock and short open periods: members trip, go half-open and close
    # again all the time. The cap's lock is held while counting, so what it
    # counts is what its gate decided on.
    manager = _manager(None, failure_threshold_count=2, reset_timeout=0.002)
    pool = BreakerPool(manager, MEMBERS, max_ejection_percent=20)
    gate = manager["m0"]._core.trip_gate
    assert gate is not None
    stop = threading.Event()
    worst = [0]
    opened: list[Event] = []
    manager.subscribe(opened.append, StateChanged)

    def watch() -> None:
        while not stop.is_set():
            with gate._lock:  # type: ignore[attr-defined]
                count = sum(manager[m]._core.ejected for m in MEMBERS)
                open_by_trip = sum(
                    manager[m]._core.state in (OPEN, HALF_OPEN) and manager[m]._core.ejected
                    for m in MEMBERS
                )
            worst[0] = max(worst[0], count, open_by_trip)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(600):
            member = rng.choice(MEMBERS)
            healthy = {member} if rng.random() < 0.3 else set()
            with contextlib.suppress(Boom, CircuitOpenError):
                manager[member].call(_answer_from(healthy), member, "x")

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with switching_often():
            run_in_threads([lambda s=s: worker(s) for s in range(12)], timeout=120)
    finally:
        stop.set()
        watcher.join(10)
    assert 1 <= worst[0] <= pool.max_ejected == 2
    assert any(isinstance(e, StateChanged) and e.new_state is CLOSED for e in opened)
    states = [manager[m].state for m in MEMBERS]
    assert sum(s in (OPEN, HALF_OPEN) for s in states) <= 2


@pytest.mark.anyio
async def test_the_cap_holds_with_many_tasks(clock: FakeClock) -> None:
    manager = _manager(clock, failure_threshold_count=2)
    pool = BreakerPool(manager, MEMBERS, max_ejection_percent=40)

    async def ask(member: str) -> str:
        await anyio.sleep(0)
        raise Boom(member)

    async def worker() -> None:
        for _ in range(30):
            with contextlib.suppress(Boom, CircuitOpenError):
                await pool.call_async(ask)

    async with anyio.create_task_group() as tasks:
        for _ in range(50):
            tasks.start_soon(worker)
    states = [m.current_state for m in pool.metrics().values()]
    assert states.count(CircuitState.OPEN) == 4
    assert states.count(CircuitState.CLOSED) == 6
