"""circuitry.prometheus: the collector, read back through prometheus_client's own exposition."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from helpers import call, fail, make
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from circuitry import CircuitBreakerConfig, CircuitBreakerManager
from circuitry.prometheus import CircuitBreakerCollector
from circuitry.testing import FakeClock

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "prometheus_server.py"
STATES = ("closed", "open", "half_open", "forced_open", "forced_closed")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> tuple[Samples, dict[str, str]]:
    """Every sample by (name, sorted labels), and each family's type."""
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = sample.value
    return samples, types


def scrape(collector: CircuitBreakerCollector) -> Samples:
    registry = CollectorRegistry()
    registry.register(collector)
    return parse(generate_latest(registry).decode())[0]


def value(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, tuple(sorted(labels.items()))))


def of(samples: Samples, breaker: str) -> Samples:
    """The samples of one breaker."""
    return {k: v for k, v in samples.items() if ("name", breaker) in k[1]}


def windowed_manager(clock: FakeClock) -> CircuitBreakerManager:
    config = CircuitBreakerConfig(
        failure_threshold_count=None,
        failure_window=60,
        failure_threshold_percentage=75,
        minimum_calls=4,
        slow_call_duration=1.0,
        slow_call_rate_threshold=100,
        ignore_exceptions=(KeyError,),
        reset_timeout=30,
    )
    return CircuitBreakerManager(config, clock=clock)


# -- what is exported --------------------------------------------------------------------------


def test_every_metric_of_a_breaker_exactly() -> None:
    clock = FakeClock()
    manager = windowed_manager(clock)
    collector = CircuitBreakerCollector(manager)
    svc = manager.breaker("svc")
    call(svc, clock, 0.003)
    call(svc, clock, 0.2, ok=False)
    call(svc, clock, 3.0)  # slow
    call(svc, clock, 0.02)
    with pytest.raises(KeyError), svc:
        raise KeyError("ignored")

    samples = of(scrape(collector), "svc")
    assert samples == {
        **{
            ("circuitry_state", (("name", "svc"), ("state", s))): 1.0 if s == "closed" else 0.0
            for s in STATES
        },
        ("circuitry_calls_total", (("name", "svc"), ("outcome", "success"))): 3.0,
        ("circuitry_calls_total", (("name", "svc"), ("outcome", "failure"))): 1.0,
        ("circuitry_calls_total", (("name", "svc"), ("outcome", "ignored"))): 1.0,
        ("circuitry_calls_total", (("name", "svc"), ("outcome", "rejected"))): 0.0,
        ("circuitry_slow_calls_total", (("name", "svc"),)): 1.0,
        ("circuitry_state_changes_total", (("name", "svc"),)): 0.0,
        ("circuitry_throttled_calls_total", (("name", "svc"),)): 0.0,
        ("circuitry_shadow_rejected_calls_total", (("name", "svc"),)): 0.0,
        ("circuitry_failure_rate", (("name", "svc"),)): 25.0,  # percent
        ("circuitry_slow_call_rate", (("name", "svc"),)): 25.0,
        ("circuitry_failure_ratio", (("name", "svc"),)): 0.25,  # the same, 0 to 1
        ("circuitry_slow_call_ratio", (("name", "svc"),)): 0.25,
        **{
            ("circuitry_call_duration_seconds_bucket", (("le", le), ("name", "svc"))): count
            for le, count in [
                ("0.005", 1.0),
                ("0.01", 1.0),
                ("0.025", 2.0),
                ("0.05", 2.0),
                ("0.075", 2.0),
                ("0.1", 2.0),
                ("0.25", 3.0),
                ("0.5", 3.0),
                ("0.75", 3.0),
                ("1.0", 3.0),
                ("2.5", 3.0),
                ("5.0", 4.0),
                ("7.5", 4.0),
                ("10.0", 4.0),
                ("+Inf", 4.0),
            ]
        },
        ("circuitry_call_duration_seconds_count", (("name", "svc"),)): 4.0,
        ("circuitry_call_duration_seconds_sum", (("name", "svc"),)): pytest.approx(3.223),
    }


def test_metric_families_have_their_prometheus_types() -> None:
    clock = FakeClock()
    manager = windowed_manager(clock)
    call(manager.breaker("svc"), clock, 0.1)
    registry = CollectorRegistry()
    registry.register(CircuitBreakerCollector(manager))
    _, types = parse(generate_latest(registry).decode())
    assert types == {
        "circuitry_state": "gauge",
        "circuitry_calls": "counter",
        "circuitry_slow_calls": "counter",
        "circuitry_state_changes": "counter",
        "circuitry_throttled_calls": "counter",
        "circuitry_shadow_rejected_calls": "counter",
        "circuitry_throttle_probability": "gauge",
        "circuitry_failure_rate": "gauge",
        "circuitry_slow_call_rate": "gauge",
        "circuitry_failure_ratio": "gauge",
        "circuitry_slow_call_ratio": "gauge",
        "circuitry_call_duration_seconds": "histogram",
    }


