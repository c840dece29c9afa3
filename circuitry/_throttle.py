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

`Throttle` is plain data and arithmetic, part of the core (no clock, no
lock): the core calls it under the lock with `now`.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable

from ._config import AdaptiveThrottle

__all__ = ["Throttle"]


class Throttle:
    """The counts of one breaker's adaptive throttle, and its decision."""

    __slots__ = ("accepts", "k", "max_rejection", "min_requests", "requests", "window")

    def __init__(self, config: AdaptiveThrottle) -> None:
        self.k = config.k
        self.window = config.window
        self.min_requests = config.min_requests
        self.max_rejection = config.max_rejection
        # When each counted request arrived and each success ended, oldest first.
        self.requests: deque[float] = deque()
        self.accepts: deque[float] = deque()

    def _expire(self, now: float) -> None:
        horizon = now - self.window
        requests = self.requests
        while requests and requests[0] <= horizon:
            requests.popleft()
        accepts = self.accepts
        while accepts and accepts[0] <= horizon:
            accepts.popleft()

    def probability(self, now: float) -> float:
        """The probability a call arriving at `now` is rejected (before it is counted)."""
        self._expire(now)
        return self.rejection(len(self.requests), len(self.accepts))

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
        self.requests.append(now)
        return p > 0.0 and random() < p

    def ended(self, started: float, now: float, success: bool, ignored: bool) -> None:
        """A counted call that arrived at `started` ended at `now`."""
        if success:
            self.accepts.append(now)
        elif ignored:
            with contextlib.suppress(ValueError):  # (else already out of the window)
                self.requests.remove(started)  # (one of the same start will do)
