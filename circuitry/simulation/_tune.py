"""`tune`: search a base config's values by replaying calls, and recommend one.

The search varies the values of the rules the base config has on (it never
turns a rule on or off: to compare shapes, tune from each shape), each over
the range in `RANGES`. Every config is replayed through the same calls, as
`simulate_rows` replays them (`replay_ordered`: the calls' order is worked
out once for all configs); the four counts that matter to a breaker's owner
are compared:

- `failures_admitted`: failed calls let through (the dependency's load
  while it is down, and the errors users saw);
- `rejected_would_succeed`: healthy calls rejected;
- `detect_seconds` and `recover_seconds` (only with unhealthy periods): a
  config that never detects counts the rest of the trace after trouble
  began, one that never recovers the rest after it ended.

A config is on the Pareto front when no other is as good on all four and
better on one. The recommendation is the config that decided the fewest
calls wrongly (failures let through plus healthy calls rejected: a slow
detection shows as failures let through, a slow recovery as healthy calls
rejected); among equals, the quickest to detect, then to recover. It is
always on the front.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from .._config import AdaptiveThrottle, CircuitBreakerConfig
from ._replay import Row, SimulationReport, event_order, replay_ordered

__all__ = ["RANGES", "TuneResult", "Tuned", "tune"]


@attrs.frozen
class _Range:
    low: float
    high: float
    scale: str  # "log": spread by ratio; "linear"; "step5": multiples of 5
    integer: bool
    when: str  # when the field is varied, in words (the docs' table)

    def draw(self, rng: random.Random) -> float:
        if self.scale == "log":
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        elif self.scale == "step5":
            value = 5.0 * rng.randint(math.ceil(self.low / 5), math.floor(self.high / 5))
        else:
            value = rng.uniform(self.low, self.high)
        return self._round(value)

    def levels(self, count: int) -> list[float]:
        """`count` values spread evenly over the range (on its scale), without repeats."""
        result = []
        for i in range(count):
            share = i / (count - 1) if count > 1 else 0.5
            if self.scale == "log":
                value = math.exp(
                    math.log(self.low) + share * (math.log(self.high) - math.log(self.low))
                )
            else:
                value = self.low + share * (self.high - self.low)
                if self.scale == "step5":
                    value = 5.0 * round(value / 5)
            result.append(self._round(value))
        return list(dict.fromkeys(result))

    def _round(self, value: float) -> float:
        if self.integer:
            return float(round(value))
        # Two significant digits: configs a person would write (12 s, 0.35 s, 140 s).
        return float(f"{value:.2g}")


RANGES: dict[str, _Range] = {
    "failure_threshold_count": _Range(2, 50, "log", True, "the count rule is on"),
    "failure_threshold_percentage": _Range(10, 90, "step5", False, "the failure-rate rule is on"),
    "slow_call_rate_threshold": _Range(10, 100, "step5", False, "the slow-call rule is on"),
    "minimum_calls": _Range(5, 100, "log", True, "a rate rule is on"),
    "failure_window": _Range(5, 300, "log", False, "a time window is set"),
    "failure_window_calls": _Range(10, 500, "log", True, "a count window is set"),
    "reset_timeout": _Range(1, 300, "log", False, "always"),
    "success_threshold_count": _Range(1, 5, "linear", True, "always"),
    "half_open_failure_rate": _Range(10, 90, "step5", False, "the half-open rate rule is on"),
    "adaptive_throttle.k": _Range(1.1, 4, "linear", False, "adaptive throttling is on"),
}
"""The fields `tune` varies, each over `[low, high]`, and when (see the docs' table)."""

_GRID_LEVELS = 4


def _varied(base: CircuitBreakerConfig) -> list[str]:
    """The fields of `RANGES` that the base config has on."""
    rate = (
        base.failure_threshold_percentage is not None or base.slow_call_rate_threshold is not None
    )
    on = {
        "failure_threshold_count": base.failure_threshold_count is not None,
        "failure_threshold_percentage": base.failure_threshold_percentage is not None,
        "slow_call_rate_threshold": base.slow_call_rate_threshold is not None,
        "minimum_calls": rate,
        "failure_window": base.failure_window is not None,
        "failure_window_calls": base.failure_window_calls is not None,
        "reset_timeout": True,
        "success_threshold_count": True,
        "half_open_failure_rate": base.half_open_failure_rate is not None,
        "adaptive_throttle.k": base.adaptive_throttle is not None,
    }
    return [name for name in RANGES if on[name]]


def _build(base: CircuitBreakerConfig, values: Mapping[str, float]) -> CircuitBreakerConfig:
    """The base with `values`; a count window bounds the counts that must fit in it.

    Raises:
        ValueError: the values make no valid config (the caller draws again).
    """
    changes: dict[str, Any] = {}
    for name, value in values.items():
        if name == "adaptive_throttle.k":
            assert base.adaptive_throttle is not None
            changes["adaptive_throttle"] = attrs.evolve(base.adaptive_throttle, k=value)
        else:
            changes[name] = int(value) if RANGES[name].integer else value
    calls = changes.get("failure_window_calls", base.failure_window_calls)
    if calls is not None:
        for name in ("failure_threshold_count", "minimum_calls"):
            if name in changes:
                changes[name] = min(changes[name], calls)
    if base.max_reset_timeout is not None and "reset_timeout" in changes:
        # max_reset_timeout keeps its ratio to reset_timeout (it must stay >= it).
        ratio = base.max_reset_timeout / base.reset_timeout
        changes["max_reset_timeout"] = changes["reset_timeout"] * ratio
    return base.evolve(**changes)


def _candidates(
    base: CircuitBreakerConfig, budget: int, seed: int, search: str
) -> list[CircuitBreakerConfig]:
    """The base first, then up to `budget - 1` other configs, the same for the same seed."""
    fields = _varied(base)
    rng = random.Random(f"tune:{seed}")
    seen = {_key(base)}
    configs = [base]
    draws: Iterable[dict[str, float]]
    if search == "grid":
        grid: list[dict[str, float]] = [{}]
        for name in fields:
            grid = [{**point, name: v} for point in grid for v in RANGES[name].levels(_GRID_LEVELS)]
        if len(grid) > budget - 1:  # an even sample of the grid, in grid order
            rng.shuffle(grid)
            grid = grid[: budget - 1]
        draws = grid
    else:
        draws = ({name: RANGES[name].draw(rng) for name in fields} for _ in range(budget * 20))
    for values in draws:
        if len(configs) >= budget:
            break
        try:
            config = _build(base, values)
        except ValueError:  # pragma: no cover - _build keeps values valid
            continue
        key = _key(config)
        if key not in seen:
            seen.add(key)
            configs.append(config)
    return configs


def _key(config: CircuitBreakerConfig) -> str:
    return repr(sorted(config.to_mapping().items()))


# -- evaluation -------------------------------------------------------------------

_ROWS: Sequence[Row] = ()  # a worker's rows and their order (set before the fork,
_ORDER: Sequence[int] = ()  # or by the initializer)


def _init_worker(rows: Sequence[Row], order: Sequence[int]) -> None:
    global _ROWS, _ORDER
    _ROWS, _ORDER = rows, order


def _run_chunk(
    configs: Sequence[CircuitBreakerConfig], unhealthy: Sequence[tuple[float, float]], seed: int
) -> list[SimulationReport]:
    return [replay_ordered(_ROWS, _ORDER, config, unhealthy, seed) for config in configs]


# Below this many config-calls, worker processes cost more than they save.
_PARALLEL_ABOVE = 400_000
_CHUNK = 2  # configs per task: small, for an even spread over the workers


def _evaluate(
    rows: Sequence[Row],
    configs: Sequence[CircuitBreakerConfig],
    unhealthy: Sequence[tuple[float, float]],
    seed: int,
    jobs: int,
    done: Callable[[int], None],
) -> list[SimulationReport]:
    chunks = [configs[i : i + _CHUNK] for i in range(0, len(configs), _CHUNK)]
    order = event_order(rows)  # the same for every config: computed once
    if jobs <= 1 or len(chunks) == 1 or len(rows) * len(configs) < _PARALLEL_ABOVE:
        _init_worker(rows, order)
        try:
            results = []
            for chunk in chunks:
                results += _run_chunk(chunk, unhealthy, seed)
                done(len(results))
            return results
        finally:
            _init_worker((), ())
    import concurrent.futures
    import multiprocessing

    # fork shares the rows for free; elsewhere each worker gets them once, pickled.
    forking = "fork" in multiprocessing.get_all_start_methods()
    workers = min(jobs, len(chunks))
    _init_worker(rows, order)  # inherited by forked workers
    try:
        if forking:
            context = multiprocessing.get_context("fork")
            pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=context)
        else:  # pragma: no cover - Windows, and macOS builds without fork
            pool = concurrent.futures.ProcessPoolExecutor(
                workers, initializer=_init_worker, initargs=(rows, order)
            )
        with pool:
            futures = [pool.submit(_run_chunk, chunk, unhealthy, seed) for chunk in chunks]
            finished = 0
            for future in concurrent.futures.as_completed(futures):
                finished += len(future.result())
                done(finished)
            return [report for future in futures for report in future.result()]
    finally:
        _init_worker((), ())


