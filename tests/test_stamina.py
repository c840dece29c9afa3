"""circuitry.stamina with the real stamina: sync and async, on a FakeClock.

Stamina's testing mode (`stamina.set_testing`) removes every real wait; an
on-retry instrumentation hook moves the FakeClock by the wait stamina chose
(or, in testing mode, by the wait it would have chosen).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stamina
from helpers import CLOSED, OPEN, Boom, make
from stamina.instrumentation import RetryDetails, set_on_retry_hooks

from circuitry import CircuitOpenError
from circuitry.stamina import _version, on, takes_backoff_from_hook
from circuitry.testing import FakeClock


@pytest.fixture
def retries(clock: FakeClock) -> Iterator[list[RetryDetails]]:
    """The retries stamina schedules; each moves `clock` as its wait would."""
    scheduled: list[RetryDetails] = []

    def hook(details: RetryDetails) -> None:
        scheduled.append(details)
        cause = details.caused_by
        if isinstance(cause, CircuitOpenError) and cause.retry_after is not None:
            clock.advance(cause.retry_after)
        else:
            clock.advance(1)

    set_on_retry_hooks([hook])
    yield scheduled
    set_on_retry_hooks(None)


def rejected(retry_after: float | None) -> CircuitOpenError:
    return CircuitOpenError("svc", OPEN, retry_after)


def test_hook_retries_the_given_types_and_rejections_with_a_retry_after() -> None:
    with_backoff = on(Boom, ConnectionError, backoff=True)
    assert with_backoff(Boom()) is True
    assert with_backoff(ConnectionRefusedError()) is True
    assert with_backoff(ValueError()) is False
    assert with_backoff(rejected(12.5)) == 12.5
    assert with_backoff(rejected(0.0)) == 0.0  # a float: "retry now", not False
    assert with_backoff(rejected(None)) is False
    plain = on(Boom, backoff=False)
    assert plain(rejected(12.5)) is True
    assert plain(rejected(None)) is False
    assert on()(rejected(3)) == (3 if takes_backoff_from_hook() else True)
    assert on()(Boom()) is False


def test_installed_stamina_takes_a_backoff_from_the_hook() -> None:
    # The test extra installs a current stamina; older ones get True instead.
    assert takes_backoff_from_hook() is True
    assert _version("25.2.0") >= (25, 2) > _version("25.1.1") > _version("24.3.0")
    assert _version("26.1.0.dev3") == (26, 1)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(TypeError, match=r"exception_types must be Exception subclasses, got 3"):
        on(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got <class 'KeyboardInterrupt'>"):
        on(KeyboardInterrupt)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="backoff must be a bool or None, got 'yes'"):
        on(Boom, backoff="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("backoff", [True, False])
def test_retry_waits_out_the_open_period(
    clock: FakeClock, retries: list[RetryDetails], backoff: bool
) -> None:
    breaker = make(clock, failure_threshold_count=2, reset_timeout=30)
    calls: list[float] = []

    @stamina.retry(on=on(Boom, backoff=backoff), attempts=5, timeout=None)
    @breaker
    def fetch() -> str:
        calls.append(clock())
        if len(calls) <= 2:
            raise Boom("down")
        return "ok"

    with stamina.set_testing(True, attempts=5):
        assert fetch() == "ok"
    # Open at t=1; rejected at t=2 with 29 s to go; the trial runs at t=31.
    assert calls == [0, 1, 31]
    assert [type(r.caused_by) for r in retries] == [Boom, Boom, CircuitOpenError]
    assert breaker.state is CLOSED


def test_rejection_without_retry_after_is_not_retried(
    clock: FakeClock, retries: list[RetryDetails]
) -> None:
    breaker = make(clock)
    breaker.force_open()

    @stamina.retry(on=on(Boom), attempts=5, timeout=None)
    @breaker
    def fetch() -> str:
        raise AssertionError("a forced-open circuit must not run the call")

    with stamina.set_testing(True, attempts=5), pytest.raises(CircuitOpenError):
        fetch()
    assert retries == []


def test_stamina_waits_retry_after_as_the_backoff(
    clock: FakeClock, retries: list[RetryDetails]
) -> None:
    # Not in testing mode: stamina really sleeps the backoff the hook returns.
    breaker = make(clock)
    breaker.trip(0.001)

    @stamina.retry(on=on(Boom), attempts=3, timeout=None, wait_initial=5, wait_jitter=0)
    @breaker
    def fetch() -> str:
        return "ok"

    assert fetch() == "ok"
    # Stamina's own backoff would have been wait_initial=5.
    assert [r.wait_for for r in retries] == [0.001]


@pytest.mark.anyio
async def test_async_retry_waits_out_the_open_period(
    clock: FakeClock, retries: list[RetryDetails]
) -> None:
    breaker = make(clock, failure_threshold_count=2, reset_timeout=30)
    calls: list[float] = []

    @stamina.retry(on=on(Boom), attempts=5, timeout=None)
    @breaker
    async def fetch() -> str:
        calls.append(clock())
        if len(calls) <= 2:
            raise Boom("down")
        return "ok"

    with stamina.set_testing(True, attempts=5):
        assert await fetch() == "ok"
    assert calls == [0, 1, 31]
    assert [type(r.caused_by) for r in retries] == [Boom, Boom, CircuitOpenError]


@pytest.mark.anyio
async def test_async_stamina_waits_retry_after_as_the_backoff(
    clock: FakeClock, retries: list[RetryDetails]
) -> None:
    breaker = make(clock)
    breaker.trip(0.001)

    @stamina.retry(on=on(Boom), attempts=3, timeout=None, wait_initial=5, wait_jitter=0)
    @breaker
    async def fetch() -> str:
        return "ok"

    assert await fetch() == "ok"
    assert [r.wait_for for r in retries] == [0.001]


def test_module_all_names_its_public_api() -> None:
    import circuitry.stamina

    defined = {
        name
        for name, value in vars(circuitry.stamina).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == "circuitry.stamina"
    }
    assert defined == set(circuitry.stamina.__all__)
