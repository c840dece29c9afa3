"""circuitry.opentelemetry: observable instruments, read by the SDK's InMemoryMetricReader."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest
from helpers import call, fail, make
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Gauge, Histogram, InMemoryMetricReader, Sum

from circuitry import CircuitBreakerConfig, CircuitBreakerManager
from circuitry.opentelemetry import DURATION_BOUNDS, Instrumentation, instrument
from circuitry.testing import FakeClock

STATES = ("closed", "open", "half_open", "forced_open", "forced_closed")

Points = dict[tuple[str, tuple[tuple[str, Any], ...]], Any]


class SDK:
    """A meter provider with an in-memory reader."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])

    def collect(self) -> Points:
        """Every data point by (instrument, sorted attributes)."""
        return self.collect_with_data()[0]

    def collect_with_data(self) -> tuple[Points, dict[str, Any]]:
        points: Points = {}
        data_of: dict[str, Any] = {}
        data = self.reader.get_metrics_data()
        if data is None:
            return points, data_of
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                assert scope_metrics.scope.name == "circuitry"
                for metric in scope_metrics.metrics:
                    data_of[metric.name] = metric
                    for point in metric.data.data_points:
                        key = (metric.name, tuple(sorted(point.attributes.items())))
                        assert key not in points, f"duplicate point {key}"
                        if isinstance(metric.data, Histogram):  # (count, sum, buckets)
                            points[key] = Durations(
                                point.count, point.sum, tuple(point.bucket_counts)
                            )
                        else:
                            points[key] = point.value
        return points, data_of


class Durations(NamedTuple):
    """A histogram data point: how many, their sum, the count in each bucket."""

    count: int
    sum: float
    buckets: tuple[int, ...]


def buckets(*durations: float) -> tuple[int, ...]:
    """The (non-cumulative) bucket counts of DURATION_BOUNDS for these durations."""
    counts = [0] * (len(DURATION_BOUNDS) + 1)
    for d in durations:
        counts[sum(1 for bound in DURATION_BOUNDS if d > bound)] += 1
    return tuple(counts)


@pytest.fixture
def sdk() -> Iterator[SDK]:
    sdk = SDK()
    yield sdk
    sdk.provider.shutdown()


def point(points: Points, instrument: str, /, **attributes: str) -> float | None:
    return points.get((instrument, tuple(sorted(attributes.items()))))


def windowed_manager(clock: FakeClock) -> CircuitBreakerManager:
    config = CircuitBreakerConfig(
        failure_threshold_count=None,
        failure_window=60,
        failure_threshold_percentage=50,
        minimum_calls=4,
        slow_call_duration=1.0,
        ignore_exceptions=(KeyError,),
        reset_timeout=30,
    )
    return CircuitBreakerManager(config, clock=clock)


# -- what is reported ----------------------------------------------------------------------


def test_every_instrument_of_a_breaker_exactly(sdk: SDK) -> None:
    clock = FakeClock()
    manager = windowed_manager(clock)
    instrument(manager, meter_provider=sdk.provider, durations=True)
    svc = manager.breaker("svc")
    call(svc, clock, 0.003)
    call(svc, clock, 0.2, ok=False)
    call(svc, clock, 3.0)  # slow
    call(svc, clock, 0.02)
    with pytest.raises(KeyError), svc:
        raise KeyError("ignored")
    assert sdk.collect() == {
        **{
            ("circuitry.state", (("name", "svc"), ("state", s))): 1 if s == "closed" else 0
            for s in STATES
        },
        ("circuitry.calls", (("name", "svc"), ("outcome", "success"))): 3,
        ("circuitry.calls", (("name", "svc"), ("outcome", "failure"))): 1,
        ("circuitry.calls", (("name", "svc"), ("outcome", "ignored"))): 1,
        ("circuitry.calls", (("name", "svc"), ("outcome", "rejected"))): 0,
        ("circuitry.state_changes", (("name", "svc"),)): 0,
        ("circuitry.throttled_calls", (("name", "svc"),)): 0,
        ("circuitry.shadow_rejected_calls", (("name", "svc"),)): 0,
        ("circuitry.slow_calls", (("name", "svc"),)): 1,
        ("circuitry.failure_rate", (("name", "svc"),)): 25.0,  # percent
        ("circuitry.failure_ratio", (("name", "svc"),)): 0.25,  # the same, 0 to 1
        ("circuitry.call_duration", (("name", "svc"),)): Durations(
            4, pytest.approx(3.223), buckets(0.003, 0.2, 3.0, 0.02)
        ),
    }


