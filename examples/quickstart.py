"""Threads calling a flaky service through one circuit breaker.

The service fails for its first couple of seconds, then recovers. Watch the
breaker trip (CLOSED -> OPEN), wait, probe (HALF_OPEN) and close again, while
callers fail fast instead of piling up on a broken dependency.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import random
import threading
import time

from circuitry import Alert, CircuitBreaker, CircuitBreakerConfig, CircuitOpenError


class FlakyService:
    """Fails every call until `recovers_at`, then answers after a few milliseconds."""

    def __init__(self, broken_for: float) -> None:
        self.recovers_at = time.monotonic() + broken_for

    def fetch(self, item: int) -> str:
        time.sleep(random.uniform(0.002, 0.01))
        if time.monotonic() < self.recovers_at:
            raise ConnectionError("service unavailable")
        return f"item {item}"


START = time.monotonic()


def on_alert(alert: Alert) -> None:
    print(f"[{time.monotonic() - START:5.2f}s] {alert.level.value.upper():8} {alert}")


def main() -> None:
    service = FlakyService(broken_for=1.5)
    breaker = CircuitBreaker(
        CircuitBreakerConfig()
        .with_failure_threshold(5)
        .with_reset_timeout(0.5)
        .with_success_threshold(3)
        .with_alert_handler(on_alert),
        name="inventory",
    )
    outcomes = {"ok": 0, "failed": 0, "rejected": 0}
    lock = threading.Lock()

    def worker(worker_id: int) -> None:
        for i in range(60):
            try:
                with breaker:
                    service.fetch(worker_id * 1000 + i)
                outcome = "ok"
            except CircuitOpenError:
                outcome = "rejected"  # failed fast: the service was not called
            except ConnectionError:
                outcome = "failed"
            with lock:
                outcomes[outcome] += 1
            time.sleep(0.04)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    m = breaker.metrics()
    print()
    print(f"callers saw: {outcomes}")
    print(
        f"breaker {m.name!r}: state={m.current_state.value} allowed={m.total_allowed} "
        f"rejected={m.total_rejected} failures={m.total_failures} "
        f"success rate={m.success_rate():.1f}% p95={m.p95_response_time * 1000:.1f} ms "
        f"state changes={m.state_changes}"
    )


if __name__ == "__main__":
    main()
