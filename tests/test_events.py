"""Events and alerts: what listeners and alert handlers receive, when, and in what order."""

from __future__ import annotations

import itertools
import logging
import threading
import time

import attrs
import pytest
from helpers import CLOSED, FORCED_CLOSED, FORCED_OPEN, HALF_OPEN, OPEN, Boom, fail, make

import circuitry._core
from circuitry import (
    Alert,
    AlertLevel,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
)
from circuitry.events import (
    CallFailed,
    CallIgnored,
    CallRejected,
    CallSucceeded,
    Event,
    StateChanged,
)
from circuitry.testing import FakeClock


def test_listener_receives_every_event_type_in_order_with_name_and_at() -> None:
    clock = FakeClock(100)
    breaker = make(
        clock,
        name="pay",
        failure_threshold_count=1,
        reset_timeout=10,
        ignore_exceptions=(KeyError,),
    )
    events: list[Event] = []
    breaker.subscribe(events.append)

    breaker.call(clock.advance, 0.5)  # 100.5
    fail(breaker, KeyError())  # ignored
    error = Boom()
    fail(breaker, error)  # failure, trips
    with pytest.raises(CircuitOpenError), breaker:
        pass
    clock.advance(10)  # 110.5
    assert breaker.state is HALF_OPEN
    breaker.call(clock.advance, 1)  # 111.5: the trial succeeds and closes
    breaker.force_open()
    assert breaker.try_acquire() is None
    breaker.force_closed()
    breaker.reset()

    assert events == [
        CallSucceeded("pay", 100.5, 0.5),
        CallIgnored("pay", 100.5, 0.0),
        CallFailed("pay", 100.5, 0.0, error),
        StateChanged("pay", 100.5, CLOSED, OPEN),
        CallRejected("pay", 100.5, OPEN),
        StateChanged("pay", 110.5, OPEN, HALF_OPEN),
        CallSucceeded("pay", 111.5, 1.0),
        StateChanged("pay", 111.5, HALF_OPEN, CLOSED),
        StateChanged("pay", 111.5, CLOSED, FORCED_OPEN),
        CallRejected("pay", 111.5, FORCED_OPEN),
        StateChanged("pay", 111.5, FORCED_OPEN, FORCED_CLOSED),
        StateChanged("pay", 111.5, FORCED_CLOSED, CLOSED),
    ]
    assert events[2].exception is error  # type: ignore[union-attr]


def test_call_failed_from_result_is_failure_has_no_exception(clock: FakeClock) -> None:
    breaker = make(clock, result_is_failure=lambda r: r is None)
    events: list[Event] = []
    breaker.subscribe(events.append)
    breaker.call(lambda: None)
    assert events == [CallFailed("svc", 0.0, 0.0, None)]


def test_permit_record_failure_event_carries_the_exception(clock: FakeClock) -> None:
    breaker = make(clock)
    events: list[Event] = []
    breaker.subscribe(events.append)
    permit = breaker.try_acquire()
    assert permit is not None
    error = Boom()
    permit.record_failure(error)
    assert len(events) == 1
    assert isinstance(events[0], CallFailed)
    assert events[0].exception is error


@pytest.mark.parametrize(
    "event",
    [
        StateChanged("n", 1.0, CLOSED, OPEN),
        CallRejected("n", 1.0, OPEN),
        CallSucceeded("n", 1.0, 0.1),
        CallFailed("n", 1.0, 0.1, None),
        CallIgnored("n", 1.0, 0.1),
    ],
)
def test_events_are_frozen(event: Event) -> None:
    with pytest.raises(AttributeError):
        event.name = "other"  # type: ignore[misc]
    assert attrs.has(type(event))


def test_no_state_change_event_when_the_state_does_not_change(clock: FakeClock) -> None:
    breaker = make(clock)
    events: list[Event] = []
    breaker.subscribe(events.append)
    breaker.reset()
    breaker.force_open()
    breaker.force_open()
    assert events == [StateChanged("svc", 0.0, CLOSED, FORCED_OPEN)]