def test_instrument_kinds_and_units(sdk: SDK) -> None:
    clock = FakeClock()
    manager = windowed_manager(clock)
    instrument(manager, meter_provider=sdk.provider, durations=True)
    for _ in range(4):
        call(manager.breaker("svc"), clock, 0.1)
    _, data = sdk.collect_with_data()
    assert isinstance(data["circuitry.state"].data, Gauge)
    assert isinstance(data["circuitry.failure_rate"].data, Gauge)
    for counter in ("circuitry.calls", "circuitry.state_changes"):
        assert isinstance(data[counter].data, Sum)
        assert data[counter].data.is_monotonic
    assert data["circuitry.failure_rate"].unit == "%"
    assert isinstance(data["circuitry.failure_ratio"].data, Gauge)
    assert data["circuitry.failure_ratio"].unit == "1"
    assert isinstance(data["circuitry.slow_calls"].data, Sum)
    assert data["circuitry.slow_calls"].data.is_monotonic
    histogram = data["circuitry.call_duration"]
    assert isinstance(histogram.data, Histogram)
    assert histogram.unit == "s"
    assert tuple(histogram.data.data_points[0].explicit_bounds) == DURATION_BOUNDS


def test_counters_follow_the_breaker_between_collections(sdk: SDK) -> None:
    clock = FakeClock()
    breaker = make(clock, failure_threshold_count=2, reset_timeout=10)
    instrument(breaker, meter_provider=sdk.provider)
    call(breaker, clock, 0.1)
    assert point(sdk.collect(), "circuitry.calls", name="svc", outcome="success") == 1
    fail(breaker)
    fail(breaker)
    assert breaker.try_acquire() is None
    points = sdk.collect()
    assert point(points, "circuitry.calls", name="svc", outcome="failure") == 2
    assert point(points, "circuitry.calls", name="svc", outcome="rejected") == 1
    assert point(points, "circuitry.state", name="svc", state="open") == 1
    assert point(points, "circuitry.state_changes", name="svc") == 1


def test_a_collection_is_what_moves_open_to_half_open(sdk: SDK) -> None:
    clock = FakeClock()
    breaker = make(clock, failure_threshold_count=1, reset_timeout=10)
    instrument(breaker, meter_provider=sdk.provider)
    fail(breaker)
    clock.advance(10)
    points = sdk.collect()
    assert point(points, "circuitry.state", name="svc", state="half_open") == 1
    assert point(points, "circuitry.state_changes", name="svc") == 2


def test_failure_rate_is_absent_while_unknown(sdk: SDK) -> None:
    clock = FakeClock()
    manager = windowed_manager(clock)
    plain = make(clock, name="plain")
    instrument([manager.breaker("svc"), plain], meter_provider=sdk.provider)
    for _ in range(3):
        call(manager.breaker("svc"), clock, 0.1, ok=False)
    call(plain, clock, 0.1, ok=False)
    points = sdk.collect()
    assert point(points, "circuitry.failure_rate", name="svc") is None
    assert point(points, "circuitry.failure_rate", name="plain") is None
    call(manager.breaker("svc"), clock, 0.1)  # 3 of 4 failed: 75 %, and it trips at 50 %
    points = sdk.collect()
    assert point(points, "circuitry.state", name="svc", state="open") == 1
    assert point(points, "circuitry.failure_rate", name="svc") is None  # a new, empty window


def test_breakers_created_after_instrumenting_are_reported(sdk: SDK) -> None:
    clock = FakeClock()
    manager = CircuitBreakerManager(clock=clock)
    instrument(manager, meter_provider=sdk.provider)
    assert sdk.collect() == {}
    manager.breaker("late")
    assert point(sdk.collect(), "circuitry.state", name="late", state="closed") == 1


# -- the handle -----------------------------------------------------------------------------------


def test_close_stops_reporting_and_may_be_called_twice(sdk: SDK) -> None:
    clock = FakeClock()
    handle = instrument(make(clock, name="a"), meter_provider=sdk.provider)
    assert isinstance(handle, Instrumentation)
    assert not handle.closed
    assert point(sdk.collect(), "circuitry.state", name="a", state="closed") == 1
    handle.close()
    handle.close()
    assert handle.closed
    assert sdk.collect() == {}


def test_instrumenting_again_after_close_reports_again(sdk: SDK) -> None:
    clock = FakeClock()
    with instrument(make(clock, name="a"), meter_provider=sdk.provider) as first:
        assert point(sdk.collect(), "circuitry.state", name="a", state="closed") == 1
    assert first.closed
    instrument(make(clock, name="b"), meter_provider=sdk.provider)
    points = sdk.collect()
    assert point(points, "circuitry.state", name="b", state="closed") == 1
    assert point(points, "circuitry.state", name="a", state="closed") is None


def test_two_sources_on_one_provider_are_both_reported_and_closed_apart(sdk: SDK) -> None:
    clock = FakeClock()
    first = instrument(make(clock, name="a"), meter_provider=sdk.provider)
    instrument(make(clock, name="b"), meter_provider=sdk.provider)
    points = sdk.collect()
    assert {
        name
        for (inst, attrs), _ in points.items()
        if inst == "circuitry.state_changes"
        for _, name in attrs
    } == {"a", "b"}
    first.close()
    points = sdk.collect()
    assert point(points, "circuitry.state_changes", name="a") is None
    assert point(points, "circuitry.state_changes", name="b") == 0


