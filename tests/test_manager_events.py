"""Manager-wide events: `manager.subscribe`, `manager.on_created`, listeners kept on replacement."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

import pytest
from helpers import CLOSED, OPEN, Boom, fail, run_in_threads, succeed

from circuitry import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerManager,
    ServicePresets,
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


def manager(**config: Any) -> CircuitBreakerManager:
    config = {"failure_threshold_count": 1, **config}
    return CircuitBreakerManager(CircuitBreakerConfig(**config), clock=FakeClock())


def kinds(events: list[Event]) -> list[tuple[str, str]]:
    return [(type(e).__name__, e.name) for e in events]


# -- subscribe ------------------------------------------------------------------------------


def test_subscribe_hears_existing_breakers_and_breakers_created_later() -> None:
    m = manager(ignore_exceptions=(KeyError,))
    early = m.breaker("early")
    got: list[Event] = []
    m.subscribe(got.append)
    late = m.breaker("late")
    succeed(early)
    fail(late)  # trips it: threshold 1
    with pytest.raises(KeyError), early:
        raise KeyError("ignored")
    assert late.try_acquire() is None
    assert kinds(got) == [
        ("CallSucceeded", "early"),
        ("CallFailed", "late"),
        ("StateChanged", "late"),
        ("CallIgnored", "early"),
        ("CallRejected", "late"),
    ]
    changed = got[2]
    assert isinstance(changed, StateChanged)
    assert (changed.old_state, changed.new_state) == (CLOSED, OPEN)


def test_subscribe_with_event_types_delivers_only_those() -> None:
    m = manager()
    got: list[Event] = []
    m.subscribe(got.append, StateChanged)
    for name in ("a", "b"):
        succeed(m.breaker(name))
        fail(m.breaker(name))
        assert m.breaker(name).try_acquire() is None
    assert [(type(e), e.name) for e in got] == [(StateChanged, "a"), (StateChanged, "b")]


def test_a_state_changed_only_manager_listener_builds_no_call_events() -> None:
    m = manager()
    m.subscribe(lambda event: None, StateChanged)
    assert not m.breaker("svc")._core.listening
    m.subscribe(lambda event: None, CallFailed)
    assert m.breaker("svc")._core.listening
    assert m.breaker("other")._core.listening


def test_unsubscribe_stops_every_breaker_and_may_be_called_twice() -> None:
    m = manager()
    got: list[Event] = []
    unsubscribe = m.subscribe(got.append)
    succeed(m.breaker("a"))
    unsubscribe()
    unsubscribe()
    succeed(m.breaker("a"))
    succeed(m.breaker("b"))
    assert kinds(got) == [("CallSucceeded", "a")]
    assert not m.breaker("a")._core.listening  # nothing left that wants call events


def test_two_manager_listeners_each_get_every_event_once() -> None:
    m = manager()
    first: list[Event] = []
    second: list[Event] = []
    m.subscribe(first.append)
    m.subscribe(second.append)
    fail(m.breaker("x"))
    assert kinds(first) == kinds(second) == [("CallFailed", "x"), ("StateChanged", "x")]


def test_a_listener_that_raises_is_logged_and_the_call_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    m = manager()

    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    m.subscribe(broken)
    with caplog.at_level(logging.ERROR, logger="circuitry"):
        assert m.call("svc", lambda: 42) == 42
    assert "listener bug" in caplog.text


def test_a_listener_may_call_back_into_the_manager() -> None:
    m = manager()
    seen: list[tuple[str, int]] = []

    def on_event(event: Event) -> None:
        if isinstance(event, StateChanged):
            seen.append((event.name, len(m.metrics())))
            m.breaker("fallback")  # creates a breaker from inside a listener

    m.subscribe(on_event)
    fail(m.breaker("svc"))
    assert seen == [("svc", 1)]
    assert m.names() == ["svc", "fallback"]


def test_subscribe_rejects_what_is_not_a_listener_or_an_event_type() -> None:
    m = manager()
    with pytest.raises(TypeError, match="listener"):
        m.subscribe("print")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="event_types"):
        m.subscribe(print, Boom)  # type: ignore[arg-type]


# -- replacement and removal ------------------------------------------------------------------


def test_a_manager_listener_follows_configure_service_to_the_new_breaker() -> None:
    m = manager()
    got: list[Event] = []
    m.subscribe(got.append)
    old = m.breaker("db")
    m.configure_service("db", ServicePresets.database())
    new = m.breaker("db")
    assert new is not old
    succeed(old)  # the detached breaker is no longer the manager's
    succeed(new)
    assert len(got) == 1
    assert isinstance(got[0], CallSucceeded)
    assert got[0].name == "db"
    assert m.breaker("db") is new


def test_configure_service_carries_the_old_breakers_listeners_over() -> None:
    m = manager()
    old = m.breaker("db")
    all_events: list[Event] = []
    changes: list[Event] = []
    old.subscribe(all_events.append)
    old.subscribe(changes.append, StateChanged)
    m.configure_service("db", ServicePresets.critical_service())
    new = m.breaker("db")
    succeed(new)
    fail(new)
    fail(new)  # critical_service: 2 consecutive failures
    assert new.state is OPEN
    assert [type(e) for e in all_events] == [CallSucceeded, CallFailed, CallFailed, StateChanged]
    assert [type(e) for e in changes] == [StateChanged]
    # The old breaker still has them: it works for whoever holds it.
    succeed(old)
    assert [type(e) for e in all_events][-1] is CallSucceeded
    assert len(all_events) == 5


def test_the_old_unsubscribe_stops_a_carried_listener_too() -> None:
    m = manager()
    old = m.breaker("db")
    got: list[Event] = []
    unsubscribe = old.subscribe(got.append)
    m.configure_service("db", ServicePresets.database())
    m.configure_service("db", ServicePresets.http_api())  # replaced twice
    newest = m.breaker("db")
    succeed(newest)
    assert len(got) == 1
    unsubscribe()
    succeed(newest)
    succeed(newest)
    assert len(got) == 1
    assert not newest._core.listening  # the carried copy unsubscribed itself


def test_replacing_twice_delivers_each_event_once() -> None:
    m = manager()
    got: list[Event] = []
    m.breaker("db").subscribe(got.append)
    m.subscribe(got.append)
    for _ in range(3):
        m.configure_service("db", ServicePresets.database())
    fail(m.breaker("db"))
    assert [type(e) for e in got] == [CallFailed, CallFailed]  # one via each subscription


def test_removed_breakers_are_no_longer_heard() -> None:
    m = manager()
    got: list[Event] = []
    m.subscribe(got.append)
    m.breaker("gone")
    removed = m.remove("gone")
    succeed(removed)
    succeed(m.breaker("gone"))  # a new breaker of that name is heard again
    assert kinds(got) == [("CallSucceeded", "gone")]
    assert m.breaker("gone") is not removed


# -- on_created -----------------------------------------------------------------------------------


def test_on_created_is_called_with_each_new_breaker_replacements_included() -> None:
    m = manager()
    existing = m.breaker("existing")
    created: list[CircuitBreaker] = []
    m.on_created(created.append)
    a = m.breaker("a")
    m.breaker("a")  # no new breaker
    m.configure_service("a", ServicePresets.database())
    m.configure_service("later", ServicePresets.database())  # configures, creates nothing
    replacement = m.breaker("a")
    assert created == [a, replacement]
    assert existing not in created


def test_on_created_unregister_stops_that_registration_only() -> None:
    m = manager()
    first: list[str] = []
    second: list[str] = []
    unregister = m.on_created(lambda b: first.append(b.name))
    m.on_created(lambda b: second.append(b.name))
    m.breaker("a")
    unregister()
    unregister()
    m.breaker("b")
    assert first == ["a"]
    assert second == ["a", "b"]


def test_on_created_hook_may_subscribe_and_call_back_into_the_manager() -> None:
    m = manager()
    got: list[Event] = []

    def hook(breaker: CircuitBreaker) -> None:
        breaker.subscribe(got.append, StateChanged)
        if breaker.name != "audit":
            m.breaker("audit")

    m.on_created(hook)
    fail(m.breaker("svc"))
    assert m.names() == ["svc", "audit"]
    assert kinds(got) == [("StateChanged", "svc")]


def test_an_on_created_hook_that_raises_is_logged_and_the_breaker_returned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    m = manager()

    def broken(breaker: CircuitBreaker) -> None:
        raise RuntimeError("hook bug")

    m.on_created(broken)
    with caplog.at_level(logging.ERROR, logger="circuitry"):
        breaker = m.breaker("svc")
    assert breaker is m.breaker("svc")
    assert "hook bug" in caplog.text


def test_on_created_rejects_what_is_not_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        manager().on_created(42)  # type: ignore[arg-type]


# -- threads ------------------------------------------------------------------------------


def test_breakers_created_while_listeners_come_and_go_get_each_listener_once() -> None:
    m = manager(failure_threshold_count=1000)
    creators, names_each, churners, rounds = 6, 40, 3, 60
    created: Counter[str] = Counter()
    created_lock = threading.Lock()

    def count_created(breaker: CircuitBreaker) -> None:
        with created_lock:
            created[breaker.name] += 1

    m.on_created(count_created)
    kept: list[Event] = []
    kept_lock = threading.Lock()

    def keep(event: Event) -> None:
        with kept_lock:
            kept.append(event)

    transient: list[list[Event]] = [[] for _ in range(churners)]
    start = threading.Barrier(creators + churners + 1)

    def creator(k: int) -> None:
        start.wait()
        for i in range(names_each):
            succeed(m.breaker(f"svc-{k}-{i}"))
            m.breaker(f"shared-{i}")  # every creator races for these

    def churner(j: int) -> None:
        start.wait()
        for _ in range(rounds):
            unsubscribe = m.subscribe(transient[j].append)
            m.breaker(f"shared-{j}")
            unsubscribe()

    def keeper() -> None:
        start.wait()
        m.subscribe(keep)

    run_in_threads(
        [
            *(lambda k=k: creator(k) for k in range(creators)),
            *(lambda j=j: churner(j) for j in range(churners)),
            keeper,
        ],
        timeout=60,
        on_error=start.abort,
    )

    names = m.names()
    assert len(names) == creators * names_each + names_each
    assert created == Counter(dict.fromkeys(names, 1))  # each new breaker once
    heard_before = [len(t) for t in transient]
    with kept_lock:
        kept.clear()
    for name in names:
        fail(m.breaker(name))
    failed = Counter(e.name for e in kept if isinstance(e, CallFailed))
    assert failed == Counter(dict.fromkeys(names, 1))  # every breaker, none twice
    assert [len(t) for t in transient] == heard_before  # all unsubscribed
    assert all(
        isinstance(e, (CallSucceeded, CallIgnored, CallRejected, CallFailed, StateChanged))
        for t in transient
        for e in t
    )