# -- subscribe / unsubscribe ------------------------------------------------------------------


def test_unsubscribe_stops_delivery(clock: FakeClock) -> None:
    breaker = make(clock)
    events: list[Event] = []
    unsubscribe = breaker.subscribe(events.append)
    breaker.call(int)
    unsubscribe()
    breaker.call(int)
    breaker.force_open()
    assert len(events) == 1


def test_listener_unsubscribed_during_delivery_gets_no_further_events(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1)
    got: list[Event] = []

    def once(event: Event) -> None:
        got.append(event)
        unsubscribe()

    unsubscribe = breaker.subscribe(once)
    fail(breaker, Boom())  # CallFailed and StateChanged, delivered as one batch
    assert len(got) == 1
    assert isinstance(got[0], CallFailed)


def test_unsubscribe_removes_only_its_listener_and_is_idempotent(clock: FakeClock) -> None:
    breaker = make(clock)
    first: list[Event] = []
    second: list[Event] = []
    unsubscribe_first = breaker.subscribe(first.append)
    breaker.subscribe(second.append)
    unsubscribe_first()
    unsubscribe_first()
    breaker.call(int)
    assert first == []
    assert len(second) == 1


def test_every_listener_receives_every_event(clock: FakeClock) -> None:
    breaker = make(clock)
    received: list[tuple[str, Event]] = []
    breaker.subscribe(lambda e: received.append(("a", e)))
    breaker.subscribe(lambda e: received.append(("b", e)))
    breaker.call(int)
    assert [who for who, _ in received] == ["a", "b"]
    assert received[0][1] is received[1][1]


def test_subscribe_rejects_a_non_callable(clock: FakeClock) -> None:
    breaker = make(clock)
    with pytest.raises(TypeError):
        breaker.subscribe("print")  # type: ignore[arg-type]


def test_no_call_events_are_built_when_nobody_listens(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_event(*args: object) -> object:
        raise AssertionError("a call event was built with nobody listening")

    for cls in ("CallSucceeded", "CallFailed", "CallIgnored", "CallRejected"):
        monkeypatch.setattr(circuitry._core, cls, no_event)
    breaker = make(clock, failure_threshold_count=1, ignore_exceptions=(KeyError,))
    assert breaker._core.listening is False
    breaker.call(int)
    fail(breaker, KeyError())
    fail(breaker, Boom())
    with pytest.raises(CircuitOpenError), breaker:
        pass
    assert breaker._core.events == []
    assert breaker.metrics().total_rejected == 1


def test_listening_follows_subscriptions(clock: FakeClock) -> None:
    breaker = make(clock)
    assert breaker._core.listening is False
    unsubscribe_a = breaker.subscribe(print)
    unsubscribe_b = breaker.subscribe(print)
    assert breaker._core.listening is True
    unsubscribe_a()
    assert breaker._core.listening is True
    unsubscribe_b()
    assert breaker._core.listening is False


def test_state_changes_reach_the_alert_handler_without_listeners(clock: FakeClock) -> None:
    alerts: list[Alert] = []
    breaker = make(clock, failure_threshold_count=1, alert_handler=alerts.append)
    fail(breaker, Boom())
    assert [a.new_state for a in alerts] == [OPEN]
    assert breaker._core.events == []


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


# -- failing listeners and handlers -----------------------------------------------------------


def test_listener_that_raises_is_logged_and_the_call_still_returns(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    breaker = make(clock, name="logme")
    received: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    breaker.subscribe(broken)
    breaker.subscribe(received.append)
    with caplog.at_level(logging.ERROR, logger="circuitry"):
        assert breaker.call(lambda: 5) == 5
    assert len(received) == 1  # the next listener still got the event
    records = [r for r in caplog.records if r.name == "circuitry"]
    assert len(records) == 1
    assert "logme" in records[0].getMessage()
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], RuntimeError)
    assert breaker.metrics().total_successes == 1


