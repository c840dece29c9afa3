"""The synchronous breaker: `with`, `call`, `@breaker`, `try_acquire`, states, manual control
(force_open, force_closed, reset, trip(duration))."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import pickle
import threading
from typing import Any

import pytest
from helpers import CLOSED, FORCED_CLOSED, FORCED_OPEN, HALF_OPEN, OPEN, Boom, fail, make, succeed

from circuitry import (
    Alert,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerError,
    CircuitOpenError,
    Permit,
)
from circuitry._batch import FOLD_AT
from circuitry.events import Event, StateChanged
from circuitry.testing import FakeClock


def trip(breaker: CircuitBreaker) -> None:
    """Fail `with` blocks until the circuit opens (helpers.trip goes through `call`)."""
    while breaker.state is not OPEN:
        fail(breaker)


def half_open(breaker: CircuitBreaker, clock: FakeClock) -> None:
    trip(breaker)
    clock.advance(breaker.config.reset_timeout)
    assert breaker.state is HALF_OPEN


# -- construction ------------------------------------------------------------------


def test_breaker_defaults_to_default_config_and_name() -> None:
    breaker = CircuitBreaker()
    assert breaker.name == "default"
    assert breaker.config == CircuitBreakerConfig()
    assert breaker.state is CLOSED


def test_breaker_keeps_the_given_config_and_name(clock: FakeClock) -> None:
    config = CircuitBreakerConfig(failure_threshold_count=2)
    breaker = CircuitBreaker(config, name="payments", clock=clock)
    assert breaker.config is config
    assert breaker.name == "payments"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"config": {"failure_threshold_count": 2}},
        {"config": 5},
        {"name": 5},
        {"name": None},
        {"clock": 0.0},
    ],
)
def test_breaker_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        CircuitBreaker(**kwargs)


# -- with -------------------------------------------------------------------------------


def test_with_block_success_counts_a_success(clock: FakeClock) -> None:
    breaker = make(clock)
    ran = []
    with breaker:
        ran.append(True)
    assert ran == [True]
    m = breaker.metrics()
    assert (m.total_allowed, m.total_successes, m.total_failures) == (1, 1, 0)


def test_with_block_failure_counts_a_failure_and_reraises_the_same_object(
    clock: FakeClock,
) -> None:
    breaker = make(clock)
    error = Boom("down")
    with pytest.raises(Boom) as info, breaker:
        raise error
    assert info.value is error
    assert type(info.value) is Boom
    assert error.__cause__ is None
    assert error.__context__ is None
    m = breaker.metrics()
    assert (m.total_successes, m.total_failures, m.window_failures) == (0, 1, 1)


def test_with_block_exception_keeps_its_traceback(clock: FakeClock) -> None:
    breaker = make(clock)

    def deep() -> None:
        raise Boom("deep")

    with pytest.raises(Boom) as info, breaker:
        deep()
    names = [entry.name for entry in info.traceback]
    assert "deep" in names


def test_consecutive_failures_trip_the_circuit(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=3)
    fail(breaker)
    fail(breaker)
    assert breaker.state is CLOSED
    fail(breaker)
    assert breaker.state is OPEN


def test_success_resets_the_consecutive_failure_count(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=3)
    fail(breaker)
    fail(breaker)
    succeed(breaker)
    assert breaker.metrics().window_failures == 0
    fail(breaker)
    fail(breaker)
    assert breaker.state is CLOSED
    fail(breaker)
    assert breaker.state is OPEN


def test_rejected_block_does_not_run_and_raises_circuit_open_error(clock: FakeClock) -> None:
    breaker = make(clock, name="payments", failure_threshold_count=1, reset_timeout=60)
    fail(breaker)
    clock.advance(47.7)
    ran = []
    with pytest.raises(CircuitOpenError) as info, breaker:
        ran.append(True)
    assert ran == []
    error = info.value
    assert isinstance(error, CircuitBreakerError)
    assert error.name == "payments"
    assert error.state is OPEN
    assert error.retry_after == pytest.approx(12.3)
    assert str(error) == "circuit 'payments' is open; retry after 12.3s"


def test_each_rejection_raises_a_fresh_error_with_current_retry_after(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, reset_timeout=10)
    fail(breaker)
    errors = []
    for _ in range(2):
        with pytest.raises(CircuitOpenError) as info, breaker:
            pass
        errors.append(info.value)
        clock.advance(4)
    assert errors[0] is not errors[1]
    assert errors[0].retry_after == pytest.approx(10.0)
    assert errors[1].retry_after == pytest.approx(6.0)
    assert breaker.metrics().total_rejected == 2


def test_circuit_open_error_pickles_with_its_attributes(clock: FakeClock) -> None:
    breaker = make(clock, name="payments", failure_threshold_count=1, reset_timeout=60)
    fail(breaker)
    with pytest.raises(CircuitOpenError) as info, breaker:
        pass
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is CircuitOpenError
    assert (copy.name, copy.state, copy.retry_after) == ("payments", OPEN, 60.0)
    assert str(copy) == str(info.value) == "circuit 'payments' is open; retry after 60.0s"


def test_rejection_is_counted_and_not_allowed(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1)
    fail(breaker)
    for _ in range(3):
        with pytest.raises(CircuitOpenError), breaker:
            pass
    m = breaker.metrics()
    assert m.total_rejected == 3
    assert m.total_allowed == 1


def test_rejection_error_is_not_counted_as_an_outcome(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1)
    fail(breaker)
    with pytest.raises(CircuitOpenError), breaker:
        pass
    m = breaker.metrics()
    assert (m.total_successes, m.total_failures, m.total_ignored) == (0, 1, 0)


# -- call -------------------------------------------------------------------------------


def test_call_returns_the_result_and_passes_args_and_kwargs(clock: FakeClock) -> None:
    breaker = make(clock)

    def add(a: int, b: int, *, scale: int = 1) -> int:
        return (a + b) * scale

    assert breaker.call(add, 1, 2, scale=10) == 30
    assert breaker.metrics().total_successes == 1


def test_call_passes_a_keyword_named_fn_to_the_function(clock: FakeClock) -> None:
    breaker = make(clock)

    def echo(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    assert breaker.call(echo, fn=1, self=2) == {"fn": 1, "self": 2}


def test_call_reraises_the_same_exception_and_counts_it(clock: FakeClock) -> None:
    breaker = make(clock)
    error = Boom("x")

    def broken() -> None:
        raise error

    with pytest.raises(Boom) as info:
        breaker.call(broken)
    assert info.value is error
    assert breaker.metrics().total_failures == 1


def test_rejected_call_does_not_run_the_function(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1)
    fail(breaker)
    calls: list[int] = []
    with pytest.raises(CircuitOpenError):
        breaker.call(calls.append, 1)
    assert calls == []


# -- decorator ---------------------------------------------------------------------------


def test_decorator_keeps_name_doc_and_signature(clock: FakeClock) -> None:
    breaker = make(clock)

    def fetch(url: str, *, timeout: float = 1.0) -> str:
        """Fetch a URL."""
        return url

    protected = breaker(fetch)
    assert protected.__name__ == "fetch"
    assert protected.__doc__ == "Fetch a URL."
    assert protected.__qualname__ == fetch.__qualname__
    assert inspect.signature(protected) == inspect.signature(fetch)
    assert not inspect.iscoroutinefunction(protected)


def test_decorated_function_is_protected(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=2)
    calls = []

    @breaker
    def flaky(x: int, *, ok: bool) -> int:
        calls.append(x)
        if not ok:
            raise Boom(x)
        return x * 2

    assert flaky(1, ok=True) == 2
    for i in (2, 3):
        with pytest.raises(Boom):
            flaky(i, ok=False)
    with pytest.raises(CircuitOpenError):
        flaky(4, ok=True)
    assert calls == [1, 2, 3]
    m = breaker.metrics()
    assert (m.total_successes, m.total_failures, m.total_rejected) == (1, 2, 1)


def test_decorator_works_on_methods(clock: FakeClock) -> None:
    breaker = make(clock)

    class Client:
        def __init__(self, base: str) -> None:
            self.base = base

        @breaker
        def get(self, path: str) -> str:
            """Get a path."""
            return self.base + path

    client = Client("http://x")
    assert client.get("/a") == "http://x/a"
    assert Client.get.__name__ == "get"
    assert Client.get.__doc__ == "Get a path."
    assert list(inspect.signature(client.get).parameters) == ["path"]
    assert breaker.metrics().total_successes == 1


def test_decorator_rejects_non_callables(clock: FakeClock) -> None:
    breaker = make(clock)
    with pytest.raises(TypeError):
        breaker(42)  # type: ignore[call-overload]


# -- nesting -------------------------------------------------------------------------------


def test_nested_with_of_the_same_breaker_counts_both_calls(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=10)
    with breaker:
        with breaker:
            pass
        assert breaker.metrics().total_successes == 1
    assert breaker.metrics().total_successes == 2
    with pytest.raises(Boom), breaker, breaker:
        raise Boom
    m = breaker.metrics()
    assert (m.total_allowed, m.total_successes, m.total_failures) == (4, 2, 2)


def test_nested_with_of_two_breakers_records_on_each(clock: FakeClock) -> None:
    outer = make(clock, name="outer")
    inner = make(clock, name="inner")
    with outer, inner:
        pass
    with pytest.raises(Boom), outer, inner:
        raise Boom
    for breaker in (outer, inner):
        m = breaker.metrics()
        assert (m.total_successes, m.total_failures) == (1, 1)


def test_blocks_of_two_breakers_exited_out_of_order_record_their_own_outcome(
    clock: FakeClock,
) -> None:
    a = make(clock, name="a")
    b = make(clock, name="b")
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)
    error = Boom()
    b.__exit__(Boom, error, None)
    assert (a.metrics().total_successes, a.metrics().total_failures) == (1, 0)
    assert (b.metrics().total_successes, b.metrics().total_failures) == (0, 1)


def test_with_blocks_in_interleaved_tasks_each_record_their_own_call(clock: FakeClock) -> None:
    # A plain `with` around an `await`: tasks interleave on one thread, and each
    # block's exit must complete the call its own enter admitted.
    breaker = make(clock, failure_threshold_count=1)

    async def main() -> None:
        first_in, first_go = asyncio.Event(), asyncio.Event()
        second_in, second_go = asyncio.Event(), asyncio.Event()

        async def first() -> None:
            with contextlib.suppress(Boom), breaker:
                first_in.set()
                await first_go.wait()
                raise Boom

        async def second() -> None:
            with breaker:
                second_in.set()
                await second_go.wait()

        first_task = asyncio.create_task(first())
        await first_in.wait()
        breaker.force_open()
        breaker.reset()  # a new state period: the first call's result will be late
        second_task = asyncio.create_task(second())
        await second_in.wait()
        first_go.set()
        await first_task
        assert breaker.state is CLOSED  # the late failure did not trip the new period
        second_go.set()
        await second_task

    asyncio.run(main())
    m = breaker.metrics()
    assert m.current_state is CLOSED
    assert (m.total_successes, m.total_failures) == (1, 1)


def test_with_blocks_in_two_threads_each_record_their_own_call(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1)
    entered = threading.Event()
    go = threading.Event()

    def late_failure() -> None:
        with contextlib.suppress(Boom), breaker:
            entered.set()
            go.wait(60)
            raise Boom

    worker = threading.Thread(target=late_failure, daemon=True)
    worker.start()
    assert entered.wait(60)
    breaker.force_open()
    breaker.reset()
    with breaker:
        go.set()
        worker.join(60)
        assert not worker.is_alive()
        assert breaker.state is CLOSED
    assert breaker.state is CLOSED
    assert breaker.metrics().total_failures == 1


def test_exit_without_enter_is_a_clear_error(clock: FakeClock) -> None:
    breaker = make(clock)
    with pytest.raises(RuntimeError, match="svc"):
        breaker.__exit__(None, None, None)


# -- try_acquire / Permit ----------------------------------------------------------------------


def test_try_acquire_returns_a_permit_whose_success_is_counted(clock: FakeClock) -> None:
    breaker = make(clock)
    permit = breaker.try_acquire()
    assert isinstance(permit, Permit)
    assert not permit.done
    clock.advance(0.5)
    permit.record_success()
    assert permit.done
    m = breaker.metrics()
    assert (m.total_allowed, m.total_successes) == (1, 1)
    assert m.average_response_time == pytest.approx(0.5)


def test_try_acquire_returns_none_when_rejected_and_counts_the_rejection(
    clock: FakeClock,
) -> None:
    breaker = make(clock, failure_threshold_count=1)
    fail(breaker)
    assert breaker.try_acquire() is None
    assert breaker.try_acquire() is None
    assert breaker.metrics().total_rejected == 2


def test_permit_failures_trip_the_circuit(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=2)
    for _ in range(2):
        permit = breaker.try_acquire()
        assert permit is not None
        permit.record_failure(Boom())
    assert breaker.state is OPEN
    assert breaker.metrics().total_failures == 2


def test_permit_record_failure_without_exception_counts_a_failure(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1)
    permit = breaker.try_acquire()
    assert permit is not None
    permit.record_failure()
    assert breaker.state is OPEN


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        ("record_success", (1, 0, 0)),
        ("record_failure", (0, 1, 0)),
        ("release", (0, 0, 1)),
    ],
)
def test_only_the_first_completion_of_a_permit_has_effect(
    clock: FakeClock, first: str, expected: tuple[int, int, int]
) -> None:
    breaker = make(clock)
    permit = breaker.try_acquire()
    assert permit is not None
    getattr(permit, first)()
    for method in ("record_success", "record_failure", "release", first):
        getattr(permit, method)()
    m = breaker.metrics()
    assert (m.total_successes, m.total_failures, m.total_ignored) == expected
    assert m.total_allowed == 1


def test_permit_release_counts_ignored_and_keeps_the_failure_count(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=2)
    fail(breaker)
    permit = breaker.try_acquire()
    assert permit is not None
    permit.release()
    m = breaker.metrics()
    assert m.total_ignored == 1
    assert m.window_failures == 1
    fail(breaker)
    assert breaker.state is OPEN


def test_permit_release_frees_the_half_open_slot(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, reset_timeout=10)
    half_open(breaker, clock)
    permit = breaker.try_acquire()
    assert permit is not None
    assert breaker.try_acquire() is None  # the single trial slot is taken
    permit.release()
    assert breaker.state is HALF_OPEN
    second = breaker.try_acquire()
    assert second is not None
    second.record_success()
    assert breaker.state is CLOSED
    assert breaker.metrics().total_ignored == 1


def test_half_open_rejection_has_no_retry_after(clock: FakeClock) -> None:
    breaker = make(clock, name="db", failure_threshold_count=1, reset_timeout=10)
    half_open(breaker, clock)
    permit = breaker.try_acquire()
    assert permit is not None
    with pytest.raises(CircuitOpenError) as info, breaker:
        pass
    assert info.value.state is HALF_OPEN
    assert info.value.retry_after is None
    assert "'db'" in str(info.value)
    assert "retry after" not in str(info.value)


# -- outcome classification --------------------------------------------------------------------


def test_result_is_failure_returns_the_value_and_counts_a_failure(clock: FakeClock) -> None:
    seen = []

    def bad(result: object) -> bool:
        seen.append(result)
        return result is None

    breaker = make(clock, failure_threshold_count=2, result_is_failure=bad)
    assert breaker.call(lambda: None) is None
    assert breaker.call(lambda: 7) == 7
    assert seen == [None, 7]
    m = breaker.metrics()
    assert (m.total_successes, m.total_failures) == (1, 1)
    assert breaker.call(lambda: None) is None
    assert breaker.call(lambda: None) is None
    assert breaker.state is OPEN


def test_result_is_failure_applies_to_decorated_functions(clock: FakeClock) -> None:
    breaker = make(clock, result_is_failure=lambda r: r == "error")

    @breaker
    def status() -> str:
        return "error"

    assert status() == "error"
    assert breaker.metrics().total_failures == 1


def test_failure_predicate_decides_whether_a_recorded_exception_fails(clock: FakeClock) -> None:
    seen: list[BaseException] = []

    def is_server_error(exc: BaseException) -> bool:
        seen.append(exc)
        return "5xx" in str(exc)

    breaker = make(clock, failure_predicate=is_server_error)
    client_error = fail(breaker, Boom("4xx"))
    server_error = fail(breaker, Boom("5xx"))
    assert seen == [client_error, server_error]
    m = breaker.metrics()
    assert (m.total_successes, m.total_failures) == (1, 1)


def test_failure_predicate_is_not_asked_about_unrecorded_or_ignored_exceptions(
    clock: FakeClock,
) -> None:
    seen: list[BaseException] = []

    def always(exc: BaseException) -> bool:
        seen.append(exc)
        return True

    breaker = make(
        clock,
        record_exceptions=(OSError,),
        ignore_exceptions=(KeyError,),
        failure_predicate=always,
    )
    fail(breaker, ValueError())
    fail(breaker, KeyError())
    assert seen == []
    m = breaker.metrics()
    assert (m.total_successes, m.total_failures, m.total_ignored) == (1, 0, 1)


def test_ignore_exceptions_wins_over_record_exceptions(clock: FakeClock) -> None:
    breaker = make(
        clock,
        failure_threshold_count=3,
        record_exceptions=(LookupError,),
        ignore_exceptions=(KeyError,),
    )
    fail(breaker, IndexError())
    fail(breaker, IndexError())
    fail(breaker, KeyError())
    m = breaker.metrics()
    assert (m.total_failures, m.total_ignored, m.total_successes) == (2, 1, 0)
    # An ignored call neither resets nor adds to the consecutive count.
    assert m.window_failures == 2
    assert breaker.state is CLOSED
    fail(breaker, IndexError())
    assert breaker.state is OPEN


def test_unrecorded_exception_counts_as_a_success(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=2, record_exceptions=(OSError,))
    fail(breaker, OSError())
    fail(breaker, ValueError())  # the service answered
    m = breaker.metrics()
    assert (m.total_successes, m.total_failures, m.window_failures) == (1, 1, 0)
    fail(breaker, OSError())
    assert breaker.state is CLOSED


def test_subclass_of_a_recorded_exception_is_a_failure(clock: FakeClock) -> None:
    breaker = make(clock, record_exceptions=OSError)
    fail(breaker, ConnectionResetError())
    assert breaker.metrics().total_failures == 1


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_base_exception_in_block_counts_as_ignored_and_propagates(
    clock: FakeClock, exc_type: type[BaseException]
) -> None:
    breaker = make(clock, record_exceptions=(Exception,))
    error = exc_type()
    raised = fail(breaker, error)
    assert raised is error
    m = breaker.metrics()
    assert (m.total_successes, m.total_failures, m.total_ignored) == (0, 0, 1)


def test_recorded_base_exception_counts_as_a_failure(clock: FakeClock) -> None:
    breaker = make(clock, record_exceptions=(BaseException,))
    fail(breaker, KeyboardInterrupt())
    assert breaker.metrics().total_failures == 1


def test_keyboard_interrupt_in_a_trial_gives_the_half_open_permit_back(
    clock: FakeClock,
) -> None:
    breaker = make(clock, failure_threshold_count=1, reset_timeout=5)
    half_open(breaker, clock)
    fail(breaker, KeyboardInterrupt())
    assert breaker.state is HALF_OPEN
    assert breaker.metrics().total_ignored == 1
    succeed(breaker)  # the slot is free again: this trial is admitted and closes it
    assert breaker.state is CLOSED


def test_keyboard_interrupt_in_call_gives_the_half_open_permit_back(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, reset_timeout=5)
    half_open(breaker, clock)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        breaker.call(interrupted)
    assert breaker.state is HALF_OPEN
    assert breaker.call(lambda: "ok") == "ok"
    assert breaker.state is CLOSED


def test_failure_predicate_that_raises_is_logged_and_the_original_exception_propagates(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(exc: BaseException) -> bool:
        raise RuntimeError("predicate bug")

    breaker = make(clock, failure_predicate=broken)
    error = Boom()
    with caplog.at_level(logging.ERROR, logger="circuitry"):
        raised = fail(breaker, error)
    assert raised is error
    assert breaker.metrics().total_failures == 1
    records = [r for r in caplog.records if r.name == "circuitry"]
    assert records
    assert records[0].exc_info is not None
    assert "predicate bug" in str(records[0].exc_info[1])


def test_result_predicate_that_raises_is_logged_and_the_value_is_returned(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(result: object) -> bool:
        raise RuntimeError("predicate bug")

    breaker = make(clock, result_is_failure=broken)
    with caplog.at_level(logging.ERROR, logger="circuitry"):
        assert breaker.call(lambda: 42) == 42
    assert breaker.metrics().total_successes == 1
    assert any(
        r.name == "circuitry" and "result_is_failure" in r.getMessage() for r in caplog.records
    )


# -- state transitions -----------------------------------------------------------------------


def test_open_becomes_half_open_when_the_open_period_has_passed(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, reset_timeout=30)
    fail(breaker)
    clock.advance(29.999)
    assert breaker.state is OPEN
    clock.advance(0.001)
    assert breaker.state is HALF_OPEN


def test_metrics_alone_sees_open_become_half_open(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, reset_timeout=30)
    fail(breaker)
    assert breaker.metrics().current_state is OPEN
    clock.advance(30)
    m = breaker.metrics()
    assert m.current_state is HALF_OPEN
    assert m.state_changes == 2
    assert m.time_in_state == 0.0


def test_trial_after_the_open_period_is_admitted_and_closes_on_success(
    clock: FakeClock,
) -> None:
    breaker = make(clock, failure_threshold_count=1, reset_timeout=30)
    fail(breaker)
    clock.advance(30)
    succeed(breaker)  # without reading state first
    assert breaker.state is CLOSED


def test_half_open_needs_success_threshold_trials_to_close(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, success_threshold_count=3)
    half_open(breaker, clock)
    succeed(breaker)
    succeed(breaker)
    assert breaker.state is HALF_OPEN
    succeed(breaker)
    assert breaker.state is CLOSED


def test_half_open_failure_reopens(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, success_threshold_count=2, reset_timeout=10)
    half_open(breaker, clock)
    succeed(breaker)
    fail(breaker)
    assert breaker.state is OPEN
    with pytest.raises(CircuitOpenError) as info, breaker:
        pass
    assert info.value.retry_after == pytest.approx(10.0)


def test_half_open_allows_test_request_count_trials_in_flight(clock: FakeClock) -> None:
    breaker = make(
        clock, failure_threshold_count=1, test_request_count=2, success_threshold_count=5
    )
    half_open(breaker, clock)
    first = breaker.try_acquire()
    second = breaker.try_acquire()
    assert first is not None
    assert second is not None
    assert breaker.try_acquire() is None
    first.record_success()
    third = breaker.try_acquire()
    assert third is not None
    assert breaker.try_acquire() is None


def test_failed_trials_back_off_up_to_the_cap_and_closing_restores_it(clock: FakeClock) -> None:
    breaker = make(
        clock,
        failure_threshold_count=1,
        reset_timeout=10,
        reset_timeout_multiplier=2,
        max_reset_timeout=35,
    )
    fail(breaker)
    periods = []
    for _ in range(4):
        with pytest.raises(CircuitOpenError) as info, breaker:
            pass
        assert info.value.retry_after is not None
        periods.append(info.value.retry_after)
        clock.advance(info.value.retry_after)
        fail(breaker)  # the trial fails
    assert periods == [10.0, 20.0, 35.0, 35.0]
    clock.advance(35)
    succeed(breaker)
    assert breaker.state is CLOSED
    fail(breaker)
    with pytest.raises(CircuitOpenError) as info, breaker:
        pass
    assert info.value.retry_after == 10.0


def test_late_result_from_an_earlier_state_period_updates_totals_only(
    clock: FakeClock,
) -> None:
    breaker = make(clock, failure_threshold_count=2, reset_timeout=10)
    slow_permit = breaker.try_acquire()
    assert slow_permit is not None
    half_open(breaker, clock)
    slow_permit.record_failure(Boom())
    assert breaker.state is HALF_OPEN
    assert breaker.metrics().total_failures == 3
    succeed(breaker)
    assert breaker.state is CLOSED


def test_late_success_does_not_close_the_circuit(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, reset_timeout=10)
    permit = breaker.try_acquire()
    assert permit is not None
    fail(breaker)
    assert breaker.state is OPEN
    permit.record_success()
    assert breaker.state is OPEN
    assert breaker.metrics().total_successes == 1


def test_window_counts_failures_in_the_window_only(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=3, failure_window=60)
    fail(breaker)
    fail(breaker)
    succeed(breaker)  # a success does not reset a windowed count
    assert breaker.metrics().window_failures == 2
    clock.advance(61)
    assert breaker.metrics().window_failures == 0
    fail(breaker)
    fail(breaker)
    assert breaker.state is CLOSED
    fail(breaker)
    assert breaker.state is OPEN


def test_failure_percentage_trips_once_minimum_calls_is_reached(clock: FakeClock) -> None:
    breaker = make(
        clock,
        failure_threshold_count=100,
        failure_threshold_percentage=50,
        failure_window=60,
        minimum_calls=4,
    )
    fail(breaker)
    fail(breaker)
    succeed(breaker)
    assert breaker.state is CLOSED  # 2 of 3: below minimum_calls
    succeed(breaker)  # 2 of 4 = 50 %: the success that reaches minimum_calls trips it
    assert breaker.state is OPEN


def test_slow_calls_are_counted_and_trip_on_the_slow_rate(clock: FakeClock) -> None:
    breaker = make(
        clock,
        failure_window=60,
        minimum_calls=2,
        slow_call_duration=1.0,
        slow_call_rate_threshold=100,
    )
    breaker.call(clock.advance, 1.0)
    assert breaker.state is CLOSED
    assert breaker.metrics().total_slow == 1
    breaker.call(clock.advance, 2.0)
    assert breaker.state is OPEN
    assert breaker.metrics().total_slow == 2


# -- manual control ------------------------------------------------------------------------------


def test_force_open_rejects_everything_until_reset(clock: FakeClock) -> None:
    breaker = make(clock, name="svc", reset_timeout=1)
    breaker.force_open()
    assert breaker.state is FORCED_OPEN
    clock.advance(1000)
    assert breaker.state is FORCED_OPEN
    with pytest.raises(CircuitOpenError) as info, breaker:
        pass
    assert info.value.state is FORCED_OPEN
    assert info.value.retry_after is None
    assert "'svc'" in str(info.value)
    assert breaker.try_acquire() is None
    breaker.reset()
    assert breaker.state is CLOSED
    succeed(breaker)


def test_force_open_twice_counts_one_state_change(clock: FakeClock) -> None:
    breaker = make(clock)
    breaker.force_open()
    breaker.force_open()
    assert breaker.metrics().state_changes == 1


def test_forced_closed_never_trips_and_keeps_counting(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=2, failure_window=60)
    breaker.force_closed()
    for _ in range(20):
        fail(breaker)
    succeed(breaker)
    m = breaker.metrics()
    assert m.current_state is FORCED_CLOSED
    assert (m.total_failures, m.total_successes, m.total_allowed) == (20, 1, 21)
    assert m.window_failures == 0
    assert m.is_healthy()


def test_forced_closed_from_open_admits_calls(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1)
    fail(breaker)
    breaker.force_closed()
    succeed(breaker)
    assert breaker.state is FORCED_CLOSED


def test_reset_returns_to_closed_and_keeps_totals(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=2)
    trip(breaker)
    breaker.reset()
    m = breaker.metrics()
    assert m.current_state is CLOSED
    assert m.window_failures == 0
    assert m.total_failures == 2
    assert m.state_changes == 2
    fail(breaker)
    assert breaker.state is CLOSED


def test_reset_while_closed_clears_the_count_without_a_state_change(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=3, failure_window=60)
    fail(breaker)
    fail(breaker)
    breaker.reset()
    m = breaker.metrics()
    assert m.window_failures == 0
    assert m.state_changes == 0
    fail(breaker)
    fail(breaker)
    assert breaker.state is CLOSED


def test_reset_restores_the_base_reset_timeout(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, reset_timeout=10, reset_timeout_multiplier=3)
    half_open(breaker, clock)
    fail(breaker)  # the trial fails: the next period is 30 s
    with pytest.raises(CircuitOpenError) as info, breaker:
        pass
    assert info.value.retry_after == 30.0
    breaker.reset()
    fail(breaker)
    with pytest.raises(CircuitOpenError) as info, breaker:
        pass
    assert info.value.retry_after == 10.0


def test_call_in_flight_across_force_open_is_a_late_result(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1)
    permit = breaker.try_acquire()
    assert permit is not None
    breaker.force_open()
    breaker.reset()
    permit.record_failure()
    assert breaker.state is CLOSED
    assert breaker.metrics().total_failures == 1


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


# -- half_open_max_wait ----------------------------------------------------------------------------


def test_hung_trial_does_not_wedge_the_breaker(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, reset_timeout=10, half_open_max_wait=5)
    half_open(breaker, clock)
    hung = breaker.try_acquire()  # never completed in time
    assert hung is not None
    clock.advance(4.9)
    assert breaker.state is HALF_OPEN
    assert breaker.try_acquire() is None
    clock.advance(0.1)
    assert breaker.state is OPEN
    with pytest.raises(CircuitOpenError) as info, breaker:
        pass
    assert info.value.retry_after == pytest.approx(10.0)
    clock.advance(10)
    succeed(breaker)  # a new trial is admitted
    assert breaker.state is CLOSED
    hung.record_success()  # a late result: counted, state unchanged
    assert breaker.state is CLOSED
    m = breaker.metrics()
    assert m.total_successes == 2


def test_hung_trial_expiry_backs_off_like_a_failed_trial(clock: FakeClock) -> None:
    breaker = make(
        clock,
        failure_threshold_count=1,
        reset_timeout=10,
        half_open_max_wait=5,
        reset_timeout_multiplier=2,
    )
    half_open(breaker, clock)
    assert breaker.try_acquire() is not None
    clock.advance(5)
    with pytest.raises(CircuitOpenError) as info, breaker:
        pass
    assert info.value.state is OPEN
    assert info.value.retry_after == pytest.approx(20.0)


def test_without_half_open_max_wait_a_hung_trial_holds_its_slot(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, reset_timeout=10)
    half_open(breaker, clock)
    hung = breaker.try_acquire()
    assert hung is not None
    clock.advance(10_000)
    assert breaker.state is HALF_OPEN
    assert breaker.try_acquire() is None
    hung.record_success()
    assert breaker.state is CLOSED


# -- blocks entered and exited away from a plain nested `with` ------------------------


def test_generator_holding_a_block_keeps_its_own_ticket(clock: FakeClock) -> None:
    # The generator's block and the caller's block of the same breaker overlap
    # without nesting; each must record its own duration.
    breaker = make(clock)
    durations: list[float] = []
    breaker.subscribe(lambda e: durations.append(e.duration) if hasattr(e, "duration") else None)

    def numbers() -> Any:
        with breaker:  # entered at t=0
            yield 1
            clock.advance(20)
            yield 2  # exits at t=25 when closed below

    gen = numbers()
    next(gen)
    clock.advance(1)
    with breaker:  # entered at t=1
        clock.advance(4)
        next(gen)  # t=25 after the advance inside
    # the caller's block exited at t=25: it lasted 24 s; the generator's is still open
    gen.close()  # exits the generator's block at t=25: it lasted 25 s
    assert sorted(durations) == [24.0, 25.0]
    assert breaker._blocks == {}


def test_generator_closed_in_another_thread_gives_its_trial_slot_back(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, reset_timeout=10)
    half_open(breaker, clock)

    def trial() -> Any:
        with breaker:
            yield

    gen = trial()
    next(gen)  # holds the only trial slot
    assert breaker.try_acquire() is None
    closer = threading.Thread(target=gen.close, daemon=True)
    closer.start()
    closer.join(60)
    assert not closer.is_alive()
    assert breaker.metrics().total_ignored == 1  # GeneratorExit is ignored...
    permit = breaker.try_acquire()  # ...and the slot came back
    assert permit is not None
    permit.record_success()
    assert breaker.state is CLOSED


def test_exit_stack_blocks_record_their_outcomes(clock: FakeClock) -> None:
    breaker = make(clock)
    with breaker:  # an enclosing block in this frame, exited last
        stack = contextlib.ExitStack()
        stack.enter_context(breaker)
        clock.advance(2)
        # What `with ExitStack():` does when its block raises Boom:
        assert stack.__exit__(Boom, Boom(), None) is False
        m = breaker.metrics()
        assert (m.total_allowed, m.total_failures, m.total_successes) == (2, 1, 0)
    m = breaker.metrics()
    assert (m.total_failures, m.total_successes) == (1, 1)
    assert breaker._blocks == {}


def test_decorating_a_generator_function_is_refused(clock: FakeClock) -> None:
    breaker = make(clock)

    def numbers() -> Any:
        yield 1

    async def async_numbers() -> Any:
        yield 1

    with pytest.raises(TypeError, match="generator function"):
        breaker(numbers)
    with pytest.raises(TypeError, match="generator function"):
        breaker(async_numbers)


def test_decorating_an_object_with_async_call_gives_an_async_wrapper(clock: FakeClock) -> None:
    breaker = make(clock)

    class Service:
        async def __call__(self, x: int) -> int:
            raise Boom

    protected = breaker(Service())
    assert inspect.iscoroutinefunction(protected)
    with pytest.raises(Boom):
        asyncio.run(protected(1))
    assert breaker.metrics().total_failures == 1


def test_rejections_while_open_count_and_carry_the_time_left(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, reset_timeout=10)
    fail(breaker)
    for step in range(1, 10):
        clock.advance(1)
        with pytest.raises(CircuitOpenError) as info:
            breaker.call(lambda: None)
        assert info.value.state is OPEN
        assert info.value.retry_after == pytest.approx(10 - step)
        assert breaker.try_acquire() is None
    assert breaker.metrics().total_rejected == 18
    clock.advance(1)  # the open period is over: the next call is the trial
    assert breaker.call(lambda: 7) == 7
    m = breaker.metrics()
    assert (m.current_state, m.total_rejected, m.total_allowed) == (CLOSED, 18, 2)


def test_an_open_period_backed_off_to_infinity_still_rejects_as_open(clock: FakeClock) -> None:
    breaker = make(
        clock, failure_threshold_count=1, reset_timeout=1e308, reset_timeout_multiplier=10
    )
    fail(breaker)
    clock.advance(1e308)
    fail(breaker)  # the trial: the next open period overflows to infinity
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(lambda: None)
    assert (info.value.state, info.value.retry_after) == (OPEN, math.inf)
    assert breaker.try_acquire() is None
    assert breaker.metrics().total_rejected == 2


def test_forced_open_rejects_without_retry_after_and_counts(clock: FakeClock) -> None:
    breaker = make(clock)
    breaker.force_open()
    for _ in range(3):
        with pytest.raises(CircuitOpenError) as info, breaker:
            pass
        assert (info.value.state, info.value.retry_after) == (FORCED_OPEN, None)
    assert breaker.try_acquire() is None
    assert breaker.metrics().total_rejected == 4
    breaker.reset()
    succeed(breaker)
    assert breaker.metrics().total_rejected == 4


def test_rejections_are_events_when_someone_listens(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1)
    fail(breaker)
    events: list[object] = []
    breaker.subscribe(events.append)
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: None)
    assert breaker.try_acquire() is None
    assert [type(e).__name__ for e in events] == ["CallRejected", "CallRejected"]
    assert breaker.metrics().total_rejected == 2


def test_a_clock_that_breaks_at_the_end_of_a_trial_gives_the_slot_back() -> None:
    clock = FakeClock()
    broken = False

    def flaky_clock() -> float:
        if broken:
            raise OSError("clock unavailable")
        return clock()

    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=10), clock=flaky_clock
    )
    fail(breaker)
    clock.advance(10)
    with pytest.raises(OSError, match="clock unavailable"), breaker:  # the trial
        broken = True
    broken = False
    m = breaker.metrics()
    assert (m.current_state, m.total_ignored) == (HALF_OPEN, 1)
    succeed(breaker)  # the slot came back: the next trial is admitted and closes
    assert breaker.state is CLOSED


@pytest.mark.parametrize("bad", [None, "now", True])
def test_a_clock_that_returns_no_number_is_refused(bad: object) -> None:
    with pytest.raises(TypeError, match="clock must return seconds"):
        CircuitBreaker(clock=lambda: bad)  # type: ignore[arg-type, return-value]


def test_a_dropped_permit_gives_its_half_open_slot_back(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, reset_timeout=10)
    half_open(breaker, clock)
    permit = breaker.try_acquire()
    assert permit is not None
    assert breaker.try_acquire() is None  # the only trial slot is taken
    del permit  # dropped without record_*: garbage
    trial = breaker.try_acquire()  # no wedge: the slot came back
    assert trial is not None
    assert breaker.metrics().total_ignored == 1
    trial.record_success()
    assert breaker.state is CLOSED


def test_a_dropped_permit_counts_as_ignored_once(clock: FakeClock) -> None:
    breaker = make(clock)
    permit = breaker.try_acquire()
    assert permit is not None
    permit.record_failure()
    del permit  # completed first: nothing more to give back
    breaker.try_acquire()  # dropped at once, uncompleted
    m = breaker.metrics()
    assert (m.total_allowed, m.total_failures, m.total_ignored) == (2, 1, 1)


def test_permits_dropped_while_closed_are_released_at_the_next_acquire(
    clock: FakeClock,
) -> None:
    # While CLOSED, try_acquire admits without the lock; a dropped permit must
    # still be released at the next one, not pile up until a metrics() read.
    breaker = make(clock)
    for _ in range(1_000):
        breaker.try_acquire()  # dropped at once, uncompleted
        assert len(breaker._dropped) <= 1
        assert breaker._core.in_flight <= 2
    m = breaker.metrics()
    assert (m.total_allowed, m.total_ignored) == (1_000, 1_000)
    assert breaker._core.in_flight == 0


def test_a_generator_dropped_inside_a_block_gives_its_trial_slot_back(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, reset_timeout=10)
    half_open(breaker, clock)

    def trial() -> Any:
        with breaker:
            yield

    gen = trial()
    next(gen)
    assert breaker.try_acquire() is None
    del gen  # finalized: GeneratorExit runs the block's exit
    assert breaker.metrics().total_ignored == 1
    assert breaker._blocks == {}
    permit = breaker.try_acquire()
    assert permit is not None


# -- successes recorded without the lock ------------------------------------------
# With no window, no slow-call rule and nobody listening, a success in CLOSED is
# appended to the core's `pending` list without the lock and counted at the
# breaker's next locked step. None of that may show.


def timed_call(breaker: CircuitBreaker, clock: FakeClock, seconds: float, how: str) -> None:
    def work() -> None:
        clock.advance(seconds)

    if how == "with":
        with breaker:
            work()
    elif how == "call":
        breaker.call(work)
    elif how == "decorator":
        breaker(work)()
    else:
        permit = breaker.try_acquire()
        assert permit is not None
        work()
        permit.record_success()


@pytest.mark.parametrize("how", ["with", "call", "decorator", "permit"])
def test_successes_show_in_the_next_metrics_exactly(clock: FakeClock, how: str) -> None:
    breaker = make(clock)
    assert breaker._core.deferring is not None  # the unlocked path is the one under test
    for seconds in (0.1, 0.2, 0.3):
        timed_call(breaker, clock, seconds, how)
    assert len(breaker._core.pending) == 3  # not counted yet...
    m = breaker.metrics()  # ...but every read counts them first
    assert (m.total_allowed, m.total_successes, m.total_failures) == (3, 3, 0)
    assert m.average_response_time == pytest.approx(0.2)
    assert m.p95_response_time == pytest.approx(0.3, rel=0.05)
    assert breaker._core.in_flight == 0


@pytest.mark.parametrize("how", ["with", "call", "decorator", "permit"])
def test_a_failure_counts_after_the_successes_before_it(clock: FakeClock, how: str) -> None:
    breaker = make(clock, failure_threshold_count=2)
    fail(breaker)
    timed_call(breaker, clock, 0.1, how)  # resets the consecutive count, unlocked
    fail(breaker)
    assert breaker.state is CLOSED  # 1 consecutive failure, not 2
    fail(breaker)
    assert breaker.state is OPEN


def test_successes_wait_uncounted_in_bounded_number(clock: FakeClock) -> None:
    breaker = make(clock)
    for _ in range(1_000):
        succeed(breaker)
        assert len(breaker._core.pending) < FOLD_AT
    assert breaker.metrics().total_successes == 1_000


def test_successes_under_a_slow_call_rule_take_the_lock(clock: FakeClock) -> None:
    breaker = make(clock, slow_call_duration=1)
    assert breaker._core.deferring is None
    succeed(breaker)
    assert breaker._core.pending == []
    assert breaker._core.total_successes == 1


def test_with_a_window_successes_take_the_lock_while_one_could_trip(clock: FakeClock) -> None:
    breaker = make(clock, failure_window=10, failure_threshold_percentage=25, minimum_calls=4)
    succeed(breaker)
    assert len(breaker._core.pending) == 1  # no failure in the window: unlocked
    fail(breaker)  # 2 calls, 1 failure: under minimum_calls
    assert breaker._core.pending == []  # the failure folded it in first
    succeed(breaker)  # 3 calls: locked, since a 4th success would make 25 %
    assert (breaker._core.pending, breaker.state) == ([], CLOSED)
    succeed(breaker)  # 4 calls, 25 %: trips at once
    assert breaker.state is OPEN
    m = breaker.metrics()
    assert (m.total_successes, m.total_failures) == (3, 1)


@pytest.mark.parametrize("read", ["metrics", "success"])
def test_with_a_window_successes_skip_the_lock_again_once_failures_expire(
    clock: FakeClock, read: str
) -> None:
    breaker = make(clock, failure_window=10, failure_threshold_percentage=25, minimum_calls=4)
    fail(breaker)
    fail(breaker)
    succeed(breaker)
    assert breaker._core.pending == []  # locked: two more successes would make 50 %
    clock.advance(11)  # the failures leave the window...
    if read == "metrics":
        assert breaker.metrics().window_failures == 0  # ...seen by a read
    else:
        succeed(breaker)  # ...or by the next (locked) completion
    succeed(breaker)
    assert len(breaker._core.pending) == 1  # unlocked again


@pytest.mark.parametrize("how", ["with", "call", "decorator", "permit"])
def test_with_a_window_an_unlocked_success_still_brings_it_to_minimum_calls(
    clock: FakeClock, how: str
) -> None:
    # Three successes without the lock, then two failures (5 calls, 40 %, under
    # minimum_calls). The 6th call succeeds and brings the window to
    # minimum_calls at 33 %: it trips, as it must, so it took the lock.
    breaker = make(clock, failure_window=10, failure_threshold_percentage=30, minimum_calls=6)
    for _ in range(3):
        timed_call(breaker, clock, 0.1, how)
    fail(breaker)
    fail(breaker)  # 5 calls, 2 failures: 40 %, but under minimum_calls
    assert breaker.state is CLOSED
    timed_call(breaker, clock, 0.1, how)  # the 6th call: 33 % >= 30 %: trips
    assert breaker.state is OPEN


def test_successes_take_the_lock_while_someone_listens(clock: FakeClock) -> None:
    breaker = make(clock)
    unsubscribe = breaker.subscribe(lambda event: None)
    assert breaker._core.deferring is None
    succeed(breaker)
    assert breaker._core.pending == []
    unsubscribe()
    assert breaker._core.deferring is not None
