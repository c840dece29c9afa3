"""Compare adaptive throttling with go-zero's and kratos' SRE breakers on the simulator's scenarios.

    PYTHONPATH=. python benchmarks/throttle_compare.py

For the `outage` and `brownout` scenarios, each contender replays the same
calls (admitted or rejected at `start`, outcome known at `start + duration`)
and reports: calls sent to the dependency while it was unwell, failed calls
sent (at any time), healthy calls rejected (calls that would have
succeeded), "wasted" (failed calls sent + healthy calls rejected: every call
the breaker decided wrongly), and seconds from the end of the unwell period
until no call is rejected for 10 s ("recover").

The two Go ports are a few lines each, following their sources, read at the
commits named (not vendored):
- go-zero, core/breaker/googlebreaker.go at 03fca6b9e77b1a35da4ae6ff5f431a3427f79cef
  (https://github.com/zeromicro/go-zero/blob/03fca6b9e77b1a35da4ae6ff5f431a3427f79cef/core/breaker/googlebreaker.go):
  10 s window (40 buckets of 250 ms there), k = 1.5, protection = 5; drop ratio
  `(total - protection - k * accepts) / (total + 1)`; counted when a call
  ends (success or failure), and a dropped call is marked as a failure by
  `doReq`'s caller path (`markFailure` on rejection, as its Allow/Promise users do).
- kratos, aegis circuitbreaker/sre/sre.go at 37a53fd52e762c347095038d6ee17b83b2898280
  (https://github.com/go-kratos/aegis/blob/37a53fd52e762c347095038d6ee17b83b2898280/circuitbreaker/sre/sre.go):
  3 s window (10 buckets there), k = 1 / success (success = 0.6), request = 100; no drops
  while `total < request` or `total < k * success`; drop ratio
  `max(0, (total - k * success) / (total + 1))`; the middleware
  (kratos/middleware/circuitbreaker) calls `MarkFailed()` on a rejection
  ("when client reject request locally, continue to add counter let the drop
  ratio higher", says `MarkFailed`'s comment).
The ports keep exact sliding windows where the Go code keeps buckets.
Neither counts a call in flight, and neither caps the drop ratio.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable, Sequence

from circuitry import AdaptiveThrottle, ServicePresets
from circuitry.simulation import Call, scenario, simulate

QUIET = 10.0  # seconds without a rejection that count as recovered


class _Counts:
    """A sliding window of (time, success) marks, as both Go breakers keep (bucketed there)."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.marks: deque[tuple[float, bool]] = deque()

    def add(self, now: float, success: bool) -> None:
        self.marks.append((now, success))

    def summary(self, now: float) -> tuple[int, int]:
        marks = self.marks
        while marks and marks[0][0] <= now - self.window:
            marks.popleft()
        return sum(1 for _, ok in marks if ok), len(marks)


def go_zero(
    rng: Callable[[], float],
) -> tuple[Callable[[float], bool], Callable[[float, bool], None]]:
    counts = _Counts(10.0)
    k, protection = 1.5, 5

    def allow(now: float) -> bool:
        accepts, total = counts.summary(now)
        drop = (total - protection - k * accepts) / (total + 1)
        if drop > 0 and rng() < drop:
            counts.add(now, False)  # a rejection marked as a failure
            return False
        return True

    return allow, counts.add


def kratos(
    rng: Callable[[], float],
) -> tuple[Callable[[float], bool], Callable[[float, bool], None]]:
    counts = _Counts(3.0)
    k, request = 1 / 0.6, 100

    def allow(now: float) -> bool:
        success, total = counts.summary(now)
        ks = k * success
        if total < request or total < ks:
            return True
        drop = max(0.0, (total - ks) / (total + 1))
        if rng() < drop:
            counts.add(now, False)  # the middleware's MarkFailed() on a rejection
            return False
        return True

    return allow, counts.add


def replay_go(
    calls: Sequence[Call],
    make: Callable[..., tuple[Callable[[float], bool], Callable[[float, bool], None]]],
) -> list[tuple[float, bool]]:
    """(start, admitted) per call, for a Go-style breaker marking outcomes when calls end."""
    allow, mark = make(random.Random(0).random)
    ends: list[tuple[float, int, bool]] = []
    decisions = []
    for index, call in enumerate(calls):
        while ends and ends[0][0] <= call.start:
            end, _, ok = heapq.heappop(ends)
            mark(end, ok)
        admitted = allow(call.start)
        decisions.append((call.start, admitted))
        if admitted:
            heapq.heappush(ends, (call.start + call.duration, index, call.outcome == "success"))
    return decisions


def report(
    calls: Sequence[Call],
    decisions: Sequence[tuple[float, bool]],
    unwell: Sequence[tuple[float, float]],
) -> tuple[int, int, int, float | None]:
    def bad(t: float) -> bool:
        return any(a <= t < b for a, b in unwell)

    sent_bad = sum(1 for (t, ok) in decisions if ok and bad(t))
    failed_sent = sum(
        1
        for call, (_, ok) in zip(calls, decisions, strict=True)
        if ok and call.outcome == "failure"
    )
    healthy_rejected = sum(
        1
        for call, (_, ok) in zip(calls, decisions, strict=True)
        if not ok and call.outcome == "success"
    )
    healed = max(b for _, b in unwell)
    rejections = [t for t, ok in decisions if not ok and t >= healed]
    last = healed
    for t in rejections:
        if t - last >= QUIET:
            break
        last = t
    recover = (
        None
        if rejections and rejections[-1] - last < QUIET and calls[-1].start - last < QUIET
        else last - healed
    )
    return sent_bad, failed_sent, healthy_rejected, recover


Row = tuple[str, str, int, int, int, "float | None"]
"""(scenario, contender, sent while unwell, failed sent, healthy rejected, recover s or None)."""


def table() -> list[Row]:
    """Every contender on `outage` and `brownout` (docs/configuration.md quotes it; a test checks)."""
    preset = ServicePresets.http_api()
    configs = {
        "http_api preset": preset,
        "http_api + adaptive_throttle": preset.evolve(adaptive_throttle=AdaptiveThrottle()),
        # go-zero's k and window, our arrival counting and cap:
        "http_api + throttle k=1.5 10 s": preset.evolve(
            adaptive_throttle=AdaptiveThrottle(k=1.5, window=10.0, min_requests=5)
        ),
    }
    out: list[Row] = []
    for name in ("outage", "brownout"):
        sc = scenario(name)
        calls = sorted(sc.calls, key=lambda c: c.start)
        reports = simulate(calls, configs, sc.unhealthy, record_rejections=True)
        rows: dict[str, list[tuple[float, bool]]] = {}
        for label, r in reports.items():
            rejected = set(r.rejection_times)
            rows[label] = [(c.start, c.start not in rejected) for c in calls]
        rows["go-zero (k=1.5, 10 s)"] = replay_go(calls, go_zero)
        rows["kratos (k=1/0.6, 3 s)"] = replay_go(calls, kratos)
        for label, decisions in rows.items():
            out.append((name, label, *report(calls, decisions, sc.unhealthy)))
    return out


def main() -> None:
    print(
        f"{'scenario':9} {'contender':31} {'sent while unwell':>17} {'failed sent':>11} "
        f"{'healthy rejected':>16} {'wasted':>6} {'recover s':>9}"
    )
    for name, label, sent, failed, rejected, recover in table():
        shown = "never" if recover is None else f"{recover:.1f}"
        print(
            f"{name:9} {label:31} {sent:17d} {failed:11d} {rejected:16d} "
            f"{failed + rejected:6d} {shown:>9}"
        )


if __name__ == "__main__":
    main()
