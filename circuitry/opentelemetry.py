"""OpenTelemetry export: observable instruments for circuit breakers (extra `opentelemetry`).

```python
from circuitry.opentelemetry import instrument

handle = instrument(manager)                 # or a breaker, or a list of them
...
handle.close()                               # the instruments report nothing more
```

Instruments, read from each breaker's `metrics()` when the SDK collects (no
work on the call path), on the meter `"circuitry"` of the given provider (the
global one by default):

- `circuitry.state` (gauge; attributes `name`, `state`): 1 for the current
  state, 0 for the other four.
- `circuitry.calls` (counter; `name`, `outcome`): `success`, `failure`,
  `ignored`, `rejected`.
- `circuitry.slow_calls` (counter; `name`): calls that took at least
  `slow_call_duration`.
- `circuitry.state_changes` (counter; `name`).
- `circuitry.failure_rate` (gauge, percent 0 to 100; `name`): over the
  failure window, absent while unknown (no window, or fewer calls than
  `minimum_calls`). `circuitry.failure_ratio` (gauge, 0 to 1) is the same
  as a ratio.
- `circuitry.call_duration` (histogram, seconds; `name`): the durations of
  calls that succeeded or failed. OpenTelemetry has no observable
  histogram, so this one is recorded as calls complete, by a listener of
  `CallSucceeded` and `CallFailed` on the source: the one instrument that
  puts work on the call path, so it is recorded only with
  `instrument(..., durations=True)`.

Reading a breaker's metrics applies the transitions time alone makes, so a
collection is also what moves an OPEN circuit whose open period has passed to
HALF_OPEN.

OpenTelemetry's API cannot remove an instrument from a meter, and asking a
meter for an instrument it has already returns that one. So the instruments
are created once per meter provider and report, at each collection, the
sources that are instrumented then: `close()` takes its source out, and a
later `instrument()` on the same provider is reported by the same instruments.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable

from opentelemetry.metrics import (
    CallbackOptions,
    Histogram,
    Meter,
    MeterProvider,
    Observation,
    get_meter_provider,
)

from . import __version__
from ._breaker import CircuitBreaker
from ._export import MetricsSource, Source
from ._manager import CircuitBreakerManager
from ._metrics import CircuitMetrics
from ._state import CircuitState
from .events import CallFailed, CallSucceeded

# The bounds of the duration histogram: prometheus_client's defaults (5 ms to
# 10 s), as OpenTelemetry's semantic conventions advise for durations in seconds.
DURATION_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

__all__ = ["Instrumentation", "instrument"]

_STATES = tuple(state.value for state in CircuitState)


class Instrumentation:
    """What `instrument()` returns: `close()` stops reporting its source.

    Also a context manager that closes on exit.
    """

    __slots__ = ("_durations", "_instruments", "_lock", "_raw", "_source", "_subscribed")

    def __init__(
        self, instruments: _Instruments, source: MetricsSource, raw: Source, durations: bool
    ) -> None:
        self._instruments = instruments
        self._source = source
        self._raw = raw
        self._durations = durations
        self._lock = threading.Lock()
        # The breakers (or the manager) whose call durations this handle records,
        # by id, with the function that unsubscribes from each.
        self._subscribed: dict[int, tuple[object, Callable[[], None]]] = {}

    @property
    def closed(self) -> bool:
        """Whether `close()` was called."""
        return not self._instruments.has(self)

    def close(self) -> None:
        """Stop reporting this source's breakers (calling it again does nothing)."""
        self._instruments.remove(self)
        with self._lock:
            subscribed, self._subscribed = self._subscribed, {}
            self._durations = False
        for _, unsubscribe in subscribed.values():
            unsubscribe()

    def _follow(self) -> None:
        """Record the durations of the source's breakers not followed yet.

        A manager is followed once (its breakers created later included); a
        collection is looked at again at each collection, for breakers added to it.
        """
        if not self._durations:
            return
        raw = self._raw
        targets: list[CircuitBreakerManager | CircuitBreaker]
        if isinstance(raw, (CircuitBreakerManager, CircuitBreaker)):
            targets = [raw]
        else:
            targets = list(self._source.breakers())
        for target in targets:
            with self._lock:
                if not self._durations or id(target) in self._subscribed:
                    continue
                unsubscribe = target.subscribe(self._instruments.record_duration, *_TIMED)
                self._subscribed[id(target)] = (target, unsubscribe)

    def __enter__(self) -> Instrumentation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def snapshots(self) -> list[CircuitMetrics]:
        self._follow()
        return self._source.snapshots()


_TIMED = (CallSucceeded, CallFailed)


