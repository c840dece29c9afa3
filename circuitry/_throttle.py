"""Adaptive throttling while CLOSED (`AdaptiveThrottle`): its counts and its draw.

Google's client-side throttling (SRE book, "Handling Overload"): over the
last `window` seconds, `requests` counts the calls that arrived (admitted or
throttled) and `accepts` the successes; a call is rejected with probability
`min(max_rejection, max(0, (requests - k * accepts) / (requests + 1)))`.

Unlike go-zero's and kratos' breakers, which this follows:
- a throttled call is a request, not a failure: counting it as one would
  push the probability up by its own rejections until nothing passes;
- a call counts when it arrives, not when it ends, so calls in flight (a
  dependency that hangs) raise the probability at once;
- an ignored call leaves `requests` when it ends (it says nothing either
  way), and `max_rejection` caps the probability, so some calls always
  reach the dependency and can see it heal.

The counts are kept in `BUCKETS` buckets of `window / BUCKETS` seconds, as
`circuitry._window.TimeWindow` keeps its own (the same numbering,
`floor(time / width)`, and the same rule: the newest bucket and the
BUCKETS - 1 before it), so memory is fixed whatever the call rate. The
granularity is one bucket: a count made less than 0.9 * window ago always
counts, one made `window` or more ago never does, and one in between leaves
when its bucket does. An ignored call leaves the bucket of its arrival if
that bucket is still in the window (else it has left already).

`Throttle` is plain data and arithmetic, part of the core (no clock, no
lock): the core calls it under the lock with `now`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ._config import AdaptiveThrottle

__all__ = ["BUCKETS", "Throttle"]

BUCKETS = 10


class Throttle:
    """The counts of one breaker's adaptive throttle, and its decision."""

    __slots__ = (
        "accepted",
        "accepts",
        "head",
        "k",
        "max_rejection",
        "min_requests",
        "requested",
        "requests",
        "width",
        "window",
    )

    def __init__(self, config: AdaptiveThrottle) -> None:
        self.k = config.k
        self.window = config.window
        self.width = config.window / BUCKETS
        self.min_requests = config.min_requests
        self.max_rejection = config.max_rejection
        # Each bucket's counts, by bucket number % BUCKETS; their totals.
        self.requested = [0] * BUCKETS
        self.accepted = [0] * BUCKETS
        self.head: int | None = None  # number of the newest bucket
        self.requests = 0
        self.accepts = 0

    def _advance(self, now: float) -> int:
        """Make the bucket of `now` the newest (TimeWindow._advance); the bucket to count in."""
        number = math.floor(now / self.width)
        head = self.head
        if head is None or number - head >= BUCKETS:
            if self.requests or self.accepts:
                for i in range(BUCKETS):
                    self.requested[i] = self.accepted[i] = 0
                self.requests = self.accepts = 0
        elif number <= head:
            return head  # same bucket, or the clock stepped back: count it in the newest
        else:
            for n in range(head + 1, number + 1):
                i = n % BUCKETS
                self.requests -= self.requested[i]
                self.accepts -= self.accepted[i]
                self.requested[i] = self.accepted[i] = 0
        self.head = number
        return number

    def probability(self, now: float) -> float:
        """The probability a call arriving at `now` is rejected (before it is counted)."""
        self._advance(now)
        return self.rejection(self.requests, self.accepts)

    def counts(self, now: float) -> tuple[int, int]:
        """(requests, accepts) over the window as of `now`."""
        self._advance(now)
        return self.requests, self.accepts

    def rejection(self, requests: int, accepts: int) -> float:
        """The probability for these counts (the shared store's, say)."""
        if requests < self.min_requests:
            return 0.0
        p = (requests - self.k * accepts) / (requests + 1)
        if p <= 0.0:
            return 0.0
        return min(self.max_rejection, p)

    def arrive(self, now: float, random: Callable[[], float], may_reject: bool) -> bool:
        """Count a call arriving at `now`; whether it is throttled (only if `may_reject`).

        `random` is drawn from only when the probability is above zero, so
        that an injected sequence lines up with the calls that could be throttled.
        """
        p = self.probability(now) if may_reject else 0.0
        self.requested[self._advance(now) % BUCKETS] += 1
        self.requests += 1
        return p > 0.0 and random() < p

    def ended(self, started: float, now: float, success: bool, ignored: bool) -> None:
        """A counted call that arrived at `started` ended at `now`."""
        if success:
            self.accepted[self._advance(now) % BUCKETS] += 1
            self.accepts += 1
        elif ignored:
            head = self._advance(now)
            number = min(math.floor(started / self.width), head)
            i = number % BUCKETS
            if head - number < BUCKETS and self.requested[i] > 0:
                self.requested[i] -= 1
                self.requests -= 1
