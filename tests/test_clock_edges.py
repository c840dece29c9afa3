"""Clocks that jump back, clocks that return NaN or inf, huge retry_after (issue 10, item 6)."""

from __future__ import annotations

import math
import time

import pytest
from freezegun import freeze_time
from helpers import CLOSED, HALF_OPEN, OPEN, Boom, fail, make, trip

from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError, CircuitState
from circuitry.testing import FakeClock


def settled(breaker: CircuitBreaker) -> bool:
    m = breaker.metrics()
    return m.total_allowed == m.total_successes + m.total_failures + m.total_ignored


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
    assert settled(breaker)
    assert breaker._core.in_flight == 0


def test_a_nan_clock_in_half_open_gives_the_trial_slot_back(clock: FakeClock) -> None:
    bad = [False]

    def reading() -> float:
        return math.nan if bad[0] else clock()

    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold_count=1, test_request_count=1), clock=reading
    )
    with pytest.raises(Boom):
        breaker.call(_boom)
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
def test_the_message_stays_short_whatever_retry_after(
    retry_after: float | None, tail: str
) -> None:
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
        breaker.call(_boom)  # the trial fails: the next period is 1e300 s
    clock.advance(1e300)
    with pytest.raises(Boom):
        breaker.call(_boom)  # and again: inf
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(lambda: None)
    assert len(str(info.value)) < 60
    assert "inf" not in str(info.value)


def _boom() -> None:
    raise Boom("down")
