"""Durations at their extremes (API.md, "Promises at the joints": Durations).

A duration too small to compute with is refused when the config is built; no
accepted config makes a call raise anything but its own outcome or
`CircuitOpenError`; `from_mapping` names the key of every error; `trip()`
refuses a duration it cannot use.
"""

from __future__ import annotations

import datetime
import math
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import CLOSED, HALF_OPEN, OPEN, Boom, Skipped, boom, make
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError
from circuitry.testing import FakeClock

DURATIONS = [
    "reset_timeout",
    "max_reset_timeout",
    "failure_window",
    "slow_call_duration",
    "call_timeout",
    "half_open_max_wait",
]
BIGGEST = sys.float_info.max


def test_the_duration_fields_are_all_listed() -> None:
    # A new duration field must be added to DURATIONS (and so to these tests).
    import attrs

    from circuitry import _config

    durations = {
        name
        for name, field in attrs.fields_dict(CircuitBreakerConfig).items()
        if "Seconds" in str(getattr(field.converter, "__annotations__", {}).get("value"))
    }
    assert durations == set(DURATIONS)
    assert _config.SHORTEST_DURATION == 1e-6


@pytest.mark.parametrize("field", DURATIONS)
@pytest.mark.parametrize("value", [1e-320, 5e-324, 1e-9, 9.99e-7])
def test_a_duration_below_one_microsecond_is_refused_naming_the_field(
    field: str, value: Any
) -> None:
    with pytest.raises(ValueError, match=rf"^{field} must be at least 1e-06 seconds .*, got "):
        CircuitBreakerConfig(**{field: value})


@pytest.mark.parametrize("field", DURATIONS)
@pytest.mark.parametrize("value", [0, 0.0, -1, -1e-9, math.nan, math.inf, 10**400])
def test_zero_negative_and_non_finite_durations_are_still_refused(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"^{field} must "):
        CircuitBreakerConfig(**{field: value})


@pytest.mark.parametrize("field", DURATIONS)
@pytest.mark.parametrize("value", [1e-6, datetime.timedelta(microseconds=1), 1e308, BIGGEST])
def test_one_microsecond_and_the_largest_float_are_accepted(field: str, value: Any) -> None:
    kwargs: dict[str, Any] = {field: value}
    if field == "max_reset_timeout":
        kwargs["reset_timeout"] = value
    config = CircuitBreakerConfig(**kwargs)
    assert getattr(config, field) in (1e-6, 1e308, BIGGEST)


def test_the_builders_refuse_a_tiny_duration_too() -> None:
    config = CircuitBreakerConfig()
    with pytest.raises(ValueError, match=r"^failure_window "):
        config.with_failure_window(1e-320)
    with pytest.raises(ValueError, match=r"^reset_timeout "):
        config.evolve(reset_timeout=1e-7)
    with pytest.raises(ValueError, match=r"^call_timeout "):
        config.with_call_timeout(1e-300)


def test_from_mapping_refuses_a_tiny_duration_naming_the_key() -> None:
    with pytest.raises(ValueError, match=r"^failure_window must be at least"):
        CircuitBreakerConfig.from_mapping({"failure_window": 1e-320})


def test_the_tiny_window_of_the_issue_no_longer_breaks_calls(clock: FakeClock) -> None:
    # failure_window=1e-320 was accepted, then every call raised OverflowError.
    with pytest.raises(ValueError, match="failure_window"):
        make(clock, failure_window=1e-320)
    breaker = make(clock, failure_window=1e-6, failure_threshold_count=3)
    for _ in range(5):
        with pytest.raises(Boom):
            breaker.call(boom)
        clock.advance(1e-6)
    assert breaker.call(lambda: 1) == 1


# -- no accepted config makes a call raise anything but its own outcome -------------------

EXTREMES = st.sampled_from([1e-6, 1.5e-6, 1e-3, 1.0, 1e9, 1e300, 1e308, BIGGEST])
SECONDS = EXTREMES | st.floats(min_value=1e-6, max_value=BIGGEST)
STEPS = st.sampled_from([0.0, 1e-7, 1e-6, 0.5, 1.0, 60.0, 1e6, 1e12])


