"""The built-in scenarios: `scenario(name, seed)` builds one, `scenarios()` lists them."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence

import attrs

from ._replay import Call

__all__ = ["Scenario", "scenario", "scenarios"]


@attrs.frozen
class Scenario:
    """A built-in trace: its calls (in start order) and when the dependency was unwell."""

    name: str
    seed: int
    description: str
    calls: list[Call]
    unhealthy: list[tuple[float, float]]


_RATE = 10.0  # calls per second
_LENGTH = 900.0  # seconds: 15 minutes
_NOISE = 0.005  # failures while healthy


def _arrivals(rng: random.Random) -> Iterator[float]:
    t = rng.expovariate(_RATE)
    while t < _LENGTH:
        yield t
        t += rng.expovariate(_RATE)


def _latency(rng: random.Random, median: float = 0.05) -> float:
    return median * rng.lognormvariate(0.0, 0.5)


def _during(t: float, periods: Sequence[tuple[float, float]]) -> bool:
    return any(start <= t < end for start, end in periods)


def _outage(rng: random.Random) -> tuple[list[Call], list[tuple[float, float]]]:
    down = [(240.0, 480.0)]
    calls = []
    for t in _arrivals(rng):
        if _during(t, down):  # every call times out after a second
            calls.append(Call(t, 1.0, "failure"))
        else:
            calls.append(Call(t, _latency(rng), "failure" if rng.random() < _NOISE else "success"))
    return calls, down


def _brownout(rng: random.Random) -> tuple[list[Call], list[tuple[float, float]]]:
    unwell = [(240.0, 540.0)]
    calls = []
    for t in _arrivals(rng):
        share = 0.4 if _during(t, unwell) else _NOISE
        calls.append(Call(t, _latency(rng), "failure" if rng.random() < share else "success"))
    return calls, unwell


def _flapping(rng: random.Random) -> tuple[list[Call], list[tuple[float, float]]]:
    down = [(float(start), start + 20.0) for start in range(180, 600, 60)]
    calls = []
    for t in _arrivals(rng):
        if _during(t, down):
            calls.append(Call(t, _latency(rng, 0.02), "failure"))
        else:
            calls.append(Call(t, _latency(rng), "failure" if rng.random() < _NOISE else "success"))
    return calls, down


def _slow(rng: random.Random) -> tuple[list[Call], list[tuple[float, float]]]:
    # The median latency climbs from 50 ms to 2.5 s over 180-240 s, stays there
    # until 540 s and falls back by 600 s; unwell while it is past one second.
    low, high, ramp = 0.05, 2.5, 60.0
    past_one = ramp * (1.0 - low) / (high - low)
    unwell = [(180.0 + past_one, 600.0 - past_one)]

    def median(t: float) -> float:
        if 180.0 <= t < 240.0:
            return low + (high - low) * (t - 180.0) / ramp
        if 240.0 <= t < 540.0:
            return high
        if 540.0 <= t < 600.0:
            return high - (high - low) * (t - 540.0) / ramp
        return low

    calls = [Call(t, _latency(rng, median(t)), "success") for t in _arrivals(rng)]
    return calls, unwell


_SCENARIOS: dict[
    str, tuple[str, Callable[[random.Random], tuple[list[Call], list[tuple[float, float]]]]]
] = {
    "outage": ("every call fails (1 s timeouts) from 4 to 8 minutes", _outage),
    "brownout": ("40 % of calls fail from 4 to 9 minutes", _brownout),
    "flapping": ("down 20 s in every minute, 7 times from 3 minutes on", _flapping),
    "slow": ("latency climbs past 1 s from about 3.4 to 9.6 minutes, no errors", _slow),
}


def scenarios() -> dict[str, str]:
    """The built-in scenarios' names and one-line descriptions.

    Each is 15 minutes of about 10 calls per second (Poisson arrivals,
    log-normal latency around 50 ms, 0.5 % failures while healthy).
    """
    return {name: description for name, (description, _) in _SCENARIOS.items()}


def scenario(name: str, seed: int = 0) -> Scenario:
    """A built-in scenario, the same for the same `seed`.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    if name not in _SCENARIOS:
        raise ValueError(f"unknown scenario {name!r} (known: {', '.join(_SCENARIOS)})")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    description, build = _SCENARIOS[name]
    calls, unhealthy = build(random.Random(f"{name}:{seed}"))
    return Scenario(name, seed, description, calls, unhealthy)