# -- scoring ----------------------------------------------------------------------


@attrs.frozen
class Tuned:
    """One evaluated config: the config, its report, and how it compares."""

    config: CircuitBreakerConfig
    report: SimulationReport
    scores: tuple[float, ...]
    pareto: bool


@attrs.frozen
class TuneResult:
    """What `tune` found: every config in the order evaluated (the base first)."""

    configs: list[Tuned]
    recommended: int
    reason: str
    varied: list[str]

    @property
    def best(self) -> Tuned:
        """The recommended config's entry."""
        return self.configs[self.recommended]


def _scores(
    report: SimulationReport, unhealthy: Sequence[tuple[float, float]], end: float
) -> tuple[float, ...]:
    counts: tuple[float, ...] = (report.failures_admitted, report.rejected_would_succeed)
    if not unhealthy:
        return counts
    first = min(start for start, _ in unhealthy)
    last = max(stop for _, stop in unhealthy)
    detect = report.detect_seconds
    recover = report.recover_seconds
    if detect is None:
        detect = max(0.0, end - first)  # never: the rest of the trace
    if recover is None:
        # Never open in trouble (nothing to recover from), or never closes again.
        recover = 0.0 if report.detect_seconds is None else max(0.0, end - last)
    return (*counts, detect, recover)


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    pairs = list(zip(a, b, strict=True))
    return all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)


