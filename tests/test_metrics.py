"""The latency histogram's accuracy and memory, and `CircuitMetrics`' verdicts."""

from __future__ import annotations

import math
import random
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from circuitry import AlertLevel, CircuitMetrics, CircuitState
from circuitry._metrics import LatencyHistogram

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
