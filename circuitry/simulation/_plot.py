"""The `--plot` PNG: the input over time, and each config's states and rejections.

matplotlib (the `plot` extra) is imported only when a plot is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .._classify import FAILURE
from .._state import CircuitState
from ._errors import InputError
from ._replay import Row, SimulationReport

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["Profile", "plot"]


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


class _Time:
    """The shared x axis: simulated seconds as plotted (in its unit, from its origin)."""

    def __init__(self, profile: Profile) -> None:
        span = profile.last - profile.first
        self.unit, unit_name = _time_unit(span)
        # Scenarios start near 0: keep their clock. A trace may use any origin
        # (epoch seconds): count from its first call.
        self.origin = 0.0 if 0 <= profile.first < 0.05 * span else profile.first
        self.label = (
            f"time ({unit_name})"
            if self.origin == 0
            else f"time since the first call ({unit_name})"
        )

    def __call__(self, t: float) -> float:
        return (t - self.origin) / self.unit


_SHADE = "#bdbdbd"  # unhealthy periods, top panel
_CALLS_COLOUR = "#90caf9"
_RATE_COLOUR = "#b71c1c"
_EDGE_COLOUR = "#616161"  # unhealthy periods' edges, in the bands


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
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install 'circuitry-breaker[plot]'") from None

    x = _Time(profile)
    centres = [x(profile.first + (i + 0.5) * profile.width) for i in range(profile.BINS)]
    zooms = _zooms(reports, unhealthy, profile)
    figure = Figure(
        figsize=(11 + 2.6 * len(zooms), 2.8 + 0.8 * len(reports)), dpi=110, layout="constrained"
    )
    grid = figure.subplots(
        len(reports) + 1,
        1 + len(zooms),
        sharex="col",
        squeeze=False,
        height_ratios=[3.0] + [1.0] * len(reports),
        width_ratios=[11.0] + [2.6] * len(zooms),
    )
    axes = [row[0] for row in grid]
    _draw_input(axes[0], title, profile, unhealthy, x, centres)
    for axis, (label, report) in zip(axes[1:], reports.items(), strict=True):
        _draw_band(axis, label, report, profile, unhealthy, x, centres)
    axes[-1].set_xlim(x(profile.first) if x.origin else 0.0, x(profile.last))
    axes[-1].set_xlabel(x.label)
    for column, zoom in enumerate(zooms, 1):
        _draw_zoom([row[column] for row in grid], zoom, reports)
    legend = _band_legend(unhealthy)
    figure.legend(handles=legend, loc="outside lower center", ncols=len(legend), fontsize=9)
    figure.savefig(path)


class _Zoom:
    """A close-up of the bands around one instant: seconds from it, on a narrow axis."""

    def __init__(self, title: str, anchor: float, low: float, high: float) -> None:
        self.title = title
        self.anchor = anchor
        self.low = low
        self.high = high


def _zooms(
    reports: dict[str, SimulationReport],
    unhealthy: Sequence[tuple[float, float]],
    profile: Profile,
) -> list[_Zoom]:
    """Close-ups of detection (the first unhealthy start) and recovery (the last end).

    On a 15-minute axis a detection 1 s sooner is a pixel; here it spans the
    panel. Each close-up reaches past the slowest config's detection (or
    recovery), up to a quarter of the whole replay.
    """
    if not unhealthy:
        return []
    span = profile.last - profile.first
    cap = max(5.0, span / 4)
    start = min(a for a, _ in unhealthy)
    end = max(b for _, b in unhealthy)
    detects = [r.detect_seconds for r in reports.values() if r.detect_seconds is not None]
    recovers = [r.recover_seconds for r in reports.values() if r.recover_seconds is not None]
    zooms = []
    for title, anchor, times in (
        ("close-up: detection\nseconds from the unhealthy start", start, detects),
        ("close-up: recovery\nseconds from the unhealthy end", end, recovers),
    ):
        reach = min(cap, max([2.0, *times]) * 1.25)
        before = max(1.0, reach * 0.15)
        zooms.append(
            _Zoom(
                title,
                anchor,
                max(profile.first, anchor - before),
                min(profile.last, anchor + reach),
            )
        )
    return zooms


def _draw_zoom(
    axes: Sequence[Axes],
    zoom: _Zoom,
    reports: dict[str, SimulationReport],
) -> None:
    """One close-up column: the top cell names it, each band below as in the main column.

    The top cell has no plot: the input's bins are seconds wide, as wide as a close-up.
    """
    top, bands = axes[0], axes[1:]
    top.set_axis_off()
    top.text(0.0, 0.0, zoom.title, fontsize=9, ha="left", va="bottom", transform=top.transAxes)
    for axis, report in zip(bands, reports.values(), strict=True):
        for start, end, state in _intervals(report, zoom.low, zoom.high):
            start, end = max(start, zoom.low), min(end, zoom.high)
            if end > start:
                axis.broken_barh(
                    [(start - zoom.anchor, end - start)], (0.4, 0.6), color=STATE_COLOURS[state]
                )
        marks = [at - zoom.anchor for at in report.rejection_times if zoom.low <= at <= zoom.high]
        axis.plot(marks, [0.2] * len(marks), "|", color="black", markersize=6, markeredgewidth=0.5)
        axis.axvline(0.0, color=_EDGE_COLOUR, linestyle=":", linewidth=0.9)
        axis.set_ylim(0, 1)
        axis.set_yticks([])
    bands[-1].set_xlim(zoom.low - zoom.anchor, zoom.high - zoom.anchor)
    bands[-1].set_xlabel("seconds", fontsize=9)


def _draw_input(
    top: Axes,
    title: str,
    profile: Profile,
    unhealthy: Sequence[tuple[float, float]],
    x: _Time,
    centres: list[float],
) -> None:
    """The top panel: calls per second, the failure rate (right axis), unhealthy shaded."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    per_second = [count / profile.width for count in profile.calls]
    top.fill_between(centres, per_second, step="mid", color=_CALLS_COLOUR, linewidth=0)
    top.set_ylabel("calls / s")
    top.set_ylim(0, max(per_second) * 1.45 or 1)  # headroom for the legend
    rate = top.twinx()
    failure_rate = [
        100.0 * failed / calls if calls else math.nan
        for calls, failed in zip(profile.calls, profile.failures, strict=True)
    ]
    rate.plot(centres, failure_rate, color=_RATE_COLOUR, linewidth=1.3)
    rate.set_ylim(0, 140)
    rate.set_yticks([0, 25, 50, 75, 100])
    rate.set_ylabel("failure rate %", color=_RATE_COLOUR)
    for start, end in unhealthy:
        top.axvspan(x(start), x(end), color=_SHADE, alpha=0.45, linewidth=0, zorder=0)
    top.set_title(title, loc="left", fontsize=11)
    handles: list[Any] = [
        Patch(color=_CALLS_COLOUR, label="calls per second"),
        Line2D([], [], color=_RATE_COLOUR, label="failure rate (right axis)"),
    ]
    if unhealthy:
        handles.append(Patch(color=_SHADE, alpha=0.45, label="unhealthy"))
    top.legend(handles=handles, loc="upper left", fontsize=8, ncols=len(handles), framealpha=0.9)


