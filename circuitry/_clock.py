"""The only module that reads the time."""

from __future__ import annotations

import time as _time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "clock_from"]


class Clock(Protocol):
    """Where a breaker reads the time: `clock.monotonic()`, in seconds."""

    def monotonic(self) -> float: ...


class _Given:
    """A clock function, as a `Clock`."""

    __slots__ = ("monotonic",)

    def __init__(self, clock: Callable[[], float]) -> None:
        self.monotonic = clock


def clock_from(clock: Callable[[], float] | None) -> Clock:
    """The `Clock` for a breaker's `clock=` argument.

    For the default it is the `time` module itself: `clock.monotonic()` then
    looks `time.monotonic` up at every call, which is what lets `freezegun`
    move the clock of a breaker built before `freeze_time` started, and costs
    no Python frame (a wrapper function cost ~15 ns per read, two reads per
    call).
    """
    return _time if clock is None else _Given(clock)
