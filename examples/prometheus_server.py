"""Serve circuit-breaker metrics to Prometheus from prometheus_client's own HTTP server.

    pip install 'circuitry-breaker[prometheus]'
    python examples/prometheus_server.py [--port 8000] [--seconds 60] [--late-after 30]
    curl -s http://127.0.0.1:8000/metrics | grep circuitry_

Two services are called through one CircuitBreakerManager while the server
runs: "search" always answers, "payments" fails about half its calls, so its
breaker opens, goes HALF_OPEN after its 2 s reset timeout, and so on. The
collector reads the breakers when Prometheus scrapes (nothing is done on the
call path), and covers breakers the manager creates after it was registered
("recommendations" starts being called after `--late-after` seconds). The server listens
on loopback only; `--port 0` picks a free port. It stops after `--seconds`.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import time

from prometheus_client import REGISTRY, start_http_server

from circuitry import CircuitBreakerConfig, CircuitBreakerManager, CircuitOpenError
from circuitry.prometheus import CircuitBreakerCollector


class PaymentDeclined(Exception):
    """The payments service answered with an error."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--seconds", type=float, default=60.0, help="stop after this long")
    parser.add_argument(
        "--late-after", type=float, default=30.0, help="call a third service from then on"
    )
    args = parser.parse_args(argv)

    config = (
        CircuitBreakerConfig()
        .with_failure_window(10)
        .with_failure_percentage(40)
        .with_failure_threshold(None)
        .with_minimum_calls(10)
        .with_reset_timeout(2)
    )
    manager = CircuitBreakerManager(config)
    REGISTRY.register(CircuitBreakerCollector(manager))
    server, _ = start_http_server(args.port, addr="127.0.0.1")
    print(f"serving http://127.0.0.1:{server.server_port}/metrics", flush=True)

    rng = random.Random(1)  # seeded: the same traffic every run

    def payments() -> str:
        time.sleep(rng.uniform(0.001, 0.02))
        if rng.random() < 0.5:
            raise PaymentDeclined("503 from payments")
        return "charged"

    def search() -> list[str]:
        time.sleep(rng.uniform(0.001, 0.005))
        return ["result"]

    start = time.monotonic()
    try:
        while (elapsed := time.monotonic() - start) < args.seconds:
            services = [("search", search), ("payments", payments)]
            if elapsed >= args.late_after:
                services.append(("recommendations", search))
            for name, fn in services:
                # A real caller would fall back here.
                with contextlib.suppress(PaymentDeclined, CircuitOpenError):
                    manager.call(name, fn)
            time.sleep(0.01)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
