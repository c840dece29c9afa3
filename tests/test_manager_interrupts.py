"""A BaseException from a callback stops no loop of the manager (issue 22, item 4).

API.md, "Interrupts anywhere": KeyboardInterrupt, SystemExit or any other
BaseException raised by a listener, a manager-wide listener, an `on_created`
hook or the alert handler propagates after every other callback had its
turn. `reset_all()` (and every other loop over the breakers) still reaches
every breaker, then raises the first exception; every `on_created` hook runs
and the breaker stays created and registered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from helpers import CLOSED, HALF_OPEN, OPEN, Interrupt

from circuitry import Alert, CircuitBreakerConfig, CircuitBreakerManager
from circuitry.events import Event, StateChanged
from circuitry.testing import FakeClock

NAMES = ["a", "b", "c"]


def manager(clock: FakeClock, **config: Any) -> CircuitBreakerManager:
    config = {"failure_threshold_count": 1, "reset_timeout": 10.0, **config}
    return CircuitBreakerManager(CircuitBreakerConfig(**config), clock=clock)


def open_all(m: CircuitBreakerManager) -> None:
    for name in NAMES:
        m[name].trip()
    assert {m[name].state for name in NAMES} == {OPEN}


class Raiser:
    """A callback that keeps what it gets and raises `error` (named after it) on a match."""

    def __init__(self, error: type[BaseException], when: Callable[[Any], bool]) -> None:
        self.error = error
        self.when = when
        self.got: list[Any] = []

    def __call__(self, item: Any) -> None:
        self.got.append(item)
        if self.when(item):
            raise self.error(item.name)


def to(state: object) -> Callable[[Any], bool]:
    return lambda e: isinstance(e, StateChanged) and e.new_state is state


def names_of(events: list[Event]) -> list[str]:
    return [e.name for e in events]


# -- reset_all ------------------------------------------------------------------------------


def test_reset_all_resets_every_breaker_when_their_listeners_raise_then_raises_the_first(
    clock: FakeClock, interrupt: type[BaseException]
) -> None:
    m = manager(clock)
    open_all(m)
    listeners = {name: Raiser(interrupt, to(CLOSED)) for name in NAMES}
    for name, listener in listeners.items():
        m[name].subscribe(listener)

    with pytest.raises(interrupt) as raised:
        m.reset_all()

    assert raised.value.args == ("a",)  # the first breaker's
    assert {m[name].state for name in NAMES} == {CLOSED}
    assert all(names_of(listeners[name].got) == [name] for name in NAMES)
    m.reset_all()  # nothing held: again, without a transition, nothing raises


def test_reset_all_resets_every_breaker_when_a_manager_wide_listener_raises(
    clock: FakeClock, interrupt: type[BaseException]
) -> None:
    m = manager(clock)
    open_all(m)
    wide = Raiser(interrupt, to(CLOSED))
    m.subscribe(wide)
    quiet: list[Event] = []
    m.subscribe(quiet.append)  # the other manager-wide listener still hears every event

    with pytest.raises(interrupt) as raised:
        m.reset_all()

    assert raised.value.args == ("a",)
    assert {m[name].state for name in NAMES} == {CLOSED}
    assert names_of(wide.got) == NAMES
    assert names_of(quiet) == NAMES


def test_reset_all_resets_every_breaker_when_the_alert_handler_raises(
    clock: FakeClock, interrupt: type[BaseException]
) -> None:
    handler = Raiser(interrupt, lambda alert: alert.new_state is CLOSED)
    m = manager(clock, alert_handler=handler)
    open_all(m)
    handler.got.clear()

    with pytest.raises(interrupt) as raised:
        m.reset_all()

    assert raised.value.args == ("a",)
    assert {m[name].state for name in NAMES} == {CLOSED}
    assert [alert.name for alert in handler.got] == NAMES
    assert all(isinstance(alert, Alert) for alert in handler.got)


def test_reset_all_raises_the_first_of_different_exceptions(clock: FakeClock) -> None:
    m = manager(clock)
    open_all(m)
    m["a"].subscribe(Raiser(SystemExit, to(CLOSED)))
    m["b"].subscribe(Raiser(KeyboardInterrupt, to(CLOSED)))

    with pytest.raises(SystemExit):
        m.reset_all()
    assert {m[name].state for name in NAMES} == {CLOSED}


# -- reads over every breaker -----------------------------------------------------------


@pytest.mark.parametrize("read", ["metrics", "health"])
def test_a_read_of_every_breaker_reaches_every_breaker_when_a_listener_raises(
    clock: FakeClock, interrupt: type[BaseException], read: str
) -> None:
    m = manager(clock)
    open_all(m)
    wide = Raiser(interrupt, to(HALF_OPEN))
    m.subscribe(wide)
    clock.advance(10.0)  # each read makes each breaker HALF_OPEN, and delivers that

    with pytest.raises(interrupt) as raised:
        getattr(m, read)()

    assert raised.value.args == ("a",)
    assert names_of(wide.got) == NAMES
    assert {m[name].state for name in NAMES} == {HALF_OPEN}
    assert len(m.metrics()) == 3  # nothing left to deliver, nothing raises


# -- on_created -------------------------------------------------------------------------------


def test_every_on_created_hook_runs_and_the_breaker_is_registered_then_the_first_raises(
    clock: FakeClock, interrupt: type[BaseException]
) -> None:
    m = manager(clock)
    first = Raiser(interrupt, lambda breaker: True)
    second = Raiser(Interrupt, lambda breaker: True)
    third = Raiser(Interrupt, lambda breaker: False)
    for hook in (first, second, third):
        m.on_created(hook)

    with pytest.raises(interrupt) as raised:
        m.breaker("svc")

    assert raised.value.args == ("svc",)
    created = m.breaker("svc")  # the retry gets the breaker made: no second one, no hook again
    assert m.names() == ["svc"]
    assert first.got == second.got == third.got == [created]
    assert created.call(lambda: 42) == 42


def test_every_on_created_hook_runs_for_a_replacement_then_the_first_raises(
    clock: FakeClock, interrupt: type[BaseException]
) -> None:
    m = manager(clock)
    old = m.breaker("svc")
    wide: list[Event] = []
    m.subscribe(wide.append)
    first = Raiser(interrupt, lambda breaker: True)
    second = Raiser(Interrupt, lambda breaker: False)
    m.on_created(first)
    m.on_created(second)

    with pytest.raises(interrupt):
        m.configure_service("svc", CircuitBreakerConfig(failure_threshold_count=1))

    new = m.breaker("svc")
    assert new is not old
    assert first.got == second.got == [new]
    new.trip()
    old.trip()  # replaced: the manager-wide listener no longer hears it
    assert [e.name for e in wide] == ["svc"]
    assert m.names() == ["svc"]


def test_an_on_created_hook_exception_is_still_only_logged(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    m = manager(clock)
    after = Raiser(Interrupt, lambda breaker: False)
    m.on_created(Raiser(RuntimeError, lambda breaker: True))
    m.on_created(after)
    breaker = m.breaker("svc")
    assert after.got == [breaker]
    assert "on_created hook" in caplog.text
