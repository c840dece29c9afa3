"""Chains: `CircuitBreaker(..., parent=host)` and `CircuitBreakerManager(parent_of=...)`."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from helpers import CLOSED, HALF_OPEN, OPEN, Boom, Skipped

from circuitry import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerManager,
    CircuitOpenError,
)
from circuitry.testing import FakeClock


def _pair(clock: FakeClock, **child: Any) -> tuple[CircuitBreaker, CircuitBreaker]:
    host = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold_count=3, reset_timeout=10), name="host", clock=clock
    )
    child.setdefault("failure_threshold_count", 2)
    child.setdefault("reset_timeout", 10)
    endpoint = CircuitBreaker(
        CircuitBreakerConfig(**child), name="host/a", clock=clock, parent=host
    )
    return endpoint, host


# Each way to make a call, sync: returns fn's result or raises.
def _via_call(breaker: CircuitBreaker, fn: Callable[[], Any]) -> Any:
    return breaker.call(fn)


def _via_with(breaker: CircuitBreaker, fn: Callable[[], Any]) -> Any:
    with breaker:
        return fn()


def _via_guard(breaker: CircuitBreaker, fn: Callable[[], Any]) -> Any:
    with breaker.guard():
        return fn()


def _via_decorator(breaker: CircuitBreaker, fn: Callable[[], Any]) -> Any:
    @breaker
    def protected() -> Any:
        return fn()

    return protected()


def _via_exit_stack(breaker: CircuitBreaker, fn: Callable[[], Any]) -> Any:
    with contextlib.ExitStack() as stack:
        stack.enter_context(breaker)
        return fn()


def _via_stream(breaker: CircuitBreaker, fn: Callable[[], Any]) -> Any:
    def items() -> Any:
        yield fn()

    (only,) = breaker.stream(items())  # a stream of one item, exhausted
    return only


SYNC_WAYS = [_via_call, _via_with, _via_guard, _via_decorator, _via_exit_stack, _via_stream]


def _fail() -> None:
    raise Boom("down")


@pytest.mark.parametrize("way", SYNC_WAYS)
def test_outcomes_are_recorded_in_both(way: Any, clock: FakeClock) -> None:
    child, host = _pair(clock)
    assert way(child, lambda: 5) == 5
    with pytest.raises(Boom):
        way(child, _fail)
    for breaker in (child, host):
        metrics = breaker.metrics()
        assert (metrics.total_successes, metrics.total_failures) == (1, 1), breaker.name
    with pytest.raises(Boom):
        way(child, _fail)
    assert (child.state, host.state) == (OPEN, CLOSED)  # each by its own threshold
    with pytest.raises(CircuitOpenError) as info:
        way(child, lambda: 5)
    assert info.value.name == "host/a"


@pytest.mark.parametrize("way", SYNC_WAYS)
def test_a_parent_rejection_names_the_parent_and_gives_the_ticket_back(
    way: Any, clock: FakeClock
) -> None:
    child, host = _pair(clock)
    host.force_open()
    ran: list[int] = []
    with pytest.raises(CircuitOpenError) as info:
        way(child, lambda: ran.append(1))
    assert ran == []
    assert info.value.name == "host"
    metrics = child.metrics()
    assert (metrics.total_allowed, metrics.total_ignored, metrics.total_failures) == (1, 1, 0)
    assert child._core.tickets == []  # nothing held
    assert child._blocks == {}
    assert host.metrics().total_rejected == 1


@pytest.mark.parametrize("way", SYNC_WAYS)
def test_a_half_open_childs_trial_slot_comes_back_when_the_parent_rejects(
    way: Any, clock: FakeClock
) -> None:
    child, host = _pair(clock)
    child.trip(1)
    clock.advance(1)
    host.force_open()
    for _ in range(3):  # the one trial slot is given back each time
        with pytest.raises(CircuitOpenError, match="'host'"):
            way(child, lambda: None)
    assert child.state is HALF_OPEN
    host.reset()
    assert way(child, lambda: "ok") == "ok"  # the slot is free: the trial runs, closes
    assert child.state is CLOSED


def test_each_records_by_its_own_rules(clock: FakeClock) -> None:
    child, host = _pair(clock, ignore_exceptions=(Skipped,))

    def skip() -> None:
        raise Skipped

    with pytest.raises(Skipped):
        child.call(skip)
    assert child.metrics().total_ignored == 1
    assert host.metrics().total_failures == 1


def test_a_grandparent_rejects_too(clock: FakeClock) -> None:
    region = CircuitBreaker(name="region", clock=clock)
    host = CircuitBreaker(name="host", clock=clock, parent=region)
    endpoint = CircuitBreaker(name="endpoint", clock=clock, parent=host)
    assert endpoint.call(lambda: 1) == 1
    assert [b.metrics().total_successes for b in (endpoint, host, region)] == [1, 1, 1]
    region.force_open()
    with pytest.raises(CircuitOpenError, match="'region'"), endpoint:
        pass
    assert [b.metrics().total_ignored for b in (endpoint, host)] == [1, 1]
    assert endpoint.parent is host


def test_try_acquire_asks_both_and_the_permit_completes_both(clock: FakeClock) -> None:
    child, host = _pair(clock, ignore_exceptions=(Skipped,))
    permit = child.try_acquire()
    assert permit is not None
    permit.record_exception(Skipped())
    assert child.metrics().total_ignored == 1
    assert host.metrics().total_failures == 1  # each by its own rules
    permit.record_failure()  # only the first completion counts
    assert host.metrics().total_failures == 1
    permit = child.try_acquire()
    assert permit is not None
    permit.record_success()
    assert (child.metrics().total_successes, host.metrics().total_successes) == (1, 1)
    child.trip(1)
    clock.advance(1)
    host.force_open()
    assert child.try_acquire() is None
    assert child.metrics().total_ignored == 2  # the trial slot given back
    host.reset()
    permit = child.try_acquire()
    assert permit is not None
    assert child.try_acquire() is None  # the one trial slot is this permit's
    permit.release()
    assert (child.metrics().total_ignored, host.metrics().total_ignored) == (3, 1)


def test_a_dropped_chain_permit_frees_both(clock: FakeClock) -> None:
    child, host = _pair(clock)
    child.trip(1)
    host.trip(1)
    clock.advance(1)
    permit = child.try_acquire()
    assert permit is not None
    del permit
    assert child.try_acquire() is not None  # reclaimed at the next use: both slots free


@pytest.mark.anyio
async def test_the_async_transports_permit_asks_both(clock: FakeClock) -> None:
    from circuitry._classify import SUCCESS

    child, host = _pair(clock)
    permit = await child._try_acquire_async()
    await permit._complete_async(SUCCESS, None)
    assert (child.metrics().total_successes, host.metrics().total_successes) == (1, 1)
    host.force_open()
    with pytest.raises(CircuitOpenError, match="'host'"):
        await child._try_acquire_async()
    assert child.metrics().total_ignored == 1


def test_parent_must_be_a_breaker() -> None:
    with pytest.raises(TypeError, match="parent must be a CircuitBreaker or None, got 'x'"):
        CircuitBreaker(parent="x")  # type: ignore[arg-type]


# -- async ---------------------------------------------------------------------------------


async def _a_call(breaker: CircuitBreaker, fn: Callable[[], Awaitable[Any]]) -> Any:
    return await breaker.call_async(fn)


async def _a_with(breaker: CircuitBreaker, fn: Callable[[], Awaitable[Any]]) -> Any:
    async with breaker:
        return await fn()


async def _a_guard(breaker: CircuitBreaker, fn: Callable[[], Awaitable[Any]]) -> Any:
    async with breaker.guard():
        return await fn()


async def _a_decorator(breaker: CircuitBreaker, fn: Callable[[], Awaitable[Any]]) -> Any:
    @breaker
    async def protected() -> Any:
        return await fn()

    return await protected()


async def _a_stream(breaker: CircuitBreaker, fn: Callable[[], Awaitable[Any]]) -> Any:
    async def items() -> Any:
        yield await fn()

    (only,) = [item async for item in breaker.astream(items())]  # exhausted
    return only


ASYNC_WAYS = [_a_call, _a_with, _a_guard, _a_decorator, _a_stream]


@pytest.mark.anyio
@pytest.mark.parametrize("way", ASYNC_WAYS)
async def test_async_chains_record_in_both_and_give_back(way: Any, clock: FakeClock) -> None:
    child, host = _pair(clock)

    async def five() -> int:
        await anyio.sleep(0)
        return 5

    async def fail() -> None:
        await anyio.sleep(0)
        raise Boom("down")

    assert await way(child, five) == 5
    with pytest.raises(Boom):
        await way(child, fail)
    for breaker in (child, host):
        metrics = breaker.metrics()
        assert (metrics.total_successes, metrics.total_failures) == (1, 1)
    child.trip(1)
    clock.advance(1)
    host.force_open()
    with pytest.raises(CircuitOpenError) as info:
        await way(child, five)
    assert info.value.name == "host"
    assert child.metrics().total_ignored == 1
    host.reset()
    assert await way(child, five) == 5  # the trial slot came back
    assert child.state is CLOSED


@pytest.mark.anyio
async def test_cancellation_is_ignored_in_both(clock: FakeClock) -> None:
    child, host = _pair(clock)

    async def hang() -> None:
        await anyio.sleep(60)

    with anyio.move_on_after(0.01):
        await child.call_async(hang)
    with anyio.move_on_after(0.01):
        async with child:
            await hang()
    assert child.metrics().total_ignored == 2
    assert host.metrics().total_ignored == 2


@pytest.mark.anyio
@pytest.mark.parametrize("way", [_a_call, _a_with, _a_guard, _a_decorator])
async def test_call_timeouts_count_as_each_breaker_sees_them(way: Any, clock: FakeClock) -> None:
    async def hang() -> None:
        await anyio.sleep(60)

    # The child's own deadline cancels the call inside its parent: the child
    # counts the TimeoutError, the parent a cancelled call (ignored).
    child, host = _pair(clock, call_timeout=0.05)
    with pytest.raises(TimeoutError, match="'host/a'"):
        await way(child, hang)
    assert (child.metrics().total_failures, host.metrics().total_ignored) == (1, 1)
    # A parent's shorter deadline: its TimeoutError is what the caller sees, and
    # what both count, each as a failure.
    host = CircuitBreaker(CircuitBreakerConfig(call_timeout=0.05), name="host", clock=clock)
    child = CircuitBreaker(
        CircuitBreakerConfig(call_timeout=30.0), name="host/a", clock=clock, parent=host
    )
    with pytest.raises(TimeoutError, match="'host'"):
        await way(child, hang)
    for breaker in (child, host):
        metrics = breaker.metrics()
        assert (metrics.total_failures, metrics.total_ignored) == (1, 0), breaker.name
        assert breaker._core.tickets == [], breaker.name  # type: ignore[attr-defined]


# -- the manager ---------------------------------------------------------------------------


def _host_of(name: str) -> str | None:
    return name.split("/")[0] if "/" in name else None


def test_manager_chains_endpoints_under_their_host(clock: FakeClock) -> None:
    manager = CircuitBreakerManager(
        CircuitBreakerConfig(failure_threshold_count=2), clock=clock, parent_of=_host_of
    )
    a = manager["api/a"]
    assert a.parent is manager["api"]
    assert manager.names() == ["api", "api/a"]  # the parent is made first
    for endpoint in ("api/a", "api/b"):
        with pytest.raises(Boom):
            manager.call(endpoint, _fail)
    assert manager["api"].state is OPEN  # two bad endpoints open the host
    assert manager["api/a"].state is CLOSED
    with pytest.raises(CircuitOpenError, match="'api'"):
        manager.call("api/c", lambda: None)


def test_a_replaced_parent_takes_its_children_along(clock: FakeClock) -> None:
    manager = CircuitBreakerManager(clock=clock, parent_of=_host_of)
    child = manager["api/a"]
    manager.configure_service("api", CircuitBreakerConfig(failure_threshold_count=9))
    assert child.parent is manager["api"]
    manager.configure_service("api/a", CircuitBreakerConfig(failure_threshold_count=9))
    assert manager["api/a"].parent is manager["api"]


@pytest.mark.parametrize(
    ("parent_of", "error", "match"),
    [
        (lambda name: name, ValueError, "cycle: a -> a"),
        (lambda name: {"a": "b", "b": "a"}[name], ValueError, "cycle: a -> b -> a"),
        (lambda name: 3, TypeError, r"parent_of\('a'\) must return a service name or None, got 3"),
    ],
)
def test_bad_parent_of_is_refused(parent_of: Any, error: type, match: str) -> None:
    manager = CircuitBreakerManager(parent_of=parent_of)
    with pytest.raises(error, match=match):
        manager.breaker("a")
    assert manager.names() == []


def test_parent_of_must_be_callable() -> None:
    with pytest.raises(TypeError, match="parent_of must be callable or None, got 3"):
        CircuitBreakerManager(parent_of=3)  # type: ignore[arg-type]
