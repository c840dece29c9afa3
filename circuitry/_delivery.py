"""Events: who listens, and how a breaker's events reach them (a mixin of BreakerBase).

The lock is held only around calls into the core, never around user code (a
listener, an alert handler). Events the core emits while locked wait in
`core.events` and are delivered after the lock is released, in order, by one
thread at a time, each going no further than its own last event (see
`EventDelivery._deliver`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import attrs

from ._core import CircuitCore
from .events import (
    Alert,
    CallFailed,
    CallIgnored,
    CallRejected,
    CallSucceeded,
    Event,
    StateChanged,
    StoreRecovered,
    StoreUnavailable,
    TripSuppressed,
)

__all__ = [
    "EVENT_TYPES",
    "AlertOnly",
    "EventDelivery",
    "Listener",
    "ListenersOnly",
    "check_subscription",
    "logger",
]

logger = logging.getLogger("circuitry")

Listener = Callable[[Event], object]
# A subscribed listener and the event types it wants.
Subscription = tuple[Listener, tuple[type[Any], ...]]
EVENT_TYPES: tuple[type[Any], ...] = (
    StateChanged,
    CallRejected,
    CallSucceeded,
    CallFailed,
    CallIgnored,
    StoreUnavailable,
    StoreRecovered,
    TripSuppressed,
)
_CALL_EVENTS = EVENT_TYPES[1:5]
get_ident = threading.get_ident


@attrs.frozen
class ListenersOnly:
    """An event for the listeners alone, no alert (a transition another process made)."""

    event: StateChanged


@attrs.frozen
class AlertOnly:
    """An event for the alert handler alone (its listeners had it as `ListenersOnly`)."""

    event: StateChanged


def check_subscription(listener: object, event_types: tuple[object, ...]) -> None:
    """Raise TypeError unless `listener` is callable and each event type is an event class."""
    if not callable(listener):
        raise TypeError(f"listener must be callable, got {listener!r}")
    for event_type in event_types:
        if event_type not in EVENT_TYPES:
            raise TypeError(
                f"event_types must be event classes of circuitry.events, got {event_type!r}"
            )


def _wants_call_events(listeners: tuple[Subscription, ...]) -> bool:
    return any(t in _CALL_EVENTS for _, wanted in listeners for t in wanted)


class EventDelivery:
    """Subscriptions and the delivery of a breaker's events."""

    # The only base of BreakerBase with slots of its own (one base may have them).
    __slots__ = ("_alert_handler", "_delivery", "_listeners")

    _alert_handler: Callable[[Alert], object] | None
    _core: CircuitCore
    _delivery: _Delivery | None
    _listeners: tuple[Subscription, ...]
    _lock: threading.RLock
    _name: str

    def subscribe(self, listener: Listener, *event_types: type[Event]) -> Callable[[], None]:
        """Send events to `listener`; returns a function that unsubscribes it.

        With `event_types` given, only events of those types are delivered to
        it, and call events (`CallSucceeded`, `CallFailed`, `CallIgnored`,
        `CallRejected`) are built only while some listener wants one: a
        listener of `StateChanged` alone leaves calls as fast as no listener.

        Once unsubscribed, the listener gets no further event, except one that
        another thread was handing it at that very moment.

        Raises:
            TypeError: `listener` is not callable, or an event type is not one
                of the classes in `circuitry.events`.
        """
        check_subscription(listener, event_types)
        entry: Subscription = (listener, event_types or EVENT_TYPES)
        with self._lock:
            self._listeners += (entry,)
            self._core.listening = _wants_call_events(self._listeners)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = tuple(e for e in self._listeners if e is not entry)
                self._core.listening = _wants_call_events(self._listeners)

        return unsubscribe

    def _deliver(self) -> None:
        """Deliver pending events, outside the lock, in order, one thread at a time.

        Events wait in `core.events` in the order the core emitted them. The
        thread that delivers (the deliverer) takes them only as far as the
        last one there when it began, its own among them, then hands over: a
        thread whose events are still waiting behind another deliverer waits
        (back-pressure) until they are taken, or until it is its turn to
        deliver. So no caller delivers more than the events ahead of its own,
        one operation's worth per thread at most, and no more than that ever
        waits. A listener's own calls of this breaker (reentrant) only add
        theirs: the delivering loop they run in takes them too.

        A BaseException from a listener or the alert handler (KeyboardInterrupt,
        SystemExit) stops nothing: every event still reaches everyone, and the
        first such exception is raised once the deliverer's events are done.
        """
        lock = self._lock
        me = get_ident()
        with lock:
            state = self._delivery
            if state is None:  # made on first need: an idle breaker has none
                state = self._delivery = _Delivery()
            events = self._core.events
            mine = state.taken + len(events)  # this thread's events are all before this
            if state.deliverer == me:  # reentrant: the loop below (up the stack) takes them
                if mine > state.target:
                    state.target = mine
                return
            while state.taken < mine:
                if state.deliverer is None:
                    state.deliverer = me
                    state.target = mine
                    break
                if not state.wait(lock) and state.deliverer is not None:
                    # The deliverer has been busy for PATIENCE (a listener waiting
                    # for this very thread, say): leave these events to it rather
                    # than wait on, which could be for ever.
                    state.abandoned = max(state.abandoned, mine)
                    return
            else:
                return  # another deliverer took them
        interrupt: BaseException | None = None
        try:
            while True:
                with lock:
                    if state.abandoned > state.target:
                        state.target = state.abandoned  # events whose thread gave up waiting
                    count = state.target - state.taken
                    if count <= 0:
                        state.deliverer = None
                        state.notify()
                        break
                    events = self._core.events
                    batch = events[:count]
                    del events[:count]
                    state.taken += count
                    state.notify()
                    listeners = self._listeners
                for event in batch:
                    raised = self._dispatch(event, listeners)
                    if interrupt is None:
                        interrupt = raised
        except BaseException:
            with lock:
                state.deliverer = None
                state.notify()
            raise
        if interrupt is not None:
            try:
                raise interrupt
            finally:
                del interrupt  # no cycle through this frame

    def _dispatch(self, event: Event, listeners: tuple[Subscription, ...]) -> BaseException | None:
        """Hand `event` to each listener that wants it, then to the alert handler.

        An Exception from user code is logged; the first BaseException is
        returned, after everyone had the event.
        """
        interrupt = None
        alert = True
        if isinstance(event, ListenersOnly):
            event = event.event
            alert = False
        elif isinstance(event, AlertOnly):
            event = event.event
            listeners = ()
        for entry in listeners:
            listener, wanted = entry
            if not isinstance(event, wanted):
                continue
            if not any(present is entry for present in self._listeners):
                continue  # unsubscribed while this batch was being delivered
            try:
                listener(event)
            except Exception:
                logger.exception("circuit %r: listener %r raised", self._name, listener)
            except BaseException as exc:
                interrupt = interrupt or exc
        handler = self._alert_handler
        if handler is not None and alert and isinstance(event, StateChanged):
            try:
                handler(Alert.from_state_change(event))
            except Exception:
                logger.exception("circuit %r: alert handler %r raised", self._name, handler)
            except BaseException as exc:
                interrupt = interrupt or exc
        return interrupt


