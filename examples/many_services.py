"""A web-search tool that calls three services through one CircuitBreakerManager.

    python examples/many_services.py

- "web-index" is healthy: it answers every query.
- "spell-check" is flaky: most calls fail, so its breaker (the high-volume
  preset: 50 % of at least 20 calls) opens and the tool stops asking it.
- "thumbnails" is slow: every call takes 30 ms, over its 20 ms slow-call
  limit, so its breaker opens once half of 5 calls were slow.

When a service's breaker is open the tool degrades (no spelling suggestion, no
thumbnails) instead of waiting on it. At the end it prints the health table.
No network; runs in well under a second on asyncio (pass "trio" to use trio).
"""

from __future__ import annotations

import random
import sys

import anyio

from circuitry import (
    Alert,
    CircuitBreakerManager,
    CircuitOpenError,
    ServicePresets,
)


class ServiceError(Exception):
    """A service answered with an error."""


_rng = random.Random(7)  # seeded: the same run every time


async def web_index(query: str) -> list[str]:
    await anyio.sleep(0.001)
    return [f"https://example.org/{query.replace(' ', '-')}/{n}" for n in range(3)]


async def spell_check(query: str) -> str:
    await anyio.sleep(0.001)
    if _rng.random() < 0.6:
        raise ServiceError("spell-check: 503 Service Unavailable")
    return query.replace("pyhton", "python")


async def thumbnails(urls: list[str]) -> list[str]:
    await anyio.sleep(0.03)
    return [url + ".png" for url in urls]


def log_alert(alert: Alert) -> None:
    print(f"  [alert {alert.level.value}] {alert}")


manager = CircuitBreakerManager(ServicePresets.http_api().with_alert_handler(log_alert))
# A service's own config replaces the default whole, alert handler included.
manager.configure_service("spell-check", ServicePresets.high_volume().with_alert_handler(log_alert))
manager.configure_service(
    "thumbnails",
    ServicePresets.http_api()
    .with_failure_window(10)
    .with_minimum_calls(5)
    .with_slow_calls(0.02, 50)
    .with_alert_handler(log_alert),
)


async def search(query: str) -> dict[str, object]:
    """One search: results are required, the suggestion and thumbnails are optional."""
    results = await manager.call_async("web-index", web_index, query)
    try:
        suggestion: str | None = await manager.call_async("spell-check", spell_check, query)
    except (CircuitOpenError, ServiceError):
        suggestion = None
    try:
        images: list[str] = await manager.call_async("thumbnails", thumbnails, results)
    except CircuitOpenError:
        images = []
    return {"query": query, "results": results, "suggestion": suggestion, "images": images}


def print_health_table() -> None:
    header = f"{'service':<12} {'state':<10} {'allowed':>7} {'rejected':>8} {'failures':>8}"
    print(f"{header} {'slow':>5} {'success':>8} {'p95':>8}")
    for name, m in manager.metrics().items():
        p95 = "-" if m.p95_response_time is None else f"{m.p95_response_time * 1000:.1f}ms"
        print(
            f"{name:<12} {m.current_state.value:<10} {m.total_allowed:>7} "
            f"{m.total_rejected:>8} {m.total_failures:>8} {m.total_slow:>5} "
            f"{m.success_rate():>7.1f}% {p95:>8}"
        )
    print(f"overall health: {manager.health().value}")


async def main() -> None:
    topics = ["pyhton circuit breaker", "trio nurseries", "asyncio cancel", "anyio"]
    without_suggestion = without_images = 0
    for n in range(60):
        answer = await search(topics[n % len(topics)])
        without_suggestion += answer["suggestion"] is None
        without_images += not answer["images"]
    print(
        f"60 searches: {without_suggestion} without a spelling suggestion, "
        f"{without_images} without thumbnails"
    )
    print()
    print_health_table()


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
