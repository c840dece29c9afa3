"""circuitry.tenacity with the real tenacity: sync and async, on a FakeClock that sleeps move."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import tenacity
from helpers import CLOSED, HALF_OPEN, Boom, make
from tenacity import (
    AsyncRetrying,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    wait_fixed,
)

from circuitry import CircuitBreaker, CircuitOpenError
from circuitry.tenacity import (
    retry_after_circuit_open,
    retry_unless_circuit_open,
    wait_for_circuit,
)
from circuitry.testing import FakeClock


def flaky(failures: int, calls: list[float], clock: FakeClock) -> Callable[[], str]:
    """A function that raises Boom `failures` times, then returns "ok"; logs call times."""

    def call() -> str:
        calls.append(clock())
        if len(calls) <= failures:
            raise Boom("down")
        return "ok"

    return call


def sleeper(clock: FakeClock, sleeps: list[float]) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.advance(seconds)

    return sleep


def test_retry_after_circuit_open_waits_out_the_open_period(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=2, reset_timeout=30)
    calls: list[float] = []
    sleeps: list[float] = []
    retrying = Retrying(
        retry=retry_after_circuit_open(retry_if_exception_type(Boom)),
        wait=wait_for_circuit(wait_fixed(1)),
        stop=stop_after_attempt(5),
        sleep=sleeper(clock, sleeps),
        reraise=True,
    )
    # Two failures open the circuit at t=1; the rejection at t=2 says 29 s.
    assert retrying(breaker.call, flaky(2, calls, clock)) == "ok"
    assert sleeps == [1, 1, 29]
    assert calls == [0, 1, 31]  # the trial lands when the open period ends
    assert breaker.state is CLOSED
    assert breaker.metrics().total_rejected == 1


def test_retry_unless_circuit_open_fails_fast(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=2, reset_timeout=30)
    calls: list[float] = []
    sleeps: list[float] = []
    retrying = Retrying(
        retry=retry_unless_circuit_open(retry_if_exception_type(Boom)),
        wait=wait_fixed(1),
        stop=stop_after_attempt(10),
        sleep=sleeper(clock, sleeps),
        reraise=True,
    )
    with pytest.raises(CircuitOpenError):
        retrying(breaker.call, flaky(5, calls, clock))
    assert calls == [0, 1]  # the third attempt was rejected and not retried
    assert sleeps == [1, 1]


@pytest.mark.parametrize("strategy", [retry_unless_circuit_open, retry_after_circuit_open])
def test_inner_decides_everything_but_rejections(
    clock: FakeClock, strategy: Callable[[tenacity.retry_base], tenacity.retry_base]
) -> None:
    breaker = make(clock)
    calls: list[float] = []

    def value_error() -> None:
        calls.append(clock())
        raise ValueError("not retried by the inner condition")

    retrying = Retrying(
        retry=strategy(retry_if_exception_type(Boom)),
        stop=stop_after_attempt(3),
        sleep=lambda s: None,
        reraise=True,
    )
    with pytest.raises(ValueError):
        retrying(breaker.call, value_error)
    assert len(calls) == 1
    # A result the inner condition rejects is retried as usual.
    results = iter([None, None, "ok"])
    retrying = Retrying(
        retry=strategy(retry_if_result(lambda r: r is None)),
        stop=stop_after_attempt(3),
        sleep=lambda s: None,
    )
    assert retrying(breaker.call, lambda: next(results)) == "ok"


def test_rejection_without_retry_after_is_not_retried(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, reset_timeout=30)
    sleeps: list[float] = []
    retrying = Retrying(
        retry=retry_after_circuit_open(retry_if_exception_type(Boom)),
        wait=wait_for_circuit(wait_fixed(1)),
        stop=stop_after_attempt(5),
        sleep=sleeper(clock, sleeps),
        reraise=True,
    )
    breaker.force_open()
    with pytest.raises(CircuitOpenError) as info:
        retrying(breaker.call, lambda: "never runs")
    assert info.value.retry_after is None
    # HALF_OPEN with its one trial slot taken: unknown too.
    breaker.reset()
    with pytest.raises(Boom):
        breaker.call(flaky(1, [], clock))
    clock.advance(30)
    permit = breaker.try_acquire()
    assert permit is not None
    assert breaker.state is HALF_OPEN
    with pytest.raises(CircuitOpenError) as info:
        retrying(breaker.call, lambda: "never runs")
    assert info.value.retry_after is None
    assert sleeps == []
    permit.release()


def test_wait_for_circuit_falls_back_for_other_failures_and_combines() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(clock=clock)
    breaker.trip(12)
    wait = wait_for_circuit(wait_fixed(3)) + wait_fixed(0.5)  # tenacity's `+`
    sleeps: list[float] = []
    retrying = Retrying(
        retry=retry_after_circuit_open(retry_if_exception_type(Boom)),
        wait=wait,
        stop=stop_after_attempt(2),
        sleep=sleeps.append,
        reraise=True,
    )
    with pytest.raises(CircuitOpenError):
        retrying(breaker.call, lambda: None)
    with pytest.raises(Boom):
        retrying(flaky(5, [], clock))
    assert sleeps == [12.5, 3.5]


def test_strategies_combine_with_tenacity_operators(clock: FakeClock) -> None:
    breaker = make(clock)
    condition = retry_unless_circuit_open(retry_if_exception_type(Boom)) | retry_if_result(
        lambda r: r is None
    )
    assert isinstance(condition, tenacity.retry_any)
    retrying = Retrying(retry=condition, stop=stop_after_attempt(3), sleep=lambda s: None)
    results = iter([None, "ok"])
    assert retrying(breaker.call, lambda: next(results)) == "ok"
    breaker.force_open()
    with pytest.raises(CircuitOpenError):  # neither side retries a rejection
        retrying(breaker.call, lambda: None)
    assert retrying.statistics["attempt_number"] == 1


@pytest.mark.parametrize(
    "strategy", [retry_unless_circuit_open, retry_after_circuit_open, wait_for_circuit]
)
def test_strategy_must_be_callable(strategy: Callable[[object], object]) -> None:
    with pytest.raises(TypeError, match=r"must be a tenacity strategy .* got 3"):
        strategy(3)


@pytest.mark.anyio
async def test_async_retry_waits_out_the_open_period(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=2, reset_timeout=30)
    calls: list[float] = []
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.advance(seconds)

    async def fetch() -> str:
        calls.append(clock())
        if len(calls) <= 2:
            raise Boom("down")
        return "ok"

    retrying = AsyncRetrying(
        retry=retry_after_circuit_open(retry_if_exception_type(Boom)),
        wait=wait_for_circuit(wait_fixed(1)),
        stop=stop_after_attempt(5),
        sleep=sleep,
        reraise=True,
    )
    result = None
    async for attempt in retrying:
        with attempt:
            result = await breaker.call_async(fetch)
    assert result == "ok"
    assert sleeps == [1, 1, 29]
    assert calls == [0, 1, 31]


@pytest.mark.anyio
async def test_async_retry_unless_circuit_open_fails_fast(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1)
    breaker.trip(60)

    async def no_sleep(seconds: float) -> None:
        raise AssertionError("a rejection must not be retried")

    async def fetch() -> str:
        raise AssertionError("an open circuit must not run the call")

    retrying = AsyncRetrying(
        retry=retry_unless_circuit_open(retry_if_exception_type(Boom)),
        stop=stop_after_attempt(5),
        sleep=no_sleep,
        reraise=True,
    )

    async def protected() -> str:
        # An `async def` for tenacity to await (`call_async` is a plain function before 3.12).
        return await breaker.call_async(fetch)

    with pytest.raises(CircuitOpenError):
        await retrying(protected)


def test_module_all_names_its_public_api() -> None:
    import circuitry.tenacity

    defined = {
        name
        for name, value in vars(circuitry.tenacity).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == "circuitry.tenacity"
    }
    assert defined == set(circuitry.tenacity.__all__)
