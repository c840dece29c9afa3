"""`python -m circuitry simulate`: replay a trace or a scenario through breaker configs.

```
python -m circuitry simulate (--scenario NAME | --trace FILE) [--preset NAME]...
        [--config FILE]... [--seed N] [--unhealthy START:END]... [--timeline]
        [--json] [--plot FILE.png]
```

Bad input (a bad row, an unknown preset, scenario or config key) prints one
line naming what is wrong and exits with status 2, without a traceback.

A trace is read twice, streamed both times: once to check every row (so
that an error is reported before any output) and count them, once to replay
it. A trace whose rows are not in start order is loaded whole and sorted for
the replay (about 150 bytes per call).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any, NoReturn

from ._config import CircuitBreakerConfig, ServicePresets
from ._core import FAILURE, Outcome
from ._state import CircuitState
from .simulation._replay import OUTCOMES, REPORT_FIELDS, Row, SimulationReport, simulate_rows
from .simulation._scenarios import scenario, scenarios

__all__ = ["InputError", "Profile", "Progress", "Trace", "main", "plot"]

PRESETS = sorted(name for name in vars(ServicePresets) if not name.startswith("_"))
DEFAULT_PRESETS = ["http_api", "database", "critical_service", "high_volume"]


class InputError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


# -- traces -------------------------------------------------------------------------


def _trace_format(path: str) -> str:
    lower = path.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    with _open(path) as file:  # sniff: JSON Lines rows are objects
        for line in file:
            if line.strip():
                return "jsonl" if line.lstrip().startswith("{") else "csv"
    return "csv"


def _open(path: str) -> IO[str]:
    try:
        return open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


class _BadRow(Exception):
    """A bad row; the reader adds where it is."""


def _number(field: str, value: object, *, minimum: float | None = None) -> float:
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = math.nan
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        number = math.nan
    if not math.isfinite(number) or (minimum is not None and number < minimum):
        need = "a finite number of seconds" + (f" >= {minimum:g}" if minimum is not None else "")
        raise _BadRow(f"field {field!r} must be {need}, got {value!r}")
    return number


def _row(record: dict[str, Any]) -> Row:
    for field in ("start", "duration", "outcome"):
        if record.get(field) in (None, ""):
            raise _BadRow(f"field {field!r} is missing")
    start = _number("start", record["start"])
    duration = _number("duration", record["duration"], minimum=0)
    raw = record["outcome"]
    outcome = OUTCOMES.get(raw.strip().lower()) if isinstance(raw, str) else None
    if outcome is None:
        raise _BadRow(f"field 'outcome' must be one of {', '.join(OUTCOMES)}, got {raw!r}")
    service = record.get("service")
    if service in (None, ""):
        service = None
    elif isinstance(service, str):
        service = sys.intern(service)  # one string per service, not per row
    else:
        raise _BadRow(f"field 'service' must be a string, got {service!r}")
    return start, duration, outcome, service


def _csv_rows(path: str) -> Iterator[Row]:
    with _open(path) as file:
        reader = csv.DictReader(file, skipinitialspace=True)
        header = reader.fieldnames or []
        for field in ("start", "duration", "outcome"):
            if field not in header:
                raise InputError(
                    f"{path}:1: the header has no field {field!r} (it has {', '.join(header)})"
                )
        try:
            for record in reader:
                yield _row(record)
        except (_BadRow, csv.Error) as exc:
            raise InputError(f"{path}:{reader.line_num}: {exc}") from None


def _jsonl_rows(path: str) -> Iterator[Row]:
    with _open(path) as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise _BadRow(f"a row must be a JSON object, got {line.strip()!r}")
                yield _row(record)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{number}: not JSON ({exc.msg})") from None
            except _BadRow as exc:
                raise InputError(f"{path}:{number}: {exc}") from None


class Trace:
    """A trace file, checked once; `rows()` streams it again in start order."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._read = _jsonl_rows if _trace_format(path) == "jsonl" else _csv_rows
        self.count = 0
        self.first = math.inf
        self.last = -math.inf
        self.sorted = True
        previous = -math.inf
        for start, duration, _, _ in self._read(path):
            self.count += 1
            self.sorted = self.sorted and start >= previous
            previous = start
            self.first = min(self.first, start)
            self.last = max(self.last, start + duration)
        if not self.count:
            raise InputError(f"{path}: no calls in the trace")

    def rows(self) -> Iterable[Row]:
        if self.sorted:
            return self._read(self.path)
        return sorted(self._read(self.path), key=lambda row: row[0])


