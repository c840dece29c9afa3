"""The command line behind `python -m circuitry simulate` (its usage: `circuitry.__main__`).

Arguments, configs (presets and files), the table, the timeline, the progress
bar, and `main`, which runs it all and turns bad input into one line and exit
status 2.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Any, NoReturn

import attrs

from .._config import CircuitBreakerConfig, ServicePresets
from ._errors import InputError
from ._plot import Profile, plot
from ._replay import REPORT_FIELDS, Row, SimulationReport, simulate_rows
from ._scenarios import scenario, scenarios
from ._trace import Trace, iso_seconds
from ._tune import RANGES, TuneResult, to_toml, tune, varied_values

__all__ = ["Progress", "entry", "main"]

PRESETS = sorted(name for name in vars(ServicePresets) if not name.startswith("_"))
DEFAULT_PRESETS = ["http_api", "database", "critical_service", "high_volume"]


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
    """`--unhealthy`: `START:END` in seconds, or `START/END` (seconds or ISO-8601 times)."""
    if "/" in text:
        start, sep, end = text.partition("/")
    else:
        start, sep, end = text.partition(":")
    try:
        if not sep:
            raise ValueError
        period = _when(start), _when(end)
    except ValueError:
        raise InputError(
            "--unhealthy takes START:END in seconds, or START/END in seconds or ISO-8601 "
            f"times (2025-12-03T08:20:00Z/2025-12-03T08:25:00Z), got {text!r}"
        ) from None
    if not (math.isfinite(period[0]) and math.isfinite(period[1]) and period[0] <= period[1]):
        raise InputError(f"--unhealthy needs finite START <= END, got {text!r}")
    return period


def _when(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return iso_seconds(text.strip())
    except ValueError:
        raise ValueError(text) from None


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
    """A row per field (the total over services), then, with services, a row per service."""
    labels = list(reports)
    services = list(dict.fromkeys(name for r in reports.values() for name in r.services))
    rows = [["", *labels]]
    for field in REPORT_FIELDS:
        rows.append([field] + [_cell(getattr(reports[label], field)) for label in labels])
        rows += [
            [f"  {service}"]
            + [
                _cell(getattr(reports[label].services.get(service), field, None))
                for label in labels
            ]
            for service in services
        ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(labels) + 1)]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _timeline(reports: dict[str, SimulationReport], origin: float) -> str:
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
                f"  {at - origin:10.3f}s  {old.value} -> {new.value}"
                for at, old, new in part.transitions
            )
            if not part.transitions:
                lines.append("  (no transitions)")
    return "\n".join(lines)


def _since(origin: float) -> Callable[[float], float]:
    """Seconds from the trace's start; to the microsecond, as the epoch leaves float noise."""
    if not origin:
        return lambda at: at
    return lambda at: round(at - origin, 6)


def _json(report: SimulationReport, since: Callable[[float], float]) -> dict[str, Any]:
    """`report.to_dict()` with times from the trace's start; combined transitions name services."""
    data = report.to_dict()
    data["transitions"] = [[since(at), old.value, new.value] for at, old, new in report.transitions]
    if report.services:
        # Merged as the report merges them: stably by time, the services in order.
        named = sorted(
            (
                (at, old, new, name)
                for name, part in report.services.items()
                for at, old, new in part.transitions
            ),
            key=lambda transition: transition[0],
        )
        data["transitions"] = [
            [since(at), old.value, new.value, name] for at, old, new, name in named
        ]
        data["services"] = {name: _json(part, since) for name, part in report.services.items()}
    return data


def _utc(seconds: float) -> str:
    """` (2025-12-03T08:20:00.028Z)` for an epoch time; nothing for another origin (monotonic)."""
    if seconds < 946684800:  # before 2000: not an epoch time
        return ""
    try:
        at = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):  # not an epoch time after all
        return ""
    return " (" + at.isoformat(timespec="milliseconds").replace("+00:00", "Z") + ")"


