"""The default clock follows freezegun; FakeClock moves only when told to; clocks that jump
back, clocks that return NaN or inf, and a huge retry_after (issue 10, item 6)."""

from __future__ import annotations

import datetime
import math
import time

import pytest
from freezegun import freeze_time
from helpers import CLOSED, HALF_OPEN, OPEN, Boom, boom, fail, make, settled, trip

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


# -- a clock that jumps back ----------------------------------------------------------------


def test_a_breaker_tripped_inside_freeze_time_stays_open_one_period_after_it() -> None:
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=0.2))
    with freeze_time("2026-01-01"):  # time.monotonic() reads about 1.77e9 in here
        fail(breaker)
        assert breaker.state is OPEN
    # The real monotonic clock is decades behind the frozen one.
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(lambda: None)
    assert info.value.retry_after is not None
    # Not 54 years (and the period was computed at 1.77e9 s, to about 1e-7 s).
    assert info.value.retry_after == pytest.approx(0.2, abs=1e-6)
    time.sleep(0.25)
    breaker.call(lambda: None)  # the trial, on the real clock
    assert breaker.state is CLOSED


@pytest.mark.parametrize("listening", [False, True], ids=["fast_path", "locked_path"])
def test_a_jump_back_while_open_keeps_only_the_open_period(listening: bool) -> None:
    now = [1e9]
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=30), clock=lambda: now[0]
    )
    if listening:
        breaker.subscribe(lambda event: None)
    trip(breaker)
    now[0] = 1000.0  # adjusted back by about 31 years
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: None)
    assert breaker.metrics().retry_after == 30.0
    now[0] += 29.9
    assert breaker.state is OPEN
    now[0] += 0.1
    assert breaker.state is HALF_OPEN
    breaker.call(lambda: None)
    assert breaker.state is CLOSED


def test_a_jump_back_while_forced_open_stays_forced_open() -> None:
    now = [1e9]
    breaker = CircuitBreaker(clock=lambda: now[0])
    breaker.force_open()
    now[0] = 5.0
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(lambda: None)
    assert info.value.state is CircuitState.FORCED_OPEN
    assert breaker.state is CircuitState.FORCED_OPEN


def test_a_jump_back_empties_the_window_instead_of_keeping_failures_for_ever() -> None:
    now = [1e9]
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold_count=3, failure_window=10),
        clock=lambda: now[0],
    )
    fail(breaker)
    fail(breaker)
    assert breaker.metrics().window_failures == 2
    now[0] = 100.0
    fail(breaker)  # would be the third in the window, had the old ones stayed there
    m = breaker.metrics()
    assert (m.current_state, m.window_failures) == (CLOSED, 1)
    now[0] += 11
    assert breaker.metrics().window_failures == 0  # and they expire on the new clock


def test_a_trial_in_flight_across_a_jump_back_still_counts_as_hung() -> None:
    now = [1e9]
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=10, half_open_max_wait=5),
        clock=lambda: now[0],
    )
    trip(breaker)
    now[0] += 10
    permit = breaker.try_acquire()  # the trial, never completed
    assert permit is not None
    now[0] = 100.0
    assert breaker.state is HALF_OPEN
    now[0] += 5
    assert breaker.state is OPEN  # hung for half_open_max_wait on the new clock
    permit.release()


# -- NaN and infinities -------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_clock_returning_nan_or_inf_is_named_and_holds_nothing(bad: float) -> None:
    readings = [0.0, 0.0, 0.0]  # construction, then the first call's start and end

    def clock() -> float:
        return readings.pop(0) if readings else bad

    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold_count=1, failure_window=60), clock=clock
    )
    breaker.call(lambda: None)
    readings.append(1.0)  # the next call starts at 1.0 and ends on a bad reading
    with pytest.raises(ValueError, match=r"clock .*clock.* returned (nan|inf|-inf)"):
        breaker.call(lambda: None)
    with pytest.raises(ValueError, match="expected finite seconds"):
        breaker.call(lambda: None)  # a bad reading at the start: nothing is admitted
    readings.extend([2.0] * 4)
    assert settled(breaker.metrics())
    assert breaker._core.in_flight == 0


def test_a_nan_clock_in_half_open_gives_the_trial_slot_back(clock: FakeClock) -> None:
    bad = [False]

    def reading() -> float:
        return math.nan if bad[0] else clock()

    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold_count=1, test_request_count=1), clock=reading
    )
    with pytest.raises(Boom):
        breaker.call(boom)
    clock.advance(60)

    def trial() -> None:
        bad[0] = True  # the clock breaks while the trial runs

    with pytest.raises(ValueError, match="returned nan"):
        breaker.call(trial)
    bad[0] = False
    breaker.call(lambda: None)  # the slot came back
    assert breaker.state is CLOSED


# -- CircuitOpenError's message ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "tail"),
    [
        (12.345, "retry after 12.3s"),
        (1e300, "retry after 1e+300s"),
        (123456789.0, "retry after 1.23e+08s"),
        (math.inf, "is open"),
        (None, "is open"),
    ],
)
def test_the_message_stays_short_whatever_retry_after(retry_after: float | None, tail: str) -> None:
    message = str(CircuitOpenError("svc", CircuitState.OPEN, retry_after))
    assert message.endswith(tail)
    assert len(message) < 60
    assert "inf" not in message


def test_an_open_period_backed_off_to_infinity_reads_short() -> None:
    clock = FakeClock()
    breaker = make(
        clock, failure_threshold_count=1, reset_timeout=1, reset_timeout_multiplier=1e300
    )
    trip(breaker)
    clock.advance(1)
    with pytest.raises(Boom):
        breaker.call(boom)  # the trial fails: the next period is 1e300 s
    clock.advance(1e300)
    with pytest.raises(Boom):
        breaker.call(boom)  # and again: inf
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(lambda: None)
    assert len(str(info.value)) < 60
    assert "inf" not in str(info.value)
