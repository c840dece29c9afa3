"""Exception groups are classified leaf by leaf (API.md, "Promises at the joints").

A group is a failure if any leaf is one, a success if every leaf would be one,
otherwise ignored; `failure_predicate` sees leaves, never the group; a
cancellation leaf is never a failure in async code. Groups from real task
groups (anyio's, on asyncio and trio) as well as built ones. On Python 3.10
the groups are the `exceptiongroup` backport's (anyio and trio raise those).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from helpers import Entry, entries, make

from circuitry import CircuitBreaker
from circuitry.events import CallFailed, Event
from circuitry.testing import FakeClock

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup


class Down(ConnectionError):
    """A recorded failure."""


class Answered(LookupError):
    """Neither recorded nor ignored: the service answered (a success)."""


class Skipped(KeyError):
    """Ignored."""


class Interrupt(BaseException):
    """A BaseException that is not an Exception: ignored."""


RULES: dict[str, Any] = {
    "failure_threshold_count": 100,
    "record_exceptions": (ConnectionError,),
    "ignore_exceptions": (KeyError,),
}


def group(*leaves: BaseException) -> BaseExceptionGroup[Any]:
    return BaseExceptionGroup("several", list(leaves))


# (what is raised, how it counts) under RULES
CASES: list[tuple[str, Callable[[], BaseException], str]] = [
    ("one failure", lambda: ExceptionGroup("g", [Down()]), "failure"),
    ("one answer", lambda: ExceptionGroup("g", [Answered()]), "success"),
    ("answers", lambda: ExceptionGroup("g", [Answered(), ValueError()]), "success"),
    ("answer and failure", lambda: ExceptionGroup("g", [Answered(), Down()]), "failure"),
    ("failure and ignored", lambda: ExceptionGroup("g", [Skipped(), Down()]), "failure"),
    ("answer and ignored", lambda: ExceptionGroup("g", [Skipped(), Answered()]), "ignored"),
    ("one ignored", lambda: ExceptionGroup("g", [Skipped()]), "ignored"),
    ("nested failure", lambda: group(Answered(), group(Answered(), group(Down()))), "failure"),
    ("nested answers", lambda: group(group(Answered()), group(ValueError())), "success"),
    ("interrupt", lambda: group(Interrupt()), "ignored"),
    ("interrupt and failure", lambda: group(Interrupt(), Down()), "failure"),
    ("interrupt and answer", lambda: group(Interrupt(), Answered()), "ignored"),
]


def counts(breaker: CircuitBreaker) -> str:
    m = breaker.metrics()
    found = {
        "success": m.total_successes,
        "failure": m.total_failures,
        "ignored": m.total_ignored,
    }
    assert sum(found.values()) == 1, found
    return next(name for name, n in found.items() if n)


# -- sync: call, with, decorator -----------------------------------------------------------


def via_call(breaker: CircuitBreaker, exc: BaseException) -> None:
    def raises() -> None:
        raise exc

    breaker.call(raises)


def via_with(breaker: CircuitBreaker, exc: BaseException) -> None:
    with breaker:
        raise exc


def via_decorator(breaker: CircuitBreaker, exc: BaseException) -> None:
    @breaker
    def raises() -> None:
        raise exc

    raises()


@pytest.mark.parametrize("entry", [via_call, via_with, via_decorator])
@pytest.mark.parametrize(("case", "make_exc", "expected"), CASES, ids=[c[0] for c in CASES])
def test_a_group_counts_by_its_leaves(
    clock: FakeClock,
    entry: Callable[[CircuitBreaker, BaseException], None],
    case: str,
    make_exc: Callable[[], BaseException],
    expected: str,
) -> None:
    breaker = make(clock, **RULES)
    exc = make_exc()
    with pytest.raises(BaseExceptionGroup) as info:
        entry(breaker, exc)
    assert info.value is exc  # unchanged
    assert counts(breaker) == expected


def test_the_default_rules_apply_to_the_leaves_too(clock: FakeClock) -> None:
    # record_exceptions=(Exception,) made every ExceptionGroup a failure, even
    # of ignored exceptions.
    breaker = make(clock, ignore_exceptions=(KeyError,))
    with pytest.raises(ExceptionGroup):
        via_call(breaker, ExceptionGroup("g", [KeyError()]))
    assert counts(breaker) == "ignored"


def test_failure_predicate_sees_the_leaves_never_the_group(clock: FakeClock) -> None:
    seen: list[BaseException] = []

    def is_failure(exc: BaseException) -> bool:
        seen.append(exc)
        return "bad" in str(exc)

    breaker = make(clock, **RULES, failure_predicate=is_failure)
    fine, bad = Down("fine"), Down("bad")
    with pytest.raises(ExceptionGroup):
        via_call(breaker, group(Answered(), group(fine)))
    assert seen == [fine]
    assert counts(breaker) == "success"  # recorded type, but the predicate said no
    with pytest.raises(ExceptionGroup):
        via_with(breaker, group(fine, group(bad)))
    assert seen == [fine, fine, bad]
    assert breaker.metrics().total_failures == 1


def test_a_failure_predicate_that_raises_on_a_leaf_counts_that_leaf_a_failure(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(exc: BaseException) -> bool:
        raise RuntimeError("predicate bug")

    breaker = make(clock, **RULES, failure_predicate=broken)
    with pytest.raises(ExceptionGroup):
        via_call(breaker, group(Answered(), Down()))
    assert counts(breaker) == "failure"
    assert "failure_predicate raised" in caplog.text


def test_call_failed_carries_the_group_as_raised(clock: FakeClock) -> None:
    breaker = make(clock, **RULES)
    events: list[Event] = []
    breaker.subscribe(events.append, CallFailed)
    exc = group(Answered(), Down())
    with pytest.raises(BaseExceptionGroup):
        via_with(breaker, exc)
    [event] = events
    assert isinstance(event, CallFailed)
    assert event.exception is exc


def test_a_sync_call_running_a_real_task_group_counts_its_failures(clock: FakeClock) -> None:
    breaker = make(clock, **RULES)

    async def two_tasks(exc_type: type[Exception]) -> None:
        async def fails() -> None:
            raise exc_type("down")

        async with anyio.create_task_group() as tg:
            tg.start_soon(fails)
            tg.start_soon(fails)

    with pytest.raises(ExceptionGroup):
        breaker.call(anyio.run, two_tasks, Down)
    with pytest.raises(ExceptionGroup):
        breaker.call(anyio.run, two_tasks, Answered)
    m = breaker.metrics()
    assert (m.total_failures, m.total_successes) == (1, 1)


# -- async: async with, call_async, decorator, on asyncio and trio --------------------------


@pytest.mark.anyio
@entries
@pytest.mark.parametrize(("case", "make_exc", "expected"), CASES, ids=[c[0] for c in CASES])
async def test_a_group_counts_by_its_leaves_in_async_code(
    clock: FakeClock,
    entry: Entry,
    case: str,
    make_exc: Callable[[], BaseException],
    expected: str,
) -> None:
    breaker = make(clock, **RULES)
    exc = make_exc()

    async def raises() -> None:
        raise exc

    with pytest.raises(BaseExceptionGroup) as info:
        await entry(breaker, raises)
    assert info.value is exc
    assert counts(breaker) == expected


@pytest.mark.anyio
@entries
@pytest.mark.parametrize(("leaf", "expected"), [(Down, "failure"), (Answered, "success")])
async def test_a_real_task_group_counts_by_its_leaves(
    clock: FakeClock, entry: Entry, leaf: type[Exception], expected: str
) -> None:
    breaker = make(clock, **RULES)

    async def fails() -> None:
        await anyio.sleep(0)
        raise leaf("down")

    async def two_tasks() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(fails)
            tg.start_soon(fails)

    with pytest.raises(ExceptionGroup) as info:
        await entry(breaker, two_tasks)
    assert all(isinstance(e, leaf) for e in info.value.exceptions)
    assert counts(breaker) == expected


@pytest.mark.anyio
@entries
async def test_a_real_task_group_under_call_timeout_counts_by_its_leaves(
    clock: FakeClock, entry: Entry
) -> None:
    breaker = make(clock, **RULES, call_timeout=60)

    async def fails() -> None:
        raise Down("down")  # before a checkpoint: the other task's failure cannot cancel it

    async def answers() -> None:
        raise Answered("fine")

    async def tasks() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(fails)
            tg.start_soon(answers)

    with pytest.raises(ExceptionGroup):
        await entry(breaker, tasks)
    assert counts(breaker) == "failure"


def cancellation() -> BaseException:
    """An instance of the running async library's cancellation exception."""
    cancelled = anyio.get_cancelled_exc_class()
    create = getattr(cancelled, "_create", None)  # trio.Cancelled has no public constructor
    return create() if create is not None else cancelled()


