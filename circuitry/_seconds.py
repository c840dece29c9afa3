"""The one place that reads a number of seconds a caller passed, or names it in the error.

Config durations, a store's lease and TTL, `trip(duration)`, the test clock's
steps and the simulator's calls all come here. Each says which seconds it
takes: `above` (exclusive) or `at_least` (inclusive) a bound, or any finite
number; whether a `datetime.timedelta` is accepted; and the shortest
positive value that is not refused (config durations: 1 µs).
"""

from __future__ import annotations

import datetime
import math

__all__ = ["SHORTEST_DURATION", "as_float", "seconds"]

SHORTEST_DURATION = 1e-6
"""The shortest duration a config accepts, in seconds (1 µs).

Below it the arithmetic on durations breaks down: a window of 1e-320 seconds
has buckets whose numbers overflow, so every call would raise OverflowError
instead of its own outcome. The largest finite float is accepted: every use
of a duration copes with a sum or product that overflows to infinity.
"""


def as_float(value: float) -> float:
    """`float(value)`; an int too large for a float becomes +-inf, which the checks reject."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def seconds(
    field: str,
    value: object,
    *,
    above: float | None = None,
    at_least: float | None = None,
    shortest: float | None = None,
    timedelta: bool = False,
) -> float:
    """`value` as finite float seconds, or an error naming `field` and `value`.

    Raises:
        TypeError: not a number (a bool is not one), nor a timedelta when
            `timedelta` accepts one.
        ValueError: NaN, infinite, not above `above`, below `at_least`, or a
            positive value under `shortest`.
    """
    if timedelta and isinstance(value, datetime.timedelta):
        result = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        kinds = "float, int or timedelta" if timedelta else "a number"
        raise TypeError(f"{field} must be seconds ({kinds}), got {value!r}")
    else:
        result = as_float(value)
    if (
        math.isnan(result)
        or math.isinf(result)
        or (above is not None and not result > above)
        or (at_least is not None and result < at_least)
    ):
        bound = (
            f" > {above:g}"
            if above is not None
            else f" >= {at_least:g}"
            if at_least is not None
            else ""
        )
        raise ValueError(f"{field} must be a finite number of seconds{bound}, got {value!r}")
    if shortest is not None and 0 < result < shortest:
        raise ValueError(f"{field} must be at least {shortest:g} seconds (1 µs), got {value!r}")
    return result
