"""CircuitMetrics additions: window_calls, the rates, total_duration, duration_buckets, to_dict."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from helpers import Boom, Skipped, fail, make, trip

from circuitry import CircuitBreaker, CircuitMetrics, CircuitState
from circuitry._metrics import DEFAULT_DURATION_BOUNDS
from circuitry.testing import FakeClock


def call(breaker: CircuitBreaker, clock: FakeClock, seconds: float, *, ok: bool = True) -> None:
    """One call that takes `seconds` on `clock` and succeeds or fails."""
    try:
        with breaker:
            clock.advance(seconds)
            if not ok:
                raise Boom("down")
    except Boom:
        pass


def windowed(clock: FakeClock, **extra: Any) -> CircuitBreaker:
    config: dict[str, Any] = {
        "failure_threshold_count": None,
        "failure_window": 60,
        "failure_threshold_percentage": 100,
        "minimum_calls": 4,
        **extra,
    }
    return make(clock, **config)


# -- window_calls and the rates ---------------------------------------------------------------


def test_without_a_window_the_window_fields_are_none() -> None:
    clock = FakeClock()
    breaker = make(clock)
    for _ in range(20):
        call(breaker, clock, 0.1)
    fail(breaker)
    m = breaker.metrics()
    assert (m.window_calls, m.failure_rate, m.slow_call_rate) == (None, None, None)
    assert m.window_failures == 1  # the consecutive count


def test_rates_are_none_below_minimum_calls_and_exact_from_it() -> None:
    clock = FakeClock()
    breaker = windowed(clock, slow_call_duration=1.0, slow_call_rate_threshold=100)
    call(breaker, clock, 0.1, ok=False)
    call(breaker, clock, 2.0)
    call(breaker, clock, 0.1)
    m = breaker.metrics()
    assert m.window_calls == 3
    assert (m.failure_rate, m.slow_call_rate) == (None, None)
    call(breaker, clock, 1.0)  # slow: at least slow_call_duration
    m = breaker.metrics()
    assert m.window_calls == 4
    assert m.failure_rate == 25.0
    assert m.slow_call_rate == 50.0
    assert m.current_state is CircuitState.CLOSED


def test_slow_call_rate_is_none_without_slow_call_duration() -> None:
    clock = FakeClock()
    breaker = windowed(clock)
    for _ in range(4):
        call(breaker, clock, 5.0)
    m = breaker.metrics()
    assert m.failure_rate == 0.0
    assert m.slow_call_rate is None


def test_ignored_calls_are_not_in_the_window() -> None:
    clock = FakeClock()
    breaker = windowed(clock, ignore_exceptions=(Skipped,))
    fail(breaker)
    fail(breaker, Skipped("neither"))
    call(breaker, clock, 0.0)
    m = breaker.metrics()
    assert m.window_calls == 2
    assert m.total_ignored == 1


def test_calls_leave_the_window_as_it_slides() -> None:
    clock = FakeClock()
    breaker = windowed(clock)
    for _ in range(3):
        call(breaker, clock, 0.0, ok=False)
    call(breaker, clock, 0.0)
    assert breaker.metrics().failure_rate == 75.0
    clock.advance(61)
    m = breaker.metrics()
    assert (m.window_calls, m.window_failures, m.failure_rate) == (0, 0, None)


def test_an_open_circuit_has_an_empty_window() -> None:
    clock = FakeClock()
    breaker = windowed(clock)
    for _ in range(4):
        call(breaker, clock, 0.0, ok=False)
    m = breaker.metrics()
    assert m.current_state is CircuitState.OPEN
    assert (m.window_calls, m.failure_rate) == (0, None)


def test_deferred_successes_are_in_the_window_counts() -> None:
    # Successes that skip the lock (fewer than FOLD_AT of them) still show.
    clock = FakeClock()
    breaker = windowed(clock)
    for _ in range(7):
        call(breaker, clock, 0.5)
    m = breaker.metrics()
    assert (m.window_calls, m.failure_rate) == (7, 0.0)
    assert m.total_duration == 3.5


# -- total_duration and duration_buckets -----------------------------------------------------


def test_total_duration_sums_successes_and_failures_not_ignored_calls() -> None:
    clock = FakeClock()
    breaker = make(clock, ignore_exceptions=(Skipped,))
    call(breaker, clock, 0.5)
    call(breaker, clock, 0.25, ok=False)

    def ignored() -> None:
        clock.advance(100.0)
        raise Skipped("ignored")

    with pytest.raises(Skipped):
        breaker.call(ignored)
    call(breaker, clock, 2.0)
    assert breaker.metrics().total_duration == 2.75


def test_total_duration_is_zero_before_any_call() -> None:
    m = make(FakeClock()).metrics()
    assert m.total_duration == 0.0
    assert m.duration_buckets() == tuple((bound, 0) for bound in DEFAULT_DURATION_BOUNDS)


def test_default_bounds_are_prometheus_clients() -> None:
    import prometheus_client  # a test dependency; circuitry._metrics must not import it

    assert prometheus_client.Histogram.DEFAULT_BUCKETS == DEFAULT_DURATION_BOUNDS


def test_duration_buckets_are_cumulative_with_the_last_bound_inf() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_threshold_count=100)
    for seconds in (0.0, 0.003, 0.02, 0.2, 0.2, 3.0, 60.0):
        call(breaker, clock, seconds)
    call(breaker, clock, 0.02, ok=False)
    buckets = breaker.metrics().duration_buckets()
    assert buckets == (
        (0.005, 2),
        (0.01, 2),
        (0.025, 4),
        (0.05, 4),
        (0.075, 4),
        (0.1, 4),
        (0.25, 6),
        (0.5, 6),
        (0.75, 6),
        (1.0, 6),
        (2.5, 6),
        (5.0, 7),
        (7.5, 7),
        (10.0, 7),
        (math.inf, 8),
    )


def test_duration_buckets_with_bounds_given() -> None:
    clock = FakeClock()
    breaker = make(clock)
    for seconds in (0.05, 0.5, 5.0):
        call(breaker, clock, seconds)
    m = breaker.metrics()
    assert m.duration_buckets([0.1, 1]) == ((0.1, 1), (1.0, 2), (math.inf, 3))
    assert m.duration_buckets((1.0, math.inf)) == ((1.0, 2), (math.inf, 3))
    assert m.duration_buckets([]) == ((math.inf, 3),)


@pytest.mark.parametrize(
    ("bounds", "error"),
    [
        pytest.param([1.0, 0.5], ValueError, id="decreasing"),
        pytest.param([1.0, 1.0], ValueError, id="repeated"),
        pytest.param([-1.0], ValueError, id="negative"),
        pytest.param([math.nan], ValueError, id="nan"),
        pytest.param(["0.1"], TypeError, id="string-bound"),
        pytest.param([True], TypeError, id="bool-bound"),
        pytest.param("0.1", TypeError, id="string"),
        pytest.param(0.1, TypeError, id="not-iterable"),
    ],
)
def test_duration_buckets_reject_bad_bounds_naming_them(
    bounds: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="bounds"):
        make(FakeClock()).metrics().duration_buckets(bounds)


def test_the_inf_bucket_counts_every_success_and_failure_late_ones_included() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_threshold_count=1)
    permit = breaker.try_acquire()
    assert permit is not None
    call(breaker, clock, 0.1, ok=False)  # trips: the permit's call becomes late
    permit.record_success()
    m = breaker.metrics()
    assert m.duration_buckets()[-1] == (math.inf, 2)
    assert m.total_successes + m.total_failures == 2


def test_many_durations_keep_the_snapshot_small() -> None:
    clock = FakeClock()
    breaker = make(clock)
    for i in range(20_000):
        call(breaker, clock, 0.001 * (1 + i % 1000))
    m = breaker.metrics()
    assert m.duration_buckets()[-1] == (math.inf, 20_000)
    assert len(m._durations) <= 16 * 10 + 1  # 16 buckets per octave, 10 octaves


# -- to_dict -------------------------------------------------------------------------------------


def test_to_dict_is_plain_json_ready_data() -> None:
    clock = FakeClock()
    breaker = windowed(clock, slow_call_duration=1.0, slow_call_rate_threshold=100)
    # Durations exact in binary, and none within 2.2 % of a bucket bound.
    call(breaker, clock, 0.375)
    call(breaker, clock, 2.0, ok=False)
    call(breaker, clock, 0.375)
    call(breaker, clock, 0.375)
    clock.advance(1.5)
    data = breaker.metrics().to_dict()
    assert data == {
        "name": "svc",
        "current_state": "closed",
        "time_in_state": 4.625,
        "state_changes": 0,
        "total_allowed": 4,
        "total_rejected": 0,
        "total_successes": 3,
        "total_failures": 1,
        "total_ignored": 0,
        "total_slow": 1,
        "window_failures": 1,
        "average_response_time": 0.78125,
        "p95_response_time": pytest.approx(2.0, rel=0.05),
        "retry_after": None,
        "window_calls": 4,
        "failure_rate": 25.0,
        "slow_call_rate": 25.0,
        "total_duration": 3.125,
        "success_rate": 75.0,
        "alert_level": "warning",
        "duration_buckets": {
            "0.005": 0,
            "0.01": 0,
            "0.025": 0,
            "0.05": 0,
            "0.075": 0,
            "0.1": 0,
            "0.25": 0,
            "0.5": 3,
            "0.75": 3,
            "1.0": 3,
            "2.5": 4,
            "5.0": 4,
            "7.5": 4,
            "10.0": 4,
            "+Inf": 4,
        },
    }
    assert json.loads(json.dumps(data, allow_nan=False))["duration_buckets"]["+Inf"] == 4


def test_to_dict_of_an_open_circuit() -> None:
    clock = FakeClock()
    breaker = make(clock, reset_timeout=30)
    trip(breaker)
    clock.advance(10)
    data = breaker.metrics().to_dict()
    assert data["current_state"] == "open"
    assert data["retry_after"] == 20.0
    assert data["alert_level"] == "critical"
    assert data["window_calls"] is None
    json.dumps(data, allow_nan=False)


def test_to_dict_has_every_public_field() -> None:
    fields = {a.name for a in CircuitMetrics.__attrs_attrs__ if not a.name.startswith("_")}
    data = make(FakeClock()).metrics().to_dict()
    assert fields <= set(data)
    assert set(data) - fields == {"success_rate", "alert_level", "duration_buckets"}