class Progress:
    """A progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(
        self, total: int, stream: IO[str], verb: str = "simulating", unit: str = "calls"
    ) -> None:
        self.total = total
        self.stream = stream
        self.verb = verb
        self.unit = unit
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
        self.clear()

    def draw(self, done: int) -> None:
        if not self.enabled:
            return
        percent = min(100, 100 * done // self.total)
        if percent != self.shown:
            self.shown = percent
            bar = "#" * (percent // 4) + "." * (25 - percent // 4)
            self.stream.write(f"\r{self.verb} [{bar}] {percent:3d}% of {self.total} {self.unit}")
            self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 70 + "\r")
            self.stream.flush()


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
    _source_arguments(sim)
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
    sim.add_argument("--timeline", action="store_true", help="print every transition")
    sim.add_argument("--json", action="store_true", help="print one JSON document")
    sim.add_argument("--plot", metavar="FILE.png", help="write a plot (needs matplotlib)")

    tune_ = commands.add_parser(
        "tune",
        help="search a base config's values on a trace or a scenario, and recommend one",
        description="Replay a trace or a built-in scenario through configs like the base "
        "(its rules' values varied over documented ranges), mark the Pareto front over "
        "(failures let through, healthy calls rejected, time to detect, time to recover), "
        "and recommend one.",
    )
    _source_arguments(tune_)
    tune_.add_argument(
        "--base",
        metavar="CONFIG",
        help=f"a preset ({', '.join(PRESETS)}) or a TOML/JSON config; "
        "default: CircuitBreakerConfig()",
    )
    tune_.add_argument(
        "--budget", metavar="N", type=int, default=50, help="configs to evaluate (default 50)"
    )
    tune_.add_argument(
        "--search",
        choices=("random", "grid"),
        default="random",
        help="random draws (default) or a grid of 4 levels per field",
    )
    tune_.add_argument(
        "--jobs", metavar="N", type=int, default=None, help="worker processes (default: CPUs)"
    )
    tune_.add_argument("--json", action="store_true", help="print one JSON document")
    tune_.add_argument("--out", metavar="FILE.toml", help="write the recommended config")
    return parser


def _source_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--scenario", metavar="NAME", help=f"a built-in scenario: {', '.join(scenarios())}"
    )
    source.add_argument(
        "--trace",
        metavar="FILE",
        help="CSV (with a header) or JSON Lines: start (seconds or ISO-8601), duration, "
        "outcome (success/failure/ignored) or HTTP status, optional service and "
        "retry_after (seconds: a 429 with it is backpressure)",
    )
    parser.add_argument(
        "--seed", metavar="N", type=int, default=0, help="the scenario's and jitter's seed"
    )
    parser.add_argument(
        "--unhealthy",
        metavar="START:END",
        action="append",
        default=[],
        help="a period in which the dependency was unwell: START:END in seconds, or "
        "START/END in seconds or ISO-8601 times; repeatable",
    )


def _fail(message: str) -> NoReturn:
    raise InputError(message)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; the exit status (2 for bad input)."""
    args = _parser().parse_args(argv)
    try:
        return _tune(args) if args.command == "tune" else _simulate(args)
    except InputError as exc:
        print(f"python -m circuitry {args.command}: error: {exc}", file=sys.stderr)
        return 2


@attrs.frozen
class _Source:
    """What `--scenario` or `--trace` gave: the calls, and what the output needs of them."""

    title: str
    rows: Iterable[Row]
    count: int
    first: float
    last: float
    origin: float  # times are printed from here
    unhealthy: list[tuple[float, float]]


def _source(args: argparse.Namespace) -> _Source:
    unhealthy = [_period(text) for text in args.unhealthy]
    if args.scenario is not None:
        try:
            built = scenario(args.scenario, seed=args.seed)
        except ValueError as exc:
            _fail(str(exc))
        return _Source(
            f"scenario {built.name} (seed {built.seed}): {built.description}",
            [call.row() for call in built.calls],
            len(built.calls),
            built.calls[0].start,
            max(c.end for c in built.calls),
            0.0,  # a scenario's own times (its unhealthy periods) count from 0
            unhealthy or built.unhealthy,
        )
    trace = Trace(args.trace)
    return _Source(
        f"trace {os.path.basename(trace.path)}: {trace.count} calls",
        trace.rows(),
        trace.count,
        trace.first,
        trace.last,
        trace.first,
        unhealthy,
    )


def _preamble(source: _Source, since: Callable[[float], float]) -> None:
    print(source.title)
    if source.origin:
        origin = source.origin
        print(f"start: {_at(origin)}{_utc(origin)}; the times below are seconds from it")
    if source.unhealthy:
        periods = ", ".join(f"{_at(since(a))}-{_at(since(b))} s" for a, b in source.unhealthy)
        print("unhealthy: " + periods)