def _rank(
    configs: Sequence[CircuitBreakerConfig],
    reports: Sequence[SimulationReport],
    unhealthy: Sequence[tuple[float, float]],
    end: float,
) -> tuple[list[Tuned], int]:
    scores = [_scores(r, unhealthy, end) for r in reports]
    tuned = [
        Tuned(config, report, score, not any(_dominates(other, score) for other in scores))
        for config, report, score in zip(configs, reports, scores, strict=True)
    ]
    # The fewest calls decided wrongly; then the quickest to detect, then to recover.
    # (Such a config is on the front; the filter only says so.)
    best = min(
        (i for i, t in enumerate(tuned) if t.pareto),
        key=lambda i: (tuned[i].scores[0] + tuned[i].scores[1], *tuned[i].scores[2:], i),
    )
    return tuned, best


def _reason(tuned: Sequence[Tuned], best: int, unhealthy: bool) -> str:
    let, rejected, *times = tuned[best].scores
    front = sum(t.pareto for t in tuned)
    reason = (
        f"of the {front} configs on the Pareto front, the fewest calls decided wrongly: "
        f"{_short(let + rejected)} ({_short(let)} failures let through + "
        f"{_short(rejected)} healthy calls rejected)"
    )
    if unhealthy:
        detect, recover = times
        reason += f"; detects in {_short(detect)} s, recovers in {_short(recover)} s"
    return reason


