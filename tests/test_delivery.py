"""Event delivery is bounded (issue 10, item 4).

With a slow listener and busy threads, one caller used to deliver everyone's
events for as long as they kept coming (one call took 11 s; 32,615 events
waited). Now a deliverer goes only as far as its own last event, a thread
whose events wait behind another deliverer waits its turn (back-pressure),
and the queue never holds more than one operation's events per thread.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time

from helpers import run_in_threads

from circuitry import CircuitBreaker, CircuitBreakerConfig
from circuitry.events import CallSucceeded, Event, StateChanged

THREADS = 8
CALLS = 150
# Every call emits one event (CallSucceeded), a transition one more: the most one
# operation of a thread can have waiting.
PER_OPERATION = 2


def test_no_caller_delivers_more_than_the_events_ahead_of_its_own() -> None:
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold_count=10**6), name="svc")
    local = threading.local()
    delivered: list[Event] = []
    backlog: list[int] = []

    def slow_listener(event: Event) -> None:
        time.sleep(0.0001)  # 0.1 ms, as in the issue
        local.delivered = getattr(local, "delivered", 0) + 1
        delivered.append(event)
        backlog.append(len(breaker._core.events))

    breaker.subscribe(slow_listener)
    most_in_one_call = [0] * THREADS

    def worker(i: int) -> None:
        for _ in range(CALLS):
            before = getattr(local, "delivered", 0)
            breaker.call(lambda: None)
            most_in_one_call[i] = max(most_in_one_call[i], getattr(local, "delivered", 0) - before)

    run_in_threads([functools.partial(worker, i) for i in range(THREADS)], timeout=120)

    bound = THREADS * PER_OPERATION
    assert max(most_in_one_call) <= bound, most_in_one_call
    assert max(backlog) <= bound
    assert sum(isinstance(e, CallSucceeded) for e in delivered) == THREADS * CALLS
    assert breaker._core.events == []
    assert breaker._delivery is not None
    assert breaker._delivery.deliverer is None


def test_a_caller_whose_event_waits_behind_a_deliverer_delivers_it_itself() -> None:
    # The deliverer stops at its own last event; the later event is not stranded.
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold_count=1), name="svc")
    first_started, release = threading.Event(), threading.Event()
    got: list[tuple[str, str]] = []

    def listener(event: Event) -> None:
        got.append((threading.current_thread().name, type(event).__name__))
        if threading.current_thread().name == "first" and len(got) == 1:
            first_started.set()
            release.wait(10)

    breaker.subscribe(listener)
    first = threading.Thread(target=lambda: breaker.call(lambda: None), name="first")
    first.start()
    first_started.wait(10)

    def trip() -> None:
        with contextlib.suppress(RuntimeError):
            breaker.call(_boom)

    second = threading.Thread(target=trip, name="second")
    second.start()
    deadline = time.monotonic() + 10
    while len(breaker._core.events) < 2:  # its events queued: it waits its turn
        assert time.monotonic() < deadline, "the second call never queued its events"
        time.sleep(0.001)
    release.set()
    first.join(10)
    second.join(10)
    assert got == [
        ("first", "CallSucceeded"),
        ("second", "CallFailed"),
        ("second", "StateChanged"),
    ]
    assert breaker._core.events == []


def test_a_listener_calling_the_same_breaker_only_queues_and_sees_its_event_next() -> None:
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold_count=1), name="svc")
    seen: list[str] = []

    def listener(event: Event) -> None:
        seen.append(type(event).__name__)
        if isinstance(event, StateChanged):
            breaker.metrics()
        if len(seen) == 1:
            breaker.call(lambda: None)  # reentrant: its event is queued, delivered after

    breaker.subscribe(listener)
    breaker.call(lambda: None)
    assert seen == ["CallSucceeded", "CallSucceeded"]
    assert breaker._delivery is not None
    assert breaker._delivery.deliverer is None


def _boom() -> None:
    raise RuntimeError("down")


def test_a_listener_waiting_for_a_thread_that_uses_the_breaker_does_not_deadlock() -> None:
    # The listener (in the deliverer thread) waits for another thread, which makes a
    # call and would wait for the deliverer: after PATIENCE it leaves its event to it.
    breaker = CircuitBreaker(name="svc")
    got: list[str] = []
    done = threading.Event()

    def other() -> None:
        breaker.call(lambda: None)  # its event waits behind the busy deliverer
        done.set()

    def listener(event: Event) -> None:
        got.append(threading.current_thread().name)
        if len(got) == 1:
            helper = threading.Thread(target=other, name="other")
            helper.start()
            assert done.wait(10), "the other thread waited for ever"
            helper.join(10)

    breaker.subscribe(listener)
    caller = threading.Thread(target=lambda: breaker.call(lambda: None), name="caller")
    caller.start()
    caller.join(15)
    assert not caller.is_alive()
    # The other thread's event was left to the deliverer, which delivered it.
    assert got == ["caller", "caller"]
    assert breaker._core.events == []
