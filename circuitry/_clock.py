"""The only module that reads the time."""

from __future__ import annotations

import time as _time

__all__ = ["monotonic"]


def monotonic() -> float:
    """The default clock: `time.monotonic()`, looked up at every call.

    Looking it up each time (instead of keeping a reference to the function)
    is what lets `freezegun` move the clock of a breaker built before
    `freeze_time` started.
    """
    return _time.monotonic()