def _draw_band(
    axis: Axes,
    label: str,
    report: SimulationReport,
    profile: Profile,
    unhealthy: Sequence[tuple[float, float]],
    x: _Time,
    centres: list[float],
) -> None:
    """One config's band: its states in colour, rejection ticks, its numbers on the right."""
    for start, end, state in _intervals(report, profile.first, profile.last):
        axis.broken_barh(
            [(x(start), (end - start) / x.unit)], (0.4, 0.6), color=STATE_COLOURS[state]
        )
    bins = profile.BINS
    rejected = [0] * bins
    for at in report.rejection_times:
        rejected[min(bins - 1, int((at - profile.first) / profile.width))] += 1
    marks = [centres[i] for i, count in enumerate(rejected) if count]
    axis.plot(marks, [0.2] * len(marks), "|", color="black", markersize=8, markeredgewidth=0.8)
    for start, end in unhealthy:
        for edge in (start, end):
            axis.axvline(x(edge), color=_EDGE_COLOUR, linestyle=":", linewidth=0.9)
    axis.set_ylim(0, 1)
    axis.set_yticks([])
    axis.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=10)
    summary = _summary(report, unhealthy)
    axis.text(1.0, 1.03, summary, transform=axis.transAxes, ha="right", va="bottom", fontsize=8)


def _summary(report: SimulationReport, unhealthy: Sequence[tuple[float, float]]) -> str:
    """A band's numbers: rejections, failures let through, detection and recovery."""
    summary = f"rejected {report.rejected} ({report.rejected_would_succeed} would have succeeded)"
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
    return summary


def _band_legend(unhealthy: Sequence[tuple[float, float]]) -> list[Any]:
    """The figure's legend for the bands: the states' colours, rejections, unhealthy edges."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    legend: list[Any] = [
        Patch(color=colour, label=state.value) for state, colour in STATE_COLOURS.items()
    ]
    legend.append(
        Line2D([], [], color="black", marker="|", linestyle="", markersize=9, label="rejections")
    )
    if unhealthy:
        legend.append(
            Line2D([], [], color=_EDGE_COLOUR, linestyle=":", label="unhealthy from / to")
        )
    return legend
