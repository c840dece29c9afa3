"""The latency histogram's accuracy and memory, `CircuitMetrics`' verdicts, and a breaker's
`metrics()`: its counts, window_calls, the rates, total_duration, duration_buckets, to_dict."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import attrs
import pytest
from helpers import CLOSED, HALF_OPEN, OPEN, Boom, Skipped, call, fail, make, succeed, trip
from hypothesis import given
from hypothesis import strategies as st

from circuitry import AlertLevel, CircuitBreaker, CircuitMetrics, CircuitOpenError, CircuitState
from circuitry._metrics import DEFAULT_DURATION_BOUNDS, LatencyHistogram
from circuitry.testing import FakeClock

# -- LatencyHistogram -----------------------------------------------------------------


def nearest_rank(values: list[float], p: int) -> float:
    """The exact nearest-rank p-th percentile (integer arithmetic for the rank)."""
    ordered = sorted(values)
    rank = max(1, (p * len(ordered) + 99) // 100)
    return ordered[rank - 1]


def histogram_of(values: list[float]) -> LatencyHistogram:
    histogram = LatencyHistogram()
    for value in values:
        histogram.record(value)
    return histogram


def assert_close(estimate: float | None, exact: float) -> None:
    assert estimate is not None
    assert abs(estimate - exact) <= 0.05 * exact, (estimate, exact)


def test_empty_histogram_has_no_mean_or_percentile() -> None:
    histogram = LatencyHistogram()
    assert histogram.mean() is None
    assert histogram.percentile(95) is None
    assert histogram.percentile(50) is None


def test_mean_is_the_average_duration() -> None:
    histogram = histogram_of([0.5, 1.5, 4.0])
    assert histogram.mean() == 2.0
    assert histogram.count == 3


@given(st.lists(st.floats(1e-6, 100.0), min_size=1, max_size=300))
def test_mean_is_exact_on_any_data(values: list[float]) -> None:
    histogram = histogram_of(values)
    assert histogram.mean() == pytest.approx(math.fsum(values) / len(values), rel=1e-9)


@given(st.lists(st.floats(1e-6, 100.0), min_size=1, max_size=500))
def test_p95_within_5_percent_on_any_data(values: list[float]) -> None:
    assert_close(histogram_of(values).percentile(95), nearest_rank(values, 95))


@given(
    values=st.lists(st.floats(1e-6, 100.0), min_size=1, max_size=200),
    p=st.integers(1, 100),
)
def test_any_percentile_within_5_percent(values: list[float], p: int) -> None:
    assert_close(histogram_of(values).percentile(p), nearest_rank(values, p))


@pytest.mark.parametrize("n", [1, 7, 25, 50, 75, 100, 200])
def test_percentile_picks_the_nearest_rank(n: int) -> None:
    # Powers of two sit in separate buckets a factor 2 apart: an off-by-one
    # rank would be off by 100 %, not by the bucket's few percent. Every whole
    # p is tried: for some (0.55 * 100 == 55.00000000000001) a rank computed
    # as p / 100 * n overshoots.
    values = [2.0**i for i in range(-19, n - 19)]  # from 2e-6 s up
    histogram = histogram_of(values)
    for p in range(1, 101):
        assert_close(histogram.percentile(p), nearest_rank(values, p))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_p95_within_5_percent_on_log_normal_data(seed: int) -> None:
    rng = random.Random(seed)
    values = [min(100.0, max(1e-6, rng.lognormvariate(-4.0, 3.0))) for _ in range(100_000)]
    assert min(values) < 1e-5
    assert max(values) > 10.0  # the data really spans 1e-6 .. 100 s
    histogram = histogram_of(values)
    assert_close(histogram.percentile(95), nearest_rank(values, 95))
    assert_close(histogram.percentile(50), nearest_rank(values, 50))
    assert histogram.mean() == pytest.approx(math.fsum(values) / len(values), rel=1e-9)


def test_bucket_count_is_bounded_after_a_million_records() -> None:
    rng = random.Random(42)
    histogram = LatencyHistogram()
    values = [10.0 ** rng.uniform(-6.0, 2.0) for _ in range(1_000_000)]
    for value in values:
        histogram.record(value)
    assert histogram.count == 1_000_000
    # 1e-6 .. 100 s is under 27 powers of two, at 16 buckets per power of two.
    octaves = math.ceil(math.log2(100.0 / 1e-6)) + 1
    assert len(histogram.buckets) <= 16 * octaves
    assert_close(histogram.percentile(95), nearest_rank(values, 95))


def test_zero_and_negative_durations_count_as_zero() -> None:
    histogram = histogram_of([0.0, 0.0, -1.0])
    assert histogram.count == 3
    assert histogram.mean() == 0.0
    assert histogram.percentile(95) == 0.0


def test_zero_durations_count_in_the_mean() -> None:
    assert histogram_of([0.0, 0.0, 3.0]).mean() == 1.0


def test_zero_durations_take_the_lowest_ranks() -> None:
    assert histogram_of([0.0] * 95 + [1.0] * 5).percentile(95) == 0.0
    assert_close(histogram_of([0.0] * 94 + [1.0] * 6).percentile(95), 1.0)


# -- CircuitMetrics ---------------------------------------------------------------------


def metrics(state: CircuitState = CircuitState.CLOSED, **fields: Any) -> CircuitMetrics:
    values: dict[str, Any] = {
        "name": "svc",
        "current_state": state,
        "time_in_state": 1.0,
        "state_changes": 0,
        "total_allowed": 0,
        "total_rejected": 0,
        "total_successes": 0,
        "total_failures": 0,
        "total_ignored": 0,
        "total_slow": 0,
        "window_failures": 0,
        "average_response_time": None,
        "p95_response_time": None,
    }
    values.update(fields)
    return CircuitMetrics(**values)


def test_success_rate_is_100_before_any_call() -> None:
    assert metrics().success_rate() == 100.0
    assert metrics(total_ignored=5, total_rejected=3).success_rate() == 100.0


def test_success_rate_counts_successes_among_successes_and_failures() -> None:
    m = metrics(total_successes=3, total_failures=1, total_ignored=10)
    assert m.success_rate() == 75.0
    assert metrics(total_failures=2).success_rate() == 0.0


@pytest.mark.parametrize(
    ("state", "window_failures", "critical", "degraded", "level"),
    [
        (CircuitState.CLOSED, 0, False, False, AlertLevel.HEALTHY),
        (CircuitState.CLOSED, 2, False, True, AlertLevel.WARNING),
        (CircuitState.HALF_OPEN, 0, False, True, AlertLevel.WARNING),
        (CircuitState.OPEN, 0, True, False, AlertLevel.CRITICAL),
        (CircuitState.FORCED_OPEN, 0, True, False, AlertLevel.CRITICAL),
        (CircuitState.FORCED_CLOSED, 0, False, False, AlertLevel.HEALTHY),
    ],
)
def test_health_verdicts_per_state(
    state: CircuitState,
    window_failures: int,
    critical: bool,
    degraded: bool,
    level: AlertLevel,
) -> None:
    m = metrics(state, window_failures=window_failures)
    assert m.is_critical() is critical
    assert m.is_degraded() is degraded
    assert m.is_healthy() is (not critical and not degraded)
    assert m.alert_level() is level


def test_metrics_are_frozen() -> None:
    m = metrics()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        m.total_failures = 3  # type: ignore[misc]


# -- a breaker's metrics() ---------------------------------------------------------------


def test_metrics_before_any_call(clock: FakeClock) -> None:
    breaker = make(clock, name="fresh")
    clock.advance(3)
    m = breaker.metrics()
    assert m.name == "fresh"
    assert m.current_state is CLOSED
    assert m.time_in_state == 3.0
    assert (m.state_changes, m.total_allowed, m.total_rejected) == (0, 0, 0)
    assert m.average_response_time is None
    assert m.p95_response_time is None
    assert m.success_rate() == 100.0
    assert m.is_healthy()
    assert m.alert_level() is AlertLevel.HEALTHY


def test_metrics_after_a_known_sequence(clock: FakeClock) -> None:
    breaker = make(clock, name="m", failure_threshold_count=3, ignore_exceptions=(KeyError,))

    def takes(seconds: float, exc: BaseException | None = None) -> str:
        clock.advance(seconds)
        if exc is not None:
            raise exc
        return "ok"

    breaker.call(takes, 0.1)
    with pytest.raises(Boom):
        breaker.call(takes, 0.2, Boom())
    with pytest.raises(KeyError):
        breaker.call(takes, 0.3, KeyError())
    breaker.call(takes, 0.4)
    with pytest.raises(Boom):
        breaker.call(takes, 0.5, Boom())

    m = breaker.metrics()
    assert m.current_state is CLOSED
    assert m.total_allowed == 5
    assert (m.total_successes, m.total_failures, m.total_ignored) == (2, 2, 1)
    assert (m.total_rejected, m.total_slow, m.state_changes) == (0, 0, 0)
    assert m.window_failures == 1
    assert m.time_in_state == pytest.approx(1.5)
    assert m.average_response_time == pytest.approx((0.1 + 0.2 + 0.4 + 0.5) / 4)
    assert m.p95_response_time == pytest.approx(0.5, rel=0.05)
    assert m.success_rate() == 50.0
    assert m.is_degraded()
    assert m.alert_level() is AlertLevel.WARNING

    fail(breaker)
    fail(breaker)
    clock.advance(2)
    with pytest.raises(CircuitOpenError), breaker:
        pass
    m = breaker.metrics()
    assert m.current_state is OPEN
    assert m.state_changes == 1
    assert m.total_rejected == 1
    assert m.total_allowed == 7
    assert m.time_in_state == 2.0
    assert m.is_critical()
    assert m.alert_level() is AlertLevel.CRITICAL


def test_metrics_is_a_snapshot(clock: FakeClock) -> None:
    breaker = make(clock)
    before = breaker.metrics()
    succeed(breaker)
    assert before.total_successes == 0
    assert breaker.metrics().total_successes == 1


def test_retry_after_in_metrics_only_while_open(clock: FakeClock) -> None:
    breaker = make(clock, reset_timeout=30.0, failure_threshold_count=1)
    assert breaker.metrics().retry_after is None
    with pytest.raises(Boom), breaker:
        raise Boom
    clock.advance(10.0)
    metrics = breaker.metrics()
    assert metrics.current_state is OPEN
    assert metrics.retry_after == pytest.approx(20.0)
    # Read without counting a rejection or taking a slot.
    assert metrics.total_rejected == 0
    clock.advance(20.0)
    metrics = breaker.metrics()
    assert metrics.current_state is HALF_OPEN
    assert metrics.retry_after is None
    with breaker:  # the trial slot is still free
        pass
    breaker.force_open()
    assert breaker.metrics().retry_after is None  # unknown: FORCED_OPEN never ends


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
        "total_throttled": 0,
        "throttle_probability": None,
        "total_shadow_rejected": 0,
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
