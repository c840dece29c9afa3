"""`TraceRecorder`: live calls written as a trace that replays through the simulator."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import pytest
from helpers import Boom, make

from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitBreakerManager, CircuitOpenError
from circuitry._classify import FAILURE, IGNORED, SUCCESS
from circuitry.events import Event, StateChanged
from circuitry.simulation import TraceRecorder, simulate_rows
from circuitry.simulation._trace import Trace
from circuitry.testing import FakeClock


def raise_after(clock: FakeClock, seconds: float, exc: BaseException) -> None:
    clock.advance(seconds)
    raise exc


def test_each_completed_call_is_a_row_that_replays_as_it_ran(tmp_path: Path) -> None:
    clock = FakeClock(1000)
    config = CircuitBreakerConfig(
        failure_threshold_count=2, reset_timeout=10, ignore_exceptions=(KeyError,)
    )
    breaker = CircuitBreaker(config, name="pay", clock=clock)
    live: list[Event] = []
    breaker.subscribe(live.append, StateChanged)
    path = tmp_path / "calls.csv"
    with TraceRecorder(path) as recorder:
        breaker.subscribe(recorder, *TraceRecorder.events)
        breaker.call(clock.advance, 0.5)  # 1000 .. 1000.5, success
        with pytest.raises(KeyError):  # 1000.5 .. 1000.75, ignored
            breaker.call(raise_after, clock, 0.25, KeyError("x"))
        for _ in range(2):  # 1000.75 .. 1001.25, two failures: trips
            with pytest.raises(Boom):
                breaker.call(raise_after, clock, 0.25, Boom())
        with pytest.raises(CircuitOpenError), breaker:  # rejected: not run, no row
            pass
        clock.advance(10)
        breaker.call(clock.advance, 1.5)  # 1011.25 .. 1012.75, the trial closes it
    assert recorder.rows == 5
    assert path.read_text().splitlines() == [
        "start,duration,outcome,service",
        "1000.0,0.5,success,pay",
        "1000.5,0.25,ignored,pay",
        "1000.75,0.25,failure,pay",
        "1001.0,0.25,failure,pay",
        "1011.25,1.5,success,pay",
    ]
    rows = list(Trace(str(path)).rows())
    assert rows == [
        (1000.0, 0.5, SUCCESS, "pay"),
        (1000.5, 0.25, IGNORED, "pay"),
        (1000.75, 0.25, FAILURE, "pay"),
        (1001.0, 0.25, FAILURE, "pay"),
        (1011.25, 1.5, SUCCESS, "pay"),
    ]
    report = simulate_rows(rows, {"same": config})["same"]
    assert [(at, old, new) for at, old, new in report.transitions] == [
        (event.at, event.old_state, event.new_state)
        for event in live
        if isinstance(event, StateChanged)
    ]
    assert (report.admitted, report.failures_admitted) == (5, 2)


def test_a_manager_recorder_names_each_breaker_as_the_service(tmp_path: Path) -> None:
    manager = CircuitBreakerManager()
    path = tmp_path / "calls.csv"
    recorder = TraceRecorder(path)
    manager.subscribe(recorder)  # every event type: the others are skipped
    manager.breaker("pay").call(lambda: None)
    manager.breaker("search").call(lambda: None)
    manager.breaker("pay").force_open()
    recorder.close()
    with path.open(newline="") as file:
        services = [row["service"] for row in csv.DictReader(file)]
    assert services == ["pay", "search"]
    assert {row[3] for row in Trace(str(path)).rows()} == {"pay", "search"}


def test_sample_keeps_a_fraction_and_max_rows_bounds_the_file(tmp_path: Path) -> None:
    clock = FakeClock(0)
    breaker = make(clock)
    sampled = TraceRecorder(tmp_path / "sampled.csv", sample=0.25)
    bounded = TraceRecorder(tmp_path / "bounded.csv", max_rows=3)
    breaker.subscribe(sampled)
    breaker.subscribe(bounded)
    for _ in range(2000):
        breaker.call(clock.advance, 0.001)
    sampled.close()
    bounded.close()
    assert 300 < sampled.rows < 700
    assert Trace(sampled.path).count == sampled.rows
    assert (bounded.rows, bounded.dropped) == (3, 1997)
    assert len(Path(bounded.path).read_text().splitlines()) == 4


def test_threads_record_every_call_once(tmp_path: Path) -> None:
    manager = CircuitBreakerManager()
    recorder = TraceRecorder(tmp_path / "calls.csv")
    manager.subscribe(recorder, *TraceRecorder.events)

    def work(name: str) -> None:
        for _ in range(500):
            manager.breaker(name).call(lambda: None)

    threads = [threading.Thread(target=work, args=(f"s{i % 3}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recorder.close()
    assert recorder.rows == 4000
    trace = Trace(recorder.path)
    assert trace.count == 4000
    assert {row[3] for row in trace.rows()} == {"s0", "s1", "s2"}


def test_after_close_nothing_is_written_and_close_is_idempotent(tmp_path: Path) -> None:
    clock = FakeClock(0)
    breaker = make(clock)
    recorder = TraceRecorder(tmp_path / "calls.csv")
    breaker.subscribe(recorder)
    breaker.call(lambda: None)
    recorder.close()
    breaker.call(lambda: None)
    recorder.close()
    assert recorder.rows == 1
    assert len(Path(recorder.path).read_text().splitlines()) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sample": 0}, "sample must be a number in \\(0, 1\\], got 0"),
        ({"sample": 1.5}, "sample must be a number in \\(0, 1\\], got 1.5"),
        ({"max_rows": -1}, "max_rows must be an int >= 0 or None, got -1"),
    ],
)
def test_bad_arguments_name_themselves(
    kwargs: dict[str, float], message: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=message):
        TraceRecorder(tmp_path / "calls.csv", **kwargs)  # type: ignore[arg-type]
