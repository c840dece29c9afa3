"""`python -m circuitry simulate`: traces, configs, output shapes and bad input."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from circuitry import CircuitBreakerConfig
from circuitry.__main__ import main

# Five failures of 0.5 s at 0..4 trip the default config at 4.5 (open to
# 64.5); the calls at 10 and 20 are rejected; the call at 64.5 is the trial
# and closes it at 65.5. As in test_simulation's worked example.
TRACE_ROWS = [
    (0, 0.5, "failure"),
    (1, 0.5, "fail"),
    (2, 0.5, "failure"),
    (3, 0.5, "failure"),
    (4, 0.5, "failure"),
    (10, 0.1, "ok"),
    (20, 0.1, "failure"),
    (64.5, 1.0, "success"),
]


def write_csv(
    path: Path, rows: Sequence[tuple[object, ...]], header: str = "start,duration,outcome"
) -> Path:
    path.write_text(header + "\n" + "".join(",".join(map(str, row)) + "\n" for row in rows))
    return path


def write_jsonl(path: Path, rows: Sequence[tuple[float, float, str]]) -> Path:
    lines = [json.dumps({"start": s, "duration": d, "outcome": o}) for s, d, o in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def default_toml(tmp_path: Path) -> Path:
    path = tmp_path / "default.toml"
    path.write_text(
        "# the defaults, said out loud\nfailure_threshold_count = 5\nreset_timeout = 60\n"
    )
    return path


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, object]]:
    assert main(argv) == 0
    out = capsys.readouterr().out
    reports: dict[str, dict[str, object]] = json.loads(out)["reports"]
    return reports


EXPECTED = {
    "calls": 8,
    "admitted": 6,
    "rejected": 2,
    "throttled": 0,
    "failures_admitted": 5,
    "rejected_would_succeed": 1,
    "rejected_would_fail": 1,
    "state_changes": 3,
    "seconds_not_closed": 61.0,
    "detect_seconds": 4.5,
    "recover_seconds": 60.5,
    "transitions": [
        [4.5, "closed", "open"],
        [64.5, "open", "half_open"],
        [65.5, "half_open", "closed"],
    ],
}


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_trace_with_a_config_file_gives_the_worked_out_json(
    kind: str, tmp_path: Path, default_toml: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = list(reversed(TRACE_ROWS))  # any order
    trace = (
        write_csv(tmp_path / "t.csv", rows)
        if kind == "csv"
        else write_jsonl(tmp_path / "t.jsonl", rows)
    )
    reports = run_json(
        [
            "simulate",
            "--trace",
            str(trace),
            "--config",
            str(default_toml),
            "--unhealthy",
            "0:5",
            "--json",
        ],
        capsys,
    )
    assert reports == {"default": EXPECTED}


def test_json_config_and_presets_are_columns_in_the_order_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "strict.json"
    config.write_text(json.dumps({"failure_threshold_count": 1, "reset_timeout": 1000}))
    trace = write_csv(tmp_path / "t.csv", TRACE_ROWS)
    reports = run_json(
        [
            "simulate",
            "--trace",
            str(trace),
            "--preset",
            "database",
            "--config",
            str(config),
            "--json",
        ],
        capsys,
    )
    assert list(reports) == ["database", "strict"]
    assert reports["strict"]["admitted"] == 1  # the first failure trips it for 1000 s
    assert reports["database"]["transitions"][0] == [2.5, "closed", "open"]  # type: ignore[index]
    assert reports["database"]["detect_seconds"] is None  # no --unhealthy


def test_the_table_is_aligned_with_a_column_per_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--scenario", "outage"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(line for line in lines if "http_api" in line)
    assert header.split() == ["http_api", "database", "critical_service", "high_volume"]
    table = lines[lines.index(header) :]
    assert [line.split()[0] for line in table[1:]] == [
        "calls",
        "admitted",
        "rejected",
        "throttled",
        "failures_admitted",
        "rejected_would_succeed",
        "rejected_would_fail",
        "state_changes",
        "seconds_not_closed",
        "detect_seconds",
        "recover_seconds",
    ]
    assert len({len(line) for line in table}) == 1  # right-aligned columns
    assert "unhealthy: 240-480 s" in out


def test_timeline_prints_every_transition(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = write_csv(tmp_path / "t.csv", TRACE_ROWS)
    assert main(["simulate", "--trace", str(trace), "--preset", "http_api", "--timeline"]) == 0
    out = capsys.readouterr().out
    assert "http_api:\n       4.500s  closed -> open\n      34.500s  open -> half_open\n" in out


def test_services_get_a_breaker_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [(t, 0, "failure", "pay") for t in range(3)] + [
        (t, 0, "success", "search") for t in range(3)
    ]
    rows.append((5, 0, "success", "search"))
    rows.append((5, 0, "success", "pay"))
    trace = write_csv(tmp_path / "t.csv", rows, header="start,duration,outcome,service")
    reports = run_json(
        ["simulate", "--trace", str(trace), "--preset", "database", "--json"], capsys
    )
    database = reports["database"]
    assert database["rejected"] == 1  # only pay's call at 5
    services = database["services"]
    assert services["pay"]["rejected"] == 1  # type: ignore[index]
    assert services["search"]["rejected"] == 0  # type: ignore[index]


def test_scenario_seed_changes_the_calls(capsys: pytest.CaptureFixture[str]) -> None:
    first = run_json(
        ["simulate", "--scenario", "brownout", "--preset", "http_api", "--json"], capsys
    )
    again = run_json(
        ["simulate", "--scenario", "brownout", "--preset", "http_api", "--json"], capsys
    )
    other = run_json(
        ["simulate", "--scenario", "brownout", "--preset", "http_api", "--seed", "7", "--json"],
        capsys,
    )
    assert first == again
    assert first["http_api"]["calls"] != other["http_api"]["calls"]


# -- bad input: one line naming it, exit status 2 -------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "start,duration,outcome\n0,1,ok\n1,-2,ok\n",
            ":3: field 'duration' must be a finite number of seconds >= 0, got '-2'",
        ),
        ("start,duration,outcome\n0,1,ok\nsoon,1,ok\n", ":3: field 'start'"),
        ("start,duration,outcome\n0,1,ok\n1,1,maybe\n", ":3: field 'outcome' must be one of"),
        ("start,duration,outcome\n0,1,ok\n1,1\n", ":3: field 'outcome' is missing"),
        ("start,outcome\n0,ok\n", ":1: the header has no field 'duration'"),
        ("start,duration\n0,1\n", ":1: the header has no field 'outcome' (nor an HTTP 'status'"),
        ("start,duration,status\n0,1,200\n1,1,OK\n", ":3: field 'status' must be an HTTP"),
        ("start,duration,status\n0,1,200\n1,1,600\n", ":3: field 'status' must be an HTTP"),
        ("start,duration,status\n0,1,200\n1,1,\n", ":3: field 'status' is missing"),
        ("start,duration,outcome\n0,1,ok\nnoon,1,ok\n", ":3: field 'start' must be a finite"),
        (
            "start,duration,outcome\n2025-12-03T10:15:00Z,1,ok\n2025-13-03T10:15:00Z,1,ok\n",
            ":3: field 'start' is not a valid time",
        ),
        ("start,duration,outcome\n", "no calls"),
    ],
)
def test_a_bad_csv_row_names_the_line_and_the_field(
    content: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "bad.csv"
    trace.write_text(content)
    assert main(["simulate", "--trace", str(trace)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"start": 0, "duration": 1, "outcome": "ok"}\n{"start": 1, "duration": 1',
            ":2: not JSON",
        ),
        (
            '{"start": 0, "duration": 1, "outcome": "ok"}\n\n[1, 2]\n',
            ":3: a row must be a JSON object",
        ),
        ('{"start": true, "duration": 1, "outcome": "ok"}\n', ":1: field 'start'"),
        ('{"start": 0, "duration": 1, "outcome": "ok", "service": 3}\n', ":1: field 'service'"),
    ],
)
def test_a_bad_json_line_names_the_line_and_the_field(
    content: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "bad.jsonl"
    trace.write_text(content)
    assert main(["simulate", "--trace", str(trace)]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scenario", "meltdown"], "unknown scenario 'meltdown'"),
        (["--scenario", "outage", "--preset", "fast"], "unknown preset 'fast'"),
        (
            ["--scenario", "outage", "--preset", "database", "--preset", "database"],
            "two configs are labelled 'database'",
        ),
        (["--scenario", "outage", "--unhealthy", "9-10"], "--unhealthy takes START:END"),
        (["--scenario", "outage", "--unhealthy", "10:9"], "--unhealthy needs finite START <= END"),
        (["--trace", "does-not-exist.csv"], "cannot read does-not-exist.csv"),
        (["--scenario", "outage", "--plot", "out.svg"], "--plot writes a PNG"),
    ],
)
def test_bad_arguments_exit_2_naming_them(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("typo.toml", "reset_timout = 10\n", "unknown config key 'reset_timout'"),
        ("bad.toml", "reset_timeout = -1\n", "reset_timeout must be a finite number"),
        ("broken.toml", "reset_timeout = \n", "not valid TOML"),
        ("broken.json", "{", "not valid JSON"),
        ("config.yaml", "reset_timeout: 1\n", "use a .toml or a .json file"),
    ],
)
def test_a_bad_config_file_exits_2_naming_the_key(
    name: str, content: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / name
    config.write_text(content)
    assert main(["simulate", "--scenario", "outage", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert name in err


def test_a_missing_source_is_an_argparse_error_with_status_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--preset", "database"])
    assert exit_info.value.code == 2
    assert "--scenario" in capsys.readouterr().err


def test_python_dash_m_runs_without_a_traceback(tmp_path: Path) -> None:
    trace = write_csv(tmp_path / "t.csv", [(0, 1, "ok"), (1, "x", "ok")])
    bad = subprocess.run(
        [sys.executable, "-m", "circuitry", "simulate", "--trace", str(trace)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert "t.csv:3: field 'duration'" in bad.stderr
    assert "Traceback" not in bad.stderr
    good = subprocess.run(
        [sys.executable, "-m", "circuitry", "simulate", "--scenario", "flapping", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert set(json.loads(good.stdout)["reports"]) == {
        "http_api",
        "database",
        "critical_service",
        "high_volume",
    }
    assert good.stderr == ""  # no progress bar when stderr is not a terminal


# -- the progress bar -------------------------------------------------------------------


class _Terminal:
    """A text stream that says it is a terminal."""

    def __init__(self) -> None:
        self.text = ""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


def test_progress_bar_draws_only_on_a_terminal() -> None:
    from circuitry.__main__ import Progress
    from circuitry._classify import SUCCESS

    rows = [(float(i), 0.0, SUCCESS, None) for i in range(1000)]
    terminal = _Terminal()
    assert list(Progress(1000, terminal).wrap(rows)) == rows  # type: ignore[arg-type]
    assert "100% of 1000 calls" in terminal.text
    assert terminal.text.endswith("\r")  # the bar is cleared at the end


# -- the plot -------------------------------------------------------------------------


def test_plot_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "outage.png"
    assert main(["simulate", "--scenario", "outage", "--plot", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert width > 1000
    assert 400 < height < width
    assert "http_api" in capsys.readouterr().out  # the table is still printed


def test_plot_has_close_ups_of_detection_and_recovery_only_with_unhealthy_periods(
    tmp_path: Path,
) -> None:
    rows = [(t, 0.1, "failure" if 100 <= t < 200 else "success") for t in range(0, 400)]
    trace = write_csv(tmp_path / "t.csv", rows)
    widths = []
    for extra in ([], ["--unhealthy", "100:200"]):
        out = tmp_path / f"plot{len(extra)}.png"
        assert main(["simulate", "--trace", str(trace), "--plot", str(out), *extra]) == 0
        widths.append(struct.unpack(">II", out.read_bytes()[16:24])[0])
    assert widths[1] > widths[0] * 1.3  # two close-up columns beside the timeline


def test_close_ups_reach_past_the_slowest_detection_and_recovery() -> None:
    from circuitry.simulation import scenario, simulate
    from circuitry.simulation._plot import Profile, _zooms

    outage = scenario("outage")
    configs = {
        "fast": CircuitBreakerConfig(failure_threshold_count=2, reset_timeout=5),
        "slow": CircuitBreakerConfig(failure_threshold_count=30, reset_timeout=40),
    }
    reports = simulate(outage.calls, configs, outage.unhealthy)
    detection, recovery = _zooms(reports, outage.unhealthy, Profile(0.0, 900.0))
    (start, end) = outage.unhealthy[0]
    assert detection.anchor == start
    assert recovery.anchor == end
    for zoom, field in ((detection, "detect_seconds"), (recovery, "recover_seconds")):
        times = [getattr(r, field) for r in reports.values()]
        assert zoom.low < zoom.anchor
        assert zoom.anchor + max(times) < zoom.high <= zoom.anchor + 900 / 4
        # The fast config's moment is not squeezed into a pixel: a good share of the panel.
        assert (min(times) + zoom.anchor - zoom.low) / (zoom.high - zoom.low) > 0.02


def test_plot_of_a_trace_with_services_and_an_epoch_origin(tmp_path: Path) -> None:
    base = 1_700_000_000
    rows = [
        (base + t, 0.1, "failure" if 100 <= t < 200 else "success", "ab"[t % 2])
        for t in range(0, 400)
    ]
    trace = write_csv(tmp_path / "t.csv", rows, header="start,duration,outcome,service")
    out = tmp_path / "trace.png"
    assert (
        main(
            [
                "simulate",
                "--trace",
                str(trace),
                "--unhealthy",
                f"{base + 100}:{base + 200}",
                "--plot",
                str(out),
            ]
        )
        == 0
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_is_a_clear_error(tmp_path: Path) -> None:
    # matplotlib made unimportable in a child process, as on an install without the extra.
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from circuitry.__main__ import main\n"
        f"argv = ['simulate', '--scenario', 'outage', '--plot', {str(tmp_path / 'x.png')!r}]\n"
        "sys.exit(main(argv))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "--plot needs matplotlib: pip install 'circuitry-breaker[plot]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_the_simulator_imports_no_optional_extra() -> None:
    code = (
        "import sys, circuitry.simulation, circuitry.__main__\n"
        "extras = ('matplotlib', 'numpy', 'httpx', 'prometheus_client')\n"
        "print(sorted(m for m in extras if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_a_sorted_trace_is_streamed_and_an_unsorted_one_sorted(tmp_path: Path) -> None:
    from circuitry.__main__ import Trace

    in_order = Trace(str(write_csv(tmp_path / "a.csv", TRACE_ROWS)))
    assert in_order.sorted
    assert not isinstance(in_order.rows(), list)  # a generator over the file
    shuffled = Trace(str(write_csv(tmp_path / "b.csv", list(reversed(TRACE_ROWS)))))
    assert not shuffled.sorted
    assert [row[0] for row in shuffled.rows()] == [float(row[0]) for row in TRACE_ROWS]
    assert (in_order.count, in_order.first, in_order.last) == (8, 0.0, 65.5)


def test_progress_bar_on_a_real_terminal_and_the_output_unchanged() -> None:
    import os
    import pty
    import threading

    controller, terminal = pty.openpty()
    drawn = bytearray()

    def read_terminal() -> None:  # read as it is drawn, so a full pty never blocks the child
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the child has gone and closed the terminal
                return
            if not chunk:
                return
            drawn.extend(chunk)

    reader = threading.Thread(target=read_terminal)
    reader.start()
    argv = [sys.executable, "-m", "circuitry", "simulate", "--scenario", "outage", "--json"]
    try:
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=terminal) as process:
            os.close(terminal)
            out, _ = process.communicate(timeout=120)
    finally:
        reader.join(timeout=10)
        os.close(controller)
    assert process.returncode == 0
    assert b"simulating [" in drawn
    assert b"100% of 8881 calls" in drawn
    assert set(json.loads(out)["reports"]) == {
        "http_api",
        "database",
        "critical_service",
        "high_volume",
    }


def test_csv_with_spaces_after_commas_and_extra_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "spaced.csv"
    trace.write_text("start, duration, outcome, host\n0, 0, fail, a\n1, 0, ok, b\n")
    reports = run_json(
        ["simulate", "--trace", str(trace), "--preset", "database", "--json"], capsys
    )
    assert reports["database"]["calls"] == 2
    assert reports["database"]["failures_admitted"] == 1


def test_a_trip_after_the_unhealthy_period_prints_dashes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The default config trips at 1764750258 (five failures), 58 s after the
    # unhealthy period ended: no detection, and nothing to recover from.
    rows = [(1764750150, 0.1, "success")] + [(1764750254 + i, 0.5, "failure") for i in range(5)]
    trace = write_csv(tmp_path / "late.csv", rows)
    argv = ["simulate", "--trace", str(trace), "--preset", "http_api"]
    argv += ["--preset", "database", "--unhealthy", "1764750100:1764750200"]
    reports = run_json([*argv, "--json"], capsys)
    for report in reports.values():
        assert report["transitions"]
        assert report["detect_seconds"] is None
        assert report["recover_seconds"] is None
    assert main(argv) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[-2].split() == ["detect_seconds", "-", "-"]
    assert table[-1].split() == ["recover_seconds", "-", "-"]


def test_false_in_a_toml_config_turns_the_count_rule_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rate = tmp_path / "rate.toml"
    rate.write_text(
        "failure_threshold_count = false\nfailure_threshold_percentage = 50\n"
        "failure_window = 60\nminimum_calls = 4\nhalf_open_max_wait = false\n"
    )
    trace = write_csv(tmp_path / "t.csv", TRACE_ROWS)
    reports = run_json(["simulate", "--trace", str(trace), "--config", str(rate), "--json"], capsys)
    # Four calls, all failed, trip the rate rule at 3.5, not the count rule at 4.5.
    assert reports["rate"]["transitions"][0] == [3.5, "closed", "open"]


def test_false_on_a_required_field_exits_2_saying_what_it_takes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"reset_timeout": false}')
    trace = write_csv(tmp_path / "t.csv", TRACE_ROWS)
    assert main(["simulate", "--trace", str(trace), "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "reset_timeout cannot be turned off with false: it takes a number" in err


def test_iso_times_and_http_statuses_replay_as_seconds_and_outcomes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The worked-out trace again, its starts as ISO-8601 times (Z, an offset,
    # fractions) and its outcomes as HTTP statuses: the same reports.
    epoch = 1764756900  # 2025-12-03T10:15:00Z
    times = [
        "2025-12-03T10:15:00Z",
        "2025-12-03T11:15:01+01:00",
        "2025-12-03T10:15:02.000Z",
        "2025-12-03T05:15:03-05:00",
        "2025-12-03 10:15:04",  # no offset: UTC
        "2025-12-03T10:15:10Z",
        "2025-12-03T10:15:20Z",
        "2025-12-03T10:16:04.5Z",
    ]
    statuses = [503, 500, 429, 502, 504, 200, 599, 204]
    iso = [(t, d, st) for t, (_, d, _), st in zip(times, TRACE_ROWS, statuses, strict=True)]
    trace = write_csv(tmp_path / "iso.csv", iso, header="start,duration,status")
    plain = [(epoch + s, d, o) for s, d, o in TRACE_ROWS]
    reference = write_csv(tmp_path / "plain.csv", plain)
    argv = ["--preset", "http_api", "--unhealthy", f"{epoch}:{epoch + 5}", "--json"]
    got = run_json(["simulate", "--trace", str(trace), *argv], capsys)
    assert got == run_json(["simulate", "--trace", str(reference), *argv], capsys)
    assert got["http_api"]["failures_admitted"] == 5


def test_json_lines_take_iso_times_and_statuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "t.jsonl"
    rows = [{"start": f"2025-12-03T10:15:0{i}Z", "duration": 0.5, "status": 503} for i in range(5)]
    rows.append({"start": "2025-12-03T10:16:05Z", "duration": 1, "status": "200"})
    trace.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main(["simulate", "--trace", str(trace), "--preset", "http_api", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["start"] == 1764756900.0  # 2025-12-03T10:15:00Z
    assert document["reports"]["http_api"]["failures_admitted"] == 5
    assert document["reports"]["http_api"]["transitions"][0] == [4.5, "closed", "open"]


# -- times from the trace's start; services in the table and the JSON ---------------

EPOCH_ROWS = [
    (1764750000.25, 0.5, "failure", "pay"),
    (1764750000.5, 0.5, "success", "search"),
    (1764750001.25, 0.5, "failure", "pay"),
    (1764750010.25, 0.5, "success", "pay"),
]


def test_text_times_count_from_the_trace_start_given_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = write_csv(tmp_path / "t.csv", EPOCH_ROWS, header="start,duration,outcome,service")
    config = tmp_path / "two.toml"
    config.write_text("failure_threshold_count = 2\nreset_timeout = 5\n")
    argv = ["simulate", "--trace", str(trace), "--config", str(config), "--timeline"]
    assert main([*argv, "--unhealthy", "1764750000.25:1764750002.25"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == [
        "trace t.csv: 4 calls",
        "start: 1764750000.25 (2025-12-03T08:20:00.250Z); the times below are seconds from it",
        "unhealthy: 0-2 s",
    ]
    timeline = lines[lines.index("two / pay:") :]
    assert timeline == [
        "two / pay:",
        "       1.500s  closed -> open",
        "       6.500s  open -> half_open",
        "      10.500s  half_open -> closed",
        "two / search:",
        "  (no transitions)",
    ]
    assert "1764750001" not in "\n".join(lines[1:])  # the epoch only on the start line


def test_the_table_has_a_row_per_service_under_each_total(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = write_csv(tmp_path / "t.csv", EPOCH_ROWS, header="start,duration,outcome,service")
    argv = ["simulate", "--trace", str(trace), "--preset", "http_api", "--preset", "database"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines.index(next(line for line in lines if "http_api" in line))
    table = lines[header:]
    assert [line.split() for line in table[1:4]] == [
        ["calls", "4", "4"],
        ["pay", "3", "3"],
        ["search", "1", "1"],
    ]
    assert table[4].startswith("admitted")
    assert len(table) == 1 + 3 * 11  # a total and two services for each of 11 fields
    assert len({len(line) for line in table}) == 1  # still right-aligned


def test_json_times_count_from_the_start_and_combined_transitions_name_services(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = write_csv(tmp_path / "t.csv", EPOCH_ROWS, header="start,duration,outcome,service")
    config = tmp_path / "two.json"
    config.write_text('{"failure_threshold_count": 2, "reset_timeout": 5}')
    assert main(["simulate", "--trace", str(trace), "--config", str(config), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["start"] == 1764750000.25
    report = document["reports"]["two"]
    assert report["transitions"] == [
        [1.5, "closed", "open", "pay"],
        [6.5, "open", "half_open", "pay"],
        [10.5, "half_open", "closed", "pay"],
    ]
    assert report["services"]["pay"]["transitions"][0] == [1.5, "closed", "open"]
    assert report["services"]["search"]["transitions"] == []


def test_a_scenario_counts_from_its_own_zero(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["simulate", "--scenario", "outage", "--preset", "database"]
    assert main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["start"] == 0.0
    assert main(argv) == 0
    assert "start:" not in capsys.readouterr().out


def test_a_start_that_is_no_epoch_time_is_printed_without_a_date(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A TraceRecorder's rows are on the breaker's monotonic clock: any origin.
    trace = write_csv(tmp_path / "t.csv", [(s + 12.5, d, o) for s, d, o in TRACE_ROWS])
    assert main(["simulate", "--trace", str(trace), "--preset", "http_api"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "start: 12.5; the times below are seconds from it"