@pytest.mark.anyio
@entries
@pytest.mark.parametrize(
    ("others", "expected"),
    [((), "ignored"), ((Down,), "failure"), ((Answered,), "ignored"), ((Skipped,), "ignored")],
)
async def test_a_cancellation_leaf_is_never_a_failure(
    clock: FakeClock, entry: Entry, others: tuple[type[BaseException], ...], expected: str
) -> None:
    # record_exceptions=(BaseException,) would make a bare cancellation a failure
    # in sync code; in async code it never is, alone or in a group.
    breaker = make(
        clock,
        failure_threshold_count=100,
        record_exceptions=(BaseException,),
        ignore_exceptions=(KeyError,),
        failure_predicate=lambda exc: not isinstance(exc, Answered),  # an answer: a success
    )
    exc = group(cancellation(), *(other() for other in others))

    async def raises() -> None:
        raise exc

    with pytest.raises(BaseExceptionGroup):
        await entry(breaker, raises)
    assert counts(breaker) == expected


@pytest.mark.anyio
async def test_a_cancellation_leaf_alone_is_ignored_with_any_rules(clock: FakeClock) -> None:
    breaker = make(clock, record_exceptions=(BaseException,))
    with pytest.raises(BaseExceptionGroup):
        async with breaker:
            raise group(group(cancellation()))
    assert counts(breaker) == "ignored"