def test_listener_that_raises_does_not_change_the_block_exception(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    breaker = make(clock, failure_threshold_count=1)
    breaker.subscribe(lambda e: 1 / 0)
    error = Boom()
    with caplog.at_level(logging.ERROR, logger="circuitry"), pytest.raises(Boom) as info, breaker:
        raise error
    assert info.value is error
    assert breaker.state is OPEN
    assert len([r for r in caplog.records if r.name == "circuitry"]) == 2  # failure + trip


def test_alert_handler_that_raises_is_logged_and_the_call_still_returns(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(alert: Alert) -> None:
        raise RuntimeError("handler bug")

    breaker = make(clock, name="alerts", failure_threshold_count=1, alert_handler=broken)
    error = Boom()
    with caplog.at_level(logging.ERROR, logger="circuitry"), pytest.raises(Boom) as info, breaker:
        raise error
    assert info.value is error
    assert breaker.state is OPEN
    records = [r for r in caplog.records if r.name == "circuitry"]
    assert len(records) == 1
    assert "alerts" in records[0].getMessage()
    assert records[0].exc_info is not None
    assert str(records[0].exc_info[1]) == "handler bug"


# -- delivered outside the lock ---------------------------------------------------------------


def test_listener_runs_after_the_lock_is_released(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1)
    seen_from_other_thread: list[object] = []

    def listener(event: Event) -> None:
        # Another thread can use the breaker while we are inside the listener:
        # it would block forever if the listener were called under the lock.
        worker = threading.Thread(
            target=lambda: seen_from_other_thread.append(breaker.metrics().current_state)
        )
        worker.start()
        worker.join(timeout=30)
        assert not worker.is_alive(), "the breaker's lock is held while a listener runs"

    breaker.subscribe(listener)
    fail(breaker, Boom())  # CallFailed, then StateChanged
    assert seen_from_other_thread == [OPEN, OPEN]


def test_alert_handler_runs_after_the_lock_is_released(clock: FakeClock) -> None:
    states: list[CircuitState] = []
    holder: list[CircuitBreaker] = []

    def handler(alert: Alert) -> None:
        worker = threading.Thread(target=lambda: states.append(holder[0].state))
        worker.start()
        worker.join(timeout=30)
        assert not worker.is_alive(), "the breaker's lock is held while the handler runs"

    breaker = make(clock, failure_threshold_count=1, alert_handler=handler)
    holder.append(breaker)
    fail(breaker, Boom())
    assert states == [OPEN]


def test_listener_can_read_state_and_metrics_of_the_same_breaker(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1)
    seen: list[tuple[CircuitState, int]] = []

    def listener(event: Event) -> None:
        seen.append((breaker.state, breaker.metrics().total_failures))

    breaker.subscribe(listener)
    fail(breaker, Boom())
    assert seen == [(OPEN, 1), (OPEN, 1)]


def test_listener_can_make_a_protected_call_on_the_same_breaker(clock: FakeClock) -> None:
    breaker = make(clock)
    events: list[Event] = []
    nested_results: list[str] = []

    def listener(event: Event) -> None:
        events.append(event)
        if len(events) == 1:
            nested_results.append(breaker.call(lambda: "nested"))

    breaker.subscribe(listener)
    assert breaker.call(lambda: "outer") == "outer"
    assert nested_results == ["nested"]
    # The nested call's event is delivered too, after the one being delivered.
    assert len(events) == 2
    assert all(isinstance(e, CallSucceeded) for e in events)
    assert breaker.metrics().total_successes == 2


def test_alert_handler_can_use_the_breaker(clock: FakeClock) -> None:
    holder: list[CircuitBreaker] = []
    alerts: list[Alert] = []

    def handler(alert: Alert) -> None:
        alerts.append(alert)
        if alert.new_state is OPEN:
            holder[0].reset()

    breaker = make(clock, failure_threshold_count=1, alert_handler=handler)
    holder.append(breaker)
    fail(breaker, Boom())
    assert breaker.state is CLOSED
    assert [(a.old_state, a.new_state) for a in alerts] == [(CLOSED, OPEN), (OPEN, CLOSED)]


# -- alerts -------------------------------------------------------------------------------------


def test_alert_handler_receives_alerts_with_the_level_of_the_new_state() -> None:
    clock = FakeClock(7)
    alerts: list[Alert] = []
    breaker = make(
        clock, name="db", failure_threshold_count=1, reset_timeout=5, alert_handler=alerts.append
    )
    fail(breaker, Boom())
    clock.advance(5)
    breaker.call(int)
    breaker.force_open()
    breaker.force_closed()
    breaker.reset()

    got = [(a.old_state, a.new_state, a.level) for a in alerts]
    assert got == [
        (CLOSED, OPEN, AlertLevel.CRITICAL),
        (OPEN, HALF_OPEN, AlertLevel.WARNING),
        (HALF_OPEN, CLOSED, AlertLevel.HEALTHY),
        (CLOSED, FORCED_OPEN, AlertLevel.CRITICAL),
        (FORCED_OPEN, FORCED_CLOSED, AlertLevel.HEALTHY),
        (FORCED_CLOSED, CLOSED, AlertLevel.HEALTHY),
    ]
    assert [a.at for a in alerts] == [7, 12, 12, 12, 12, 12]
    for alert in alerts:
        assert isinstance(alert, Alert)
        assert alert.name == "db"
        assert str(alert) == alert.message
        assert "db" in alert.message


def test_alert_is_frozen(clock: FakeClock) -> None:
    alerts: list[Alert] = []
    breaker = make(clock, alert_handler=alerts.append)
    breaker.force_open()
    with pytest.raises(AttributeError):
        alerts[0].level = AlertLevel.HEALTHY  # type: ignore[misc]


def test_alert_handler_is_not_called_for_calls(clock: FakeClock) -> None:
    alerts: list[Alert] = []
    breaker = make(clock, alert_handler=alerts.append)
    breaker.call(int)
    fail(breaker, Boom())
    assert alerts == []


# -- order under threads ----------------------------------------------------------------------


def test_events_from_many_threads_are_delivered_in_order_one_at_a_time() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_threshold_count=3, reset_timeout=1)
    events: list[Event] = []
    inside = threading.Lock()
    overlaps: list[Event] = []

    def listener(event: Event) -> None:
        if not inside.acquire(blocking=False):
            overlaps.append(event)  # two deliveries at once
            return
        try:
            time.sleep(0)  # let other threads run while this delivery is in progress
            events.append(event)
        finally:
            inside.release()

    breaker.subscribe(listener)
    threads = 8
    rounds = 300
    barrier = threading.Barrier(threads, timeout=60)

    def worker(index: int) -> None:
        barrier.wait()
        for i in range(rounds):
            choice = (index + i) % 7
            if choice == 0:
                breaker.force_open()
            elif choice == 1:
                breaker.reset()
            elif choice == 2:
                breaker.force_closed()
            else:
                try:
                    with breaker:
                        if choice in (3, 4):
                            raise Boom
                except (Boom, CircuitOpenError):
                    pass

    pool = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    assert not any(t.is_alive() for t in pool)

    assert overlaps == []
    changes = [e for e in events if isinstance(e, StateChanged)]
    assert changes, "the workload should change the state"
    # In order: every state change starts from the state the previous one reached.
    assert changes[0].old_state is CLOSED
    for before, after in itertools.pairwise(changes):
        assert after.old_state is before.new_state
    # Nothing lost: the events add up to the totals.
    m = breaker.metrics()
    assert len(changes) == m.state_changes
    assert sum(isinstance(e, CallSucceeded) for e in events) == m.total_successes
    assert sum(isinstance(e, CallFailed) for e in events) == m.total_failures
    assert sum(isinstance(e, CallRejected) for e in events) == m.total_rejected
    assert changes[-1].new_state is m.current_state