PATIENCE = 1.0
"""Seconds a thread waits for its turn to deliver before it leaves its events to
the busy deliverer (see `EventDelivery._deliver`). Back-pressure against a slow
listener waits far less; this only ends a wait that could last for ever."""


class _Delivery:
    """Who delivers a breaker's events and how far (see `EventDelivery._deliver`).

    `taken`: events taken from `core.events` by deliverers so far; `target`:
    the count the deliverer goes to; `turn`: the condition other threads wait
    on for theirs, made when one first has to. Used under the breaker's lock.
    """

    __slots__ = ("abandoned", "deliverer", "target", "taken", "turn", "waiting")

    def __init__(self) -> None:
        self.deliverer: int | None = None
        self.taken = self.target = 0
        # The furthest count that a thread which gave up waiting left to the
        # deliverer (see PATIENCE): the deliverer goes that far too.
        self.abandoned = 0
        self.turn: threading.Condition | None = None
        self.waiting = 0

    def wait(self, lock: threading.RLock) -> bool:
        """Wait for a notify, at most PATIENCE seconds: whether one came."""
        turn = self.turn
        if turn is None:
            turn = self.turn = threading.Condition(lock)
        self.waiting += 1
        try:
            return turn.wait(PATIENCE)
        finally:
            self.waiting -= 1

    def notify(self) -> None:
        if self.waiting:
            self.turn.notify_all()  # type: ignore[union-attr]
