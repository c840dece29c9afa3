"""A time-based sliding window of call outcomes, kept in buckets.

The window of length W is cut into `BUCKETS` buckets of W / BUCKETS seconds,
numbered by `floor(time / width)`. It holds the newest bucket and the
BUCKETS - 1 before it, so a call that completed less than 0.9 * W ago always
counts and one that completed more than W ago never does (the contract's
bound). Work per call is O(1) amortised: moving the head forward clears at
most BUCKETS buckets however much time passed, and memory is fixed whatever
the call rate.

`CountWindow` is the other kind (`failure_window_calls`): the last N
completed calls, whenever they completed. Both offer what the trip rules and
the metrics read (`total_calls`, `total_failures`, `total_slow`) and what the
core calls (`add`, `expire`, `clear`).
"""

from __future__ import annotations

import math

__all__ = ["CountWindow", "TimeWindow", "Window"]

BUCKETS = 10


class TimeWindow:
    """Counts of calls, failures and slow calls over the last `length` seconds."""

    __slots__ = (
        "calls",
        "failures",
        "head",
        "slow",
        "total_calls",
        "total_failures",
        "total_slow",
        "width",
    )

    def __init__(self, length: float) -> None:
        self.width = length / BUCKETS
        self.calls = [0] * BUCKETS
        self.failures = [0] * BUCKETS
        self.slow = [0] * BUCKETS
        self.head: int | None = None  # number of the newest bucket
        self.total_calls = 0
        self.total_failures = 0
        self.total_slow = 0

    def add(self, now: float, failed: bool, slow: bool) -> None:
        """Count one completed call."""
        number = math.floor(now / self.width)
        if number != self.head:  # the same bucket as the last call is the common case
            number = self._advance(number)
        i = number % BUCKETS
        self.calls[i] += 1
        self.total_calls += 1
        if failed:
            self.failures[i] += 1
            self.total_failures += 1
        if slow:
            self.slow[i] += 1
            self.total_slow += 1

    def expire(self, now: float) -> None:
        """Drop what has fallen out of the window by `now`."""
        self._advance(math.floor(now / self.width))

    def clear(self) -> None:
        for counts in (self.calls, self.failures, self.slow):
            for i in range(BUCKETS):
                counts[i] = 0
        self.head = None
        self.total_calls = self.total_failures = self.total_slow = 0

    def _advance(self, number: int) -> int:
        """Make bucket `number` the newest; the bucket to count in now."""
        head = self.head
        if head is None:
            self.head = number
            return number
        if number <= head:
            # Same bucket, or the clock stepped back: count it in the newest.
            return head
        if number - head >= BUCKETS:
            self.clear()
        else:
            for n in range(head + 1, number + 1):
                i = n % BUCKETS
                self.total_calls -= self.calls[i]
                self.total_failures -= self.failures[i]
                self.total_slow -= self.slow[i]
                self.calls[i] = self.failures[i] = self.slow[i] = 0
        self.head = number
        return number


class CountWindow:
    """Counts of calls, failures and slow calls over the last `size` completed calls.

    A ring of each call's outcome (bit 1: failed, bit 2: slow); the call that
    falls out is subtracted as the new one comes in. O(1) per call.
    """

    __slots__ = ("cursor", "outcomes", "size", "total_calls", "total_failures", "total_slow")

    def __init__(self, size: int) -> None:
        self.size = size
        self.outcomes = [0] * size
        self.cursor = 0  # calls counted since the window was last cleared
        self.total_calls = 0
        self.total_failures = 0
        self.total_slow = 0

    def add(self, now: float, failed: bool, slow: bool) -> None:
        """Count one completed call (`now` is not needed: only the order counts)."""
        i = self.cursor % self.size
        if self.cursor >= self.size:  # full: the oldest call leaves
            old = self.outcomes[i]
            self.total_failures -= old & 1
            self.total_slow -= old >> 1
        else:
            self.total_calls += 1
        self.cursor += 1
        self.outcomes[i] = failed + 2 * slow
        self.total_failures += failed
        self.total_slow += slow

    def expire(self, now: float) -> None:
        """Nothing leaves a count window with time."""

    def clear(self) -> None:
        self.outcomes = [0] * self.size
        self.cursor = self.total_calls = self.total_failures = self.total_slow = 0


Window = TimeWindow | CountWindow
"""Either kind: what the trip rules, the metrics and the core read."""
