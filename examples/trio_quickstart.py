"""Tasks on trio calling a flaky service through one circuit breaker.

The same story as `async_quickstart.py`, on trio, with the state changes
reported by an `alert_handler`: the fake service fails for its first second,
the breaker trips (closed -> open), lets a trial through after half a second
(open -> half_open) and closes once two trials succeed (half_open -> closed).
Cancelling a call (here: a caller that gives up after 50 ms) is never counted
as a failure of the service.

Run: python examples/trio_quickstart.py   (about 2.5 seconds)
"""

from __future__ import annotations

import random
import time

import trio

from circuitry import Alert, CircuitBreaker, CircuitBreakerConfig, CircuitOpenError

START = time.monotonic()
rng = random.Random(2024)  # the same choices every run


def elapsed() -> str:
    return f"[{time.monotonic() - START:4.2f}s]"


class FlakyService:
    """In-process stand-in for a remote service: down for `broken_for` seconds, then up."""

    def __init__(self, broken_for: float) -> None:
        self.recovers_at = time.monotonic() + broken_for

    async def fetch(self, item: int) -> str:
        await trio.sleep(rng.uniform(0.002, 0.01))
        if time.monotonic() < self.recovers_at:
            raise ConnectionError("service unavailable")
        if rng.random() < 0.1:
            await trio.sleep(1)  # slow now and then: the impatient caller gives up
        return f"item {item}"


def on_alert(alert: Alert) -> None:
    print(f"{elapsed()} {alert.level.value.upper():8} {alert}")


service = FlakyService(broken_for=1.0)
breaker = CircuitBreaker(
    CircuitBreakerConfig()
    .with_failure_threshold(3)
    .with_reset_timeout(0.5)
    .with_success_threshold(2)
    .with_alert_handler(on_alert),
    name="inventory",
)


async def worker(worker_id: int, outcomes: dict[str, int]) -> None:
    deadline = time.monotonic() + 2.5
    item = 0
    while time.monotonic() < deadline:
        item += 1
        with trio.move_on_after(0.05) as patience:
            try:
                async with breaker:
                    await service.fetch(worker_id * 1000 + item)
                outcomes["ok"] += 1
            except CircuitOpenError:
                outcomes["rejected"] += 1  # failed fast: the service was not called
            except ConnectionError:
                outcomes["failed"] += 1
        if patience.cancelled_caught:
            outcomes["gave up"] += 1  # counted as ignored, not as a failure
        await trio.sleep(0.03)


async def main() -> None:
    outcomes = {"ok": 0, "failed": 0, "rejected": 0, "gave up": 0}
    async with trio.open_nursery() as nursery:
        for n in range(5):
            nursery.start_soon(worker, n, outcomes)

    m = breaker.metrics()
    print()
    print(f"callers saw: {outcomes}")
    print(
        f"breaker {m.name!r}: state={m.current_state.value} allowed={m.total_allowed} "
        f"rejected={m.total_rejected} failures={m.total_failures} ignored={m.total_ignored} "
        f"success rate={m.success_rate():.1f}% state changes={m.state_changes}"
    )


if __name__ == "__main__":
    trio.run(main)
