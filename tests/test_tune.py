"""`python -m circuitry tune` and `circuitry.simulation.tune`: the search, the front, the pick."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from circuitry import CircuitBreakerConfig, ServicePresets
from circuitry.__main__ import main
from circuitry.simulation import RANGES, REPORT_FIELDS, scenario, tune
from circuitry.simulation._replay import OUTCOMES

OBJECTIVES = ("failures_admitted", "rejected_would_succeed", "detect_seconds", "recover_seconds")


def run_tune(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["tune", *argv]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def rows_of(name: str, seed: int = 0) -> list[Any]:
    built = scenario(name, seed)
    return [(c.start, c.duration, OUTCOMES[c.outcome], c.service) for c in built.calls]


def scores(entry: dict[str, Any], end: float, first: float, last: float) -> tuple[float, ...]:
    """The four counts as the docs define them: never detecting or recovering costs the rest."""
    detect = entry["detect_seconds"]
    recover = entry["recover_seconds"]
    if detect is None:
        detect = end - first
        recover = 0.0 if recover is None else recover
    elif recover is None:
        recover = end - last
    return (entry["failures_admitted"], entry["rejected_would_succeed"], detect, recover)


def dominated(a: tuple[float, ...], by: tuple[float, ...]) -> bool:
    return all(y <= x for x, y in zip(a, by, strict=True)) and by != a


# -- the command line -------------------------------------------------------------


def test_json_has_every_config_with_report_fields_config_and_front(
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = run_tune(["--scenario", "outage", "--budget", "16", "--jobs", "1", "--json"], capsys)
    configs = data["configs"]
    assert len(configs) == 16
    for entry in configs:
        assert set(REPORT_FIELDS) <= set(entry)
        assert isinstance(entry["pareto"], bool)
        CircuitBreakerConfig.from_mapping(entry["config"])  # every config is a valid mapping
    # #0 is the base, the library's defaults.
    assert configs[0]["config"] == CircuitBreakerConfig().to_mapping()
    # No two configs are the same.
    assert len({json.dumps(e["config"], sort_keys=True) for e in configs}) == 16

    # The front, checked here from the report fields alone.
    built = scenario("outage")
    end = max(c.end for c in built.calls)
    (first, last) = built.unhealthy[0]
    points = [scores(e, end, first, last) for e in configs]
    for entry, point in zip(configs, points, strict=True):
        beaten = any(dominated(point, other) for other in points)
        assert entry["pareto"] is not beaten, (entry, point)
    assert any(e["pareto"] for e in configs)

    # The recommendation: on the front, the fewest calls decided wrongly, then detect, recover.
    best = data["recommended"]
    assert configs[best]["pareto"]
    key = [(p[0] + p[1], p[2], p[3], i) for i, p in enumerate(points) if configs[i]["pareto"]]
    assert min(key)[-1] == best
    assert "fewest calls decided wrongly" in data["reason"]


def test_a_seed_gives_the_same_search_and_another_seed_another(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--scenario", "flapping", "--budget", "8", "--jobs", "1", "--json"]
    first = run_tune([*argv, "--seed", "3"], capsys)
    again = run_tune([*argv, "--seed", "3"], capsys)
    other = run_tune([*argv, "--seed", "4"], capsys)
    assert first == again
    assert [e["config"] for e in first["configs"]] != [e["config"] for e in other["configs"]]


def test_out_writes_toml_that_simulate_replays_to_the_same_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "recommended.toml"
    data = run_tune(
        ["--scenario", "outage", "--budget", "10", "--jobs", "1", "--json", "--out", str(out)],
        capsys,
    )
    best = data["configs"][data["recommended"]]
    text = out.read_text()
    assert text.startswith("# Recommended by python -m circuitry tune")
    assert "failure_threshold_percentage = false" in text  # TOML's null: the rule is off

    assert main(["simulate", "--scenario", "outage", "--config", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["reports"]["recommended"]
    for field in REPORT_FIELDS:
        assert report[field] == best[field], field


def test_text_output_marks_the_front_and_the_pick(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tune", "--scenario", "outage", "--budget", "6", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "scenario outage" in out
    assert "unhealthy: 240-480 s" in out
    assert "varied: failure_threshold_count, reset_timeout, success_threshold_count" in out
    table = [line for line in out.splitlines() if line[:3].strip().isdigit()]
    assert len(table) == 6
    assert sum(">" in line.split()[1] for line in table) == 1
    assert "> recommended: #" in out
    assert "* on the Pareto front" in out


def test_only_the_rules_the_base_has_on_are_varied_within_their_ranges(
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = run_tune(
        ["--scenario", "brownout", "--base", "high_volume", "--budget", "12", "--json"],
        capsys,
    )
    assert data["varied"] == [
        "failure_threshold_count",
        "failure_threshold_percentage",
        "minimum_calls",
        "failure_window",
        "reset_timeout",
        "success_threshold_count",
    ]
    base = ServicePresets.high_volume().to_mapping()
    for entry in data["configs"]:
        config = entry["config"]
        for name, value in config.items():
            if name in data["varied"]:
                assert RANGES[name].low <= value <= RANGES[name].high, (name, value)
            else:
                assert value == base[name], name  # never a rule turned on or off


def test_a_count_window_bounds_the_counts_that_must_fit_in_it() -> None:
    base = CircuitBreakerConfig(
        failure_threshold_count=5,
        failure_threshold_percentage=50,
        failure_window_calls=20,
        minimum_calls=10,
    )
    result = tune(rows_of("outage"), base, budget=25, jobs=1, seed=1)
    for entry in result.configs:
        config = entry.config
        calls = config.failure_window_calls
        assert calls is not None
        assert config.failure_threshold_count is not None
        assert config.failure_threshold_count <= calls
        assert config.minimum_calls <= calls


def test_max_reset_timeout_keeps_its_ratio_and_throttle_k_varies() -> None:
    from circuitry import AdaptiveThrottle

    base = CircuitBreakerConfig(
        reset_timeout=10, max_reset_timeout=40, adaptive_throttle=AdaptiveThrottle(k=2.0)
    )
    result = tune(rows_of("brownout"), base, budget=8, jobs=1)
    assert "adaptive_throttle.k" in result.varied
    ks = set()
    for entry in result.configs:
        config = entry.config
        assert config.max_reset_timeout == pytest.approx(4 * config.reset_timeout)
        assert config.adaptive_throttle is not None
        ks.add(config.adaptive_throttle.k)
        assert RANGES["adaptive_throttle.k"].low <= config.adaptive_throttle.k or (
            config.adaptive_throttle.k == 2.0  # the base's own
        )
    assert len(ks) > 1


def test_grid_search_takes_levels_and_samples_a_grid_larger_than_the_budget() -> None:
    rows = rows_of("outage")
    result = tune(rows, ServicePresets.http_api(), budget=20, jobs=1, search="grid")
    assert len(result.configs) == 20  # the grid has 4 * 4 * 4 = 64 points
    levels = {name: set(RANGES[name].levels(4)) for name in result.varied}
    for entry in result.configs[1:]:
        assert entry.config.failure_threshold_count in levels["failure_threshold_count"]
        assert entry.config.reset_timeout in levels["reset_timeout"]
        assert entry.config.success_threshold_count in levels["success_threshold_count"]
    again = tune(rows, ServicePresets.http_api(), budget=20, jobs=1, search="grid")
    assert [e.config for e in again.configs] == [e.config for e in result.configs]


def test_without_unhealthy_periods_two_counts_decide() -> None:
    rows = rows_of("outage")
    result = tune(rows, budget=6, jobs=1)
    assert all(len(entry.scores) == 2 for entry in result.configs)
    assert "detects" not in result.reason


def test_worker_processes_give_the_same_result_as_one(tmp_path: Path) -> None:
    # In a child process of its own: forking this (threaded) test process would warn.
    argv = ["tune", "--scenario", "outage", "--budget", "50", "--json"]
    outs = []
    for jobs in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-m", "circuitry", *argv, "--jobs", jobs],
            capture_output=True,
            text=True,
            timeout=100,
            check=True,
        )
        outs.append(json.loads(done.stdout))
    assert outs[0] == outs[1]
    assert len(outs[0]["configs"]) == 50


def test_progress_bar_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_simulation_cli import _Terminal

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["tune", "--scenario", "outage", "--budget", "6", "--jobs", "1", "--json"]) == 0
    assert "tuning [" in terminal.text
    assert "100% of 6 configs" in terminal.text
    assert terminal.text.endswith("\r")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--budget", "0"], "--budget must be >= 1, got 0"),
        (["--jobs", "0"], "--jobs must be >= 1, got 0"),
        (["--base", "nope"], "--base takes a preset"),
        (["--out", "x.txt"], "--out writes TOML"),
        (["--unhealthy", "5:1"], "--unhealthy needs finite START <= END"),
    ],
)
def test_bad_input_is_one_line_and_status_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tune", "--scenario", "outage", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m circuitry tune: error: ")
    assert message in err


def test_tune_rejects_bad_arguments() -> None:
    rows = rows_of("outage")
    with pytest.raises(ValueError, match="budget must be an int >= 1, got True"):
        tune(rows, budget=True)
    with pytest.raises(ValueError, match="search must be 'random' or 'grid', got 'best'"):
        tune(rows, search="best")
    with pytest.raises(ValueError, match="jobs must be an int >= 1, got 0"):
        tune(rows, jobs=0)
    with pytest.raises(TypeError, match="base must be a CircuitBreakerConfig"):
        tune(rows, base={"reset_timeout": 5})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no calls"):
        tune([])


# -- --unhealthy with ISO-8601 times --------------------------------------------------


def test_unhealthy_takes_iso_times_as_an_interval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "iso.csv"
    lines = ["start,duration,status"]
    for second in range(0, 120):
        status = 503 if 30 <= second < 60 else 200
        lines.append(f"2025-12-03T08:{second // 60:02d}:{second % 60:02d}Z,0.1,{status}")
    trace.write_text("\n".join(lines) + "\n")
    epoch = 1764748800.0  # 2025-12-03T08:00:00Z
    iso = "2025-12-03T08:00:30Z/2025-12-03T08:01:00Z"
    numbers = f"{epoch + 30}:{epoch + 60}"
    reports = []
    for period in (iso, numbers):
        assert main(["simulate", "--trace", str(trace), "--unhealthy", period, "--json"]) == 0
        reports.append(json.loads(capsys.readouterr().out)["reports"])
    assert reports[0] == reports[1]
    assert reports[0]["http_api"]["detect_seconds"] == pytest.approx(
        4.1, abs=1e-3
    )  # the 5th 503 ends at 34.1 s
    assert main(["simulate", "--trace", str(trace), "--unhealthy", "08:00/09:00"]) == 2
    assert "ISO-8601" in capsys.readouterr().err


# -- the ordered replay is simulate_rows' replay -----------------------------------------


def _equal_reports(
    rows: list[Any], configs: dict[str, CircuitBreakerConfig], unhealthy: Any
) -> None:
    from circuitry.simulation import simulate_rows
    from circuitry.simulation._replay import event_order, replay_ordered

    expected = simulate_rows(rows, configs, unhealthy, seed=7)
    order = event_order(rows)
    for label, config in configs.items():
        assert replay_ordered(rows, order, config, unhealthy, 7) == expected[label], label


CONFIGS = {
    "http_api": ServicePresets.http_api(),
    "high_volume": ServicePresets.high_volume(),
    "jitter_backoff": CircuitBreakerConfig(
        failure_threshold_count=2,
        reset_timeout=3,
        reset_timeout_multiplier=2,
        max_reset_timeout=30,
        reset_timeout_jitter=0.5,
        success_threshold_count=2,
        test_request_count=2,
        half_open_max_wait=4,
    ),
    "count_window_rate": CircuitBreakerConfig(
        failure_threshold_count=None,
        failure_threshold_percentage=30,
        failure_window_calls=20,
        minimum_calls=10,
        half_open_failure_rate=50,
        success_threshold_count=4,
        test_request_count=2,
    ),
    "slow": CircuitBreakerConfig(
        failure_window=30, slow_call_duration=0.5, slow_call_rate_threshold=40, minimum_calls=5
    ),
    "shadow": ServicePresets.database().evolve(shadow=True),
}


@pytest.mark.parametrize("name", ["outage", "brownout", "flapping", "slow"])
def test_replay_ordered_gives_simulate_rows_report_on_every_scenario(name: str) -> None:
    from circuitry import AdaptiveThrottle

    built = scenario(name, seed=3)
    configs = {
        **CONFIGS,
        "throttle": ServicePresets.http_api().evolve(
            adaptive_throttle=AdaptiveThrottle(k=1.5, window=10, min_requests=5)
        ),
    }
    _equal_reports(rows_of(name, 3), configs, built.unhealthy)


def test_replay_ordered_keeps_ties_services_and_backpressure_as_simulate_rows() -> None:
    import random

    from circuitry.simulation._replay import Backpressure

    rng = random.Random(11)
    rows: list[Any] = []
    for step in range(3000):
        start = step // 3 * 0.5  # three calls an instant: ties between starts
        duration = rng.choice([0.0, 0.5, 1.0, 1.5, 7.0])  # ends on starts, zero-length calls
        kind = rng.random()
        if kind < 0.02:
            outcome: Any = Backpressure(rng.choice([0.5, 2.0]))
        else:
            outcome = OUTCOMES[rng.choice(["success", "success", "failure", "ignored"])]
        rows.append((start, duration, outcome, rng.choice([None, "a", "b"])))
    _equal_reports(rows, CONFIGS, [(200.0, 300.0)])
    _equal_reports([(r[0], r[1], r[2], None) for r in rows], CONFIGS, [])


def test_event_order_refuses_rows_out_of_start_order() -> None:
    from circuitry.simulation._replay import event_order

    with pytest.raises(ValueError, match=r"calls must come in start order: 1\.0 after 2\.0"):
        event_order([(2.0, 0.1, OUTCOMES["ok"], None), (1.0, 0.1, OUTCOMES["ok"], None)])
