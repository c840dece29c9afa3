"""Helpers for testing code that uses circuit breakers."""

from __future__ import annotations

import datetime

from ._seconds import seconds

__all__ = ["FakeClock"]


class FakeClock:
    """A clock that only moves when told to. Pass it as `clock=`.

    >>> clock = FakeClock()
    >>> clock.advance(30)
    >>> clock()
    30.0
    """

    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        self._now = _seconds("start", start)

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float | datetime.timedelta) -> None:
        """Move the clock forward by `seconds` (>= 0)."""
        step = _seconds("seconds", seconds)
        if step < 0:
            raise ValueError(f"seconds must be >= 0 (the clock is monotonic), got {seconds!r}")
        self._now += step

    def set(self, t: float) -> None:
        """Set the time to `t`."""
        self._now = _seconds("t", t)

    def __repr__(self) -> str:
        return f"FakeClock({self._now!r})"


def _seconds(field: str, value: object) -> float:
    return seconds(field, value, timedelta=True)
