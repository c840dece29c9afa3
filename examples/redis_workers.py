"""Four worker processes, one circuit: a breaker shared through Redis (circuitry.redis).

    python examples/redis_workers.py [--workers N] [--quick]

Needs redis-py (`pip install 'circuitry-breaker[redis]'`) and a `redis-server`
executable (Debian/Ubuntu: `apt-get install redis-server`). The example starts
its own server on a free loopback port, without persistence, in a temporary
directory, and stops it at the end (also on Ctrl-C or an error).

Each worker is a separate process with its own `RedisStore` and its own
`CircuitBreaker(config, name="payments", store=store)`, calling a payments
service that is down. Because the breakers share one circuit:

- the circuit opens once, cluster-wide, after `THRESHOLD` consecutive
  failures counted across all workers (the alert fires in one process only);
- every worker then rejects without calling the service, and sends Redis
  nothing while the open period it knows of lasts;
- the failures let through across all workers are about `THRESHOLD`, not
  workers x `THRESHOLD` as with one in-process breaker per worker;
- when the service is back, one trial (cluster-wide) closes the circuit for all.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from multiprocessing.synchronize import Barrier
from multiprocessing.synchronize import Event as Flag
from typing import Any

import redis

from circuitry import Alert, CircuitBreaker, CircuitBreakerConfig, CircuitOpenError
from circuitry.events import Event, StateChanged
from circuitry.redis import RedisStore

NAME = "payments"
NAMESPACE = "example"
THRESHOLD = 5  # consecutive failures, counted across every worker
CALL_SECONDS_DOWN = 0.02  # a failing call takes this long (a refused or timed-out request)
CALL_SECONDS_UP = 0.005
FALLBACK_SECONDS = 0.01  # what a rejected call costs the worker (serving a fallback)


class PaymentsDown(ConnectionError):
    """The fake payments service is down."""


# --- the redis-server -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on 127.0.0.1 (no RDB, no AOF); yields its URL, stops it after."""
    executable = shutil.which("redis-server")
    if executable is None:
        sys.exit(
            "redis-server not found: this example starts its own.\n"
            "Install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)."
        )
    with tempfile.TemporaryDirectory(prefix="circuitry-example-") as directory:
        port = free_port()
        process = subprocess.Popen(
            [
                executable,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                directory,
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C stops the workers first; the server is stopped last
        )
        try:
            url = f"redis://127.0.0.1:{port}/0"
            client = redis.Redis.from_url(url, socket_timeout=1.0)
            deadline = time.monotonic() + 10
            while True:
                try:
                    version = client.info("server")["redis_version"]
                    break
                except redis.ConnectionError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        sys.exit(f"redis-server did not start on port {port}")
                    time.sleep(0.02)
            client.close()
            print(f"redis-server {version} on 127.0.0.1:{port} (no persistence)")
            yield url
        finally:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --- one worker process ---------------------------------------------------------------


def worker(
    number: int,
    url: str,
    reset_timeout: float,
    start: Barrier,
    service_up: Flag,
    stop: Flag,
    results: multiprocessing.Queue[dict[str, Any]],
) -> None:
    try:
        results.put(run_worker(number, url, reset_timeout, start, service_up, stop))
    except KeyboardInterrupt:
        pass  # Ctrl-C reaches every process; the parent reports and cleans up
    except Exception:
        start.abort()  # the parent stops waiting for this worker
        results.put({"worker": number, "error": traceback.format_exc()})


def run_worker(
    number: int,
    url: str,
    reset_timeout: float,
    start: Barrier,
    service_up: Flag,
    stop: Flag,
) -> dict[str, Any]:
    t0 = time.monotonic()
    alerts: list[str] = []
    states_seen: list[str] = ["closed"]
    service_calls = 0

    def say(text: str) -> None:
        # One write per line: the workers share the terminal.
        sys.stdout.write(f"  {time.monotonic() - t0:5.2f} s  worker {number}: {text}\n")
        sys.stdout.flush()

    def on_alert(alert: Alert) -> None:  # only in the process that made the transition
        alerts.append(alert.new_state.value)
        say(f"alert: {alert}")

    def on_state_changed(event: Event) -> None:  # in every process that observes it
        if isinstance(event, StateChanged):
            states_seen.append(event.new_state.value)
            say(f"sees {event.old_state.value} -> {event.new_state.value}")

    def charge() -> str:
        nonlocal service_calls
        service_calls += 1
        if not service_up.is_set():
            time.sleep(CALL_SECONDS_DOWN)
            raise PaymentsDown("payments: connection refused")
        time.sleep(CALL_SECONDS_UP)
        return "receipt"

    config = CircuitBreakerConfig(
        failure_threshold_count=THRESHOLD, reset_timeout=reset_timeout, alert_handler=on_alert
    )
    store = RedisStore.from_url(url, namespace=NAMESPACE)
    breaker = CircuitBreaker(config, name=NAME, store=store)
    breaker.subscribe(on_state_changed, StateChanged)

    start.wait()
    t0 = time.monotonic()
    while not stop.is_set():
        try:
            breaker.call(charge)
        except PaymentsDown:
            pass  # a real worker would answer its request with an error here
        except CircuitOpenError:
            time.sleep(FALLBACK_SECONDS)  # ... or a fallback, without waiting on payments

    metrics = breaker.metrics()
    store.close()
    return {
        "worker": number,
        "admitted": metrics.total_allowed,
        "failed": metrics.total_failures,
        "succeeded": metrics.total_successes,
        "rejected": metrics.total_rejected,
        "service_calls": service_calls,
        "alerts": alerts,
        "states_seen": states_seen,
        "final_state": metrics.current_state.value,
    }


# --- the parent ---------------------------------------------------------------------------


def script_commands(client: redis.Redis) -> int:
    """Commands the workers sent so far (INFO commandstats, the parent's own INFO left out)."""
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def wait_for_state(store: RedisStore, state: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while store.snapshot(NAME)["state"] != state:
        if time.monotonic() > deadline:
            raise SystemExit(f"the circuit did not become {state} within {timeout} s")
        time.sleep(0.01)
    return time.monotonic()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workers", type=int, default=4, help="worker processes (default 4)")
    parser.add_argument("--quick", action="store_true", help="a 1 s open period instead of 5 s")
    args = parser.parse_args(argv)
    workers = max(1, args.workers)
    reset_timeout = 1.0 if args.quick else 5.0

    # spawn: each worker starts from scratch (no state inherited by fork), as separate pods do.
    context = multiprocessing.get_context("spawn")
    with redis_server() as url:
        print(
            f"{workers} worker processes, one circuit {NAME!r}: opens after {THRESHOLD} "
            f"consecutive failures (all workers together), open for {reset_timeout:g} s"
        )
        start = context.Barrier(workers + 1)
        service_up = context.Event()
        stop = context.Event()
        results: multiprocessing.Queue[dict[str, Any]] = context.Queue()
        processes = [
            context.Process(
                target=worker,
                args=(n, url, reset_timeout, start, service_up, stop, results),
                name=f"worker-{n}",
            )
            for n in range(1, workers + 1)
        ]
        store = RedisStore.from_url(url, namespace=NAMESPACE)
        stats_client = redis.Redis.from_url(url, socket_timeout=1.0)
        try:
            for process in processes:
                process.start()
            try:
                start.wait(timeout=60)  # every worker has its store and breaker
            except threading.BrokenBarrierError:
                return report_errors(results)
            t0 = time.monotonic()
            print(f"  {0:5.2f} s  payments is down; every worker calls it")

            opened = wait_for_state(store, "open", timeout=10)
            # Give each worker's call in flight time to finish: its record learns OPEN.
            time.sleep(0.2)
            quiet_from = time.monotonic()
            before = script_commands(stats_client)
            time.sleep(0.6 * reset_timeout - 0.2)
            quiet_commands = script_commands(stats_client) - before
            quiet_to = time.monotonic()

            service_up.set()
            print(f"  {time.monotonic() - t0:5.2f} s  payments is back up")
            wait_for_state(store, "closed", timeout=reset_timeout + 10)
            time.sleep(0.3)  # every worker's next round trip learns CLOSED
            stop.set()

            reports = [results.get(timeout=30) for _ in processes]
            for process in processes:
                process.join(10)
            shared = store.snapshot(NAME)
        finally:
            stop.set()
            service_up.set()
            for process in processes:
                if process.is_alive():
                    process.terminate()
                    process.join(5)
            stats_client.close()
            store.close()

    if any("error" in r for r in reports):
        return report_errors(results, reports)
    print_report(
        sorted(reports, key=lambda r: r["worker"]),
        quiet=(quiet_from - opened, quiet_to - quiet_from, quiet_commands),
        shared=shared,
    )
    return 0


def report_errors(
    results: multiprocessing.Queue[dict[str, Any]], reports: list[dict[str, Any]] | None = None
) -> int:
    """Print what went wrong in the workers; the exit status."""
    if reports is None:
        reports = []
        with contextlib.suppress(queue.Empty):
            while True:
                reports.append(results.get(timeout=2))
    for report in reports:
        if "error" in report:
            print(f"worker {report['worker']} failed:\n{report['error']}", file=sys.stderr)
    print("a worker failed; the server and the workers are stopped", file=sys.stderr)
    return 1


def print_report(
    reports: list[dict[str, Any]], quiet: tuple[float, float, int], shared: dict[str, Any]
) -> None:
    print()
    header = ("worker", "admitted", "failed", "succeeded", "rejected", "service calls")
    keys = ("worker", "admitted", "failed", "succeeded", "rejected", "service_calls")

    def line(values: tuple[object, ...], last: str = "") -> str:
        return "  ".join(f"{v:>{len(h)}}" for v, h in zip(values, header, strict=True)) + last

    print(line(header, "  states seen"))
    for r in reports:
        print(line(tuple(r[k] for k in keys), "  " + " -> ".join(r["states_seen"])))
    totals = [sum(r[k] for r in reports) for k in keys[1:]]
    print(line(("total", *totals)))
    print()

    workers = len(reports)
    failed = totals[1]
    print(
        f"failures let through, all workers: {failed} (threshold {THRESHOLD}; with one "
        f"in-process breaker per worker: {workers} x {THRESHOLD} = {workers * THRESHOLD})"
    )
    alerts = [f"{state} (worker {r['worker']})" for r in reports for state in r["alerts"]]
    print(f"alerts, all workers: {len(alerts)}: " + ", ".join(alerts))
    since, length, commands = quiet
    print(
        f"Redis commands while every worker knew it was open "
        f"({length:.1f} s, from {since:.1f} s after it opened): {commands}"
    )
    print("final state: " + ", ".join(f"worker {r['worker']} {r['final_state']}" for r in reports))
    print(
        f"shared state (store.snapshot): {shared['state']}, "
        f"{shared['trials_in_flight']} trials in flight"
    )


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)  # the server and the workers are stopped by then
