"""Memory of a CircuitBreakerManager with many idle services, measured with tracemalloc.

    python benchmarks/manager_memory.py [services]

Creates `services` (default 100,000) breakers with `manager.breaker(f"svc-{i}")`
and prints the bytes per idle breaker, the total, and where the memory went
(by source line). The name strings are counted: the manager keeps them.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc

from circuitry import CircuitBreakerConfig, CircuitBreakerManager


def measure(
    services: int, config: CircuitBreakerConfig | None = None
) -> list[tracemalloc.StatisticDiff]:
    """Create `services` breakers; print their cost; return the allocations they made."""
    manager = CircuitBreakerManager(config)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    base, _ = tracemalloc.get_traced_memory()
    for i in range(services):
        manager.breaker(f"svc-{i}")
    gc.collect()
    used, peak = tracemalloc.get_traced_memory()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    total = used - base
    assert len(manager) == services
    label = "default config" if config is None else "windowed config"
    print(f"{label}: {services:,} idle breakers")
    print(f"  total:       {total:,} bytes ({total / 2**20:.1f} MiB), peak {peak - base:,}")
    print(f"  per breaker: {total / services:,.0f} bytes")
    return after.compare_to(before, "lineno")


def main() -> None:
    services = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    stats = measure(services)
    print("  where it goes (bytes per breaker, by source line):")
    for stat in stats[:10]:
        frame = stat.traceback[0]
        print(f"    {stat.size_diff / services:7.0f}  {frame.filename}:{frame.lineno}")
    print()
    # A time-based window adds its bucket arrays.
    measure(services, CircuitBreakerConfig(failure_window=60, failure_threshold_percentage=50))


if __name__ == "__main__":
    main()