class _Instruments:
    """The instruments of one meter, reporting every open `Instrumentation`."""

    def __init__(self, meter: Meter) -> None:
        self._lock = threading.Lock()
        self._handles: tuple[Instrumentation, ...] = ()
        meter.create_observable_gauge(
            "circuitry.state",
            callbacks=[self._observer(_state)],
            unit="1",
            description="Circuit state: 1 for the current state, 0 for the others.",
        )
        meter.create_observable_counter(
            "circuitry.calls",
            callbacks=[self._observer(_calls)],
            unit="{call}",
            description="Calls by outcome: success, failure, ignored, rejected.",
        )
        meter.create_observable_counter(
            "circuitry.throttled_calls",
            callbacks=[self._observer(_throttled)],
            unit="{call}",
            description="Calls adaptive_throttle rejected while CLOSED (also among rejected).",
        )
        meter.create_observable_counter(
            "circuitry.shadow_rejected_calls",
            callbacks=[self._observer(_shadow_rejected)],
            unit="{call}",
            description="Calls a shadow breaker would have rejected or throttled, and let run.",
        )
        meter.create_observable_counter(
            "circuitry.slow_calls",
            callbacks=[self._observer(_slow)],
            unit="{call}",
            description="Calls that took at least slow_call_duration.",
        )
        meter.create_observable_counter(
            "circuitry.state_changes",
            callbacks=[self._observer(_state_changes)],
            unit="{change}",
            description="State changes.",
        )
        meter.create_observable_gauge(
            "circuitry.failure_rate",
            callbacks=[self._observer(_failure_rate)],
            unit="%",
            description="Percent (0-100) of the failure window's calls that failed "
            "(once it holds minimum_calls).",
        )
        meter.create_observable_gauge(
            "circuitry.failure_ratio",
            callbacks=[self._observer(_failure_ratio)],
            unit="1",
            description="Ratio (0-1) of the failure window's calls that failed "
            "(once it holds minimum_calls).",
        )
        self._duration = _histogram(meter)

    def record_duration(self, event: object) -> None:
        if isinstance(event, (CallSucceeded, CallFailed)):
            self._duration.record(event.duration, {"name": event.name})

    def _observer(
        self, observe: Callable[[CircuitMetrics], Iterable[Observation]]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            observations: list[Observation] = []
            for handle in self._handles:
                for m in handle.snapshots():
                    observations.extend(observe(m))
            return observations

        return callback

    def add(self, handle: Instrumentation) -> None:
        with self._lock:
            self._handles += (handle,)

    def remove(self, handle: Instrumentation) -> None:
        with self._lock:
            self._handles = tuple(h for h in self._handles if h is not handle)

    def has(self, handle: Instrumentation) -> bool:
        return any(h is handle for h in self._handles)


def _histogram(meter: Meter) -> Histogram:
    name, unit = "circuitry.call_duration", "s"
    description = "Durations of calls that succeeded or failed."
    try:  # the bounds advisory is opentelemetry-api 1.30's; before it, the SDK's bounds
        return meter.create_histogram(
            name,
            unit=unit,
            description=description,
            explicit_bucket_boundaries_advisory=list(DURATION_BOUNDS),
        )
    except TypeError:  # pragma: no cover - opentelemetry-api < 1.30
        return meter.create_histogram(name, unit=unit, description=description)


def _state(m: CircuitMetrics) -> Iterable[Observation]:
    current = m.current_state.value
    for state in _STATES:
        yield Observation(1 if state == current else 0, {"name": m.name, "state": state})


def _calls(m: CircuitMetrics) -> Iterable[Observation]:
    for outcome, count in (
        ("success", m.total_successes),
        ("failure", m.total_failures),
        ("ignored", m.total_ignored),
        ("rejected", m.total_rejected),
    ):
        yield Observation(count, {"name": m.name, "outcome": outcome})


def _throttled(m: CircuitMetrics) -> Iterable[Observation]:
    yield Observation(m.total_throttled, {"name": m.name})


def _shadow_rejected(m: CircuitMetrics) -> Iterable[Observation]:
    yield Observation(m.total_shadow_rejected, {"name": m.name})


def _slow(m: CircuitMetrics) -> Iterable[Observation]:
    yield Observation(m.total_slow, {"name": m.name})


def _failure_ratio(m: CircuitMetrics) -> Iterable[Observation]:
    if m.failure_rate is not None:
        yield Observation(m.failure_rate / 100.0, {"name": m.name})


def _state_changes(m: CircuitMetrics) -> Iterable[Observation]:
    yield Observation(m.state_changes, {"name": m.name})


def _failure_rate(m: CircuitMetrics) -> Iterable[Observation]:
    if m.failure_rate is not None:
        yield Observation(m.failure_rate, {"name": m.name})


_lock = threading.Lock()
_by_provider: weakref.WeakKeyDictionary[MeterProvider, _Instruments] = weakref.WeakKeyDictionary()


def instrument(
    source: Source, meter_provider: MeterProvider | None = None, *, durations: bool = False
) -> Instrumentation:
    """Report `source`'s breakers through observable OpenTelemetry instruments.

    Args:
        source: a `CircuitBreakerManager` (every breaker it has at each
            collection, those created later included), a `CircuitBreaker`, or
            an iterable of them (a collection is iterated again at each
            collection; an iterator is read once, now). Instrument each
            breaker once per provider: two sources with the same breaker
            report its points twice.
        meter_provider: where the instruments go; the global provider
            (`opentelemetry.metrics.get_meter_provider()`) when None.
        durations: record `circuitry.call_duration`, by a listener of
            `CallSucceeded` and `CallFailed` on the source (subscribed now; for
            a collection, breakers added to it later are followed from the next
            collection on). It puts an event and a histogram record on every
            completed call, which costs many times a protected call's own
            overhead; False (the default) leaves the call path untouched.

    Returns:
        A handle whose `close()` stops reporting `source`.

    Raises:
        TypeError: `source` is not a manager, a breaker or an iterable of
            breakers.
    """
    metrics_source = MetricsSource(source)
    provider = get_meter_provider() if meter_provider is None else meter_provider
    with _lock:
        instruments = _by_provider.get(provider)
        if instruments is None:
            meter = provider.get_meter("circuitry", __version__)
            instruments = _by_provider[provider] = _Instruments(meter)
    if not isinstance(durations, bool):
        raise TypeError(f"durations must be a bool, got {durations!r}")
    handle = Instrumentation(instruments, metrics_source, source, durations)
    instruments.add(handle)
    handle._follow()
    return handle
