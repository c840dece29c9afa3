"""examples/redis_workers.py run as a script: worker processes sharing one circuit through Redis.

The example starts its own redis-server (on a free loopback port, no persistence) and
its own worker processes; this test runs it with `--quick` and checks what it prints.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "redis_workers.py"
WORKERS = 3
THRESHOLD = 5  # the example's THRESHOLD
ROW = re.compile(
    r"^\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(closed( -> \w+)*)$", re.MULTILINE
)


@pytest.fixture(scope="module")
def output() -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--quick", "--workers", str(WORKERS)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    return done.stdout


class Row(NamedTuple):
    worker: int
    admitted: int
    failed: int
    succeeded: int
    rejected: int
    service_calls: int
    states: list[str]


def rows(output: str) -> list[Row]:
    """The report's table, one row per worker."""
    found = []
    for match in ROW.finditer(output):
        worker, admitted, failed, succeeded, rejected, service_calls = map(int, match.groups()[:6])
        states = match.group(7).split(" -> ")
        found.append(Row(worker, admitted, failed, succeeded, rejected, service_calls, states))
    return found


def test_one_row_per_worker_and_no_call_while_rejected(output: str) -> None:
    table = rows(output)
    assert [r.worker for r in table] == list(range(1, WORKERS + 1))
    for r in table:
        # The service is called exactly for the admitted calls: a rejection never reaches it.
        assert r.service_calls == r.admitted
        assert r.admitted == r.failed + r.succeeded


def test_every_worker_sees_the_circuit_open_and_rejects(output: str) -> None:
    for r in rows(output):
        assert "open" in r.states, r
        assert r.rejected > 0, r


def test_failures_let_through_are_about_the_threshold_not_workers_times_it(output: str) -> None:
    failed = sum(r.failed for r in rows(output))
    # THRESHOLD consecutive failures trip it; each other worker may have one call in flight
    # then, which it records before it learns the circuit opened.
    assert THRESHOLD <= failed <= THRESHOLD + WORKERS - 1
    assert f"failures let through, all workers: {failed} (threshold {THRESHOLD};" in output


def test_each_transition_alerts_in_one_process_only(output: str) -> None:
    line = re.search(r"^alerts, all workers: (\d+): (.*)$", output, re.MULTILINE)
    assert line is not None, output
    alerts = line.group(2).split(", ")
    assert sorted(a.split(" ")[0] for a in alerts) == ["closed", "half_open", "open"]
    assert int(line.group(1)) == 3
    # The live log: one alert line per transition, while every worker logs the state change.
    assert len(re.findall(r"worker \d+: alert: circuit 'payments' closed -> open", output)) == 1
    assert len(re.findall(r"worker \d+: sees closed -> open", output)) == WORKERS


def test_no_redis_command_while_every_worker_knows_it_is_open(output: str) -> None:
    line = re.search(
        r"^Redis commands while every worker knew it was open .*: (\d+)$", output, re.MULTILINE
    )
    assert line is not None, output
    assert int(line.group(1)) == 0


def test_once_the_service_is_back_every_worker_ends_closed(output: str) -> None:
    table = rows(output)
    assert sum(r.succeeded for r in table) > 0
    for r in table:
        assert r.states[-1] == "closed", r
    assert "final state: " + ", ".join(f"worker {n} closed" for n in range(1, WORKERS + 1)) in (
        output
    )
    assert "shared state (store.snapshot): closed, 0 trials in flight" in output