@st.composite
def extreme_configs(draw: st.DrawFn) -> CircuitBreakerConfig:
    reset_timeout = draw(SECONDS)
    window = draw(st.none() | SECONDS)
    percentage = draw(st.none() | st.sampled_from([1e-9, 50.0, 100.0])) if window else None
    slow = draw(st.none() | SECONDS)
    slow_rate = draw(st.none() | st.sampled_from([1e-9, 50.0, 100.0])) if window and slow else None
    kwargs: dict[str, Any] = {
        "failure_threshold_count": draw(st.none() | st.integers(1, 4)),
        "failure_threshold_percentage": percentage,
        "failure_window": window,
        "minimum_calls": draw(st.integers(1, 4)),
        "reset_timeout": reset_timeout,
        "success_threshold_count": draw(st.integers(1, 3)),
        "test_request_count": draw(st.integers(1, 3)),
        "slow_call_duration": slow,
        "slow_call_rate_threshold": slow_rate,
        "half_open_max_wait": draw(st.none() | SECONDS),
        "reset_timeout_multiplier": draw(st.sampled_from([1.0, 2.0, 1e308, BIGGEST])),
        "max_reset_timeout": draw(
            st.none() | st.floats(min_value=reset_timeout, max_value=BIGGEST)
        ),
        "reset_timeout_jitter": draw(st.sampled_from([0.0, 0.5, 0.999999])),
        "ignore_exceptions": (Skipped,),
    }
    try:
        return CircuitBreakerConfig(**kwargs)
    except ValueError:
        reject()  # an invalid combination (a rate rule without its window, say)


CALLS = st.sampled_from(["success", "failure", "ignored", "slow success", "slow failure"])
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("call"), CALLS, STEPS),
        st.tuples(st.just("advance"), STEPS),
        st.tuples(st.just("trip"), st.sampled_from([None, 0.0, 1e-320, 1.0, 1e308])),
        st.tuples(st.just("read")),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    config=extreme_configs(),
    start=st.sampled_from([0.0, 1e-6, 12345.678, 1e9, 1e15]),
    operations=OPERATIONS,
)
def test_calls_only_ever_see_their_own_outcome_or_a_rejection(
    config: CircuitBreakerConfig, start: float, operations: list[tuple[Any, ...]]
) -> None:
    clock = FakeClock(start)
    breaker = CircuitBreaker(config, clock=clock)
    for operation in operations:
        if operation[0] == "call":
            _, kind, step = operation
            run_one_call(breaker, clock, kind, step)
        elif operation[0] == "advance":
            clock.advance(operation[1])
        elif operation[0] == "trip":
            breaker.trip(operation[1])
        else:
            breaker.metrics()
            assert breaker.state in tuple(type(breaker.state))
    m = breaker.metrics()
    assert m.total_allowed == m.total_successes + m.total_failures + m.total_ignored


def run_one_call(breaker: CircuitBreaker, clock: FakeClock, kind: str, step: float) -> None:
    error = Skipped() if kind == "ignored" else Boom() if "failure" in kind else None

    def fn() -> str:
        if kind.startswith("slow"):
            clock.advance(step)
        if error is not None:
            raise error
        return "mine"

    raised: BaseException | None = None
    try:
        result = breaker.call(fn)
    except CircuitOpenError:
        return
    except (Boom, Skipped) as exc:
        raised = exc
    if error is not None:
        assert raised is error
    else:
        assert result == "mine"


@pytest.mark.anyio
@pytest.mark.parametrize("timeout", [1e300, 1e308, BIGGEST])
async def test_a_huge_call_timeout_lets_async_calls_finish(
    clock: FakeClock, timeout: float
) -> None:
    breaker = make(clock, call_timeout=timeout)

    async def answer() -> int:
        await anyio.sleep(0)
        return 42

    assert await breaker.call_async(answer) == 42
    async with breaker:
        await anyio.sleep(0)
    assert breaker.metrics().total_successes == 2


@pytest.mark.anyio
async def test_the_smallest_call_timeout_times_out_as_documented(clock: FakeClock) -> None:
    breaker = make(clock, call_timeout=1e-6)

    async def slow() -> None:
        await anyio.sleep(1)

    with pytest.raises(TimeoutError):
        await breaker.call_async(slow)
    assert breaker.metrics().total_failures == 1


# -- from_mapping names the key of every error ------------------------------------------


