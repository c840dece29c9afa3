"""Tasks on asyncio calling a flaky service through one circuit breaker.

The fake service below fails for its first second, then recovers. Watch the
breaker trip (closed -> open), wait half a second, let a trial through
(open -> half_open), reopen while the service is still down, and close again
once two trials succeed (half_open -> closed). Meanwhile callers fail fast
with `CircuitOpenError` instead of waiting on a broken dependency, and a call
that hangs is cut off by `call_timeout`.

Run: python examples/async_quickstart.py   (about 2.5 seconds)
"""

from __future__ import annotations

import asyncio
import random
import time

from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError
from circuitry.events import Event, StateChanged

START = time.monotonic()
rng = random.Random(2024)  # the same choices every run


def elapsed() -> str:
    return f"[{time.monotonic() - START:4.2f}s]"


class FlakyService:
    """In-process stand-in for a remote service: down for `broken_for` seconds, then up."""

    def __init__(self, broken_for: float) -> None:
        self.recovers_at = time.monotonic() + broken_for

    async def fetch(self, item: int) -> str:
        if rng.random() < 0.03:
            await asyncio.sleep(10)  # hangs now and then: call_timeout cuts it off
        if time.monotonic() < self.recovers_at:
            await asyncio.sleep(rng.uniform(0.002, 0.01))
            raise ConnectionError("service unavailable")
        await asyncio.sleep(rng.uniform(0.002, 0.01))
        return f"item {item}"


service = FlakyService(broken_for=1.0)
breaker = CircuitBreaker(
    CircuitBreakerConfig(
        failure_threshold_count=3,
        reset_timeout=0.5,
        success_threshold_count=2,
        call_timeout=0.1,  # a hanging call fails after 100 ms
    ),
    name="inventory",
)


def show_state_changes(event: Event) -> None:
    if isinstance(event, StateChanged):
        print(f"{elapsed()} {event.name}: {event.old_state.value} -> {event.new_state.value}")


@breaker
async def fetch_item(item: int) -> str:
    return await service.fetch(item)


async def worker(worker_id: int, outcomes: dict[str, int]) -> None:
    deadline = time.monotonic() + 2.5
    item = 0
    while time.monotonic() < deadline:
        item += 1
        try:
            await fetch_item(worker_id * 1000 + item)
            outcomes["ok"] += 1
        except CircuitOpenError:
            outcomes["rejected"] += 1  # failed fast: the service was not called
        except ConnectionError:
            outcomes["failed"] += 1
        except TimeoutError:
            outcomes["timed out"] += 1
        await asyncio.sleep(0.03)


async def main() -> None:
    unsubscribe = breaker.subscribe(show_state_changes)
    outcomes = {"ok": 0, "failed": 0, "timed out": 0, "rejected": 0}
    await asyncio.gather(*(worker(n, outcomes) for n in range(5)))
    unsubscribe()

    m = breaker.metrics()
    print()
    print(f"callers saw: {outcomes}")
    print(
        f"breaker {m.name!r}: state={m.current_state.value} allowed={m.total_allowed} "
        f"rejected={m.total_rejected} failures={m.total_failures} "
        f"success rate={m.success_rate():.1f}% state changes={m.state_changes}"
    )


if __name__ == "__main__":
    asyncio.run(main())