def test_nothing_in_the_sync_path_asks_for_an_async_library(clock: FakeClock) -> None:
    # Sync code has no cancellation class of its own: a group of BaseExceptions
    # follows the config alone, without anyio looking for an event loop.
    breaker = make(clock, record_exceptions=(BaseException,))
    with pytest.raises(BaseExceptionGroup):
        via_with(breaker, group(Interrupt()))
    assert counts(breaker) == "failure"


# -- the core's rule, without a breaker --------------------------------------------------


@pytest.mark.parametrize(("case", "make_exc", "expected"), CASES, ids=[c[0] for c in CASES])
def test_classify_exception_counts_a_group_by_its_leaves(
    case: str, make_exc: Callable[[], BaseException], expected: str
) -> None:
    from circuitry import CircuitBreakerConfig
    from circuitry._classify import classify_exception

    assert classify_exception(CircuitBreakerConfig(**RULES), make_exc()).value == expected


def test_classify_group_stops_at_the_first_failure_in_leaf_order() -> None:
    from circuitry._classify import FAILURE, SUCCESS, classify_group

    seen: list[BaseException] = []
    leaves = [Answered("1"), Answered("2"), Down("3"), Answered("4")]
    exc = group(leaves[0], group(leaves[1], group(leaves[2])), leaves[3])

    def classify(leaf: BaseException) -> Any:
        seen.append(leaf)
        return FAILURE if isinstance(leaf, Down) else SUCCESS

    assert classify_group(exc, classify) is FAILURE
    assert seen == leaves[:3]
