"""Prometheus export: a prometheus_client collector for circuit breakers (extra `prometheus`).

```python
from prometheus_client import REGISTRY
from circuitry.prometheus import CircuitBreakerCollector

REGISTRY.register(CircuitBreakerCollector(manager))   # or a breaker, or a list of them
```

The collector reads `metrics()` of each breaker when Prometheus scrapes, and
does nothing on the call path. Reading a breaker's metrics applies the
transitions time alone makes, so a scrape is also what moves an OPEN circuit
whose open period has passed to HALF_OPEN. Metrics, each with the label
`name` (the breaker's):

- `circuitry_state{state}`: 1 for the current state, 0 for the other four.
- `circuitry_calls_total{outcome}`: `success`, `failure`, `ignored`, `rejected`.
- `circuitry_slow_calls_total`, `circuitry_state_changes_total`.
- `circuitry_failure_rate`, `circuitry_slow_call_rate`: **percent** (0 to
  100) over the failure window, absent while unknown (no window, or fewer
  calls in it than `minimum_calls`; no `slow_call_duration`).
- `circuitry_failure_ratio`, `circuitry_slow_call_ratio`: the same as a
  ratio (0 to 1), as Prometheus convention prefers; absent when the rates are.
- `circuitry_call_duration_seconds`: a histogram (`_bucket{le}`, `_sum`,
  `_count`) of the durations of successes and failures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import cast

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.metrics import Histogram
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from ._export import MetricsSource, Source
from ._metrics import _bounds
from ._state import CircuitState

__all__ = ["CircuitBreakerCollector"]

_STATES = tuple(state.value for state in CircuitState)
# How prometheus_client writes `le` ("0.005", "1.0", "+Inf"); it has no annotations.
_le_of = cast(Callable[[float], str], floatToGoString)


class CircuitBreakerCollector(Collector):
    """Exports circuit breakers' metrics to a prometheus_client registry at scrape time.

    Args:
        source: a `CircuitBreakerManager` (every breaker it has at each
            scrape, those created after registration included), one
            `CircuitBreaker`, or an iterable of them (a list or other
            collection is iterated again at each scrape, so breakers added to
            it later are exported; an iterator is read once, now).
        buckets: the histogram's upper bounds in seconds; `+Inf` is added
            when missing. Default: prometheus_client's `Histogram.DEFAULT_BUCKETS`.

    Raises:
        TypeError: `source` is none of those, or holds something that is
            not a `CircuitBreaker`; `buckets` holds something not a number.
        ValueError: `buckets` are not strictly increasing numbers >= 0.
    """

    def __init__(
        self, source: Source, *, buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS
    ) -> None:
        self._source = MetricsSource(source)
        self._buckets = _bounds(buckets, "buckets")
        self._le = tuple(_le_of(bound) for bound in self._buckets)

    def describe(self) -> Iterable[Metric]:
        """The metric families without samples (what a registry checks names with)."""
        return _Families().all()

    def collect(self) -> Iterable[Metric]:
        """Every breaker's metrics, read now."""
        families = _Families()
        for m in self._source.snapshots():
            labels = [m.name]
            current = m.current_state.value
            for state in _STATES:
                families.state.add_metric([m.name, state], 1.0 if state == current else 0.0)
            for outcome, count in (
                ("success", m.total_successes),
                ("failure", m.total_failures),
                ("ignored", m.total_ignored),
                ("rejected", m.total_rejected),
            ):
                families.calls.add_metric([m.name, outcome], count)
            families.slow.add_metric(labels, m.total_slow)
            families.changes.add_metric(labels, m.state_changes)
            families.throttled.add_metric(labels, m.total_throttled)
            families.shadow_rejected.add_metric(labels, m.total_shadow_rejected)
            if m.throttle_probability is not None:
                families.throttle_probability.add_metric(labels, m.throttle_probability)
            if m.failure_rate is not None:
                families.failure_rate.add_metric(labels, m.failure_rate)
                families.failure_ratio.add_metric(labels, m.failure_rate / 100.0)
            if m.slow_call_rate is not None:
                families.slow_call_rate.add_metric(labels, m.slow_call_rate)
                families.slow_call_ratio.add_metric(labels, m.slow_call_rate / 100.0)
            counts = m.duration_buckets(self._buckets)
            families.duration.add_metric(
                labels,
                [(le, count) for le, (_, count) in zip(self._le, counts, strict=True)],
                m.total_duration,
            )
        return families.all()


class _Families:
    """One scrape's metric families, empty until filled."""

    def __init__(self) -> None:
        self.state = GaugeMetricFamily(
            "circuitry_state",
            "Circuit state: 1 for the current state, 0 for the others.",
            labels=["name", "state"],
        )
        self.calls = CounterMetricFamily(
            "circuitry_calls",
            "Calls by outcome: success, failure, ignored, rejected.",
            labels=["name", "outcome"],
        )
        self.slow = CounterMetricFamily(
            "circuitry_slow_calls",
            "Calls that took at least slow_call_duration.",
            labels=["name"],
        )
        self.changes = CounterMetricFamily(
            "circuitry_state_changes", "State changes.", labels=["name"]
        )
        self.failure_rate = GaugeMetricFamily(
            "circuitry_failure_rate",
            "Percent (0-100) of the failure window's calls that failed "
            "(once it holds minimum_calls); circuitry_failure_ratio is the same, 0-1.",
            labels=["name"],
        )
        self.slow_call_rate = GaugeMetricFamily(
            "circuitry_slow_call_rate",
            "Percent (0-100) of the failure window's calls that were slow "
            "(once it holds minimum_calls); circuitry_slow_call_ratio is the same, 0-1.",
            labels=["name"],
        )
        self.duration = HistogramMetricFamily(
            "circuitry_call_duration_seconds",
            "Durations of calls that succeeded or failed.",
            labels=["name"],
        )
        # The adaptive rules (appended): apart from circuitry_calls, whose
        # "rejected" already holds the throttled calls.
        self.throttled = CounterMetricFamily(
            "circuitry_throttled_calls",
            "Calls adaptive_throttle rejected while CLOSED (also among rejected calls).",
            labels=["name"],
        )
        self.shadow_rejected = CounterMetricFamily(
            "circuitry_shadow_rejected_calls",
            "Calls a shadow breaker would have rejected or throttled, and let run.",
            labels=["name"],
        )
        self.throttle_probability = GaugeMetricFamily(
            "circuitry_throttle_probability",
            "The probability adaptive_throttle rejects a call now (breakers with one).",
            labels=["name"],
        )
        # Ratios (appended; the percent gauges above keep their names and units).
        self.failure_ratio = GaugeMetricFamily(
            "circuitry_failure_ratio",
            "Ratio (0-1) of the failure window's calls that failed (once it holds minimum_calls).",
            labels=["name"],
        )
        self.slow_call_ratio = GaugeMetricFamily(
            "circuitry_slow_call_ratio",
            "Ratio (0-1) of the failure window's calls that were slow "
            "(once it holds minimum_calls).",
            labels=["name"],
        )

    def all(self) -> list[Metric]:
        return [
            self.state,
            self.calls,
            self.slow,
            self.changes,
            self.failure_rate,
            self.slow_call_rate,
            self.duration,
            self.throttled,
            self.shadow_rejected,
            self.throttle_probability,
            self.failure_ratio,
            self.slow_call_ratio,
        ]
