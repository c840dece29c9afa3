"""Caller mistakes are not the dependency's failures (API.md, "Promises at the joints").

`call` / `call_async` with something they cannot call raise TypeError before
admission and count nothing; a `call_async` whose function returns no
awaitable counts as ignored; `call_timeout` with a sync call logs one warning.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
from helpers import CLOSED, HALF_OPEN, Boom, half_open, make, run_in_threads

from circuitry import CircuitBreaker
from circuitry.testing import FakeClock


def assert_nothing_counted(breaker: CircuitBreaker) -> None:
    m = breaker.metrics()
    counts = (m.total_allowed, m.total_rejected, m.total_successes, m.total_failures)
    assert counts == (0, 0, 0, 0)
    assert m.total_ignored == 0
    assert m.current_state is CLOSED


async def answer() -> int:
    return 42


class AsyncCallable:
    async def __call__(self) -> int:
        return 42


class SyncCallable:
    def __call__(self) -> int:
        return 3


class Client:
    async def get(self) -> int:
        return 42


async def numbers() -> AsyncIterator[int]:
    yield 1


def coroutine_functions() -> list[Callable[..., Any]]:
    decorated = CircuitBreaker(name="other")(answer)  # on 3.12+ a function marked as one
    return [
        answer,
        functools.partial(answer),
        AsyncCallable(),
        Client().get,
        decorated,
        functools.partial(decorated),
        numbers,
    ]


COROUTINE_FUNCTIONS = ["def", "partial", "__call__", "method", "decorated", "partial2", "agen"]


# -- call(x) ------------------------------------------------------------------------------


@pytest.mark.parametrize("thing", [None, 42, "fn", object()])
def test_call_of_a_non_callable_raises_type_error_and_counts_nothing(
    clock: FakeClock, thing: Any
) -> None:
    breaker = make(clock, failure_threshold_count=1)
    for _ in range(3):
        with pytest.raises(TypeError, match=r"call\(\) needs a callable"):
            breaker.call(thing)
    assert_nothing_counted(breaker)


@pytest.mark.parametrize("fn", coroutine_functions(), ids=COROUTINE_FUNCTIONS)
def test_call_of_a_coroutine_function_raises_type_error_naming_call_async(
    clock: FakeClock, fn: Callable[..., Any]
) -> None:
    breaker = make(clock, failure_threshold_count=1)
    for _ in range(2):  # the second time too: nothing async is remembered as fine
        with pytest.raises(TypeError, match=r"call_async"):
            breaker.call(fn)
    assert_nothing_counted(breaker)


def test_a_function_is_checked_again_after_another_was_called(clock: FakeClock) -> None:
    breaker = make(clock)

    def sync() -> int:
        return 1

    assert breaker.call(sync) == 1
    with pytest.raises(TypeError):
        breaker.call(answer)
    assert breaker.call(sync) == 1
    with pytest.raises(TypeError):
        breaker.call(None)  # type: ignore[arg-type]
    assert breaker.metrics().total_successes == 2


def test_call_of_a_coroutine_function_takes_no_trial_slot(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1)
    half_open(breaker, clock)
    with pytest.raises(TypeError):
        breaker.call(answer)
    with pytest.raises(TypeError):
        breaker.call(None)  # type: ignore[arg-type]
    assert breaker.call(lambda: 7) == 7  # the only slot was still free
    assert breaker.state is CLOSED


def test_what_call_remembers_never_lets_an_async_callable_through(clock: FakeClock) -> None:
    breaker = make(clock)

    class Service:
        def fetch(self) -> int:
            return 1

        async def fetch_async(self) -> int:
            return 2

    def closures(n: int) -> tuple[Callable[[], int], Callable[[], Any]]:
        def sync() -> int:
            return n

        async def not_sync() -> int:
            return n

        return sync, not_sync

    service = Service()
    for n in range(3):
        sync, not_sync = closures(n)
        assert breaker.call(service.fetch) == 1  # a bound method, remembered by function
        with pytest.raises(TypeError, match="call_async"):
            breaker.call(service.fetch_async)
        assert breaker.call(sync) == n  # a closure, remembered by code
        assert breaker.call(lambda n=n: n) == n
        with pytest.raises(TypeError, match="call_async"):
            breaker.call(not_sync)
        with pytest.raises(TypeError, match="call_async"):
            breaker.call(functools.partial(AsyncCallable()))
        assert breaker.call(functools.partial(service.fetch)) == 1
        with pytest.raises(TypeError, match="call_async"):
            breaker.call(functools.partial(service.fetch_async))
        assert breaker.call(SyncCallable()) == 3  # remembered by its class
        with pytest.raises(TypeError, match="call_async"):
            breaker.call(AsyncCallable())
        assert breaker.call(str, n) == str(n)  # a class, remembered by its metaclass
        with pytest.raises(TypeError, match="needs a callable"):
            breaker.call(None)  # type: ignore[arg-type]
        assert breaker.call(len, "ab") == 2
    assert breaker.metrics().total_successes == 21
    assert breaker.metrics().total_allowed == 21


def test_call_still_takes_every_kind_of_sync_callable(clock: FakeClock) -> None:
    breaker = make(clock)

    class Adder:
        def __call__(self, a: int, b: int) -> int:
            return a + b

        def add(self, a: int, b: int) -> int:
            return a + b

    assert breaker.call(max, 1, 2) == 2  # a builtin
    assert breaker.call(Adder(), 1, 2) == 3
    assert breaker.call(Adder().add, 1, 2) == 3
    assert breaker.call(functools.partial(max, 1), 2) == 2
    assert breaker.call(int, "5") == 5  # a class
    assert breaker.call(lambda: 1) == 1
    assert breaker.call("a,b".split, ",") == ["a", "b"]  # a method of a C type
    assert breaker.call(str.upper, "a") == "A"  # a method descriptor
    assert breaker.call(dict.fromkeys, "a") == {"a": None}  # a class method
    assert breaker.metrics().total_successes == 9


def test_call_through_the_manager_refuses_a_coroutine_function(clock: FakeClock) -> None:
    from circuitry import CircuitBreakerManager

    manager = CircuitBreakerManager(clock=clock)
    with pytest.raises(TypeError, match=r"call_async"):
        manager.call("svc", answer)
    assert_nothing_counted(manager.breaker("svc"))


def test_decorating_a_non_callable_raises_type_error(clock: FakeClock) -> None:
    breaker = make(clock)
    with pytest.raises(TypeError, match="decorates a function"):
        breaker(None)  # type: ignore[call-overload]
    assert_nothing_counted(breaker)


# -- call_async(x) ------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("thing", [None, 42, object()])
async def test_call_async_of_a_non_callable_raises_type_error_and_counts_nothing(
    clock: FakeClock, thing: Any
) -> None:
    breaker = make(clock, failure_threshold_count=1)
    for _ in range(3):
        with pytest.raises(TypeError, match=r"call_async\(\) needs a callable"):
            await breaker.call_async(thing)
    assert_nothing_counted(breaker)


@pytest.mark.anyio
@pytest.mark.parametrize("timeout", [None, 30.0])
async def test_call_async_of_a_sync_function_raises_type_error_and_counts_ignored(
    clock: FakeClock, timeout: float | None
) -> None:
    breaker = make(clock, failure_threshold_count=1, call_timeout=timeout)
    ran = []

    def sync_fn() -> int:
        ran.append(1)
        return 42

    for _ in range(3):
        with pytest.raises(TypeError, match=r"call_async.*returned 42.*breaker\.call"):
            await breaker.call_async(sync_fn)  # type: ignore[arg-type]
    assert ran == [1, 1, 1]
    m = breaker.metrics()
    assert (m.total_allowed, m.total_ignored, m.total_failures, m.total_successes) == (3, 3, 0, 0)
    assert m.current_state is CLOSED


@pytest.mark.anyio
async def test_call_async_of_a_sync_function_gives_the_trial_slot_back(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1)
    half_open(breaker, clock)
    with pytest.raises(TypeError):
        await breaker.call_async(lambda: None)  # type: ignore[arg-type, return-value]
    assert breaker.state is HALF_OPEN
    assert await breaker.call_async(answer) == 42
    assert breaker.state is CLOSED


@pytest.mark.anyio
async def test_call_async_of_a_sync_callable_returning_an_awaitable_is_allowed(
    clock: FakeClock,
) -> None:
    breaker = make(clock)
    assert await breaker.call_async(lambda: answer()) == 42
    assert await breaker.call_async(functools.partial(answer)) == 42
    assert await breaker.call_async(AsyncCallable()) == 42
    assert breaker.metrics().total_successes == 3


@pytest.mark.anyio
async def test_a_type_error_the_function_raises_is_still_its_failure(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=2)

    async def broken() -> None:
        raise TypeError("the dependency's own bug")

    def raises_when_called() -> None:
        raise TypeError("raised by the call itself, before any awaitable")

    with pytest.raises(TypeError, match="own bug"):
        await breaker.call_async(broken)
    with pytest.raises(TypeError, match="by the call itself"):
        await breaker.call_async(raises_when_called)  # type: ignore[arg-type]
    assert breaker.metrics().total_failures == 2


@pytest.mark.anyio
async def test_a_decorated_function_that_returns_no_awaitable_counts_ignored(
    clock: FakeClock,
) -> None:
    breaker = make(clock, failure_threshold_count=1)

    class Sneaky:
        """Looks like a coroutine function to `@breaker`, returns a plain value."""

        async def _marker(self) -> None: ...

        def __call__(self) -> int:
            return 1

    sneaky = Sneaky()
    protected = breaker._wrap_async(sneaky)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="returned 1"):
        await protected()
    m = breaker.metrics()
    assert (m.total_ignored, m.total_failures) == (1, 0)


# -- call_timeout with a sync call ------------------------------------------------------


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "circuitry" and r.levelno == logging.WARNING]


def use_with(breaker: CircuitBreaker) -> None:
    with breaker:
        pass


def use_call(breaker: CircuitBreaker) -> None:
    breaker.call(lambda: None)


def use_decorator(breaker: CircuitBreaker) -> None:
    @breaker
    def f() -> None:
        pass

    f()


def use_guard(breaker: CircuitBreaker) -> None:
    with breaker.guard():
        pass


SYNC_USES = [use_with, use_call, use_decorator, use_guard]


@pytest.mark.parametrize("first", SYNC_USES)
def test_call_timeout_with_a_sync_call_logs_one_warning(
    clock: FakeClock, caplog: pytest.LogCaptureFixture, first: Callable[[CircuitBreaker], None]
) -> None:
    breaker = make(clock, name="slow-db", call_timeout=2.0)
    with caplog.at_level(logging.WARNING, logger="circuitry"):
        first(breaker)
        assert len(warnings_of(caplog)) == 1
        for use in SYNC_USES * 2:
            use(breaker)
    [record] = warnings_of(caplog)
    message = record.getMessage()
    assert "'slow-db'" in message
    assert "call_timeout" in message
    assert breaker.metrics().total_successes == 9


def test_call_timeout_warning_is_per_breaker(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    a = make(clock, name="a", call_timeout=2.0)
    b = make(clock, name="b", call_timeout=2.0)
    with caplog.at_level(logging.WARNING, logger="circuitry"):
        for _ in range(2):
            use_with(a)
            use_call(b)
    assert sorted(r.getMessage().split("'")[1] for r in warnings_of(caplog)) == ["a", "b"]


def test_no_warning_without_call_timeout(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    breaker = make(clock)
    with caplog.at_level(logging.WARNING, logger="circuitry"):
        for use in SYNC_USES:
            use(breaker)
    assert warnings_of(caplog) == []


def test_the_breaker_is_still_a_plain_circuit_breaker_before_and_after(clock: FakeClock) -> None:
    breaker = make(clock, call_timeout=2.0)
    assert isinstance(breaker, CircuitBreaker)
    assert repr(breaker) == "<CircuitBreaker 'svc' closed>"
    use_with(breaker)
    assert type(breaker) is CircuitBreaker


@pytest.mark.anyio
async def test_async_calls_with_call_timeout_log_no_warning(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    breaker = make(clock, call_timeout=2.0)

    @breaker
    async def f() -> int:
        return 1

    with caplog.at_level(logging.WARNING, logger="circuitry"):
        async with breaker:
            pass
        assert await breaker.call_async(answer) == 42
        assert await f() == 1
    assert warnings_of(caplog) == []
    # ... and the first sync use of the same breaker still warns.
    with caplog.at_level(logging.WARNING, logger="circuitry"):
        use_with(breaker)
    assert len(warnings_of(caplog)) == 1


def test_a_failing_sync_call_is_still_counted_after_the_warning(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    breaker = make(clock, failure_threshold_count=2, call_timeout=2.0)

    def boom() -> None:
        raise Boom

    with caplog.at_level(logging.WARNING, logger="circuitry"):
        with pytest.raises(Boom):
            breaker.call(boom)
        with pytest.raises(Boom), breaker:
            raise Boom
    assert breaker.metrics().total_failures == 2
    assert len(warnings_of(caplog)) == 1


def test_threads_racing_for_the_first_sync_call_log_one_warning(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(20):
        breaker = make(clock, call_timeout=2.0)
        barrier = threading.Barrier(8)

        def first_use(
            breaker: CircuitBreaker = breaker, barrier: threading.Barrier = barrier
        ) -> None:
            barrier.wait()
            use_with(breaker)

        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="circuitry"):
            run_in_threads([first_use] * 8, timeout=30, on_error=barrier.abort)
        assert len(warnings_of(caplog)) == 1
        assert breaker.metrics().total_successes == 8


def test_call_async_in_a_worker_thread_is_not_confused_with_a_sync_call(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    breaker = make(clock, call_timeout=2.0)
    with caplog.at_level(logging.WARNING, logger="circuitry"):
        assert anyio.run(breaker.call_async, answer) == 42
    assert warnings_of(caplog) == []


# -- config fields passed to the breaker ------------------------------------------------


def test_a_config_field_passed_to_the_breaker_names_the_class_and_the_config() -> None:
    with pytest.raises(TypeError) as info:
        CircuitBreaker(failure_threshold_count=3)  # type: ignore[call-arg]
    message = str(info.value)
    assert message.startswith("CircuitBreaker() got an unexpected keyword argument")
    assert "'failure_threshold_count'" in message
    assert "CircuitBreakerConfig(failure_threshold_count=...)" in message
    assert "BreakerBase" not in message


def test_an_unknown_keyword_names_the_class_and_its_parameters() -> None:
    with pytest.raises(TypeError) as info:
        CircuitBreaker(nmae="payments")  # type: ignore[call-arg]
    message = str(info.value)
    assert message.startswith("CircuitBreaker() got an unexpected keyword argument 'nmae'")
    assert "config, name, clock, store, random, parent" in message


def test_a_second_positional_argument_names_the_class() -> None:
    with pytest.raises(TypeError, match=r"^CircuitBreaker\(\) takes one positional argument"):
        CircuitBreaker(None, "payments")  # type: ignore[misc]


def test_a_subclass_is_named_and_one_with_its_own_init_is_left_alone() -> None:
    class Payments(CircuitBreaker):
        pass

    with pytest.raises(TypeError, match=r"^Payments\(\) got an unexpected keyword"):
        Payments(reset_timeout=3)  # type: ignore[call-arg]

    class Named(CircuitBreaker):
        def __init__(self, service: str) -> None:
            super().__init__(name=service)

    assert Named("search").name == "search"


def test_the_signature_shown_is_the_parameters_not_args_and_kwargs() -> None:
    import inspect

    parameters = inspect.signature(CircuitBreaker).parameters
    assert list(parameters) == ["config", "name", "clock", "store", "random", "parent"]
