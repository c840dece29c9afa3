"""The trip rules: when a CLOSED circuit opens, on what its failure window holds.

Each rule is one small class, a `TripRule`: its parameters (its `__slots__`)
and two conditions, written as Python expressions:

- `trips_when`: the window's counts trip the circuit. It reads `failures`
  (the window's), `calls` (a `gated` rule only: it decides once the window
  holds `minimum_calls` calls) and `window` itself.
- `cannot_trip_when`: while the window holds `failures` and no more come in,
  no success can make the rule trip. It reads `failures` and `minimum_calls`.
  The core lets successes skip the lock only then (`deferring`, _publish.py).

`trip_rules(config)` gives a config's rules, and the two functions the core
consults, built from those conditions once per set of rules (equal configs
share them): `window_trips(window)`, after every call counted into the window
(`complete`, `fold`), and `cannot_trip(window)`, when the window's failures
change. Built rather than looped over because every counted call consults
them: a Python call per rule would cost that path as much as the whole check
(one call, as when `CircuitCore._window_trips` was written by hand). The
parameters are bound as values (never formatted into the source), so each
comparison is the one the rule's expression spells, on the same numbers.

`TripRules.source` is what was built for a config: read it to see the
decision whole. A new rule is a new `TripRule` subclass, built in `trip_rules`. Without a
window, the count rule is over consecutive failures: `complete` checks those
inline, against `TripRules.failure_threshold`.

circuitry/_circuit.lua mirrors `window_trips` (its own `window_trips`): change
one, change the other.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from ._config import CircuitBreakerConfig

if TYPE_CHECKING:
    from ._window import Window

__all__ = ["FailureCount", "FailureRate", "SlowCallRate", "TripRule", "TripRules", "trip_rules"]


class TripRule:
    """One rule that trips a CLOSED circuit on its window's counts (module doc)."""

    __slots__ = ()

    gated: ClassVar[bool] = True
    """Whether it decides only once the window holds `minimum_calls` calls."""
    trips_when: ClassVar[str]
    """When it trips: over `failures`, `calls` (gated rules), `window`, `{parameter}`s."""
    cannot_trip_when: ClassVar[str]
    """When no success can make it trip: over `failures`, `minimum_calls`, `{parameter}`s."""

    def parameters(self) -> dict[str, object]:
        """Its parameters by name: its `__slots__`, read in its conditions as `{name}`."""
        names: tuple[str, ...] = self.__slots__
        return {name: getattr(self, name) for name in names}

    def __repr__(self) -> str:
        arguments = ", ".join(f"{name}={value!r}" for name, value in self.parameters().items())
        return f"{type(self).__name__}({arguments})"


class FailureCount(TripRule):
    """`failure_threshold_count`: that many failures in the window trip it."""

    __slots__ = ("threshold",)

    gated = False  # it trips before minimum_calls
    trips_when = "failures >= {threshold}"
    cannot_trip_when = "True"  # a success adds no failure

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold


class FailureRate(TripRule):
    """`failure_threshold_percentage`: failures that percent of the window's calls trip it.

    A success leaves the failure count alone and only dilutes the rate,
    except where it brings the window up to minimum_calls. The worst case, as
    calls in the window expire and new successes come in, is a window of its
    f failures and just enough successes to reach minimum_calls (at least
    one): safe while that rate is under the threshold. Failures only leave the
    window, so it stays safe until a failure comes in (under the lock, which
    publishes again).
    """

    __slots__ = ("percentage",)

    trips_when = "failures * 100 >= {percentage} * calls"
    cannot_trip_when = "failures * 100 < {percentage} * max(minimum_calls, failures + 1)"

    def __init__(self, percentage: float) -> None:
        self.percentage = percentage


class SlowCallRate(TripRule):
    """`slow_call_rate_threshold`: slow calls that percent of the window's calls trip it."""

    __slots__ = ("rate",)

    trips_when = "window.total_slow * 100 >= {rate} * calls"
    # A success may be slow. (With a slow-call rule no success skips the lock
    # anyway: its duration must be looked at. See CircuitCore._can_defer.)
    cannot_trip_when = "False"

    def __init__(self, rate: float) -> None:
        self.rate = rate


class TripRules:
    """One config's trip rules and the two functions the core consults (module doc)."""

    __slots__ = (
        "cannot_trip",
        "failure_threshold",
        "minimum_calls",
        "rules",
        "source",
        "window_trips",
    )

    def __init__(self, rules: tuple[TripRule, ...], minimum_calls: int) -> None:
        self.rules = rules
        self.minimum_calls = minimum_calls
        count = [rule.threshold for rule in rules if isinstance(rule, FailureCount)]
        # No count rule: no count reaches inf (the config then has a rate rule).
        self.failure_threshold: float = count[0] if count else math.inf
        namespace: dict[str, Any] = {"minimum_calls": minimum_calls}
        ungated: list[str] = []
        gated: list[str] = []
        safe: list[str] = []
        for number, rule in enumerate(rules):
            names: dict[str, str] = {}  # each rule's parameters get names of their own
            for name, value in rule.parameters().items():
                names[name] = f"{name}_{number}"
                namespace[names[name]] = value
            condition = f"    if {rule.trips_when.format_map(names)}:\n        return True"
            (gated if rule.gated else ungated).append(condition)
            if rule.cannot_trip_when != "True":
                safe.append(f"({rule.cannot_trip_when.format_map(names)})")
        lines = ["def window_trips(window):", "    failures = window.total_failures", *ungated]
        if gated:
            lines += [
                "    calls = window.total_calls",
                "    if calls < minimum_calls:",
                "        return False",
                *gated,
            ]
        lines += ["    return False", "", "def cannot_trip(window):"]
        if safe:
            lines += ["    failures = window.total_failures", f"    return {' and '.join(safe)}"]
        else:
            lines += ["    return True"]
        self.source = "\n".join(lines) + "\n"
        exec(compile(self.source, f"<circuitry trip rules {rules!r}>", "exec"), namespace)
        self.window_trips: Callable[[Window], bool] = namespace["window_trips"]
        self.cannot_trip: Callable[[Window], bool] = namespace["cannot_trip"]

    def __repr__(self) -> str:
        return f"TripRules({self.rules!r}, minimum_calls={self.minimum_calls!r})"


def trip_rules(config: CircuitBreakerConfig) -> TripRules:
    """The trip rules of `config` (shared by equal ones)."""
    return _trip_rules(
        config.failure_threshold_count,
        config.failure_threshold_percentage,
        config.slow_call_rate_threshold,
        config.minimum_calls,
    )


@functools.lru_cache(maxsize=128, typed=True)  # typed: 50 and 50.0 keep their own
def _trip_rules(
    count: int | None, percentage: float | None, slow_rate: float | None, minimum_calls: int
) -> TripRules:
    rules: list[TripRule] = []
    if count is not None:
        rules.append(FailureCount(count))
    if percentage is not None:
        rules.append(FailureRate(percentage))
    if slow_rate is not None:
        rules.append(SlowCallRate(slow_rate))
    return TripRules(tuple(rules), minimum_calls)
