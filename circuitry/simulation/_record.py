"""`TraceRecorder`: live calls written as a trace the simulator replays.

A listener, subscribed to a breaker or a manager, that writes each completed
call as one CSV row in the simulator's columns (`start,duration,outcome,
service`), so last week's traffic can be replayed through other configs.
"""

from __future__ import annotations

import csv
import math
import os
import random
import threading
from types import TracebackType

from ..events import CallFailed, CallIgnored, CallSucceeded

__all__ = ["TraceRecorder"]

_OUTCOME_WORDS = {CallSucceeded: "success", CallFailed: "failure", CallIgnored: "ignored"}


class TraceRecorder:
    """Write every completed call a breaker (or a manager's breakers) makes as a trace row.

    ```python
    recorder = TraceRecorder("calls.csv", sample=0.1)
    manager.subscribe(recorder, *TraceRecorder.events)
    ...
    recorder.close()  # then: python -m circuitry simulate --trace calls.csv
    ```

    A row is `start` (the breaker's clock: monotonic seconds by default, so
    any origin), `duration`, `outcome` (`success`, `failure` or `ignored`)
    and `service` (the breaker's name), written as the call completes: rows
    come in completion order, and the simulator sorts them by start. Numbers
    are written exactly (shortest round-trip form), so the rows replay
    exactly as recorded. A rejected call did not run and has no outcome, so
    it is not written. A backpressured call (an HTTP 429 with `Retry-After`)
    is written as `ignored`, with no `retry_after`: its events do not say how
    long the dependency asked for, so the replay does not open for it.

    Thread-safe: each row is written under a lock, straight to the file's
    buffer; memory stays bounded however long it records.

    Args:
        path: the CSV file, created or truncated, its header written at once.
        sample: the fraction of calls written, each chosen at random
            (`0 < sample <= 1`).
        max_rows: stop writing after this many rows (None: no limit); calls
            after that are dropped, which `dropped` counts.

    Raises:
        ValueError: a bad `sample` or `max_rows`.
        OSError: the file cannot be opened.
    """

    events = (CallSucceeded, CallFailed, CallIgnored)
    """The event types the recorder writes: pass them to `subscribe` to hear only those."""

    def __init__(
        self, path: str | os.PathLike[str], *, sample: float = 1.0, max_rows: int | None = None
    ) -> None:
        if isinstance(sample, bool) or not isinstance(sample, (int, float)):
            raise TypeError(f"sample must be a number in (0, 1], got {sample!r}")
        if not (0 < sample <= 1):
            raise ValueError(f"sample must be a number in (0, 1], got {sample!r}")
        if max_rows is not None and (
            isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 0
        ):
            raise ValueError(f"max_rows must be an int >= 0 or None, got {max_rows!r}")
        self.path = os.fspath(path)
        self.sample = float(sample)
        self.max_rows = max_rows
        self.rows = 0
        """Rows written so far."""
        self.dropped = 0
        """Calls not written because `max_rows` was reached."""
        self._random = random.Random().random
        self._lock = threading.Lock()
        self._file = open(self.path, "w", encoding="utf-8", newline="")  # noqa: SIM115
        self._writer = csv.writer(self._file, lineterminator="\n")
        self._writer.writerow(("start", "duration", "outcome", "service"))
        self._closed = False

    def __call__(self, event: object) -> None:
        """Write `event` as a row if it is a completed call (other events are skipped)."""
        word = _OUTCOME_WORDS.get(type(event))
        if word is None:
            return
        assert isinstance(event, (CallSucceeded, CallFailed, CallIgnored))
        if self.sample < 1 and self._random() >= self.sample:
            return
        start = event.at - event.duration
        if not math.isfinite(start):  # pragma: no cover - a clock gives finite times
            return
        row = (repr(start), repr(event.duration), word, event.name)
        with self._lock:
            if self._closed:
                return
            if self.max_rows is not None and self.rows >= self.max_rows:
                self.dropped += 1
                return
            self._writer.writerow(row)
            self.rows += 1

    def close(self) -> None:
        """Flush and close the file; events after this are not written. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._file.close()

    def __enter__(self) -> TraceRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