def _short(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.1f}"


def tune(
    rows: Sequence[Row],
    base: CircuitBreakerConfig | None = None,
    unhealthy: Iterable[tuple[float, float]] | None = None,
    *,
    budget: int = 50,
    seed: int = 0,
    search: str = "random",
    jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TuneResult:
    """Search configs like `base` on `rows` (in start order); rank them and recommend one.

    Args:
        rows: `(start, duration, outcome, service)` rows in start order, as
            `simulate_rows` takes them (read once per config: a sequence).
        base: the config whose values are varied (default: `CircuitBreakerConfig()`);
            it is evaluated first, as entry 0.
        unhealthy: `(start, end)` periods in which the dependency was unwell;
            without them only failures let through and healthy calls rejected
            are compared.
        budget: how many configs to evaluate, the base included (>= 1).
        seed: the search's seed, and the replay's (jitter).
        search: `"random"` (draws from `RANGES`) or `"grid"` (4 levels per
            field; an even sample of the grid when it is larger than the budget).
        jobs: worker processes (default: the CPUs); 1 replays in this process.
        progress: called as `progress(done, total)` after each batch of configs.

    Raises:
        ValueError: a bad `budget`, `search` or `jobs`, or rows out of order.
    """
    if base is None:
        base = CircuitBreakerConfig()
    if not isinstance(base, CircuitBreakerConfig):
        raise TypeError(f"base must be a CircuitBreakerConfig, got {base!r}")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be an int >= 1, got {budget!r}")
    if search not in ("random", "grid"):
        raise ValueError(f"search must be 'random' or 'grid', got {search!r}")
    if jobs is None:
        jobs = os.cpu_count() or 1
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an int >= 1, got {jobs!r}")
    if not isinstance(rows, Sequence):
        rows = list(rows)
    if not rows:
        raise ValueError("rows: no calls to replay")
    periods = [(float(a), float(b)) for a, b in unhealthy or ()]
    configs = _candidates(base, budget, seed, search)
    total = len(configs)
    reports = _evaluate(
        rows,
        configs,
        periods,
        seed,
        jobs,
        (lambda done: progress(done, total)) if progress is not None else (lambda done: None),
    )
    end = max(start + duration for start, duration, _, _ in rows)
    tuned, best = _rank(configs, reports, periods, end)
    return TuneResult(tuned, best, _reason(tuned, best, bool(periods)), _varied(base))


def varied_values(config: CircuitBreakerConfig, fields: Sequence[str]) -> dict[str, object]:
    """The values of `fields` (names from `RANGES`) in `config`."""
    values: dict[str, object] = {}
    for name in fields:
        if name == "adaptive_throttle.k":
            throttle: AdaptiveThrottle | None = config.adaptive_throttle
            values[name] = None if throttle is None else throttle.k
        else:
            values[name] = getattr(config, name)
    return values


def to_toml(config: CircuitBreakerConfig, comment: str = "") -> str:
    """`config.to_mapping()` as TOML that `from_mapping` reads back (None as `false`)."""
    lines = [f"# {line}" for line in comment.splitlines()]
    tables = []
    for name, value in config.to_mapping().items():
        if isinstance(value, Mapping):
            tables.append((name, value))
        else:
            lines.append(f"{name} = {_toml_value(value)}")
    for name, table in tables:
        lines.append("")
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    import json

    if value is None:
        return "false"  # TOML has no null: false turns an optional rule off
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")  # pragma: no cover - to_mapping gives plain data
