"""`Permit.record_exception(exc)`: a permit completed as `with breaker:` would classify `exc`.

`record_failure(exc)` keeps recording a failure whatever `exc` is.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
import pytest
from helpers import CLOSED, HALF_OPEN, OPEN, Boom, Interrupt, boom, half_open, make

from circuitry import CircuitBreaker, CircuitOpenError, Permit
from circuitry.events import CallFailed, Event
from circuitry.testing import FakeClock

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

RULES: dict[str, Any] = {
    "failure_threshold_count": 100,
    "record_exceptions": (ConnectionError,),
    "ignore_exceptions": (KeyError,),
}


def acquire(breaker: CircuitBreaker) -> Permit:
    permit = breaker.try_acquire()
    assert permit is not None
    return permit


def outcome(breaker: CircuitBreaker) -> str:
    m = breaker.metrics()
    found = {"success": m.total_successes, "failure": m.total_failures, "ignored": m.total_ignored}
    assert sum(found.values()) == 1, found
    return next(name for name, n in found.items() if n)


def with_outcome(clock: FakeClock, exc: BaseException, **config: Any) -> str:
    """How `with breaker:` counts `exc`: what record_exception must match."""
    breaker = make(clock, **config)
    with pytest.raises(type(exc)), breaker:
        raise exc
    return outcome(breaker)


EXCEPTIONS = [
    ConnectionError("down"),
    ValueError("answered"),
    KeyError("skipped"),
    Interrupt(),
    KeyboardInterrupt(),
    ExceptionGroup("g", [ValueError(), ConnectionError()]),
    ExceptionGroup("g", [ValueError(), KeyError()]),
    ExceptionGroup("g", [ValueError(), ValueError()]),
    BaseExceptionGroup("g", [Interrupt()]),
]


@pytest.mark.parametrize("exc", EXCEPTIONS, ids=repr)
def test_record_exception_counts_as_with_would(clock: FakeClock, exc: BaseException) -> None:
    breaker = make(clock, **RULES)
    acquire(breaker).record_exception(exc)
    assert outcome(breaker) == with_outcome(clock, exc, **RULES)


def test_record_exception_outcomes_under_the_rules(clock: FakeClock) -> None:
    expected = ["failure", "success", "ignored", "ignored", "ignored"]
    expected += ["failure", "ignored", "success", "ignored"]
    found = []
    for exc in EXCEPTIONS:
        breaker = make(clock, **RULES)
        acquire(breaker).record_exception(exc)
        found.append(outcome(breaker))
    assert found == expected


def test_record_failure_still_records_a_failure_whatever_the_exception(clock: FakeClock) -> None:
    breaker = make(clock, **RULES)
    for exc in (ValueError("not recorded"), KeyError("ignored"), None):
        acquire(breaker).record_failure(exc)
    assert breaker.metrics().total_failures == 3


def test_record_exception_gives_the_failed_exception_to_call_failed(clock: FakeClock) -> None:
    breaker = make(clock, **RULES)
    events: list[Event] = []
    breaker.subscribe(events.append, CallFailed)
    exc = ExceptionGroup("g", [ConnectionError()])
    acquire(breaker).record_exception(exc)
    [event] = events
    assert isinstance(event, CallFailed)
    assert event.exception is exc


def test_only_the_first_completion_counts(clock: FakeClock) -> None:
    calls = []

    def predicate(exc: BaseException) -> bool:
        calls.append(exc)
        return True

    breaker = make(clock, **RULES, failure_predicate=predicate)
    permit = acquire(breaker)
    permit.record_exception(ConnectionError())
    assert permit.done
    permit.record_exception(ConnectionError())
    permit.record_success()
    assert outcome(breaker) == "failure"
    assert len(calls) == 1  # a completed permit does not classify again

    permit = acquire(breaker)
    permit.release()
    permit.record_exception(ConnectionError())
    assert breaker.metrics().total_ignored == 1
    assert len(calls) == 1


def test_record_exception_in_half_open_frees_or_decides_the_trial(clock: FakeClock) -> None:
    breaker = make(clock, **{**RULES, "failure_threshold_count": 1})
    breaker.trip()
    clock.advance(breaker.config.reset_timeout)
    assert breaker.state is HALF_OPEN
    acquire(breaker).record_exception(KeyError())  # ignored: the slot is free again
    assert breaker.state is HALF_OPEN
    acquire(breaker).record_exception(ValueError())  # the service answered
    assert breaker.state is CLOSED
    acquire(breaker).record_exception(ConnectionError())
    assert breaker.state is OPEN


def test_this_breakers_own_rejection_counts_as_ignored(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1)
    permit = acquire(breaker)
    with pytest.raises(Boom):
        breaker.call(boom)  # trips it
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(lambda: 1)
    permit.record_exception(info.value)
    m = breaker.metrics()
    assert (m.total_failures, m.total_ignored) == (1, 1)


def test_another_breakers_rejection_is_an_exception_like_any_other(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=5)
    other = make(clock, name="other")
    other.force_open()
    with pytest.raises(CircuitOpenError) as info:
        other.call(lambda: 1)
    acquire(breaker).record_exception(info.value)
    assert outcome(breaker) == "failure"


def test_a_failure_predicate_that_raises_counts_a_failure(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(exc: BaseException) -> bool:
        raise RuntimeError("predicate bug")

    breaker = make(clock, failure_predicate=broken)
    acquire(breaker).record_exception(Boom())
    assert outcome(breaker) == "failure"
    assert "failure_predicate raised" in caplog.text


def test_an_interrupt_from_the_predicate_completes_the_permit_as_ignored(
    clock: FakeClock,
) -> None:
    class Interrupting(Exception):
        pass

    def interrupted(exc: BaseException) -> bool:
        if isinstance(exc, Interrupting):
            raise KeyboardInterrupt
        return True

    breaker = make(clock, failure_threshold_count=1, failure_predicate=interrupted)
    half_open(breaker, clock)
    permit = acquire(breaker)
    with pytest.raises(KeyboardInterrupt):
        permit.record_exception(Interrupting())
    assert permit.done
    assert breaker.state is HALF_OPEN
    assert breaker.call(lambda: 1) == 1  # the slot was given back
    assert breaker.state is CLOSED


@pytest.mark.parametrize("thing", [None, "boom", Boom])
def test_record_exception_needs_an_exception(clock: FakeClock, thing: Any) -> None:
    breaker = make(clock)
    permit = acquire(breaker)
    with pytest.raises(TypeError, match="record_exception"):
        permit.record_exception(thing)
    assert not permit.done
    permit.release()


@pytest.mark.anyio
async def test_a_cancellation_in_async_code_is_never_a_failure(clock: FakeClock) -> None:
    breaker = make(clock, record_exceptions=(BaseException,))
    cancelled = anyio.get_cancelled_exc_class()
    create = getattr(cancelled, "_create", None)  # trio.Cancelled has no public constructor
    exc = create() if create is not None else cancelled()
    acquire(breaker).record_exception(exc)
    acquire(breaker).record_exception(BaseExceptionGroup("g", [exc]))
    acquire(breaker).record_exception(BaseExceptionGroup("g", [exc, ConnectionError()]))
    m = breaker.metrics()
    assert (m.total_ignored, m.total_failures) == (2, 1)