# -- configs ------------------------------------------------------------------------


def _load_config(path: str) -> CircuitBreakerConfig:
    lower = path.lower()
    try:
        if lower.endswith(".toml"):
            if sys.version_info >= (3, 11):
                import tomllib
            else:
                import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]
            with open(path, "rb") as binary:
                data = tomllib.load(binary)
        elif lower.endswith(".json"):
            with open(path, encoding="utf-8") as text:
                data = json.load(text)
        else:
            raise InputError(f"config {path}: use a .toml or a .json file")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # tomllib.TOMLDecodeError and json.JSONDecodeError
        raise InputError(
            f"config {path}: not valid {lower.rsplit('.', 1)[-1].upper()}: {exc}"
        ) from None
    try:
        return CircuitBreakerConfig.from_mapping(data)
    except ValueError as exc:
        raise InputError(f"config {path}: {exc}") from None


def _configs(choices: Sequence[tuple[str, str]]) -> dict[str, CircuitBreakerConfig]:
    configs: dict[str, CircuitBreakerConfig] = {}
    for kind, value in choices or [("preset", name) for name in DEFAULT_PRESETS]:
        if kind == "preset":
            if value not in PRESETS:
                raise InputError(f"unknown preset {value!r} (known: {', '.join(PRESETS)})")
            label, config = value, getattr(ServicePresets, value)()
        else:
            label = os.path.splitext(os.path.basename(value))[0]
            config = _load_config(value)
        if label in configs:
            raise InputError(f"two configs are labelled {label!r}; give each a different name")
        configs[label] = config
    return configs


def _period(text: str) -> tuple[float, float]:
    start, sep, end = text.partition(":")
    try:
        if not sep:
            raise ValueError
        period = float(start), float(end)
    except ValueError:
        raise InputError(f"--unhealthy takes START:END in seconds, got {text!r}") from None
    if not (math.isfinite(period[0]) and math.isfinite(period[1]) and period[0] <= period[1]):
        raise InputError(f"--unhealthy needs finite START <= END, got {text!r}")
    return period