def test_rates_are_absent_while_unknown() -> None:
    clock = FakeClock()
    manager = windowed_manager(clock)
    collector = CircuitBreakerCollector(manager)
    plain = CircuitBreakerManager(clock=clock).breaker("plain")  # no window at all
    call(plain, clock, 0.1)
    for _ in range(3):
        call(manager.breaker("svc"), clock, 0.1)
    samples = scrape(collector)
    assert value(samples, "circuitry_failure_rate", name="svc") is None
    assert value(samples, "circuitry_slow_call_rate", name="svc") is None
    assert value(samples, "circuitry_failure_ratio", name="svc") is None
    assert value(samples, "circuitry_slow_call_ratio", name="svc") is None
    call(manager.breaker("svc"), clock, 0.1)  # the window reaches minimum_calls
    samples = scrape(collector)
    assert value(samples, "circuitry_failure_rate", name="svc") == 0.0
    assert value(samples, "circuitry_slow_call_rate", name="svc") == 0.0
    assert value(samples, "circuitry_failure_ratio", name="svc") == 0.0
    assert value(samples, "circuitry_slow_call_ratio", name="svc") == 0.0
    plain_samples = scrape(CircuitBreakerCollector(plain))
    assert value(plain_samples, "circuitry_failure_rate", name="plain") is None
    assert value(plain_samples, "circuitry_failure_ratio", name="plain") is None
    assert value(plain_samples, "circuitry_calls_total", name="plain", outcome="success") == 1.0


def test_breakers_created_after_registration_are_exported() -> None:
    clock = FakeClock()
    manager = CircuitBreakerManager(CircuitBreakerConfig(failure_threshold_count=1), clock=clock)
    registry = CollectorRegistry()
    registry.register(CircuitBreakerCollector(manager))
    empty, _ = parse(generate_latest(registry).decode())
    assert empty == {}
    fail(manager.breaker("late"))
    samples, _ = parse(generate_latest(registry).decode())
    assert value(samples, "circuitry_state", name="late", state="open") == 1.0
    assert value(samples, "circuitry_calls_total", name="late", outcome="failure") == 1.0
    assert value(samples, "circuitry_state_changes_total", name="late") == 1.0
    manager.breaker("later")
    samples, _ = parse(generate_latest(registry).decode())
    assert value(samples, "circuitry_state", name="later", state="closed") == 1.0
    assert value(samples, "circuitry_call_duration_seconds_count", name="later") == 0.0


def test_rejections_and_state_changes_are_counted() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_threshold_count=1, reset_timeout=10)
    collector = CircuitBreakerCollector(breaker)
    fail(breaker)
    for _ in range(3):
        assert breaker.try_acquire() is None
    samples = scrape(collector)
    assert value(samples, "circuitry_calls_total", name="svc", outcome="rejected") == 3.0
    assert value(samples, "circuitry_state", name="svc", state="open") == 1.0
    assert sum(value(samples, "circuitry_state", name="svc", state=s) or 0 for s in STATES) == 1


def test_a_scrape_is_what_moves_open_to_half_open() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_threshold_count=1, reset_timeout=10)
    collector = CircuitBreakerCollector(breaker)
    fail(breaker)
    clock.advance(10)
    samples = scrape(collector)
    assert value(samples, "circuitry_state", name="svc", state="half_open") == 1.0
    assert value(samples, "circuitry_state_changes_total", name="svc") == 2.0


def test_custom_buckets() -> None:
    clock = FakeClock()
    breaker = make(clock)
    for seconds in (0.05, 0.5, 5.0):
        call(breaker, clock, seconds)
    samples = scrape(CircuitBreakerCollector(breaker, buckets=[0.1, 1]))
    buckets = {
        labels[0][1]: v
        for (name, labels), v in samples.items()
        if name == "circuitry_call_duration_seconds_bucket"
    }
    assert buckets == {"0.1": 1.0, "1.0": 2.0, "+Inf": 3.0}
    assert value(samples, "circuitry_call_duration_seconds_sum", name="svc") == pytest.approx(5.55)


# -- sources -----------------------------------------------------------------------------------


