"""The pure core, driven with literal `now=` values: no clock, no threads.

Each test names one documented behaviour of `CircuitCore`. Times are plain
floats chosen so the expected values can be read off the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import CLOSED, FORCED_CLOSED, FORCED_OPEN, HALF_OPEN, OPEN, raw_state

from circuitry import CircuitBreakerConfig, CircuitState, _publish
from circuitry._classify import (
    FAILURE,
    IGNORED,
    SUCCESS,
    Outcome,
    classify_exception,
    classify_result,
)
from circuitry._core import REJECTED, CircuitCore
from circuitry._publish import NOT_REJECTING
from circuitry.events import CallFailed, CallIgnored, CallRejected, CallSucceeded, StateChanged

NAME = "svc"


# -- helpers ----------------------------------------------------------------------


def make(
    now: float = 0.0, *, random: Callable[[], float] | None = None, **config: Any
) -> CircuitCore:
    cfg = CircuitBreakerConfig(**config)
    if random is None:
        return CircuitCore(cfg, NAME, now)
    return CircuitCore(cfg, NAME, now, random=random)


def run(
    core: CircuitCore,
    started: float,
    ended: float,
    outcome: Outcome,
    exception: BaseException | None = None,
) -> int:
    """One admitted call from `started` to `ended`; returns its generation."""
    generation = core.acquire(started)
    assert generation != REJECTED, f"call at {started} was rejected in {core.state}"
    core.complete(generation, started, ended, outcome, exception)
    return generation


def fail(core: CircuitCore, now: float, duration: float = 0.0) -> None:
    run(core, now, now + duration, FAILURE)


def succeed(core: CircuitCore, now: float, duration: float = 0.0) -> None:
    run(core, now, now + duration, SUCCESS)


def ignore(core: CircuitCore, now: float, duration: float = 0.0) -> None:
    run(core, now, now + duration, IGNORED)


def changes(core: CircuitCore) -> list[tuple[CircuitState, CircuitState, float]]:
    """The state changes recorded so far, as (old, new, at); drains the events."""
    return [
        (e.old_state, e.new_state, e.at) for e in core.take_events() if isinstance(e, StateChanged)
    ]


@contextlib.contextmanager
def raises_and_changes_nothing(core: CircuitCore, match: str | None = None) -> Iterator[None]:
    """The block must raise ValueError (matching `match`) and leave `raw_state` as it was."""
    before = raw_state(core)
    with pytest.raises(ValueError, match=match):
        yield
    assert raw_state(core) == before


def sequence(*values: float) -> Callable[[], float]:
    """A `random` that returns `values` in order and fails if asked for more."""
    it: Iterator[float] = iter(values)

    def random() -> float:
        return next(it)

    return random


# -- a new core -------------------------------------------------------------------


def test_new_core_is_closed_with_empty_metrics() -> None:
    core = make(now=5.0)
    m = core.snapshot(5.0)
    assert m.name == NAME
    assert m.current_state is CLOSED
    assert m.time_in_state == 0.0
    assert (m.state_changes, m.total_allowed, m.total_rejected) == (0, 0, 0)
    assert (m.total_successes, m.total_failures, m.total_ignored, m.total_slow) == (0, 0, 0, 0)
    assert m.window_failures == 0
    assert m.average_response_time is None
    assert m.p95_response_time is None
    assert core.events == []


def test_closed_admits_every_call_with_the_current_generation() -> None:
    core = make(failure_threshold_count=1)
    generations = [core.acquire(float(t)) for t in range(100)]
    assert generations == [0] * 100
    assert core.snapshot(100.0).total_allowed == 100
    assert core.state is CLOSED


# -- CLOSED: trip rules ---------------------------------------------------------------


def test_consecutive_failures_trip_at_threshold() -> None:
    core = make(failure_threshold_count=3, reset_timeout=10)
    fail(core, 1.0)
    fail(core, 2.0)
    assert core.poll(2.0) is CLOSED
    assert core.snapshot(2.0).window_failures == 2
    fail(core, 3.0)
    assert core.poll(3.0) is OPEN
    assert changes(core) == [(CLOSED, OPEN, 3.0)]
    assert core.retry_after(3.0) == 10.0


def test_success_resets_consecutive_count() -> None:
    core = make(failure_threshold_count=3)
    fail(core, 1.0)
    fail(core, 2.0)
    succeed(core, 3.0)
    assert core.snapshot(3.0).window_failures == 0
    fail(core, 4.0)
    fail(core, 5.0)
    assert core.poll(5.0) is CLOSED
    assert core.snapshot(5.0).window_failures == 2
    fail(core, 6.0)
    assert core.poll(6.0) is OPEN


def test_ignored_call_neither_counts_nor_resets_consecutive_count() -> None:
    core = make(failure_threshold_count=2)
    fail(core, 1.0)
    ignore(core, 2.0)
    m = core.snapshot(2.0)
    assert (m.window_failures, m.total_ignored, m.current_state) == (1, 1, CLOSED)
    fail(core, 3.0)
    assert core.poll(3.0) is OPEN


def test_failure_trips_when_completed_not_when_admitted() -> None:
    core = make(failure_threshold_count=1)
    generation = core.acquire(0.0)
    assert core.poll(4.0) is CLOSED
    core.complete(generation, 0.0, 5.0, FAILURE)
    assert changes(core) == [(CLOSED, OPEN, 5.0)]


def test_window_count_trips_on_failures_in_window_even_with_successes_between() -> None:
    core = make(failure_threshold_count=3, failure_window=10)
    fail(core, 1.0)
    succeed(core, 2.0)
    fail(core, 3.0)
    succeed(core, 4.0)
    assert core.snapshot(4.0).window_failures == 2
    assert core.state is CLOSED
    fail(core, 5.0)
    assert core.poll(5.0) is OPEN


def test_failures_that_left_the_window_do_not_count() -> None:
    core = make(failure_threshold_count=3, failure_window=10)
    fail(core, 0.0)
    fail(core, 5.0)
    assert core.snapshot(8.9).window_failures == 2  # 8.9 < 0.9 * window: still counts
    assert core.snapshot(10.5).window_failures == 1  # 10.5 > window: gone
    fail(core, 10.5)
    assert core.poll(10.5) is CLOSED  # the failure at 0.0 no longer counts
    fail(core, 11.0)
    assert core.poll(11.0) is OPEN


def test_percentage_trips_only_after_minimum_calls() -> None:
    core = make(
        failure_threshold_count=100,
        failure_threshold_percentage=50,
        failure_window=60,
        minimum_calls=4,
    )
    for t in (1.0, 2.0, 3.0):
        fail(core, t)
    assert core.poll(3.0) is CLOSED  # 100 % of 3 calls, but fewer than minimum_calls
    assert core.snapshot(3.0).window_failures == 3
    fail(core, 4.0)
    assert changes(core) == [(CLOSED, OPEN, 4.0)]


def test_success_can_trip_percentage() -> None:
    # The success that brings the window up to minimum_calls makes the rate count.
    core = make(
        failure_threshold_count=100,
        failure_threshold_percentage=50,
        failure_window=60,
        minimum_calls=4,
    )
    fail(core, 1.0)
    fail(core, 2.0)
    succeed(core, 3.0)
    assert core.poll(3.0) is CLOSED
    succeed(core, 4.0)  # 2 failures of 4 calls = 50 %
    assert changes(core) == [(CLOSED, OPEN, 4.0)]


def test_percentage_below_threshold_does_not_trip() -> None:
    core = make(
        failure_threshold_count=100,
        failure_threshold_percentage=50,
        failure_window=60,
        minimum_calls=4,
    )
    fail(core, 1.0)
    for t in (2.0, 3.0, 4.0, 5.0):
        succeed(core, t)
    fail(core, 6.0)  # 2 of 6 = 33 %
    assert core.poll(6.0) is CLOSED
    assert core.snapshot(6.0).window_failures == 2


def test_count_rule_trips_before_minimum_calls() -> None:
    # Count and percentage are alternatives: whichever is reached first trips.
    core = make(
        failure_threshold_count=2,
        failure_threshold_percentage=90,
        failure_window=60,
        minimum_calls=10,
    )
    succeed(core, 1.0)
    fail(core, 2.0)
    fail(core, 3.0)
    assert core.poll(3.0) is OPEN


def test_ignored_calls_do_not_count_toward_minimum_calls() -> None:
    core = make(
        failure_threshold_count=100,
        failure_threshold_percentage=50,
        failure_window=60,
        minimum_calls=2,
    )
    fail(core, 1.0)
    ignore(core, 2.0)
    ignore(core, 3.0)
    assert core.poll(3.0) is CLOSED  # the window holds one call
    succeed(core, 4.0)
    assert core.poll(4.0) is OPEN


def test_slow_call_rate_trips() -> None:
    core = make(
        failure_threshold_count=100,
        failure_window=60,
        minimum_calls=4,
        slow_call_duration=2,
        slow_call_rate_threshold=50,
    )
    succeed(core, 1.0, duration=2.0)  # slow: exactly the limit
    succeed(core, 4.0, duration=0.5)
    succeed(core, 5.0, duration=3.0)  # slow
    assert core.poll(8.0) is CLOSED  # 2 slow of 3: fewer than minimum_calls
    succeed(core, 9.0, duration=0.1)  # 2 slow of 4 = 50 %
    assert core.poll(9.1) is OPEN
    assert core.snapshot(9.1).total_slow == 2


def test_slow_call_rate_below_threshold_does_not_trip() -> None:
    core = make(
        failure_threshold_count=100,
        failure_window=60,
        minimum_calls=2,
        slow_call_duration=2,
        slow_call_rate_threshold=50,
    )
    succeed(core, 1.0, duration=1.999)
    succeed(core, 4.0, duration=0.5)
    succeed(core, 5.0, duration=3.0)  # 1 slow of 3
    assert core.poll(8.0) is CLOSED


def test_slow_calls_count_successes_and_failures_not_ignored() -> None:
    core = make(failure_threshold_count=100, slow_call_duration=1)
    succeed(core, 0.0, duration=1.0)  # slow
    fail(core, 2.0, duration=5.0)  # slow
    ignore(core, 10.0, duration=5.0)  # ignored: not counted as slow
    succeed(core, 20.0, duration=0.999)
    assert core.snapshot(21.0).total_slow == 2


# -- OPEN ---------------------------------------------------------------------------


def test_open_rejects_until_reset_timeout_passes() -> None:
    core = make(failure_threshold_count=1, reset_timeout=10)
    fail(core, 0.0)
    assert core.acquire(9.999) == REJECTED
    assert core.state is OPEN
    generation = core.acquire(10.0)  # elapsed >= reset_timeout: a trial
    assert generation != REJECTED
    assert core.state is HALF_OPEN
    assert changes(core) == [(CLOSED, OPEN, 0.0), (OPEN, HALF_OPEN, 10.0)]
    m = core.snapshot(10.0)
    assert (m.total_allowed, m.total_rejected) == (2, 1)


def test_rejected_calls_are_counted_and_change_nothing_else() -> None:
    core = make(failure_threshold_count=1, reset_timeout=10)
    fail(core, 0.0)
    before = core.snapshot(1.0)
    for t in (1.0, 2.0, 3.0):
        assert core.acquire(t) == REJECTED
    after = core.snapshot(3.0)
    assert after.total_rejected == before.total_rejected + 3
    assert after.total_allowed == before.total_allowed
    assert after.state_changes == before.state_changes
    assert core.retry_after(3.0) == 7.0


@pytest.mark.parametrize("read", ["poll", "snapshot"])
def test_open_period_end_is_applied_at_the_next_operation(read: str) -> None:
    core = make(failure_threshold_count=1, reset_timeout=10)
    fail(core, 0.0)
    core.take_events()
    getattr(core, read)(25.0)
    assert core.state is HALF_OPEN
    assert changes(core) == [(OPEN, HALF_OPEN, 25.0)]
    assert core.snapshot(30.0).time_in_state == 5.0


# -- HALF_OPEN ------------------------------------------------------------------------


def test_half_open_failure_reopens() -> None:
    core = make(failure_threshold_count=1, reset_timeout=10)
    fail(core, 0.0)
    generation = core.acquire(10.0)
    core.complete(generation, 10.0, 11.0, FAILURE)
    assert changes(core) == [
        (CLOSED, OPEN, 0.0),
        (OPEN, HALF_OPEN, 10.0),
        (HALF_OPEN, OPEN, 11.0),
    ]
    assert core.retry_after(11.0) == 10.0
    assert core.acquire(20.5) == REJECTED


def test_half_open_success_closes() -> None:
    core = make(failure_threshold_count=2, reset_timeout=10)
    fail(core, 0.0)
    fail(core, 0.0)
    succeed(core, 10.0, duration=1.0)
    assert changes(core)[-1] == (HALF_OPEN, CLOSED, 11.0)
    m = core.snapshot(11.0)
    assert (m.current_state, m.window_failures, m.state_changes) == (CLOSED, 0, 3)
    fail(core, 12.0)
    assert core.poll(12.0) is CLOSED  # a new period starts with a zero count


def test_success_threshold_closes() -> None:
    core = make(failure_threshold_count=1, reset_timeout=10, success_threshold_count=3)
    fail(core, 0.0)
    succeed(core, 10.0)
    succeed(core, 11.0)
    assert core.poll(11.0) is HALF_OPEN
    succeed(core, 12.0)
    assert core.poll(12.0) is CLOSED


def test_trial_failure_after_some_successes_reopens() -> None:
    core = make(failure_threshold_count=1, reset_timeout=10, success_threshold_count=3)
    fail(core, 0.0)
    succeed(core, 10.0)
    succeed(core, 11.0)
    fail(core, 12.0)
    assert core.poll(12.0) is OPEN
    # The successes of the earlier HALF_OPEN period do not carry over.
    succeed(core, 22.0)
    succeed(core, 23.0)
    assert core.poll(23.0) is HALF_OPEN


def test_test_request_count_limits_trials() -> None:
    core = make(failure_threshold_count=1, reset_timeout=10, test_request_count=2)
    fail(core, 0.0)
    core.listening = True
    first = core.acquire(10.0)
    second = core.acquire(10.5)
    assert REJECTED not in (first, second)
    assert core.acquire(11.0) == REJECTED  # two trials in flight: full
    assert core.retry_after(11.0) is None
    core.complete(first, 10.0, 12.0, IGNORED)  # gives its slot back
    third = core.acquire(12.0)
    assert third != REJECTED
    assert core.acquire(12.5) == REJECTED
    rejected = [e for e in core.take_events() if isinstance(e, CallRejected)]
    assert rejected == [CallRejected(NAME, 11.0, HALF_OPEN), CallRejected(NAME, 12.5, HALF_OPEN)]
    assert core.state is HALF_OPEN


def test_ignored_trial_gives_its_slot_back_and_counts_as_ignored() -> None:
    core = make(failure_threshold_count=1, reset_timeout=10)
    fail(core, 0.0)
    ignore(core, 10.0)
    m = core.snapshot(11.0)
    assert (m.current_state, m.total_ignored) == (HALF_OPEN, 1)
    succeed(core, 11.0)
    assert core.poll(11.0) is CLOSED


def test_half_open_max_wait_reopens_with_backoff() -> None:
    core = make(
        failure_threshold_count=1,
        reset_timeout=10,
        half_open_max_wait=5,
        reset_timeout_multiplier=2,
        max_reset_timeout=100,
    )
    fail(core, 0.0)
    trial = core.acquire(10.0)
    assert core.poll(14.9) is HALF_OPEN
    assert core.poll(15.0) is OPEN
    assert changes(core)[-1] == (HALF_OPEN, OPEN, 15.0)
    assert core.retry_after(15.0) == 20.0  # backed off as a failed trial would
    core.complete(trial, 10.0, 16.0, SUCCESS)  # the hung trial is now a late result
    m = core.snapshot(16.0)
    assert (m.current_state, m.total_successes) == (OPEN, 1)


def test_half_open_max_wait_is_applied_at_the_next_operation() -> None:
    core = make(failure_threshold_count=1, reset_timeout=10, half_open_max_wait=5)
    fail(core, 0.0)
    core.acquire(10.0)
    core.take_events()
    assert core.acquire(40.0) == REJECTED
    assert changes(core) == [(HALF_OPEN, OPEN, 40.0)]
    assert core.retry_after(40.0) == 10.0


def test_half_open_without_trial_in_flight_never_expires() -> None:
    core = make(failure_threshold_count=1, reset_timeout=10, half_open_max_wait=5)
    fail(core, 0.0)
    assert core.poll(10.0) is HALF_OPEN
    assert core.poll(1000.0) is HALF_OPEN
    ignore(core, 1000.0, duration=1.0)  # a trial that ended: nothing in flight again
    assert core.poll(5000.0) is HALF_OPEN


def test_half_open_max_wait_counts_from_the_oldest_trial_in_flight() -> None:
    core = make(
        failure_threshold_count=1, reset_timeout=10, half_open_max_wait=5, test_request_count=2
    )
    fail(core, 0.0)
    first = core.acquire(10.0)
    core.acquire(13.0)
    core.complete(first, 10.0, 14.0, IGNORED)
    assert core.poll(17.5) is HALF_OPEN  # the first trial would have hung at 15.0
    assert core.poll(18.0) is OPEN


def test_half_open_max_wait_fires_when_the_oldest_of_several_trials_hangs() -> None:
    core = make(
        failure_threshold_count=1, reset_timeout=10, half_open_max_wait=5, test_request_count=2
    )
    fail(core, 0.0)
    first = core.acquire(10.0)
    second = core.acquire(13.0)
    assert core.poll(14.9) is HALF_OPEN
    assert core.poll(15.0) is OPEN  # the trial from 10.0 hung; the one from 13.0 had not yet
    core.complete(second, 13.0, 16.0, SUCCESS)
    core.complete(first, 10.0, 16.0, SUCCESS)
    m = core.snapshot(16.0)
    assert (m.current_state, m.total_successes) == (OPEN, 2)  # both late


def test_pending_hang_is_applied_before_the_trial_result() -> None:
    core = make(failure_threshold_count=1, reset_timeout=10, half_open_max_wait=5)
    fail(core, 0.0)
    trial = core.acquire(10.0)
    core.complete(trial, 10.0, 15.0, SUCCESS)  # at 15.0 the trial has hung
    assert core.state is OPEN
    assert core.snapshot(15.0).total_successes == 1


def test_half_open_keeps_no_window() -> None:
    core = make(failure_threshold_count=2, failure_window=60, reset_timeout=10)
    fail(core, 0.0)
    fail(core, 1.0)
    assert core.snapshot(11.0).current_state is HALF_OPEN
    assert core.snapshot(11.0).window_failures == 0
    succeed(core, 11.0)
    fail(core, 12.0)
    assert core.poll(12.0) is CLOSED  # the window started empty when it closed


# -- backoff and jitter ---------------------------------------------------------------


def _fail_trial(core: CircuitCore, now: float) -> None:
    fail(core, now)
    assert core.state is OPEN


def test_backoff_multiplies_and_caps() -> None:
    core = make(
        failure_threshold_count=1,
        reset_timeout=10,
        reset_timeout_multiplier=2,
        max_reset_timeout=35,
    )
    fail(core, 0.0)
    assert core.retry_after(0.0) == 10.0
    _fail_trial(core, 10.0)
    assert core.retry_after(10.0) == 20.0
    assert core.acquire(29.9) == REJECTED
    _fail_trial(core, 30.0)
    assert core.retry_after(30.0) == 35.0  # 40 capped
    _fail_trial(core, 65.0)
    assert core.retry_after(65.0) == 35.0


def test_backoff_without_cap_keeps_growing() -> None:
    core = make(failure_threshold_count=1, reset_timeout=1, reset_timeout_multiplier=3)
    fail(core, 0.0)
    _fail_trial(core, 1.0)
    _fail_trial(core, 4.0)
    _fail_trial(core, 13.0)
    assert core.retry_after(13.0) == 27.0


def test_default_multiplier_keeps_the_open_period() -> None:
    core = make(failure_threshold_count=1, reset_timeout=10)
    fail(core, 0.0)
    _fail_trial(core, 10.0)
    _fail_trial(core, 20.0)
    assert core.retry_after(20.0) == 10.0


def test_closing_restores_reset_timeout() -> None:
    core = make(
        failure_threshold_count=1,
        reset_timeout=10,
        reset_timeout_multiplier=2,
        max_reset_timeout=100,
    )
    fail(core, 0.0)
    _fail_trial(core, 10.0)
    assert core.retry_after(10.0) == 20.0
    succeed(core, 30.0)  # closes
    fail(core, 31.0)  # trips again
    assert core.retry_after(31.0) == 10.0
    _fail_trial(core, 41.0)
    assert core.retry_after(41.0) == 20.0  # backoff starts over from reset_timeout


def test_reset_restores_reset_timeout() -> None:
    core = make(
        failure_threshold_count=1,
        reset_timeout=10,
        reset_timeout_multiplier=2,
        max_reset_timeout=100,
    )
    fail(core, 0.0)
    _fail_trial(core, 10.0)
    _fail_trial(core, 30.0)
    assert core.retry_after(30.0) == 40.0
    core.force_open(31.0)
    core.reset(32.0)
    fail(core, 33.0)
    _fail_trial(core, 43.0)
    assert core.retry_after(43.0) == 20.0


def test_jitter_uses_injected_random() -> None:
    calls: list[float] = []
    values = iter([0.0, 0.75, 0.25])

    def random() -> float:
        calls.append(0.0)
        return next(values)

    core = make(
        random=random,
        failure_threshold_count=1,
        reset_timeout=10,
        reset_timeout_multiplier=2,
        max_reset_timeout=100,
        reset_timeout_jitter=0.5,
    )
    fail(core, 0.0)
    assert core.retry_after(0.0) == 5.0  # 10 * (1 + 0.5 * (2 * 0.0 - 1))
    assert core.acquire(4.9) == REJECTED
    _fail_trial(core, 5.0)
    # The backoff grows from the un-jittered 10, not from the jittered 5.
    assert core.retry_after(5.0) == 25.0  # 20 * (1 + 0.5 * 0.5)
    _fail_trial(core, 30.0)
    assert core.retry_after(30.0) == 30.0  # 40 * (1 - 0.5 * 0.5)
    assert len(calls) == 3  # once per open period


def test_without_jitter_random_is_not_called() -> None:
    core = make(random=sequence(), failure_threshold_count=1, reset_timeout=10)
    fail(core, 0.0)
    _fail_trial(core, 10.0)
    assert core.retry_after(10.0) == 10.0


# -- manual control -------------------------------------------------------------------


def test_force_open_rejects_everything() -> None:
    core = make()
    core.force_open(1.0)
    assert core.acquire(2.0) == REJECTED
    assert core.acquire(1e9) == REJECTED
    assert core.retry_after(1e9) is None
    m = core.snapshot(1e9)
    assert (m.current_state, m.total_rejected, m.total_allowed) == (FORCED_OPEN, 2, 0)
    assert changes(core) == [(CLOSED, FORCED_OPEN, 1.0)]


@pytest.mark.parametrize("window", [None, 60.0])
def test_force_closed_admits_everything_and_never_trips(window: float | None) -> None:
    core = make(failure_threshold_count=1, failure_window=window)
    core.force_closed(0.0)
    for t in range(50):
        fail(core, float(t))
    m = core.snapshot(50.0)
    assert m.current_state is FORCED_CLOSED
    assert (m.total_allowed, m.total_failures, m.window_failures) == (50, 50, 0)
    assert core.retry_after(50.0) is None


def test_reset_returns_to_closed_with_empty_window() -> None:
    core = make(failure_threshold_count=3, failure_window=60)
    fail(core, 0.0)
    fail(core, 1.0)
    assert core.snapshot(1.0).window_failures == 2
    core.reset(2.0)
    m = core.snapshot(2.0)
    assert (m.current_state, m.window_failures, m.state_changes) == (CLOSED, 0, 0)
    assert core.events == []  # CLOSED -> CLOSED is not a state change
    fail(core, 3.0)
    fail(core, 4.0)
    assert core.poll(4.0) is CLOSED


def test_reset_from_open_closes() -> None:
    core = make(failure_threshold_count=1, reset_timeout=10)
    fail(core, 0.0)
    core.reset(1.0)
    assert changes(core) == [(CLOSED, OPEN, 0.0), (OPEN, CLOSED, 1.0)]
    succeed(core, 1.0)


@pytest.mark.parametrize(
    ("operation", "state"),
    [("force_open", FORCED_OPEN), ("force_closed", FORCED_CLOSED), ("reset", CLOSED)],
)
def test_manual_op_on_the_same_state_starts_a_new_period_without_a_state_change(
    operation: str, state: CircuitState
) -> None:
    core = make(failure_threshold_count=1)
    getattr(core, operation)(0.0)
    core.take_events()
    before = core.snapshot(0.0).state_changes
    in_flight = core.acquire(1.0)  # REJECTED when FORCED_OPEN
    getattr(core, operation)(2.0)
    assert core.state is state
    assert core.events == []
    assert core.snapshot(2.0).state_changes == before
    assert core.snapshot(2.0).time_in_state == 0.0  # a new state period
    if in_flight != REJECTED:
        assert core.acquire(3.0) != in_flight  # a new generation
        core.complete(in_flight, 1.0, 3.0, FAILURE)  # late: does not trip
        assert core.state is state


def test_manual_ops_apply_pending_open_period_end_first() -> None:
    core = make(failure_threshold_count=1, reset_timeout=10)
    fail(core, 0.0)
    core.force_open(12.0)
    assert changes(core) == [
        (CLOSED, OPEN, 0.0),
        (OPEN, HALF_OPEN, 12.0),
        (HALF_OPEN, FORCED_OPEN, 12.0),
    ]
    assert core.snapshot(12.0).state_changes == 3


def test_manual_ops_apply_pending_hang_first() -> None:
    core = make(failure_threshold_count=1, reset_timeout=10, half_open_max_wait=5)
    fail(core, 0.0)
    core.acquire(10.0)
    core.take_events()
    core.force_closed(20.0)
    assert changes(core) == [(HALF_OPEN, OPEN, 20.0), (OPEN, FORCED_CLOSED, 20.0)]


def test_calls_in_flight_at_a_manual_op_become_late_results() -> None:
    core = make(failure_threshold_count=1)
    generation = core.acquire(0.0)
    core.reset(1.0)
    core.complete(generation, 0.0, 2.0, FAILURE)
    m = core.snapshot(2.0)
    assert (m.current_state, m.total_failures, m.window_failures) == (CLOSED, 1, 0)


# -- late results ---------------------------------------------------------------------


def test_late_result_does_not_move_state() -> None:
    core = make(failure_threshold_count=1, reset_timeout=10)
    early = core.acquire(0.0)
    fail(core, 1.0)  # trips: `early` now belongs to an earlier state period
    assert core.poll(11.0) is HALF_OPEN
    core.complete(early, 0.0, 12.0, SUCCESS)  # a success, but late: does not close
    assert core.state is HALF_OPEN
    assert core.acquire(12.0) != REJECTED  # nor did it use or free the trial slot
    m = core.snapshot(12.0)
    assert (m.total_successes, m.total_failures) == (1, 1)
    assert changes(core) == [(CLOSED, OPEN, 1.0), (OPEN, HALF_OPEN, 11.0)]


def test_late_success_in_open_changes_nothing_but_totals() -> None:
    core = make(failure_threshold_count=1, reset_timeout=10)
    early = core.acquire(0.0)
    fail(core, 1.0)
    core.complete(early, 0.0, 2.0, SUCCESS)
    assert core.state is OPEN
    assert core.retry_after(2.0) == 9.0
    assert core.snapshot(2.0).total_successes == 1


def test_late_failure_does_not_reopen_half_open() -> None:
    core = make(failure_threshold_count=1, reset_timeout=10)
    early = core.acquire(0.0)
    fail(core, 1.0)
    trial = core.acquire(11.0)
    core.complete(early, 0.0, 12.0, FAILURE)  # late
    assert core.state is HALF_OPEN
    core.complete(trial, 11.0, 13.0, SUCCESS)
    assert core.state is CLOSED
    assert core.snapshot(13.0).total_failures == 2


def test_late_result_does_not_enter_the_new_window() -> None:
    core = make(failure_threshold_count=2, failure_window=60)
    early = core.acquire(0.0)
    core.reset(1.0)
    core.complete(early, 0.0, 2.0, FAILURE)
    fail(core, 3.0)
    m = core.snapshot(3.0)
    assert (m.current_state, m.window_failures, m.total_failures) == (CLOSED, 1, 2)


def test_late_result_updates_latency_and_slow_totals() -> None:
    core = make(failure_threshold_count=1, slow_call_duration=1)
    early = core.acquire(0.0)
    core.force_open(1.0)
    core.complete(early, 0.0, 4.0, FAILURE)
    m = core.snapshot(4.0)
    assert (m.total_failures, m.total_slow) == (1, 1)
    assert m.average_response_time == 4.0
    assert m.p95_response_time == pytest.approx(4.0, rel=0.05)


# -- misuse -------------------------------------------------------------------------


def test_double_completion_raises_and_leaves_state_untouched() -> None:
    core = make(failure_threshold_count=2)
    generation = core.acquire(0.0)
    core.complete(generation, 0.0, 1.0, FAILURE)
    with raises_and_changes_nothing(core, match="more than once"):
        core.complete(generation, 0.0, 2.0, FAILURE)
    fail(core, 3.0)  # the count is 2, not 3: the bad completion was not counted
    m = core.snapshot(3.0)
    assert (m.current_state, m.total_failures) == (OPEN, 2)


def test_double_completion_of_a_trial_raises_and_leaves_state_untouched() -> None:
    core = make(failure_threshold_count=1, reset_timeout=10, success_threshold_count=2)
    fail(core, 0.0)
    trial = core.acquire(10.0)
    core.complete(trial, 10.0, 11.0, SUCCESS)
    with raises_and_changes_nothing(core, match="more than once"):
        core.complete(trial, 10.0, 12.0, SUCCESS)
    assert core.state is HALF_OPEN  # one success of two
    succeed(core, 13.0)
    assert core.state is CLOSED


def test_misuse_does_not_apply_pending_time_transitions() -> None:
    core = make(failure_threshold_count=1, reset_timeout=10)
    generation = core.acquire(0.0)
    core.complete(generation, 0.0, 0.0, FAILURE)
    with raises_and_changes_nothing(core):
        core.complete(core.generation, 0.0, 100.0, SUCCESS)  # nothing in flight while OPEN
    assert core.state is OPEN


@pytest.mark.parametrize("generation", [REJECTED, 1, 5])
def test_completing_a_never_issued_generation_raises(generation: int) -> None:
    core = make()
    core.acquire(0.0)
    with raises_and_changes_nothing(core, match="never issued"):
        core.complete(generation, 0.0, 1.0, SUCCESS)


def test_completing_an_unknown_trial_raises() -> None:
    core = make(failure_threshold_count=1, reset_timeout=10, test_request_count=2)
    fail(core, 0.0)
    trial = core.acquire(10.0)
    with raises_and_changes_nothing(core, match="not a trial"):
        core.complete(trial, 9.0, 11.0, SUCCESS)
    core.complete(trial, 10.0, 11.0, SUCCESS)
    assert core.state is CLOSED


# -- retry_after ----------------------------------------------------------------------


def test_retry_after_counts_down_while_open() -> None:
    core = make(failure_threshold_count=1, reset_timeout=10)
    fail(core, 0.0)
    assert core.retry_after(0.0) == 10.0
    assert core.retry_after(4.0) == 6.0
    assert core.retry_after(10.0) == 0.0
    assert core.retry_after(15.0) == 0.0  # never negative


def test_retry_after_is_none_unless_open() -> None:
    core = make(failure_threshold_count=1, reset_timeout=10)
    assert core.retry_after(0.0) is None  # CLOSED
    fail(core, 0.0)
    core.poll(10.0)
    assert core.retry_after(10.0) is None  # HALF_OPEN
    core.force_open(11.0)
    assert core.retry_after(11.0) is None
    core.force_closed(12.0)
    assert core.retry_after(12.0) is None


# -- snapshot ---------------------------------------------------------------------------


def test_snapshot_reports_totals_and_latency() -> None:
    core = make(failure_threshold_count=3, slow_call_duration=2)
    succeed(core, 0.0, duration=1.0)
    fail(core, 1.0, duration=3.0)
    ignore(core, 4.0, duration=50.0)
    assert core.acquire(5.0) != REJECTED  # in flight
    m = core.snapshot(60.0)  # after the ignored call ended (54): the core's time never goes back
    assert m.current_state is CLOSED
    assert m.time_in_state == 60.0
    assert (m.total_allowed, m.total_rejected) == (4, 0)
    assert (m.total_successes, m.total_failures, m.total_ignored) == (1, 1, 1)
    assert m.total_slow == 1
    assert m.window_failures == 1
    assert m.average_response_time == 2.0
    assert m.p95_response_time == pytest.approx(3.0, rel=0.05)


def test_time_in_state_counts_from_the_last_transition() -> None:
    core = make(now=100.0, failure_threshold_count=1, reset_timeout=10)
    assert core.snapshot(130.0).time_in_state == 30.0
    fail(core, 131.0)
    assert core.snapshot(135.0).time_in_state == 4.0
    assert core.snapshot(145.0).time_in_state == 0.0  # became HALF_OPEN at 145
    assert core.snapshot(150.0).time_in_state == 5.0


def test_window_failures_in_window_expire_with_time() -> None:
    core = make(failure_threshold_count=10, failure_window=10)
    fail(core, 0.0)
    fail(core, 4.0)
    succeed(core, 5.0)
    assert core.snapshot(5.0).window_failures == 2
    assert core.snapshot(12.0).window_failures == 1
    assert core.snapshot(20.0).window_failures == 0


def test_window_failures_is_the_consecutive_count_without_window() -> None:
    core = make(failure_threshold_count=10)
    for t in range(4):
        fail(core, float(t))
    assert core.snapshot(1000.0).window_failures == 4  # no window: never expires
    succeed(core, 1000.0)
    assert core.snapshot(1000.0).window_failures == 0


# -- events -------------------------------------------------------------------------


def test_state_changes_are_recorded_without_listening() -> None:
    core = make(failure_threshold_count=1, reset_timeout=10)
    assert core.listening is False
    succeed(core, 0.0)
    fail(core, 1.0, duration=0.5)
    assert core.acquire(2.0) == REJECTED
    assert core.events == [StateChanged(NAME, 1.5, CLOSED, OPEN)]


def test_call_events_only_when_listening() -> None:
    core = make(failure_threshold_count=2, reset_timeout=10)
    core.listening = True
    error = OSError("down")
    run(core, 0.0, 0.5, SUCCESS)
    run(core, 1.0, 3.0, FAILURE, error)
    run(core, 4.0, 4.25, IGNORED, KeyboardInterrupt())
    run(core, 5.0, 6.0, FAILURE)
    assert core.acquire(7.0) == REJECTED
    assert core.take_events() == [
        CallSucceeded(NAME, 0.5, 0.5),
        CallFailed(NAME, 3.0, 2.0, error),
        CallIgnored(NAME, 4.25, 0.25),
        CallFailed(NAME, 6.0, 1.0, None),
        StateChanged(NAME, 6.0, CLOSED, OPEN),
        CallRejected(NAME, 7.0, OPEN),
    ]
    core.listening = False
    succeed(core, 16.0)
    assert core.take_events() == [
        StateChanged(NAME, 16.0, OPEN, HALF_OPEN),
        StateChanged(NAME, 16.0, HALF_OPEN, CLOSED),
    ]


def test_take_events_hands_over_and_clears() -> None:
    core = make(failure_threshold_count=1)
    fail(core, 0.0)
    events = core.take_events()
    assert events == [StateChanged(NAME, 0.0, CLOSED, OPEN)]
    assert core.events == []
    assert core.take_events() == []


def test_hung_trial_state_change_precedes_its_late_result() -> None:
    core = make(failure_threshold_count=1, reset_timeout=10, half_open_max_wait=5)
    fail(core, 0.0)
    core.listening = True
    core.take_events()
    run(core, 10.0, 20.0, SUCCESS)
    assert core.take_events() == [
        StateChanged(NAME, 10.0, OPEN, HALF_OPEN),
        StateChanged(NAME, 20.0, HALF_OPEN, OPEN),
        CallSucceeded(NAME, 20.0, 10.0),
    ]


# -- classification -------------------------------------------------------------------


class _Recorded(Exception):
    pass


class _Ignored(_Recorded):
    pass


@pytest.mark.parametrize(
    ("config", "exception", "expected"),
    [
        ({}, ValueError("x"), FAILURE),
        ({}, KeyboardInterrupt(), IGNORED),
        ({}, SystemExit(1), IGNORED),
        ({}, GeneratorExit(), IGNORED),
        ({}, asyncio.CancelledError(), IGNORED),
        ({"record_exceptions": (_Recorded,)}, _Recorded(), FAILURE),
        ({"record_exceptions": (_Recorded,)}, ValueError("answered"), SUCCESS),
        (
            {"record_exceptions": (_Recorded,), "ignore_exceptions": (_Ignored,)},
            _Ignored(),
            IGNORED,
        ),
        ({"ignore_exceptions": (ValueError,)}, ValueError("x"), IGNORED),
        ({"ignore_exceptions": (ValueError,)}, TypeError("x"), FAILURE),
        ({"record_exceptions": (KeyboardInterrupt,)}, KeyboardInterrupt(), FAILURE),
        ({"failure_predicate": lambda e: "boom" in str(e)}, OSError("boom"), FAILURE),
        ({"failure_predicate": lambda e: "boom" in str(e)}, OSError("fine"), SUCCESS),
        ({"failure_predicate": lambda e: False}, KeyboardInterrupt(), IGNORED),
        (
            {"ignore_exceptions": (OSError,), "failure_predicate": lambda e: True},
            OSError("x"),
            IGNORED,
        ),
    ],
)
def test_classify_exception(
    config: dict[str, Any], exception: BaseException, expected: Outcome
) -> None:
    assert classify_exception(CircuitBreakerConfig(**config), exception) is expected


def test_classify_result_uses_result_is_failure() -> None:
    assert classify_result(CircuitBreakerConfig(), None) is SUCCESS
    assert classify_result(CircuitBreakerConfig(), {"status": 500}) is SUCCESS
    config = CircuitBreakerConfig(result_is_failure=lambda r: r == 500)
    assert classify_result(config, 500) is FAILURE
    assert classify_result(config, 200) is SUCCESS


# -- odd clocks -----------------------------------------------------------------------


def test_clock_going_backwards_does_not_crash() -> None:
    core = make(now=100.0, failure_threshold_count=2, failure_window=10, reset_timeout=10)
    succeed(core, 100.0)
    run(core, 100.0, 95.0, SUCCESS)  # ended before it started: duration 0
    # The adapter read the clock again and it is still before the period began:
    # the clock went back (a stale reading alone moves nothing: test_stale_clock.py).
    core.clock_went_back(50.0)
    m = core.snapshot(50.0)  # it starts again at 50, window empty
    assert m.time_in_state == 0.0
    assert m.average_response_time == 0.0
    assert m.window_failures == 0
    succeed(core, 60.0)
    fail(core, 58.0)  # earlier than the window's newest call: counted there
    fail(core, 61.0)  # 2 failures in the window
    assert core.state is OPEN
    core.clock_went_back(55.0)  # back again, before the trip
    assert core.acquire(55.0) == REJECTED  # still open...
    # ...for its open period (10 s) measured on the new clock, not 10 s + the jump
    # back (issue 10, item 6: this was 16, and a jump of 54 years held it 54 years).
    assert core.retry_after(55.0) == 10.0
    assert core.poll(64.9) is OPEN
    assert core.poll(65.0) is HALF_OPEN


def test_a_stale_reading_moves_nothing_back() -> None:
    # A `now` earlier than the period's start, without `clock_went_back`, is a
    # reading taken before another thread's transition: it happens at the start.
    core = make(failure_threshold_count=3, failure_window=60, reset_timeout=1)
    fail(core, 5.0)
    fail(core, 6.0)
    assert core.snapshot(4.0).window_failures == 2  # not emptied
    fail(core, 4.5)  # the third failure in the window: trips at 6.0, not earlier
    assert core.state is OPEN
    assert core.state_since == 6.0
    assert core.acquire(5.5) == REJECTED
    assert core.retry_after(5.5) == 1.0
    assert core.poll(6.9) is OPEN
    assert core.poll(7.0) is HALF_OPEN
    assert [e.at for e in core.take_events() if isinstance(e, StateChanged)] == [6.0, 7.0]


def test_clock_went_back_with_a_later_reading_does_nothing() -> None:
    core = make(failure_threshold_count=1, reset_timeout=10)
    fail(core, 5.0)
    core.clock_went_back(6.0)
    assert (core.state_since, core.retry_after(6.0)) == (5.0, 9.0)


def test_latency_covers_successes_and_failures_not_ignored() -> None:
    core = make(failure_threshold_count=10)
    succeed(core, 0.0, duration=1.0)
    fail(core, 1.0, duration=3.0)
    ignore(core, 4.0, duration=100.0)
    m = core.snapshot(104.0)
    assert m.average_response_time == 2.0
    assert m.p95_response_time == pytest.approx(3.0, rel=0.05)


def test_reject_until_tells_adapters_when_the_open_period_ends() -> None:
    # `reject_until` is what an adapter reads without the lock to reject at once.
    core = make(failure_threshold_count=1, reset_timeout=10, reset_timeout_multiplier=2)
    assert core.reject_until == -math.inf
    fail(core, 5.0)
    assert core.reject_until == 15.0
    assert core.acquire(15.0) != REJECTED  # HALF_OPEN: no longer plainly rejecting
    assert core.reject_until == -math.inf
    core.complete(core.generation, 15.0, 16.0, FAILURE)
    assert core.reject_until == 36.0  # backoff
    core.force_open(17.0)
    assert core.reject_until == math.inf
    core.force_closed(18.0)
    assert core.reject_until == -math.inf


def test_an_open_period_backed_off_to_infinity_is_not_published_as_forced_open() -> None:
    # `reject_until == inf` tells an adapter FORCED_OPEN: an OPEN whose backoff
    # overflowed leaves rejections to the locked path, which knows the state.
    core = make(failure_threshold_count=1, reset_timeout=1e308, reset_timeout_multiplier=10)
    fail(core, 0.0)
    assert core.reject_until == 1e308
    assert core.acquire(1e308) != REJECTED  # the trial
    core.complete(core.generation, 1e308, 1e308, FAILURE)
    assert (core.state, core.open_until) == (OPEN, math.inf)
    assert core.reject_until == NOT_REJECTING
    assert core.acquire(1e308) == REJECTED
    assert core.retry_after(1e308) == math.inf


@pytest.mark.parametrize("opened", [0.1, 0.7, 1e9 + 0.3, 123456.789])
@pytest.mark.parametrize("timeout", [0.2, 0.3, 1e-3, 30.0])
def test_the_core_and_reject_until_agree_on_when_the_open_period_ends(
    opened: float, timeout: float
) -> None:
    # An adapter rejects while `now < reject_until`; the core must admit a
    # trial from the very first instant that is false, with no float gap.
    core = make(failure_threshold_count=1, reset_timeout=timeout)
    fail(core, opened)
    until = core.reject_until
    before = math.nextafter(until, -math.inf)
    assert core.acquire(before) == REJECTED
    assert core.state is OPEN
    assert core.retry_after(before) > 0.0
    assert core.acquire(until) != REJECTED
    assert core.state is HALF_OPEN


def test_nothing_is_published_for_unlocked_rejections_without_the_gil(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Free-threaded builds: next() on a count is not atomic, so every
    # rejection takes the lock.
    monkeypatch.setattr(_publish, "_UNLOCKED_COUNTS", False)
    core = make(failure_threshold_count=1, reset_timeout=10)
    fail(core, 5.0)
    assert core.reject_until == -math.inf
    core.force_open(6.0)
    assert core.reject_until == -math.inf
    assert core.acquire(7.0) == REJECTED
    assert core.snapshot(7.0).total_rejected == 1


def test_values_read_without_the_lock_follow_the_state_and_the_listeners() -> None:
    def published(core: CircuitCore) -> tuple[object, ...]:
        return (core.admitting, core.deferring, core.reject_until)

    core = make(failure_threshold_count=1, reset_timeout=10)
    assert published(core) == (0, 0, -math.inf)  # CLOSED: admit, and defer successes
    core.listening = True  # call events are built under the lock
    assert published(core) == (0, None, -math.inf)
    fail(core, 5.0)
    assert published(core) == (None, None, -math.inf)  # OPEN, but rejections make events
    core.listening = False
    assert published(core) == (None, None, 15.0)
    assert core.acquire(15.0) != REJECTED  # HALF_OPEN: every call takes the lock
    assert published(core) == (None, None, -math.inf)
    core.force_closed(16.0)
    assert published(core) == (core.generation, core.generation, -math.inf)
    core.force_open(17.0)
    assert published(core) == (None, None, math.inf)
    core.reset(18.0)
    assert published(core) == (core.generation, core.generation, -math.inf)


@pytest.mark.parametrize("window", [None, 60])
def test_successes_under_a_slow_call_rule_are_never_deferred(window: float | None) -> None:
    # Whether a success is slow (and counts toward the slow-call rate) takes a
    # look at its duration: under the lock.
    core = make(slow_call_duration=1, failure_window=window)
    assert (core.admitting, core.deferring) == (0, None)
    core.force_closed(1.0)
    assert (core.admitting, core.deferring) == (core.generation, None)


def test_deferring_stops_while_the_window_holds_failures_enough_for_a_success_to_trip() -> None:
    core = make(failure_window=10, failure_threshold_percentage=50, minimum_calls=4)
    assert core.deferring == 0  # no failure in the window: a success cannot trip
    fail(core, 1.0)
    assert core.deferring == 0  # 1 failure: at 4 calls at least, 25 % at most
    fail(core, 1.5)
    assert core.deferring is None  # 2: two successes would make 2 of 4, 50 %
    succeed(core, 2.0)
    assert (core.state, core.deferring) == (CLOSED, None)
    succeed(core, 12.0)  # both failures have left the window
    assert core.deferring == core.generation


@pytest.mark.parametrize(
    ("percentage", "minimum_calls", "failures_still_safe"),
    [(50, 4, 1), (50, 1, 0), (50, 20, 9), (100, 5, 4), (10, 10, 0), (None, 5, 4)],
)
def test_cannot_trip_holds_exactly_while_no_number_of_successes_can_trip(
    percentage: float | None, minimum_calls: int, failures_still_safe: int
) -> None:
    core = make(
        failure_window=10,
        failure_threshold_percentage=percentage,
        minimum_calls=minimum_calls,
        failure_threshold_count=5,
    )
    window = core.window
    assert window is not None
    for failures in range(5):
        window.total_failures = failures
        # The worst case: these failures, and successes up to minimum_calls (>= 1).
        calls = max(minimum_calls, failures + 1)
        trips = percentage is not None and failures * 100 >= percentage * calls
        assert core._cannot_trip(window) is (not trips)
        assert core._cannot_trip(window) is (failures <= failures_still_safe)


def test_a_success_that_raced_a_failure_is_counted_after_it_and_may_trip() -> None:
    # Thread A saw `deferring` and was about to append its success; thread B
    # completed a failure meanwhile (under the lock). A's record, folded in at
    # the next locked step, counts after B's failure, trip rules included.
    core = make(failure_window=10, failure_threshold_percentage=50, minimum_calls=2)
    a = core.acquire(0.0)
    b = core.acquire(0.0)
    assert core.deferring == a  # what A read
    core.complete(b, 0.0, 1.0, FAILURE)  # 1 call, 1 failure: under minimum_calls
    assert (core.state, core.deferring) == (CLOSED, None)
    core.pending.append((a, 0.0, 1.5))  # A appends after all
    assert core.state is CLOSED  # not counted yet
    core.fold()  # 2 calls, 50 % failures: trips, at A's completion time
    assert (core.state, core.state_since) == (OPEN, 1.5)
    m = core.snapshot(2.0)
    assert (m.total_allowed, m.total_successes, m.total_failures) == (2, 1, 1)
    assert core.in_flight == 0


def test_successes_after_a_trip_in_one_fold_are_late_results() -> None:
    core = make(failure_window=10, failure_threshold_percentage=50, minimum_calls=2)
    a, c, d = core.acquire(0.0), core.acquire(0.0), core.acquire(0.0)
    b = core.acquire(0.0)
    core.complete(b, 0.0, 1.0, FAILURE)
    core.pending.extend([(a, 0.0, 1.5), (c, 0.0, 1.6), (d, 0.0, 1.7)])
    core.fold()  # a trips it; c and d then belong to the closed period
    assert (core.state, core.state_since) == (OPEN, 1.5)
    m = core.snapshot(2.0)
    assert (m.total_allowed, m.total_successes, m.window_failures) == (4, 3, 0)
    assert core.in_flight == 0


def test_fast_rejections_add_to_the_rejected_total() -> None:
    core = make(failure_threshold_count=1)
    fail(core, 0.0)
    assert core.acquire(1.0) == REJECTED
    for _ in range(5):
        next(core.fast_rejections)  # what the adapter does
    assert core.snapshot(2.0).total_rejected == 6
    assert core.snapshot(2.0).total_rejected == 6  # reading does not count


# -- failure_window_calls: the count window ---------------------------------------------


def test_deferred_successes_fold_into_a_count_window_in_order() -> None:
    # The last 3 calls, 2 failures trip: F, then two successes recorded without
    # the lock, then F. Folded in order, the window holds S S F: no trip.
    core = make(failure_window_calls=3, failure_threshold_count=2)
    fail(core, 0.0)
    a, b = core.acquire(1.0), core.acquire(1.0)
    assert core.deferring == a == b  # no success can trip a count rule
    core.pending.extend([(a, 1.0, 1.5), (b, 1.0, 1.6)])
    fail(core, 2.0)  # folds a and b first, then counts this failure
    assert core.state is CLOSED
    m = core.snapshot(2.0)
    assert (m.window_calls, m.window_failures, m.total_successes) == (3, 1, 2)
    fail(core, 3.0)  # S F F
    assert core.state is OPEN


def test_count_window_metrics_are_the_last_n_calls() -> None:
    core = make(
        failure_window_calls=4,
        failure_threshold_count=None,
        failure_threshold_percentage=80,
        minimum_calls=2,
    )
    fail(core, 0.0)
    assert core.snapshot(0.0).failure_rate is None  # under minimum_calls
    for t in (1.0, 2.0, 3.0, 4.0):
        succeed(core, t)
    m = core.snapshot(10.0**6)  # time expires nothing
    assert (m.window_calls, m.window_failures, m.failure_rate) == (4, 0, 0.0)
    fail(core, 5.0)
    assert core.snapshot(5.0).failure_rate == 25.0


# -- half_open_failure_rate ----------------------------------------------------------------


def test_half_open_failure_rate_admits_success_threshold_trials_in_all() -> None:
    core = make(
        failure_threshold_count=1,
        reset_timeout=10,
        success_threshold_count=3,
        test_request_count=2,
        half_open_failure_rate=50,
    )
    fail(core, 0.0)
    a, b = core.acquire(10.0), core.acquire(10.0)
    assert core.acquire(10.0) == REJECTED  # two at once
    core.complete(a, 10.0, 11.0, FAILURE)
    assert core.state is HALF_OPEN  # one of three
    c = core.acquire(11.0)
    assert core.acquire(11.0) == REJECTED  # three in all: b and c in flight
    core.complete(b, 10.0, 12.0, SUCCESS)
    core.complete(c, 11.0, 12.0, SUCCESS)
    assert changes(core)[-1] == (HALF_OPEN, CLOSED, 12.0)  # 1 of 3 failed: 33 % < 50 %
    fail(core, 13.0)  # and the next period counts from zero
    d = core.acquire(23.0)
    core.complete(d, 23.0, 23.0, FAILURE)
    assert (core.state, core.trial_failures) == (HALF_OPEN, 1)


def test_half_open_failure_rate_of_100_reopens_only_when_every_trial_failed() -> None:
    core = make(
        failure_threshold_count=1,
        reset_timeout=10,
        success_threshold_count=2,
        half_open_failure_rate=100,
    )
    fail(core, 0.0)
    fail(core, 10.0)
    succeed(core, 10.0)
    assert core.state is CLOSED
    fail(core, 11.0)
    fail(core, 21.0)
    fail(core, 21.0)
    assert (core.state, core.retry_after(21.0)) == (OPEN, 10.0)


def test_without_half_open_failure_rate_a_failed_trial_still_reopens_at_once() -> None:
    core = make(failure_threshold_count=1, reset_timeout=10, success_threshold_count=3)
    fail(core, 0.0)
    fail(core, 10.0)
    assert core.state is OPEN