# -- output -------------------------------------------------------------------------


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _at(seconds: float) -> str:
    """Seconds as short as exact to the millisecond: 240, 12.5, 1764750060.25."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def _table(reports: dict[str, SimulationReport]) -> str:
    labels = list(reports)
    rows = [["", *labels]]
    rows += [
        [field] + [_cell(getattr(reports[label], field)) for label in labels]
        for field in REPORT_FIELDS
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(labels) + 1)]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _timeline(reports: dict[str, SimulationReport]) -> str:
    lines = []
    for label, report in reports.items():
        parts: list[tuple[str, SimulationReport]] = (
            [(f"{label} / {service}", r) for service, r in report.services.items()]
            if report.services
            else [(label, report)]
        )
        for title, part in parts:
            lines.append(f"{title}:")
            lines.extend(
                f"  {at:10.3f}s  {old.value} -> {new.value}" for at, old, new in part.transitions
            )
            if not part.transitions:
                lines.append("  (no transitions)")
    return "\n".join(lines)


class Progress:
    """A progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        self.total = total
        self.stream = stream
        self.shown = -1
        self.enabled = total > 0 and stream.isatty()

    def wrap(self, rows: Iterable[Row]) -> Iterator[Row]:
        if not self.enabled:
            yield from rows
            return
        step = max(1, self.total // 100)
        for done, row in enumerate(rows, 1):
            if done % step == 0 or done == self.total:
                self.draw(done)
            yield row
        self.stream.write("\r" + " " * 60 + "\r")
        self.stream.flush()

    def draw(self, done: int) -> None:
        percent = min(100, 100 * done // self.total)
        if percent != self.shown:
            self.shown = percent
            bar = "#" * (percent // 4) + "." * (25 - percent // 4)
            self.stream.write(f"\rsimulating [{bar}] {percent:3d}% of {self.total} calls")
            self.stream.flush()


class Profile:
    """The input's calls and failures per time bin, for the plot's top panel."""

    BINS = 300

    def __init__(self, first: float, last: float) -> None:
        self.first = first
        self.last = max(last, first + 1e-9)
        self.width = (self.last - self.first) / self.BINS
        self.calls = [0] * self.BINS
        self.failures = [0] * self.BINS

    def wrap(self, rows: Iterable[Row]) -> Iterator[Row]:
        first, width, top = self.first, self.width, self.BINS - 1
        calls, failures = self.calls, self.failures
        for row in rows:
            index = min(top, int((row[0] - first) / width))
            calls[index] += 1
            if row[2] is FAILURE:
                failures[index] += 1
            yield row


# -- the plot -----------------------------------------------------------------------

STATE_COLOURS = {
    CircuitState.CLOSED: "#4caf50",
    CircuitState.HALF_OPEN: "#ffb300",
    CircuitState.OPEN: "#e53935",
}
_WORST = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}


def _intervals(
    report: SimulationReport, first: float, last: float
) -> list[tuple[float, float, CircuitState]]:
    """(start, end, state) spans; with many services, the worst breaker's state."""
    parts = list(report.services.values()) or [report]
    events = sorted(
        ((at, index, new) for index, part in enumerate(parts) for at, _, new in part.transitions),
        key=lambda event: event[0],
    )
    states = [CircuitState.CLOSED] * len(parts)
    spans: list[tuple[float, float, CircuitState]] = []
    since, current = first, CircuitState.CLOSED
    for at, index, new in events:
        states[index] = new
        worst = max(states, key=lambda state: _WORST.get(state, 2))
        if worst is not current:
            if at > since:
                spans.append((since, at, current))
            since, current = at, worst
    spans.append((since, max(last, since), current))
    return spans


def _time_unit(span: float) -> tuple[float, str]:
    if span > 3 * 3600:
        return 3600.0, "hours"
    if span > 10 * 60:
        return 60.0, "minutes"
    return 1.0, "seconds"


def plot(
    path: str,
    title: str,
    profile: Profile,
    reports: dict[str, SimulationReport],
    unhealthy: Sequence[tuple[float, float]],
) -> None:
    """Write the input over time and each config's states and rejections as a PNG.

    Top: calls per second and the failure rate, unhealthy periods shaded.
    Below, one band per config: its state over time in colour, a tick under
    it wherever calls were rejected, and its numbers on the right.

    Raises:
        InputError: matplotlib is not installed (the `plot` extra).
    """
    try:
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install 'circuitry-breaker[plot]'") from None

    span = profile.last - profile.first
    unit, unit_name = _time_unit(span)
    # Scenarios start near 0: keep their clock. A trace may use any origin
    # (epoch seconds): count from its first call.
    origin = 0.0 if 0 <= profile.first < 0.05 * span else profile.first
    axis_name = f"time ({unit_name})" if origin == 0 else f"time since the first call ({unit_name})"

    def x(t: float) -> float:
        return (t - origin) / unit

    bins = profile.BINS
    centres = [x(profile.first + (i + 0.5) * profile.width) for i in range(bins)]
    shade, calls_colour, rate_colour = "#bdbdbd", "#90caf9", "#b71c1c"

    figure = Figure(figsize=(11, 2.8 + 0.8 * len(reports)), dpi=110, layout="constrained")
    axes = figure.subplots(
        len(reports) + 1, 1, sharex=True, height_ratios=[3.0] + [1.0] * len(reports)
    )
    top = axes[0]
    per_second = [count / profile.width for count in profile.calls]
    top.fill_between(centres, per_second, step="mid", color=calls_colour, linewidth=0)
    top.set_ylabel("calls / s")
    top.set_ylim(0, max(per_second) * 1.45 or 1)  # headroom for the legend
    rate = top.twinx()
    failure_rate = [
        100.0 * failed / calls if calls else math.nan
        for calls, failed in zip(profile.calls, profile.failures, strict=True)
    ]
    rate.plot(centres, failure_rate, color=rate_colour, linewidth=1.3)
    rate.set_ylim(0, 140)
    rate.set_yticks([0, 25, 50, 75, 100])
    rate.set_ylabel("failure rate %", color=rate_colour)
    for start, end in unhealthy:
        top.axvspan(x(start), x(end), color=shade, alpha=0.45, linewidth=0, zorder=0)
    top.set_title(title, loc="left", fontsize=11)
    handles: list[Any] = [
        Patch(color=calls_colour, label="calls per second"),
        Line2D([], [], color=rate_colour, label="failure rate (right axis)"),
    ]
    if unhealthy:
        handles.append(Patch(color=shade, alpha=0.45, label="unhealthy"))
    top.legend(handles=handles, loc="upper left", fontsize=8, ncols=len(handles), framealpha=0.9)

    for axis, (label, report) in zip(axes[1:], reports.items(), strict=True):
        for start, end, state in _intervals(report, profile.first, profile.last):
            axis.broken_barh(
                [(x(start), (end - start) / unit)], (0.4, 0.6), color=STATE_COLOURS[state]
            )
        rejected = [0] * bins
        for at in report.rejection_times:
            rejected[min(bins - 1, int((at - profile.first) / profile.width))] += 1
        marks = [centres[i] for i, count in enumerate(rejected) if count]
        axis.plot(marks, [0.2] * len(marks), "|", color="black", markersize=8, markeredgewidth=0.8)
        for start, end in unhealthy:
            for edge in (start, end):
                axis.axvline(x(edge), color="#616161", linestyle=":", linewidth=0.9)
        axis.set_ylim(0, 1)
        axis.set_yticks([])
        axis.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=10)
        summary = (
            f"rejected {report.rejected} ({report.rejected_would_succeed} would have succeeded)"
        )
        summary += f", let {report.failures_admitted} failures through"
        if unhealthy:
            detect, recover = report.detect_seconds, report.recover_seconds
            summary += ", not detected" if detect is None else f", detected in {detect:.1f} s"
            summary += (
                ", not closed again by the end"
                if recover is None
                else f", closed {recover:.1f} s after"
            )
        if report.services:
            summary = f"worst of {len(report.services)} services; " + summary
        axis.text(1.0, 1.03, summary, transform=axis.transAxes, ha="right", va="bottom", fontsize=8)
    axes[-1].set_xlim(x(profile.first) if origin else 0.0, x(profile.last))
    axes[-1].set_xlabel(axis_name)
    legend: list[Any] = [
        Patch(color=colour, label=state.value) for state, colour in STATE_COLOURS.items()
    ]
    legend.append(
        Line2D([], [], color="black", marker="|", linestyle="", markersize=9, label="rejections")
    )
    if unhealthy:
        legend.append(Line2D([], [], color="#616161", linestyle=":", label="unhealthy from / to"))
    figure.legend(handles=legend, loc="outside lower center", ncols=len(legend), fontsize=9)
    figure.savefig(path)


# -- the command line ---------------------------------------------------------------


class _Choice(argparse.Action):
    """--preset and --config into one list, in the order given (the columns' order)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        choices = list(getattr(namespace, self.dest) or [])
        choices.append((self.const, values))
        setattr(namespace, self.dest, choices)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m circuitry")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sim = commands.add_parser(
        "simulate",
        help="replay calls through breaker configs and compare what each would have done",
        description="Replay a trace or a built-in scenario through breaker configs "
        "(default: the four presets) on simulated time, and report what each did.",
    )
    source = sim.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--scenario", metavar="NAME", help=f"a built-in scenario: {', '.join(scenarios())}"
    )
    source.add_argument(
        "--trace",
        metavar="FILE",
        help="CSV (with a header) or JSON Lines: start, duration, "
        "outcome (success/failure/ignored), optional service",
    )
    sim.add_argument(
        "--preset",
        metavar="NAME",
        dest="configs",
        action=_Choice,
        const="preset",
        help=f"a ServicePresets name ({', '.join(PRESETS)}); repeatable",
    )
    sim.add_argument(
        "--config",
        metavar="FILE",
        dest="configs",
        action=_Choice,
        const="config",
        help="a TOML or JSON config (CircuitBreakerConfig.from_mapping); repeatable",
    )
    sim.add_argument(
        "--seed", metavar="N", type=int, default=0, help="the scenario's and jitter's seed"
    )
    sim.add_argument(
        "--unhealthy",
        metavar="START:END",
        action="append",
        default=[],
        help="a period (seconds) in which the dependency was unwell; repeatable",
    )
    sim.add_argument("--timeline", action="store_true", help="print every transition")
    sim.add_argument("--json", action="store_true", help="print one JSON document")
    sim.add_argument("--plot", metavar="FILE.png", help="write a plot (needs matplotlib)")
    return parser


def _fail(message: str) -> NoReturn:
    raise InputError(message)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; the exit status (2 for bad input)."""
    args = _parser().parse_args(argv)
    try:
        return _simulate(args)
    except InputError as exc:
        print(f"python -m circuitry simulate: error: {exc}", file=sys.stderr)
        return 2


def _simulate(args: argparse.Namespace) -> int:
    configs = _configs(args.configs)
    unhealthy = [_period(text) for text in args.unhealthy]
    rows: Iterable[Row]
    if args.scenario is not None:
        try:
            built = scenario(args.scenario, seed=args.seed)
        except ValueError as exc:
            _fail(str(exc))
        title = f"scenario {built.name} (seed {built.seed}): {built.description}"
        unhealthy = unhealthy or built.unhealthy
        rows = [(c.start, c.duration, _OUTCOME[c.outcome], c.service) for c in built.calls]
        count = len(built.calls)
        first, last = built.calls[0].start, max(c.end for c in built.calls)
    else:
        trace = Trace(args.trace)
        title = f"trace {os.path.basename(trace.path)}: {trace.count} calls"
        rows, count, first, last = trace.rows(), trace.count, trace.first, trace.last
    if args.plot and not args.plot.lower().endswith(".png"):
        _fail(f"--plot writes a PNG: give a FILE.png, got {args.plot!r}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401  (fail before the replay, not after)
        except ImportError:
            _fail("--plot needs matplotlib: pip install 'circuitry-breaker[plot]'")
    profile = Profile(first, last)
    if args.plot:
        rows = profile.wrap(rows)
    rows = Progress(count, sys.stderr).wrap(rows)
    try:
        reports = simulate_rows(
            rows, configs, unhealthy, seed=args.seed, record_rejections=bool(args.plot)
        )
    except ValueError as exc:  # pragma: no cover - rows were checked on the first pass
        _fail(str(exc))
    if args.plot:
        plot(args.plot, title, profile, reports, unhealthy)
    if args.json:
        print(json.dumps({"reports": {label: r.to_dict() for label, r in reports.items()}}))
        return 0
    print(title)
    if unhealthy:
        print("unhealthy: " + ", ".join(f"{_at(a)}-{_at(b)} s" for a, b in unhealthy))
    print()
    print(_table(reports))
    if args.timeline:
        print()
        print(_timeline(reports))
    return 0


_OUTCOME: dict[str, Outcome] = {outcome.value: outcome for outcome in OUTCOMES.values()}


def _entry() -> NoReturn:
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (| head): quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 1
    sys.exit(status)


if __name__ == "__main__":
    _entry()
