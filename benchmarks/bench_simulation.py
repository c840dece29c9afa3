"""Simulated calls per second, per config, on a 1,000,000-call trace.

    .venv/bin/python benchmarks/bench_simulation.py [--calls N] [--repeats R] [--csv]
    .venv/bin/python benchmarks/bench_simulation.py --tune    # `tune`: configs per second

The trace: about 100 calls per second with overlapping latencies, 0.5 %
failures while healthy and an outage (every call fails) of two minutes in
every twenty, so each config trips, rejects, probes and recovers many times.
Each preset replays it alone (`simulate_rows` on prebuilt rows, the best of R
runs, GC on as in real use); then all four in one pass. `--csv` also times the
whole command line on the trace written as a CSV file (read twice: a check
pass and the replay).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import sys
import tempfile
import time

from circuitry import ServicePresets
from circuitry._classify import FAILURE, SUCCESS
from circuitry.simulation import simulate_rows

PRESETS = ["http_api", "database", "critical_service", "high_volume"]


def make_rows(n: int, seed: int = 0) -> list[tuple[float, float, object, None]]:
    rng = random.Random(seed)
    rows = []
    t = 0.0
    for _ in range(n):
        t += rng.expovariate(100.0)
        down = (t % 1200.0) >= 1080.0
        if down:
            rows.append((t, 1.0, FAILURE, None))
        else:
            outcome = FAILURE if rng.random() < 0.005 else SUCCESS
            rows.append((t, 0.05 * rng.lognormvariate(0.0, 0.5), outcome, None))
    return rows


def best_of(repeats: int, fn: object) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--csv", action="store_true", help="also time the CLI on a CSV trace")
    parser.add_argument(
        "--tune",
        action="store_true",
        help="only time `tune`: configs per second on a 100,000-call trace (the first 100,000 "
        "calls of the trace), in one process and in worker processes",
    )
    args = parser.parse_args()
    if args.tune:
        bench_tune(args.repeats)
        return

    rows = make_rows(args.calls)
    span = rows[-1][0] - rows[0][0]
    print(
        f"Python {sys.version.split()[0]}, {args.calls:,} calls over {span / 3600:.1f} h, "
        f"best of {args.repeats}"
    )
    print(f"{'config':<18} {'seconds':>8} {'calls/s':>12} {'transitions':>12} {'rejected':>9}")
    for name in PRESETS:
        config = getattr(ServicePresets, name)()
        seconds = best_of(args.repeats, lambda c=config: simulate_rows(rows, {"x": c}))
        report = simulate_rows(rows, {"x": config})["x"]
        print(
            f"{name:<18} {seconds:8.2f} {args.calls / seconds:12,.0f} "
            f"{report.state_changes:12,} {report.rejected:9,}"
        )
    configs = {name: getattr(ServicePresets, name)() for name in PRESETS}
    seconds = best_of(args.repeats, lambda: simulate_rows(rows, configs))
    print(
        f"{'all four, 1 pass':<18} {seconds:8.2f} {args.calls * len(configs) / seconds:12,.0f}"
        "  (config-calls/s)"
    )

    if args.csv:
        from circuitry.__main__ import main as cli

        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "trace.csv")
            with open(path, "w") as file:
                file.write("start,duration,outcome\n")
                for start, duration, outcome, _ in rows:
                    file.write(f"{start:.6f},{duration:.6f},{outcome.value}\n")  # type: ignore[attr-defined]
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                status = cli(["simulate", "--trace", path])
            seconds = time.perf_counter() - start
            print(f"CLI, CSV trace, four presets: {seconds:.2f} s (exit {status})")


def bench_tune(repeats: int, calls: int = 100_000, budget: int = 40) -> None:
    """`tune` on 100,000 calls: configs evaluated per second, jobs=1 and jobs=CPUs."""
    from circuitry.simulation import tune

    rows = make_rows(calls)
    base = ServicePresets.http_api()
    cpus = os.cpu_count() or 1
    print(
        f"Python {sys.version.split()[0]}, tune on {calls:,} calls, budget {budget}, best of {repeats}"
    )
    for jobs in sorted({1, cpus}):
        seconds = best_of(repeats, lambda j=jobs: tune(rows, base, budget=budget, jobs=j))
        print(f"jobs={jobs}: {seconds:6.2f} s, {budget / seconds:5.1f} configs/s")


if __name__ == "__main__":
    main()
