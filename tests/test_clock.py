"""The default clock follows freezegun; FakeClock moves only when told to."""

from __future__ import annotations

import datetime
import math
import time

import pytest
from freezegun import freeze_time
from helpers import fail

from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError, CircuitState
from circuitry.testing import FakeClock


def state(breaker: CircuitBreaker) -> CircuitState:
    return breaker.state


# -- the default clock under freezegun ---------------------------------------------------


def test_breaker_built_before_freeze_time_follows_the_frozen_clock() -> None:
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold_count=2, reset_timeout=30))
    with freeze_time("2024-01-01 12:00:00") as frozen:
        fail(breaker)
        fail(breaker)
        assert state(breaker) is CircuitState.OPEN
        with pytest.raises(CircuitOpenError) as info, breaker:
            pass
        assert info.value.retry_after == 30.0
        frozen.tick(29)
        assert state(breaker) is CircuitState.OPEN
        assert breaker.metrics().time_in_state == 29.0
        frozen.tick(1)
        assert state(breaker) is CircuitState.HALF_OPEN
        with breaker:
            pass
        assert state(breaker) is CircuitState.CLOSED


def test_breaker_built_inside_freeze_time_does_not_move_until_ticked() -> None:
    with freeze_time("2024-01-01", tick=False) as frozen:
        breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=5))
        fail(breaker)
        assert state(breaker) is CircuitState.OPEN
        frozen.move_to("2024-01-01 00:00:04.9")
        assert state(breaker) is CircuitState.OPEN
        frozen.move_to("2024-01-01 00:00:05")
        assert state(breaker) is CircuitState.HALF_OPEN


def test_frozen_clock_gives_exact_call_durations() -> None:
    breaker = CircuitBreaker()
    with freeze_time("2024-01-01") as frozen:
        breaker.call(frozen.tick, 2)
        assert breaker.metrics().average_response_time == 2.0


def test_default_clock_is_monotonic_time() -> None:
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=3600))
    fail(breaker)
    with pytest.raises(CircuitOpenError) as info, breaker:
        pass
    assert info.value.retry_after is not None
    assert 0 < info.value.retry_after <= 3600
    assert breaker.metrics().time_in_state >= 0


def test_default_clock_reads_time_monotonic_at_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=10))
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    fail(breaker)
    now[0] += 10
    assert state(breaker) is CircuitState.HALF_OPEN


# -- FakeClock ---------------------------------------------------------------------------------


def test_fake_clock_starts_at_zero_by_default() -> None:
    clock = FakeClock()
    assert clock() == 0.0
    assert type(clock()) is float


def test_fake_clock_start_is_converted_to_float() -> None:
    assert FakeClock(5)() == 5.0
    assert type(FakeClock(5)()) is float
    assert FakeClock(datetime.timedelta(minutes=1))() == 60.0  # type: ignore[arg-type]
    assert FakeClock(-3.5)() == -3.5


def test_fake_clock_advance_moves_forward() -> None:
    clock = FakeClock(10)
    clock.advance(2.5)
    assert clock() == 12.5
    clock.advance(datetime.timedelta(seconds=1.5))
    assert clock() == 14.0
    clock.advance(0)
    assert clock() == 14.0


def test_fake_clock_does_not_move_by_itself() -> None:
    clock = FakeClock(1)
    assert clock() == clock() == 1.0


def test_fake_clock_set_jumps_to_a_time() -> None:
    clock = FakeClock()
    clock.set(100)
    assert clock() == 100.0
    assert type(clock()) is float
    clock.set(50.5)  # set may go back: it is how a test simulates a clock step
    assert clock() == 50.5


@pytest.mark.parametrize("bad", [-1, -0.001, datetime.timedelta(seconds=-1)])
def test_fake_clock_advance_rejects_going_back(bad: object) -> None:
    clock = FakeClock(10)
    with pytest.raises(ValueError, match="seconds"):
        clock.advance(bad)  # type: ignore[arg-type]
    assert clock() == 10.0


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (math.nan, ValueError),
        pytest.param(10**400, ValueError, id="int-too-large-for-a-float"),
        pytest.param(-(10**400), ValueError, id="negative-int-too-large-for-a-float"),
        (math.inf, ValueError),
        (-math.inf, ValueError),
        ("1", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
)
def test_fake_clock_validates_start_set_and_advance(bad: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="start"):
        FakeClock(bad)  # type: ignore[arg-type]
    clock = FakeClock(1)
    with pytest.raises(error, match="t must"):
        clock.set(bad)  # type: ignore[arg-type]
    with pytest.raises(error, match="seconds"):
        clock.advance(bad)  # type: ignore[arg-type]
    assert clock() == 1.0


def test_fake_clock_drives_a_breaker() -> None:
    clock = FakeClock(1000)
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=10), clock=clock
    )
    fail(breaker)
    clock.advance(9.5)
    assert state(breaker) is CircuitState.OPEN
    clock.set(1010)
    assert state(breaker) is CircuitState.HALF_OPEN


def test_fake_clock_repr_shows_the_time() -> None:
    assert repr(FakeClock(2.5)) == "FakeClock(2.5)"
