"""`call_timeout`'s deadline and an outside `Task.cancel()` falling due together (issue 10, 8).

The outside cancellation must win: the task is cancelled and the call counts
as ignored, never a TimeoutError counted as a failure. anyio can tell the two
apart only where asyncio counts cancellations (Python 3.11+); on 3.10 the
cancel scope swallows both, which docs/how-to/threads-and-async.md says.
"""

from __future__ import annotations

import asyncio
import sys

import anyio
import pytest

from circuitry import CircuitBreaker, CircuitBreakerConfig

known_on_310 = pytest.mark.xfail(
    sys.version_info < (3, 11),
    reason="asyncio on 3.10 does not count cancellations: the scope swallows both",
    strict=True,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Task.cancel() is asyncio's


@known_on_310
@pytest.mark.anyio
@pytest.mark.parametrize("how", ["call_async", "async_with"])
async def test_an_outside_cancel_at_the_deadline_cancels_the_task(how: str) -> None:
    breaker = CircuitBreaker(CircuitBreakerConfig(call_timeout=0.02))
    outcomes = []
    tasks: list[asyncio.Task[None]] = []
    for _ in range(10):
        tasks.clear()

        async def work() -> None:
            # Scheduled after the scope's own deadline timer, for the same instant.
            deadline = anyio.current_effective_deadline()
            asyncio.get_running_loop().call_at(deadline, tasks[0].cancel)
            await asyncio.sleep(1)

        async def call() -> None:
            if how == "call_async":
                await breaker.call_async(work)
            else:
                async with breaker:
                    await work()

        tasks.append(asyncio.ensure_future(call()))
        try:
            await tasks[0]
            outcomes.append("returned")
        except asyncio.CancelledError:
            outcomes.append("cancelled")
        except TimeoutError:
            outcomes.append("timeout")
    assert outcomes == ["cancelled"] * 10
    m = breaker.metrics()
    assert (m.total_failures, m.total_ignored) == (0, 10)