def _simulate(args: argparse.Namespace) -> int:
    configs = _configs(args.configs)
    source = _source(args)
    rows, unhealthy, origin = source.rows, source.unhealthy, source.origin
    title = source.title
    if args.plot and not args.plot.lower().endswith(".png"):
        _fail(f"--plot writes a PNG: give a FILE.png, got {args.plot!r}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401  (fail before the replay, not after)
        except ImportError:
            _fail("--plot needs matplotlib: pip install 'circuitry-breaker[plot]'")
    profile = Profile(source.first, source.last)
    if args.plot:
        rows = profile.wrap(rows)
    rows = Progress(source.count, sys.stderr).wrap(rows)
    try:
        reports = simulate_rows(
            rows, configs, unhealthy, seed=args.seed, record_rejections=bool(args.plot)
        )
    except ValueError as exc:  # pragma: no cover - rows were checked on the first pass
        _fail(str(exc))
    if args.plot:
        plot(args.plot, title, profile, reports, unhealthy)
    # Times are printed from the trace's start (given once), not as 10-digit epochs.
    since = _since(origin)
    if args.json:
        out = {label: _json(r, since) for label, r in reports.items()}
        print(json.dumps({"start": origin, "reports": out}))
        return 0
    _preamble(source, since)
    print()
    print(_table(reports))
    if args.timeline:
        print()
        print(_timeline(reports, origin))
    return 0


_SHORT = {
    "failure_threshold_count": "count",
    "failure_threshold_percentage": "fail%",
    "slow_call_rate_threshold": "slow%",
    "minimum_calls": "min_calls",
    "failure_window": "window_s",
    "failure_window_calls": "window_calls",
    "reset_timeout": "reset_s",
    "success_threshold_count": "successes",
    "half_open_failure_rate": "trial_fail%",
    "adaptive_throttle.k": "throttle_k",
}
assert set(_SHORT) == set(RANGES)


def _base(text: str | None) -> CircuitBreakerConfig:
    if text is None:
        return CircuitBreakerConfig()
    if text in PRESETS:
        config: CircuitBreakerConfig = getattr(ServicePresets, text)()
        return config
    if text.lower().endswith((".toml", ".json")):
        return _load_config(text)
    raise InputError(
        f"--base takes a preset ({', '.join(PRESETS)}) or a .toml/.json config, got {text!r}"
    )


def _value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return _cell(value)


def _tune_table(result: TuneResult) -> str:
    fields = [f for f in REPORT_FIELDS if f != "calls"]
    header = ["#", "", *(_SHORT[name] for name in result.varied), *fields]
    rows = [header]
    for index, entry in enumerate(result.configs):
        mark = ">" if index == result.recommended else ("*" if entry.pareto else "")
        values = varied_values(entry.config, result.varied)
        rows.append(
            [str(index), mark]
            + [_value(values[name]) for name in result.varied]
            + [_cell(getattr(entry.report, field)) for field in fields]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _tune_json(result: TuneResult, origin: float) -> dict[str, Any]:
    configs = []
    for entry in result.configs:
        data: dict[str, Any] = {name: getattr(entry.report, name) for name in REPORT_FIELDS}
        data["config"] = entry.config.to_mapping()
        data["pareto"] = entry.pareto
        configs.append(data)
    return {
        "start": origin,
        "varied": result.varied,
        "configs": configs,
        "recommended": result.recommended,
        "reason": result.reason,
    }


def _tune(args: argparse.Namespace) -> int:
    base = _base(args.base)
    if args.budget < 1:
        _fail(f"--budget must be >= 1, got {args.budget}")
    if args.jobs is not None and args.jobs < 1:
        _fail(f"--jobs must be >= 1, got {args.jobs}")
    if args.out and not args.out.lower().endswith(".toml"):
        _fail(f"--out writes TOML: give a FILE.toml, got {args.out!r}")
    source = _source(args)
    rows = list(source.rows)
    bar: list[Progress] = []

    def progress(done: int, total: int) -> None:
        if not bar:
            bar.append(Progress(total, sys.stderr, "tuning", "configs"))
        bar[0].draw(done)

    result = tune(
        rows,
        base,
        source.unhealthy,
        budget=args.budget,
        seed=args.seed,
        search=args.search,
        jobs=args.jobs,
        progress=progress,
    )
    if bar:
        bar[0].clear()
    best = result.best
    if args.out:
        comment = (
            f"Recommended by python -m circuitry tune on {source.title} "
            f"(seed {args.seed}, budget {args.budget}, {args.search} search):\n{result.reason}"
        )
        try:
            with open(args.out, "w", encoding="utf-8") as file:
                file.write(to_toml(best.config, comment))
        except OSError as exc:
            _fail(f"cannot write {args.out}: {exc.strerror or exc}")
    if args.json:
        print(json.dumps(_tune_json(result, source.origin)))
        return 0
    _preamble(source, _since(source.origin))
    varied = ", ".join(result.varied)
    print(f"{len(result.configs)} configs like the base (varied: {varied}); #0 is the base")
    print()
    print(_tune_table(result))
    print()
    front = [i for i, entry in enumerate(result.configs) if entry.pareto]
    print(
        "* on the Pareto front (no other config is as good on every count and better on one): "
        + ", ".join(f"#{i}" for i in front)
    )
    print(f"> recommended: #{result.recommended}, {result.reason}")
    changed = {
        name: value
        for name, value in varied_values(best.config, result.varied).items()
        if value != varied_values(base, result.varied)[name]
    }
    if changed:
        print("  " + ", ".join(f"{name} = {_value(value)}" for name, value in changed.items()))
    else:
        print("  (the base itself)")
    if args.out:
        print(f"wrote {args.out}: python -m circuitry simulate --config {args.out} ...")
    return 0


def entry() -> NoReturn:
    """`python -m circuitry`: exit with `main`'s status (1, quietly, if stdout is closed early)."""
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (| head): quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 1
    sys.exit(status)
