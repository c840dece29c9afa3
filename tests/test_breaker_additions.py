"""Round 2 breaker additions: trip(duration), metrics().retry_after, subscribe(listener, *types)."""

from __future__ import annotations

import math

import pytest
from helpers import CLOSED, FORCED_CLOSED, FORCED_OPEN, HALF_OPEN, OPEN, Boom, half_open, make

from circuitry import Alert, CircuitOpenError, CircuitState
from circuitry.events import (
    CallFailed,
    CallRejected,
    CallSucceeded,
    Event,
    StateChanged,
)
from circuitry.testing import FakeClock

# -- trip(duration) ---------------------------------------------------------------------------


def test_trip_opens_for_the_given_duration_then_half_opens(clock: FakeClock) -> None:
    breaker = make(clock, reset_timeout=60.0)
    breaker.trip(7.5)
    assert breaker.state is OPEN
    with pytest.raises(CircuitOpenError) as info, breaker:
        pass
    assert info.value.retry_after == pytest.approx(7.5)
    clock.advance(7.4)
    assert breaker.state is OPEN
    clock.advance(0.1)
    assert breaker.state is HALF_OPEN


def test_trip_without_duration_uses_reset_timeout(clock: FakeClock) -> None:
    breaker = make(clock, reset_timeout=20.0)
    breaker.trip()
    assert breaker.metrics().retry_after == pytest.approx(20.0)
    clock.advance(20.0)
    assert breaker.state is HALF_OPEN


def test_trip_from_half_open_backs_off_as_a_failed_trial(clock: FakeClock) -> None:
    breaker = make(clock, reset_timeout=10.0, reset_timeout_multiplier=2.0)
    half_open(breaker, clock)
    breaker.trip()
    assert breaker.metrics().retry_after == pytest.approx(20.0)


def test_a_given_duration_has_no_jitter(clock: FakeClock) -> None:
    breaker = make(clock, reset_timeout=10.0, reset_timeout_jitter=0.5)
    breaker.trip(3.0)
    assert breaker.metrics().retry_after == 3.0


def test_trip_emits_a_state_change_and_an_alert(clock: FakeClock) -> None:
    alerts: list[Alert] = []
    breaker = make(clock, alert_handler=alerts.append)
    events: list[Event] = []
    breaker.subscribe(events.append)
    breaker.trip(1.0)
    assert events == [StateChanged("svc", clock(), CLOSED, OPEN)]
    assert [(a.old_state, a.new_state) for a in alerts] == [(CLOSED, OPEN)]
    assert breaker.metrics().state_changes == 1


@pytest.mark.parametrize("control", ["force_open", "force_closed"])
def test_trip_works_from_the_forced_states(clock: FakeClock, control: str) -> None:
    breaker = make(clock)
    getattr(breaker, control)()
    assert breaker.state in (FORCED_OPEN, FORCED_CLOSED)
    breaker.trip(2.0)
    assert breaker.state is OPEN
    clock.advance(2.0)
    assert breaker.state is HALF_OPEN


def test_trip_while_open_restarts_the_open_period(clock: FakeClock) -> None:
    breaker = make(clock)
    breaker.trip(100.0)
    breaker.trip(1.0)
    assert breaker.metrics().retry_after == pytest.approx(1.0)
    assert breaker.metrics().state_changes == 1  # OPEN -> OPEN changes no state


def test_calls_in_flight_at_a_trip_are_late(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1)
    with breaker:
        breaker.trip(5.0)
    clock.advance(5.0)
    assert breaker.state is HALF_OPEN  # the late success closed nothing
    assert breaker.metrics().total_successes == 1


@pytest.mark.parametrize("bad", [-1.0, math.inf, math.nan, "5", True])
def test_trip_refuses_a_bad_duration(clock: FakeClock, bad: object) -> None:
    breaker = make(clock)
    with pytest.raises(ValueError, match="duration") as info:
        breaker.trip(bad)  # type: ignore[arg-type]
    assert repr(bad) in str(info.value)
    assert breaker.state is CLOSED


# -- subscribe(listener, *event_types) ----------------------------------------------------------


def test_a_typed_listener_gets_only_its_types(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1)
    changes: list[Event] = []
    failures: list[Event] = []
    everything: list[Event] = []
    breaker.subscribe(changes.append, StateChanged)
    breaker.subscribe(failures.append, CallFailed, CallRejected)
    breaker.subscribe(everything.append)
    with breaker:
        pass
    with pytest.raises(Boom), breaker:
        raise Boom
    with pytest.raises(CircuitOpenError), breaker:
        pass
    assert [type(e) for e in changes] == [StateChanged]
    assert [type(e) for e in failures] == [CallFailed, CallRejected]
    assert [type(e) for e in everything] == [
        CallSucceeded,
        CallFailed,
        StateChanged,
        CallRejected,
    ]


def test_a_state_change_listener_alone_builds_no_call_events(clock: FakeClock) -> None:
    breaker = make(clock)
    breaker.subscribe(lambda event: None, StateChanged)
    core = breaker._core
    assert core.listening is False
    assert core.deferring is not None  # successes still skip the lock
    unsubscribe = breaker.subscribe(lambda event: None, CallSucceeded)
    assert core.listening is True
    unsubscribe()
    assert core.listening is False
    breaker.trip(1.0)
    assert core.reject_until > clock()  # rejections still skip the lock


def test_the_same_listener_twice_is_two_subscriptions(clock: FakeClock) -> None:
    breaker = make(clock)
    events: list[Event] = []
    first = breaker.subscribe(events.append, StateChanged)
    breaker.subscribe(events.append, StateChanged)
    breaker.trip(1.0)
    assert len(events) == 2
    first()
    breaker.reset()
    assert len(events) == 3


@pytest.mark.parametrize("bad", [int, "StateChanged", Alert, CircuitState])
def test_subscribe_refuses_what_is_no_event_type(clock: FakeClock, bad: object) -> None:
    breaker = make(clock)
    with pytest.raises(TypeError, match="event_types") as info:
        breaker.subscribe(print, bad)  # type: ignore[arg-type]
    assert repr(bad) in str(info.value)