@pytest.mark.parametrize("path", [".Foo", "Foo.", "a..b", ".", "..x", "", "builtins.", " "])
@pytest.mark.parametrize("key", ["record_exceptions", "ignore_exceptions"])
def test_from_mapping_names_the_key_of_a_bad_exception_path(key: str, path: str) -> None:
    with pytest.raises(ValueError, match=rf"^{key}\b"):
        CircuitBreakerConfig.from_mapping({key: path})
    with pytest.raises(ValueError, match=rf"^{key}\b"):
        CircuitBreakerConfig.from_mapping({key: ["KeyError", path]})


@pytest.mark.parametrize("path", [".foo", "a..b", "builtins.", "math.pi"])
def test_from_mapping_names_the_key_of_a_bad_callable_path(path: str) -> None:
    with pytest.raises(ValueError, match=r"^failure_predicate\b"):
        CircuitBreakerConfig.from_mapping({"failure_predicate": path})


def test_from_mapping_names_the_key_when_the_module_itself_fails_to_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "circuitry_test_broken_module.py").write_text("raise RuntimeError('broken')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=r"^record_exceptions\b.*broken") as info:
        CircuitBreakerConfig.from_mapping(
            {"record_exceptions": "circuitry_test_broken_module.Error"}
        )
    assert "circuitry_test_broken_module" in str(info.value)


FIELDS = [
    *sorted(CircuitBreakerConfig().to_mapping()),
    "failure_predicate",
    "result_is_failure",
    "alert_handler",
]
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),
    # Digits and dots only: never the name of a module whose import does something.
    st.text(alphabet=".0123456789 _-", max_size=6),
    st.lists(st.text(alphabet=".0123456789_", max_size=4), max_size=3),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)


@settings(max_examples=400, deadline=None)
@given(key=st.sampled_from(FIELDS), value=JUNK)
def test_from_mapping_errors_always_name_the_key(key: str, value: object) -> None:
    message = None
    try:
        CircuitBreakerConfig.from_mapping({key: value})
    except ValueError as exc:
        message = str(exc)
    if message is not None:
        assert message.startswith(key) or f"{key}=" in message, message


# -- trip(duration) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "duration", [10**400, -(10**400), -1, -1e-9, math.nan, math.inf, -math.inf, True, "5"]
)
def test_trip_refuses_a_duration_it_cannot_use_naming_it(clock: FakeClock, duration: Any) -> None:
    breaker = make(clock)
    with pytest.raises(ValueError, match=r"^duration "):
        breaker.trip(duration)
    assert breaker.state is CLOSED
    assert breaker.call(lambda: 1) == 1


def test_trip_refuses_a_duration_that_overflows_when_added_to_now() -> None:
    clock = FakeClock(1e300)
    breaker = make(clock)
    with pytest.raises(ValueError, match=r"^duration .*1\.79"):
        breaker.trip(BIGGEST)
    assert breaker.state is CLOSED
    breaker.trip(1e308)  # 1e300 + 1e308 is a float: accepted
    assert breaker.state is OPEN


@pytest.mark.parametrize("duration", [0, 0.0, 1e-320])
def test_trip_for_no_time_lets_a_trial_through_soon(clock: FakeClock, duration: Any) -> None:
    breaker = make(clock)
    breaker.trip(duration)
    clock.advance(1e-6)
    assert breaker.state is HALF_OPEN
    assert breaker.call(lambda: 1) == 1
    assert breaker.state is CLOSED


@pytest.mark.parametrize("duration", [1, 10**300, 1e308, BIGGEST])
def test_trip_takes_any_finite_duration_up_to_the_largest_float(
    clock: FakeClock, duration: Any
) -> None:
    breaker = make(clock)
    breaker.trip(duration)
    assert breaker.state is OPEN
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(lambda: 1)
    assert info.value.retry_after == float(duration)


@pytest.mark.parametrize(
    ("field", "value"), [("start", 10**400), ("duration", 10**400), ("start", -(10**400))]
)
def test_a_simulated_call_refuses_an_int_past_the_largest_float(field: str, value: int) -> None:
    from circuitry.simulation import Call

    kwargs: dict[str, Any] = {"start": 0.0, "duration": 0.0, "outcome": "success", field: value}
    with pytest.raises(ValueError, match=rf"^{field} must be a finite"):
        Call(**kwargs)