def test_two_providers_each_get_their_own_instruments() -> None:
    clock = FakeClock()
    one, two = SDK(), SDK()
    try:
        instrument(make(clock, name="a"), meter_provider=one.provider)
        instrument(make(clock, name="b"), meter_provider=two.provider)
        assert point(one.collect(), "circuitry.state_changes", name="b") is None
        assert point(two.collect(), "circuitry.state_changes", name="b") == 0
    finally:
        one.provider.shutdown()
        two.provider.shutdown()


def test_collecting_adds_nothing_to_the_call_path(sdk: SDK) -> None:
    clock = FakeClock()
    breaker = make(clock)
    instrument(breaker, meter_provider=sdk.provider)  # durations=False by default
    call(breaker, clock, 0.1)
    points = sdk.collect()
    assert not breaker._core.listening
    assert point(points, "circuitry.calls", name="svc", outcome="success") == 1
    assert point(points, "circuitry.call_duration", name="svc") is None


def test_durations_count_completed_calls_only_and_close_stops_them(sdk: SDK) -> None:
    clock = FakeClock()
    breaker = make(clock, failure_threshold_count=2, ignore_exceptions=(KeyError,))
    handle = instrument(breaker, meter_provider=sdk.provider, durations=True)
    assert breaker._core.listening  # the histogram's listener
    call(breaker, clock, 0.3)
    with pytest.raises(KeyError), breaker:  # ignored: no duration
        raise KeyError("ignored")
    call(breaker, clock, 0.15, ok=False)
    call(breaker, clock, 0.15, ok=False)  # opens it
    assert breaker.try_acquire() is None  # rejected: no duration
    durations = point(sdk.collect(), "circuitry.call_duration", name="svc")
    assert durations == Durations(3, pytest.approx(0.6), buckets(0.3, 0.15, 0.15))
    handle.close()
    assert not breaker._core.listening  # nothing left on the call path


def test_durations_of_a_manager_follow_breakers_created_later(sdk: SDK) -> None:
    clock = FakeClock()
    manager = CircuitBreakerManager(clock=clock)
    instrument(manager, meter_provider=sdk.provider, durations=True)
    call(manager.breaker("late"), clock, 0.2)
    call(manager.breaker("late"), clock, 0.4, ok=False)
    durations = point(sdk.collect(), "circuitry.call_duration", name="late")
    assert durations == Durations(2, pytest.approx(0.6), buckets(0.2, 0.4))


def test_durations_of_a_list_follow_breakers_added_to_it(sdk: SDK) -> None:
    clock = FakeClock()
    first = make(clock, name="a")
    breakers = [first]
    instrument(breakers, meter_provider=sdk.provider, durations=True)
    call(first, clock, 0.05)
    later = make(clock, name="b")
    breakers.append(later)
    sdk.collect()  # from this collection on, "b" is followed
    call(later, clock, 0.5)
    points = sdk.collect()
    assert point(points, "circuitry.call_duration", name="a") == Durations(
        1, pytest.approx(0.05), buckets(0.05)
    )
    assert point(points, "circuitry.call_duration", name="b") == Durations(
        1, pytest.approx(0.5), buckets(0.5)
    )


def test_durations_must_be_a_bool(sdk: SDK) -> None:
    with pytest.raises(TypeError, match="durations"):
        instrument(make(FakeClock()), meter_provider=sdk.provider, durations=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("source", ["svc", 42, [object()]])
def test_a_bad_source_is_a_type_error(source: Any, sdk: SDK) -> None:
    with pytest.raises(TypeError, match="source"):
        instrument(source, meter_provider=sdk.provider)


def test_the_global_meter_provider_is_the_default() -> None:
    # In a process of its own: the global provider can be set only once.
    code = textwrap.dedent(
        """
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from circuitry import CircuitBreaker
        from circuitry.opentelemetry import instrument

        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        instrument(CircuitBreaker(name="global"))
        data = reader.get_metrics_data()
        names = sorted(
            (m.name, dict(p.attributes).get("state"))
            for rm in data.resource_metrics for sm in rm.scope_metrics
            for m in sm.metrics for p in m.data.data_points
            if m.name == "circuitry.state" and p.value == 1
        )
        print(names)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[('circuitry.state', 'closed')]"


def test_throttled_and_shadow_rejected_calls_are_reported(sdk: SDK) -> None:
    from circuitry import AdaptiveThrottle, CircuitBreaker

    clock = FakeClock()
    throttled = CircuitBreaker(
        CircuitBreakerConfig(adaptive_throttle=AdaptiveThrottle(min_requests=0)),
        name="throttled",
        clock=clock,
        random=lambda: 0.0,
    )
    shadow = make(clock, name="shadow", failure_threshold_count=1, shadow=True)
    instrument([throttled, shadow], meter_provider=sdk.provider)
    fail(throttled)
    assert throttled.try_acquire() is None
    fail(shadow)
    assert shadow.try_acquire() is not None
    points = sdk.collect()
    assert point(points, "circuitry.throttled_calls", name="throttled") == 1
    assert point(points, "circuitry.shadow_rejected_calls", name="shadow") == 1
