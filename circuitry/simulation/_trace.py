"""Reading a trace file (CSV with a header, or JSON Lines) into replay rows.

A trace is read twice, streamed both times: `Trace` checks every row and
counts them, then `Trace.rows()` streams them again (or sorts them in memory
when they are not in start order).
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

from ._errors import InputError
from ._replay import OUTCOMES, Row

__all__ = ["Trace"]


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
