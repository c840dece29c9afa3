"""`@breaker(fallback=f, on=(...))`: sync and async (asyncio and trio), recorded as without it."""

from __future__ import annotations

import inspect

import anyio
import pytest

from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError, CircuitState
from circuitry.events import CallFailed, CallRejected, CallSucceeded, Event, StateChanged
from circuitry.testing import FakeClock


def _breaker(clock: FakeClock, **fields: object) -> CircuitBreaker:
    config = CircuitBreakerConfig(failure_threshold_count=2, reset_timeout=10, **fields)  # type: ignore[arg-type]
    return CircuitBreaker(config, name="svc", clock=clock)


def test_fallback_answers_a_rejection_with_the_arguments(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    ran: list[int] = []

    def cached(exc: BaseException, user: int, *, fresh: bool = False) -> str:
        assert isinstance(exc, CircuitOpenError)
        assert exc.name == "svc"
        return f"cached {user} fresh={fresh}"

    @breaker(fallback=cached)
    def fetch(user: int, *, fresh: bool = False) -> str:
        """Fetch a user."""
        ran.append(user)
        return f"live {user}"

    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch a user."
    assert fetch(1) == "live 1"
    breaker.force_open()
    assert fetch(2, fresh=True) == "cached 2 fresh=True"
    assert ran == [1]
    assert breaker.metrics().total_rejected == 1


def test_failure_not_in_on_propagates_and_counts(clock: FakeClock) -> None:
    breaker = _breaker(clock)

    @breaker(fallback=lambda exc: "fallback")
    def boom() -> str:
        raise ValueError("down")

    for _ in range(2):
        with pytest.raises(ValueError, match="down"):
            boom()
    assert breaker.state is CircuitState.OPEN
    assert boom() == "fallback"  # now rejected


def test_on_catches_the_failure_after_it_is_recorded(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    events: list[Event] = []
    breaker.subscribe(events.append)
    seen: list[BaseException] = []

    def fallback(exc: BaseException) -> str:
        # The breaker counted the failure before the fallback ran.
        seen.append(exc)
        assert isinstance(events[-1], (CallFailed, CallRejected, StateChanged))
        return "fallback"

    @breaker(fallback=fallback, on=ConnectionError)
    def boom() -> str:
        raise ConnectionError("refused")

    assert boom() == "fallback"
    assert boom() == "fallback"
    assert breaker.state is CircuitState.OPEN  # both failures counted: the threshold is 2
    assert boom() == "fallback"
    assert [type(e) for e in seen] == [ConnectionError, ConnectionError, CircuitOpenError]
    metrics = breaker.metrics()
    assert (metrics.total_failures, metrics.total_rejected) == (2, 1)


def test_on_an_ignored_exception_is_still_ignored(clock: FakeClock) -> None:
    breaker = _breaker(clock, ignore_exceptions=(KeyError,))

    @breaker(fallback=lambda exc: "fallback", on=(KeyError, OSError))
    def lookup() -> str:
        raise KeyError("x")

    assert lookup() == "fallback"
    metrics = breaker.metrics()
    assert (metrics.total_ignored, metrics.total_failures) == (1, 0)


def test_fallback_exception_propagates_with_the_call_exception_as_context(
    clock: FakeClock,
) -> None:
    breaker = _breaker(clock)

    def fallback(exc: BaseException) -> str:
        raise RuntimeError("no cache either")

    @breaker(fallback=fallback)
    def fetch() -> str:
        return "live"

    breaker.force_open()
    with pytest.raises(RuntimeError, match="no cache") as info:
        fetch()
    assert isinstance(info.value.__context__, CircuitOpenError)


def test_success_never_calls_the_fallback(clock: FakeClock) -> None:
    breaker = _breaker(clock)

    def fallback(exc: BaseException) -> int:
        raise AssertionError("not called")

    @breaker(fallback=fallback, on=Exception)
    def fetch() -> int:
        return 7

    assert fetch() == 7
    assert breaker.metrics().total_successes == 1


def test_rejection_of_another_breaker_inside_is_answered_too(clock: FakeClock) -> None:
    inner = CircuitBreaker(name="inner", clock=clock)
    outer = _breaker(clock)
    inner.force_open()

    @outer(fallback=lambda exc: f"fallback for {exc.name}")
    def fetch() -> str:
        return inner.call(lambda: "live")

    assert fetch() == "fallback for inner"


@pytest.mark.anyio
async def test_async_function_with_async_fallback(clock: FakeClock) -> None:
    breaker = _breaker(clock)

    async def cached(exc: BaseException, key: str) -> str:
        await anyio.sleep(0)
        return f"cached {key}"

    @breaker(fallback=cached, on=(OSError,))
    async def fetch(key: str) -> str:
        await anyio.sleep(0)
        if key == "bad":
            raise OSError("down")
        return f"live {key}"

    assert inspect.iscoroutinefunction(fetch)
    assert await fetch("a") == "live a"
    assert await fetch("bad") == "cached bad"
    assert breaker.metrics().total_failures == 1
    breaker.force_open()
    assert await fetch("a") == "cached a"


@pytest.mark.anyio
async def test_async_function_with_sync_fallback(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    events: list[Event] = []
    breaker.subscribe(events.append)

    @breaker(fallback=lambda exc, key: f"default {key}")
    async def fetch(key: str) -> str:
        await anyio.sleep(0)
        return f"live {key}"

    assert await fetch("a") == "live a"
    breaker.force_open()
    assert await fetch("b") == "default b"
    assert isinstance(events[0], CallSucceeded)


@pytest.mark.anyio
async def test_async_cancellation_is_never_answered_by_the_fallback(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    called: list[BaseException] = []

    @breaker(fallback=called.append, on=Exception)
    async def slow() -> None:
        await anyio.sleep(60)

    with anyio.move_on_after(0.01):
        await slow()
    assert called == []
    assert breaker.metrics().total_ignored == 1


def test_plain_function_refuses_an_async_fallback(clock: FakeClock) -> None:
    breaker = _breaker(clock)

    async def fallback(exc: BaseException) -> str:
        return "x"

    decorate = breaker(fallback=fallback)
    with pytest.raises(TypeError, match="cannot await"):
        decorate(lambda: "x")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fallback": 3}, "fallback must be callable, got 3"),
        ({"fallback": print, "on": "OSError"}, "on must be an exception type.*'OSError'"),
        ({"fallback": print, "on": (OSError, 3)}, "on must be an exception type.*3"),
        ({"fallback": print, "on": KeyboardInterrupt}, "on must hold Exception subclasses"),
        ({"fallback": print, "on": (anyio.get_cancelled_exc_class,)}, "on must be"),
        ({"on": OSError}, "needs a function to decorate, or fallback="),
        ({}, "needs a function to decorate"),
    ],
)
def test_bad_fallback_arguments_are_refused(
    clock: FakeClock, kwargs: dict[str, object], match: str
) -> None:
    breaker = _breaker(clock)
    with pytest.raises(TypeError, match=match):
        breaker(**kwargs)  # type: ignore[call-overload]


def test_a_generator_fallback_is_refused(clock: FakeClock) -> None:
    def gen(exc: BaseException) -> object:
        yield exc

    with pytest.raises(TypeError, match="not a generator"):
        _breaker(clock)(fallback=gen)


def test_function_and_fallback_together_are_refused(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    with pytest.raises(TypeError, match="not both"):
        breaker(print, fallback=print)  # type: ignore[call-overload]
