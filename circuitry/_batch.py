"""Successes recorded without the lock, and folded in under it in batches.

While `deferring` is a generation (see _publish.py), a success of that
generation cannot move the circuit, so the adapter does not call `complete`
for it: it appends `(generation, started, now)` to `pending` and calls `fold`
under the lock once `FOLD_AT` are waiting.

One race needs more than the published values: a success that read
`deferring` just before a racing failure made successes able to trip (the
failure rate, once the window reaches `minimum_calls`) would sit in
`pending` while its thread's next call is admitted, although in either order
of the two the circuit would be OPEN by then. So the adapter reads
`deferring` again after appending and folds at once if it changed, and a
locked step that turns `deferring` off folds what arrived meanwhile
(`_failures_moved`): the trip happens before either call returns.

Every other operation takes the lock, and first folds `pending` in
(`fold`), in order, each success as `complete` would count it at that point:
one of an earlier generation is a late result, and one that arrived after a
failure it raced with is counted after it (trip rules included), as it would
be had its thread been the slower to the lock.
"""

from __future__ import annotations

from math import log2
from typing import TYPE_CHECKING

from ._metrics import MIN_DURATION, OFFSET, PER_OCTAVE
from ._metrics import ZERO as ZERO_DURATION
from ._publish import Publisher
from ._state import CircuitState

if TYPE_CHECKING:
    from ._window import Window

__all__ = ["FOLD_AT", "Batcher"]

CLOSED = CircuitState.CLOSED

FOLD_AT = 32
"""How many `pending` successes an adapter lets wait before it calls `fold`.

Folding costs a lock round trip and a few calls, shared by the batch; each
waiting success holds a 3-tuple (benchmarks/README.md, "Measured choices").
"""


class Batcher(Publisher):
    """The successes a `CircuitCore` (a subclass) has waiting, and their folding in (module doc)."""

    __slots__ = ("pending",)

    if TYPE_CHECKING:  # CircuitCore's

        def _into_window(self, window: Window, now: float, failed: bool, slow: bool) -> bool: ...

    def __init__(self) -> None:
        super().__init__()
        # Successes recorded without the lock, oldest first: (generation, started, now).
        self.pending: list[tuple[int, float, float]] = []

    def fold(self) -> None:
        """Count the successes waiting in `pending` (the adapter's cue: FOLD_AT of them)."""
        pending = self.pending
        count = len(pending)
        batch = pending[:count]
        del pending[:count]  # only those: an adapter may be appending
        generation = self.generation
        current = 0
        latency = self.latency
        buckets = latency.buckets
        total = latency.total
        for issued, started, now in batch:
            if issued == generation:
                current += 1  # the others are late results: totals only
            duration = now - started
            # LatencyHistogram.record, inlined: this runs for every call.
            if duration > MIN_DURATION:
                key = int(log2(duration) * PER_OCTAVE + OFFSET)
                total += duration
            else:
                key = ZERO_DURATION
            buckets[key] = buckets.get(key, 0) + 1
        latency.total = total
        self.total_successes += count
        if not current:
            return
        window = self.window
        if window is None or self.state is not CLOSED:
            # No transition since they were recorded, so the state is still
            # the CLOSED or FORCED_CLOSED they were recorded in, and each has
            # its entry in `tickets` (any one will do).
            del self.tickets[-current:]
            self._allowed += current
            self.consecutive_failures = 0  # type: ignore[misc]  # CircuitCore's slot
        else:
            self._fold_into_window(batch, window)

    def _fold_into_window(self, batch: list[tuple[int, float, float]], window: Window) -> None:
        """Count this period's successes of `batch` into the window, in order, as `complete` does.

        One that raced a failure may trip the circuit here; the rest are late then.
        """
        generation = self.generation
        tickets = self.tickets
        for issued, _, now in batch:
            if issued != generation:
                continue
            tickets.pop()
            self._allowed += 1
            if self._into_window(window, now, False, False):
                return

    def _failures_moved(self, window: Window, before: int) -> None:
        """Publish again if the window's failures changed: successes may skip the lock, or not.

        When successes stop skipping it, one may have been appended to `pending`
        since this operation folded (its thread read `deferring` before): it is
        folded now, so that a success that trips does so before this returns.
        """
        if window.total_failures != before and self._can_defer:
            self._publish()
            if self.pending and self.deferring is None:
                self.fold()
