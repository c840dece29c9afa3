"""The only module that reads the time."""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "clock_from"]

_INF = math.inf


class Clock(Protocol):
    """Where a breaker reads the time: `clock.monotonic()`, in seconds."""

    def monotonic(self) -> float: ...


class _Given:
    """A clock function, as a `Clock` that refuses NaN and infinities.

    A NaN or infinite time would reach the window and the latency histogram
    as an OverflowError far from its cause; this names the clock instead.
    (The default clock, the `time` module, needs no such check.)
    """

    __slots__ = ("_clock",)

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock

    def monotonic(self) -> float:
        now = self._clock()
        try:
            if -_INF < now < _INF:
                return now
        except TypeError:
            raise TypeError(
                f"clock must return seconds as a float, got {now!r} from {self._clock!r}"
            ) from None
        raise ValueError(f"clock {self._clock!r} returned {now!r}: expected finite seconds")


def clock_from(clock: Callable[[], float] | None) -> Clock:
    """The `Clock` for a breaker's `clock=` argument.

    For the default it is the `time` module itself: `clock.monotonic()` then
    looks `time.monotonic` up at every call, which is what lets `freezegun`
    move the clock of a breaker built before `freeze_time` started, and costs
    no Python frame (a wrapper function would, twice per call: see
    benchmarks/README.md, "Measured choices").
    """
    return _time if clock is None else _Given(clock)
