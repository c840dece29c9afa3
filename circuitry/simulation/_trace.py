"""Reading a trace file (CSV with a header, or JSON Lines) into replay rows.

A trace is read twice, streamed both times: `Trace` checks every row and
counts them, then `Trace.rows()` streams them again (or sorts them in memory
when they are not in start order).

`start` is seconds (any origin) or an ISO-8601 time; the outcome is an
`outcome` word or an HTTP `status` (5xx and 429 fail, others succeed). An
optional `retry_after` (seconds) makes a 429 backpressure, as the HTTP
transports take it (and goes with the outcome word `backpressure`).
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import re
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

from .._classify import FAILURE, SUCCESS, Outcome
from ._errors import InputError
from ._replay import BACKPRESSURE, MAX_RETRY_AFTER, OUTCOMES, Backpressure, Row

__all__ = ["Trace", "iso_seconds"]


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


# Parsed by hand, not by datetime.fromisoformat: Python 3.10's takes no "Z"
# and only 3 or 6 digits of fraction.
_ISO_TIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d+))?)?"
    r"\s*(?:([Zz])|([+-])(\d\d):?(\d\d))?"
)
_UTC = datetime.timezone.utc


def iso_seconds(text: str) -> float:
    """An ISO-8601 time as epoch seconds (no offset: UTC).

    Raises:
        ValueError: not an ISO-8601 time, or not a valid one (the 31st of June).
    """
    match = _ISO_TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"not an ISO-8601 time: {text!r}")
    year, month, day, hour, minute, second, fraction, _, sign, oh, om = match.groups()
    at = datetime.datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second or 0)
    )
    offset = datetime.timedelta(hours=int(oh or 0), minutes=int(om or 0))
    tz = datetime.timezone(-offset if sign == "-" else offset)
    whole = at.replace(tzinfo=tz).timestamp()
    return whole + (float("0." + fraction) if fraction else 0.0)


def _start(value: object) -> float:
    """`start` as seconds: a number, or an ISO-8601 time (no offset: UTC) as epoch seconds."""
    if isinstance(value, str) and _ISO_TIME.fullmatch(value.strip()):
        try:
            return iso_seconds(value.strip())
        except ValueError as exc:
            raise _BadRow(f"field 'start' is not a valid time ({exc}), got {value!r}") from None
    try:
        return _number("start", value)
    except _BadRow:
        raise _BadRow(
            "field 'start' must be a finite number of seconds or an ISO-8601 time "
            f"(2025-12-03T10:15:00Z), got {value!r}"
        ) from None


def _status(value: object, retry_after: float | None) -> Outcome | Backpressure:
    """An HTTP status as an outcome: 5xx and 429 (too many requests) fail, others succeed;
    a 429 with a `retry_after` is backpressure (as the HTTP transports take it)."""
    status = -1
    if isinstance(value, str) and value.strip().isdigit():
        status = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        status = value
    if not 100 <= status <= 599:
        raise _BadRow(f"field 'status' must be an HTTP status code (100 to 599), got {value!r}")
    if status == 429 and retry_after is not None:
        return Backpressure(min(retry_after, MAX_RETRY_AFTER))
    return FAILURE if status >= 500 or status == 429 else SUCCESS


def _hint(record: dict[str, Any]) -> float | None:
    """The row's `retry_after` (seconds > 0), or None: missing, empty or 0."""
    value = record.get("retry_after")
    if value in (None, ""):
        return None
    seconds = _number("retry_after", value, minimum=0)
    return seconds if seconds > 0 else None


def _row(record: dict[str, Any]) -> Row:
    for field in ("start", "duration"):
        if record.get(field) in (None, ""):
            raise _BadRow(f"field {field!r} is missing")
    start = _start(record["start"])
    duration = _number("duration", record["duration"], minimum=0)
    raw = record.get("outcome")
    retry_after = _hint(record)
    outcome: Outcome | Backpressure | None
    if raw not in (None, ""):
        word = raw.strip().lower() if isinstance(raw, str) else None
        if word == BACKPRESSURE:
            if retry_after is None:
                raise _BadRow("outcome 'backpressure' needs a field 'retry_after' (seconds > 0)")
            outcome = Backpressure(min(retry_after, MAX_RETRY_AFTER))
        else:
            outcome = OUTCOMES.get(word) if word is not None else None
        if outcome is None:
            names = ", ".join([*OUTCOMES, BACKPRESSURE])
            raise _BadRow(f"field 'outcome' must be one of {names}, got {raw!r}")
    elif record.get("status") not in (None, ""):
        outcome = _status(record["status"], retry_after)
    elif "status" in record and "outcome" not in record:
        raise _BadRow("field 'status' is missing")
    else:
        raise _BadRow("field 'outcome' is missing (or give an HTTP 'status')")
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
        for field in ("start", "duration"):
            if field not in header:
                raise InputError(
                    f"{path}:1: the header has no field {field!r} (it has {', '.join(header)})"
                )
        if "outcome" not in header and "status" not in header:
            raise InputError(
                f"{path}:1: the header has no field 'outcome' (nor an HTTP 'status'; "
                f"it has {', '.join(header)})"
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