def test_a_list_source_is_read_again_at_each_scrape() -> None:
    clock = FakeClock()
    breakers = [make(clock, name="a")]
    collector = CircuitBreakerCollector(breakers)
    assert value(scrape(collector), "circuitry_state", name="a", state="closed") == 1.0
    breakers.append(make(clock, name="b"))
    samples = scrape(collector)
    assert value(samples, "circuitry_state", name="b", state="closed") == 1.0


def test_an_iterator_source_is_read_once() -> None:
    clock = FakeClock()
    collector = CircuitBreakerCollector(iter([make(clock, name="a"), make(clock, name="b")]))
    for _ in range(2):
        samples = scrape(collector)
        assert {
            labels for (name, labels) in samples if name == "circuitry_state_changes_total"
        } == {
            (("name", "a"),),
            (("name", "b"),),
        }


def test_collecting_adds_nothing_to_the_call_path() -> None:
    clock = FakeClock()
    breaker = make(clock)
    scrape(CircuitBreakerCollector(breaker))
    assert not breaker._core.listening  # no listener: calls stay on the lock-free path


def test_registering_checks_names_without_reading_the_breakers() -> None:
    registry = CollectorRegistry()
    registry.register(CircuitBreakerCollector([]))
    with pytest.raises(ValueError, match="circuitry_state"):
        registry.register(CircuitBreakerCollector([]))


@pytest.mark.parametrize(
    ("source", "error"),
    [
        pytest.param("svc", TypeError, id="str"),
        pytest.param(42, TypeError, id="int"),
        pytest.param([object()], TypeError, id="list-of-other"),
        pytest.param(CircuitBreakerConfig(), TypeError, id="config"),
    ],
)
def test_a_bad_source_is_a_type_error(source: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="source"):
        CircuitBreakerCollector(source)


@pytest.mark.parametrize(
    ("buckets", "error"),
    [
        pytest.param([1.0, 0.5], ValueError, id="decreasing"),
        pytest.param([-1.0], ValueError, id="negative"),
        pytest.param(["0.1"], TypeError, id="string"),
    ],
)
def test_bad_buckets_are_an_error_naming_them(buckets: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="buckets"):
        CircuitBreakerCollector([], buckets=buckets)


# -- the example server, scraped over HTTP -----------------------------------------------------


def test_the_example_serves_metrics_on_loopback() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--port", "0", "--seconds", "120", "--late-after", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split()[1]
        # Poll until the breaker the example creates after 1 s has had a call
        # (a scrape between its creation and its first call's end sees none).
        samples: Samples = {}
        for _ in range(200):
            with urllib.request.urlopen(url, timeout=5) as response:
                assert response.status == 200
                samples, types = parse(response.read().decode())
            if value(samples, "circuitry_calls_total", name="recommendations", outcome="success"):
                break
            time.sleep(0.05)
        assert types["circuitry_call_duration_seconds"] == "histogram"
        for name in ("search", "payments", "recommendations"):
            assert (
                sum(value(samples, "circuitry_state", name=name, state=s) or 0 for s in STATES) == 1
            )
            assert value(samples, "circuitry_calls_total", name=name, outcome="success")
        assert value(samples, "circuitry_calls_total", name="payments", outcome="failure")
        assert value(samples, "circuitry_calls_total", name="search", outcome="failure") == 0.0
        assert value(samples, "circuitry_call_duration_seconds_count", name="search") == value(
            samples, "circuitry_calls_total", name="search", outcome="success"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_throttled_and_shadow_rejected_calls_are_exported() -> None:
    from circuitry import AdaptiveThrottle, CircuitBreaker

    clock = FakeClock()
    throttled = CircuitBreaker(
        CircuitBreakerConfig(adaptive_throttle=AdaptiveThrottle(min_requests=0)),
        name="throttled",
        clock=clock,
        random=lambda: 0.0,
    )
    shadow = make(clock, name="shadow", failure_threshold_count=1, shadow=True)
    collector = CircuitBreakerCollector([throttled, shadow])
    fail(throttled)
    assert throttled.try_acquire() is None
    fail(shadow)
    assert shadow.try_acquire() is not None
    samples = scrape(collector)
    assert value(samples, "circuitry_throttled_calls_total", name="throttled") == 1.0
    assert value(samples, "circuitry_calls_total", name="throttled", outcome="rejected") == 1.0
    assert value(samples, "circuitry_throttle_probability", name="throttled") == pytest.approx(
        2 / 3
    )
    assert value(samples, "circuitry_throttle_probability", name="shadow") is None
    assert value(samples, "circuitry_shadow_rejected_calls_total", name="shadow") == 1.0
