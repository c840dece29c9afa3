"""`CircuitBreakerConfig`, its validation, and `ServicePresets`.

Every field is checked when a config is built; a bad value raises
`ValueError` or `TypeError` naming the field and the value. Durations are
seconds: a `float`, an `int` or a `datetime.timedelta`, stored as `float`.
"""

from __future__ import annotations

import datetime
import importlib
import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import attrs

from ._seconds import SHORTEST_DURATION, as_float, seconds
from .events import Alert

__all__ = ["AdaptiveThrottle", "CircuitBreakerConfig", "ServicePresets"]

_F = TypeVar("_F")

ExceptionTypes = tuple[type[BaseException], ...]
FailurePredicate = Callable[[BaseException], bool]
ResultPredicate = Callable[[Any], bool]
AlertHandler = Callable[[Alert], None]


# -- converters ----------------------------------------------------------------
# Each takes the field's name so that its message can name it.

Seconds = float | datetime.timedelta
ExceptionTypesIn = type[BaseException] | Iterable[type[BaseException]]


def _number(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field} must be a number, got {value!r}")
    result = as_float(value)
    if math.isnan(result):
        raise ValueError(f"{field} must not be NaN, got {value!r}")
    return result


def _duration(field: str, value: object) -> float:
    return seconds(field, value, above=0.0, shortest=SHORTEST_DURATION, timedelta=True)


def _optional_duration(field: str, value: object) -> float | None:
    return None if value is None else _duration(field, value)


def _count(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{field} must be >= 1, got {value!r}")
    return value


# Percentage fields whose value <= 1 has been warned about (once per field per process).
_WARNED_FRACTIONS: set[str] = set()
_WARNED_LOCK = threading.Lock()


def _optional_percentage(field: str, value: object) -> float | None:
    if value is None:
        return None
    p = _number(field, value)
    if not 0 < p <= 100:
        raise ValueError(f"{field} must be a percentage in (0, 100], got {value!r}")
    if p <= 1:
        _warn_fraction(field, p)
    return p


def _warn_fraction(field: str, p: float) -> None:
    # Polly and others take a fraction (0.5 for half); here 0.5 means 0.5 %. A
    # value that small is legal but usually that mistake: say so, once per field.
    with _WARNED_LOCK:
        if field in _WARNED_FRACTIONS:
            return
        _WARNED_FRACTIONS.add(field)
    logging.getLogger("circuitry").warning(
        "%s=%r is a percentage: %r means %r %% of calls, not %r %%; for half the calls "
        "write 50 (this warning is logged once per field)",
        field,
        p,
        p,
        p,
        p * 100,
    )


def _exception_types(field: str, value: object) -> ExceptionTypes:
    items: Iterable[object]
    if isinstance(value, type):
        items = (value,)
    elif isinstance(value, (tuple, list, set, frozenset)):
        items = value
    else:
        raise TypeError(f"{field} must be an exception type or a tuple of them, got {value!r}")
    result = tuple(items)
    for item in result:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise TypeError(f"{field} must hold exception types, got {item!r} in {value!r}")
    return result


def _optional_callable(field: str, value: _F) -> _F:
    if value is not None and not callable(value):
        raise TypeError(f"{field} must be callable or None, got {value!r}")
    return value


# mypy's attrs plugin types each __init__ parameter from its converter's
# argument, and needs a named function for that: one per field.


def _failure_threshold_count(value: int | None) -> int | None:
    # None switches the count rule off; __attrs_post_init__ then requires a rate rule.
    return None if value is None else _count("failure_threshold_count", value)


def _failure_threshold_percentage(value: float | None) -> float | None:
    return _optional_percentage("failure_threshold_percentage", value)


def _failure_window(value: Seconds | None) -> float | None:
    return _optional_duration("failure_window", value)


def _minimum_calls(value: int) -> int:
    return _count("minimum_calls", value)


def _reset_timeout(value: Seconds) -> float:
    return _duration("reset_timeout", value)


def _success_threshold_count(value: int) -> int:
    return _count("success_threshold_count", value)


def _test_request_count(value: int) -> int:
    return _count("test_request_count", value)


def _slow_call_duration(value: Seconds | None) -> float | None:
    return _optional_duration("slow_call_duration", value)


def _slow_call_rate_threshold(value: float | None) -> float | None:
    return _optional_percentage("slow_call_rate_threshold", value)


def _half_open_max_wait(value: Seconds | None) -> float | None:
    return _optional_duration("half_open_max_wait", value)


def _reset_timeout_multiplier(value: float) -> float:
    m = _number("reset_timeout_multiplier", value)
    if not 1 <= m < math.inf:
        raise ValueError(f"reset_timeout_multiplier must be finite and >= 1, got {value!r}")
    return m


def _max_reset_timeout(value: Seconds | None) -> float | None:
    return _optional_duration("max_reset_timeout", value)


def _reset_timeout_jitter(value: float) -> float:
    j = _number("reset_timeout_jitter", value)
    if not 0 <= j < 1:
        raise ValueError(f"reset_timeout_jitter must be in [0, 1), got {value!r}")
    return j


def _record_exceptions(value: ExceptionTypesIn) -> ExceptionTypes:
    return _exception_types("record_exceptions", value)


def _ignore_exceptions(value: ExceptionTypesIn) -> ExceptionTypes:
    return _exception_types("ignore_exceptions", value)


def _failure_predicate(value: FailurePredicate | None) -> FailurePredicate | None:
    return _optional_callable("failure_predicate", value)


def _result_is_failure(value: ResultPredicate | None) -> ResultPredicate | None:
    return _optional_callable("result_is_failure", value)


def _call_timeout(value: Seconds | None) -> float | None:
    return _optional_duration("call_timeout", value)


def _alert_handler(value: AlertHandler | None) -> AlertHandler | None:
    return _optional_callable("alert_handler", value)


def _failure_window_calls(value: int | None) -> int | None:
    return None if value is None else _count("failure_window_calls", value)


def _half_open_failure_rate(value: float | None) -> float | None:
    return _optional_percentage("half_open_failure_rate", value)


def _throttle_k(value: float) -> float:
    k = _number("adaptive_throttle.k", value)
    if not 1 <= k < math.inf:
        raise ValueError(f"adaptive_throttle.k must be a finite number >= 1, got {value!r}")
    return k


def _throttle_window(value: Seconds) -> float:
    return _duration("adaptive_throttle.window", value)


def _throttle_min_requests(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"adaptive_throttle.min_requests must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"adaptive_throttle.min_requests must be >= 0, got {value!r}")
    return value


def _throttle_max_rejection(value: float) -> float:
    p = _number("adaptive_throttle.max_rejection", value)
    if not 0 < p < 1:
        raise ValueError(f"adaptive_throttle.max_rejection must be in (0, 1), got {value!r}")
    return p


@attrs.frozen(kw_only=True)
class AdaptiveThrottle:
    """Client-side adaptive throttling while CLOSED (Google SRE book, "Handling Overload").

    Each call is rejected with probability `min(max_rejection, max(0,
    (requests - k * accepts) / (requests + 1)))`, where over the last `window`
    seconds `requests` counts the calls admitted or throttled (when they
    arrive) and `accepts` the successes; never while `requests < min_requests`.
    """

    k: float = attrs.field(default=2.0, converter=_throttle_k)
    window: float = attrs.field(default=60.0, converter=_throttle_window)
    min_requests: int = attrs.field(default=20, converter=_throttle_min_requests)
    max_rejection: float = attrs.field(default=0.9, converter=_throttle_max_rejection)


def _adaptive_throttle(value: AdaptiveThrottle | None) -> AdaptiveThrottle | None:
    if value is not None and not isinstance(value, AdaptiveThrottle):
        raise TypeError(f"adaptive_throttle must be an AdaptiveThrottle or None, got {value!r}")
    return value


def _shadow(value: bool) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"shadow must be a bool, got {value!r}")
    return value


# -- the config -------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class CircuitBreakerConfig:
    """How a circuit breaker decides. Frozen, keyword-only and validated.

    Build one with keywords, or start from the defaults (or a preset) and use
    the `with_*` builder methods, each of which returns a new validated config.
    Durations accept seconds as float or int, or a `datetime.timedelta`, at
    least 1 µs and finite. Percentages are percent, `0 < p <= 100`: `50` is
    half, and `0.5` is half a percent (a value of 1 or less logs one warning).
    A bad value raises `ValueError` or `TypeError` naming the field and the
    value. The configuration page of the docs has the same fields with their
    traps and how to choose them.

    Attributes:
        failure_threshold_count: Without a window, trip after this many
            consecutive failures; with one, when this many failures are in it.
            None: no count rule (a rate rule is then required). Default 5.
        failure_threshold_percentage: Trip when failures / calls in the window
            reach this percentage, once the window holds `minimum_calls` calls
            (needs `failure_window` or `failure_window_calls`).
        failure_window: A sliding time window, seconds (10 buckets).
        minimum_calls: Calls in the window before a rate is evaluated. Default 10.
        reset_timeout: Seconds OPEN before the next call is a trial. Default 60.
        success_threshold_count: Successful trials that close the circuit. Default 1.
        test_request_count: Trials in flight at once in HALF_OPEN. Default 1.
        slow_call_duration: A call that takes at least this long is slow.
        slow_call_rate_threshold: Trip when slow calls / calls in the window
            reach this percentage (needs `slow_call_duration` and a window).
        half_open_max_wait: A trial in flight this long without a decision
            reopens the circuit (as a failed trial).
        reset_timeout_multiplier: Each failed trial multiplies the next open
            period by this. Default 1.0.
        max_reset_timeout: The longest open period the multiplier reaches.
        reset_timeout_jitter: Each open period is scaled by a random factor in
            `[1 - j, 1 + j]`. Default 0.0.
        record_exceptions: Exception types that count as failures. Default
            `(Exception,)`.
        ignore_exceptions: Exception types that count as neither success nor
            failure (wins over `record_exceptions`).
        failure_predicate: `exc -> bool`: a recorded exception is a failure
            only if it returns True.
        result_is_failure: `value -> bool`: a returned value that is a failure
            (it is still returned to the caller).
        call_timeout: Async calls only: cancel after this long, raise
            `TimeoutError`, count a failure.
        alert_handler: Called with an `Alert` on every state change.
        failure_window_calls: The window is the last N completed calls instead
            of `failure_window` seconds (set one or the other).
        half_open_failure_rate: Decide a HALF_OPEN period on all its
            `success_threshold_count` trials: close if fewer than this
            percentage failed, else reopen.
        adaptive_throttle: An `AdaptiveThrottle`: reject a share of calls while
            CLOSED as successes fall.
        shadow: Observe only: every rule runs and every event is sent, but
            nothing is rejected. Default False.
    """

    failure_threshold_count: int | None = attrs.field(default=5, converter=_failure_threshold_count)
    failure_threshold_percentage: float | None = attrs.field(
        default=None, converter=_failure_threshold_percentage
    )
    failure_window: float | None = attrs.field(default=None, converter=_failure_window)
    minimum_calls: int = attrs.field(default=10, converter=_minimum_calls)
    reset_timeout: float = attrs.field(default=60.0, converter=_reset_timeout)
    success_threshold_count: int = attrs.field(default=1, converter=_success_threshold_count)
    test_request_count: int = attrs.field(default=1, converter=_test_request_count)
    slow_call_duration: float | None = attrs.field(default=None, converter=_slow_call_duration)
    slow_call_rate_threshold: float | None = attrs.field(
        default=None, converter=_slow_call_rate_threshold
    )
    half_open_max_wait: float | None = attrs.field(default=None, converter=_half_open_max_wait)
    reset_timeout_multiplier: float = attrs.field(default=1.0, converter=_reset_timeout_multiplier)
    max_reset_timeout: float | None = attrs.field(default=None, converter=_max_reset_timeout)
    reset_timeout_jitter: float = attrs.field(default=0.0, converter=_reset_timeout_jitter)
    record_exceptions: ExceptionTypes = attrs.field(
        default=(Exception,), converter=_record_exceptions
    )
    ignore_exceptions: ExceptionTypes = attrs.field(default=(), converter=_ignore_exceptions)
    failure_predicate: FailurePredicate | None = attrs.field(
        default=None, converter=_failure_predicate
    )
    result_is_failure: ResultPredicate | None = attrs.field(
        default=None, converter=_result_is_failure
    )
    call_timeout: float | None = attrs.field(default=None, converter=_call_timeout)
    alert_handler: AlertHandler | None = attrs.field(default=None, converter=_alert_handler)
    failure_window_calls: int | None = attrs.field(default=None, converter=_failure_window_calls)
    half_open_failure_rate: float | None = attrs.field(
        default=None, converter=_half_open_failure_rate
    )
    adaptive_throttle: AdaptiveThrottle | None = attrs.field(
        default=None, converter=_adaptive_throttle
    )
    shadow: bool = attrs.field(default=False, converter=_shadow)

    def __attrs_post_init__(self) -> None:
        if (
            self.failure_threshold_count is None
            and self.failure_threshold_percentage is None
            and self.slow_call_rate_threshold is None
        ):
            raise ValueError(
                "failure_threshold_count=None (no count rule) needs a rate rule, "
                "failure_threshold_percentage or slow_call_rate_threshold; got neither, "
                "so nothing could ever trip the circuit"
            )
        if self.failure_window_calls is not None:
            self._check_count_window(self.failure_window_calls)
        elif self.failure_window is None:
            if self.failure_threshold_percentage is not None:
                raise ValueError(
                    "failure_threshold_percentage needs failure_window or "
                    "failure_window_calls, got "
                    f"failure_threshold_percentage={self.failure_threshold_percentage!r} "
                    "with failure_window=None"
                )
            if self.slow_call_rate_threshold is not None:
                raise ValueError(
                    "slow_call_rate_threshold needs failure_window or failure_window_calls, got "
                    f"slow_call_rate_threshold={self.slow_call_rate_threshold!r} "
                    "with failure_window=None"
                )
        if self.slow_call_rate_threshold is not None and self.slow_call_duration is None:
            raise ValueError(
                "slow_call_rate_threshold needs slow_call_duration, got "
                f"slow_call_rate_threshold={self.slow_call_rate_threshold!r} "
                "with slow_call_duration=None"
            )
        if self.max_reset_timeout is not None and self.max_reset_timeout < self.reset_timeout:
            raise ValueError(
                f"max_reset_timeout must be >= reset_timeout ({self.reset_timeout!r}), "
                f"got {self.max_reset_timeout!r}"
            )

    def _check_count_window(self, calls: int) -> None:
        """`failure_window_calls`: no time window beside it, and rules that can trip in it."""
        if self.failure_window is not None:
            raise ValueError(
                "set failure_window or failure_window_calls, not both: got "
                f"failure_window={self.failure_window!r} and failure_window_calls={calls!r}"
            )
        count = self.failure_threshold_count
        if count is not None and count > calls:
            raise ValueError(
                f"failure_threshold_count={count!r} can never be reached in a window of "
                f"failure_window_calls={calls!r} calls (lower it, or None for no count rule)"
            )
        gated = self.failure_threshold_percentage is not None or (
            self.slow_call_rate_threshold is not None
        )
        if gated and self.minimum_calls > calls:
            raise ValueError(
                f"minimum_calls={self.minimum_calls!r} can never be reached in a window of "
                f"failure_window_calls={calls!r} calls: the rate rules would never decide"
            )

    # -- builders: each returns a new, validated config ----------------------

    def evolve(self, **changes: Any) -> CircuitBreakerConfig:
        """A new validated config with `changes` applied: `config.evolve(reset_timeout=10)`.

        Raises:
            TypeError: a keyword is not a field of the config (named in the message),
                or a value has the wrong type.
            ValueError: a value, or the combination, is invalid.
        """
        fields = attrs.fields_dict(CircuitBreakerConfig)
        for key in changes:
            if key not in fields:
                raise TypeError(
                    f"evolve() got {key!r}, which is not a field of CircuitBreakerConfig"
                )
        return attrs.evolve(self, **changes)

    def with_failure_threshold(self, n: int | None) -> CircuitBreakerConfig:
        """Trip after `n` consecutive failures (or `n` failures in the window).

        None switches the count rule off, leaving only a rate rule (set one first).
        """
        return attrs.evolve(self, failure_threshold_count=n)

    def with_failure_percentage(self, p: float) -> CircuitBreakerConfig:
        """Trip when `p` percent of the window's calls failed (set the window first).

        A percentage, 0 to 100: `50` is half the calls, `0.5` half a percent.
        """
        return attrs.evolve(self, failure_threshold_percentage=p)

    def with_failure_window(self, seconds: float | datetime.timedelta) -> CircuitBreakerConfig:
        """Count failures over a sliding window of `seconds`."""
        return attrs.evolve(self, failure_window=seconds)

    def with_minimum_calls(self, n: int) -> CircuitBreakerConfig:
        """Evaluate rates only once the window holds `n` calls."""
        return attrs.evolve(self, minimum_calls=n)

    def with_reset_timeout(self, seconds: float | datetime.timedelta) -> CircuitBreakerConfig:
        """Stay OPEN this long before letting a trial call through."""
        return attrs.evolve(self, reset_timeout=seconds)

    def with_success_threshold(self, n: int) -> CircuitBreakerConfig:
        """Close after `n` successful trial calls."""
        return attrs.evolve(self, success_threshold_count=n)

    def with_test_request_count(self, n: int) -> CircuitBreakerConfig:
        """Allow `n` trial calls in flight at once in HALF_OPEN."""
        return attrs.evolve(self, test_request_count=n)

    def with_slow_calls(
        self, duration: float | datetime.timedelta, rate: float
    ) -> CircuitBreakerConfig:
        """Trip when `rate` percent of the window's calls took `duration` or more."""
        return attrs.evolve(self, slow_call_duration=duration, slow_call_rate_threshold=rate)

    def with_backoff(
        self,
        multiplier: float,
        max_reset_timeout: float | datetime.timedelta | None,
        jitter: float = 0.0,
    ) -> CircuitBreakerConfig:
        """Grow the open period by `multiplier` per failed trial, up to a cap, with jitter."""
        return attrs.evolve(
            self,
            reset_timeout_multiplier=multiplier,
            max_reset_timeout=max_reset_timeout,
            reset_timeout_jitter=jitter,
        )

    def with_record_exceptions(self, *types: type[BaseException]) -> CircuitBreakerConfig:
        """Count only exceptions of `types` as failures (none given: no exception is one)."""
        return attrs.evolve(self, record_exceptions=types)

    def with_ignore_exceptions(self, *types: type[BaseException]) -> CircuitBreakerConfig:
        """Count exceptions of `types` as neither success nor failure."""
        return attrs.evolve(self, ignore_exceptions=types)

    def with_failure_predicate(
        self, fn: Callable[[BaseException], bool] | None
    ) -> CircuitBreakerConfig:
        """Count a recorded exception as a failure only when `fn(exc)` is true (None: always)."""
        return attrs.evolve(self, failure_predicate=fn)

    def with_result_is_failure(self, fn: Callable[[Any], bool] | None) -> CircuitBreakerConfig:
        """Count a returned value as a failure when `fn(value)` is true (None: never)."""
        return attrs.evolve(self, result_is_failure=fn)

    def with_call_timeout(self, seconds: float | datetime.timedelta | None) -> CircuitBreakerConfig:
        """Cancel async calls after `seconds` and count a failure (None: no timeout)."""
        return attrs.evolve(self, call_timeout=seconds)

    def with_half_open_max_wait(
        self, seconds: float | datetime.timedelta | None
    ) -> CircuitBreakerConfig:
        """Reopen when a trial has been in flight `seconds` without a decision (None: wait)."""
        return attrs.evolve(self, half_open_max_wait=seconds)

    def with_alert_handler(self, fn: Callable[[Alert], None] | None) -> CircuitBreakerConfig:
        """Call `fn(alert)` on every state change."""
        return attrs.evolve(self, alert_handler=fn)

    # -- plain data: config files and the simulator ------------------------------

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> CircuitBreakerConfig:
        """Build a config from plain data, as read from a TOML or JSON file.

        Keys are the field names; values are str, int, float, bool or None,
        durations in seconds. `record_exceptions` and `ignore_exceptions` take
        dotted import paths (`"httpx.TransportError"`; a bare name such as
        `"TimeoutError"` is a builtin), one string or a list of them; the
        callable fields take None or the dotted path of a callable. TOML has
        no null, so `false` turns an optional rule off (a field that may be
        None: `failure_threshold_count = false` is None); on any other field
        but `shadow`, `false` is an error.

        Raises:
            ValueError: an unknown key, or a bad value (the message names the key).
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"a config must be a mapping of field names, got {data!r}")
        names = {field.name for field in attrs.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in names:
                raise ValueError(
                    f"unknown config key {key!r} (known keys: {', '.join(sorted(names))})"
                )
            if value is False and key not in _BOOL_FIELDS:
                _check_can_turn_off(key)
                value = None
            if key in _EXCEPTION_FIELDS:
                value = _import_exception_types(key, value)
            elif key == "adaptive_throttle" and isinstance(value, Mapping):
                try:
                    value = AdaptiveThrottle(**value)
                except TypeError as exc:  # an unknown key, or a bad value's type
                    raise ValueError(f"adaptive_throttle: {exc}") from None
            elif key in _CALLABLE_FIELDS and value is not None:
                value = _import_object(key, value)
            elif value is not None and not isinstance(value, (str, int, float, bool)):
                raise ValueError(f"{key} must be plain data (a number, str, bool), got {value!r}")
            kwargs[key] = value
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:  # the converters name the field
            raise ValueError(str(exc)) from None

    def to_mapping(self) -> dict[str, object]:
        """This config as plain, JSON-ready data: the inverse of `from_mapping`.

        Exception types become dotted paths (bare names for builtins); the
        callable fields (`failure_predicate`, `result_is_failure`,
        `alert_handler`) are left out.
        """
        result: dict[str, object] = {}
        for field in attrs.fields(type(self)):
            name = field.name
            if name in _CALLABLE_FIELDS:
                continue
            value = getattr(self, name)
            if name in _EXCEPTION_FIELDS:
                value = [_dotted_path(t) for t in value]
            elif isinstance(value, AdaptiveThrottle):
                value = attrs.asdict(value)
            result[name] = value
        return result


_EXCEPTION_FIELDS = frozenset({"record_exceptions", "ignore_exceptions"})
_CALLABLE_FIELDS = frozenset({"failure_predicate", "result_is_failure", "alert_handler"})
_BOOL_FIELDS = frozenset({"shadow"})
# The fields that may be None: `false` in a config file (TOML has no null) means None.
_OPTIONAL_FIELDS = tuple(
    field.name
    for field in attrs.fields(CircuitBreakerConfig)
    if isinstance(field.type, str) and field.type.endswith("| None")
)
_TAKES = {"int": "an int", "float": "a number", "ExceptionTypes": "a dotted path or a list of them"}


def _check_can_turn_off(key: str) -> None:
    """`key = false` is None for an optional rule; for any other field, say what it takes."""
    if key in _OPTIONAL_FIELDS:
        return
    takes = _TAKES.get(str(attrs.fields_dict(CircuitBreakerConfig)[key].type), "a value")
    default = CircuitBreakerConfig().to_mapping()[key]
    raise ValueError(
        f"{key} cannot be turned off with false: it takes {takes} (default {default!r}); "
        "false turns off only an optional rule: " + ", ".join(_OPTIONAL_FIELDS)
    )


def _dotted_path(obj: type[BaseException]) -> str:
    if obj.__module__ == "builtins":
        return obj.__qualname__
    return f"{obj.__module__}.{obj.__qualname__}"


def _import_object(key: str, path: object) -> object:
    """The object a dotted path such as `"httpx.TransportError"` names; bare names are builtins."""
    parts = path.split(".") if isinstance(path, str) else [""]
    if not all(parts):  # not a str, empty, or a relative or malformed path (".Foo", "a..b")
        raise ValueError(f"{key} must be a dotted import path (str), got {path!r}")
    if len(parts) == 1:
        parts = ["builtins", *parts]
    for split in range(len(parts) - 1, 0, -1):  # the longest importable module first
        module_name = ".".join(parts[:split])
        try:
            obj: object = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if module_name == missing or module_name.startswith(missing + "."):
                continue  # no such module: a shorter name may be the module
            raise ValueError(f"{key}: cannot import {path!r}: {exc}") from exc
        except Exception as exc:  # the module's own code failed: say why, and for which key
            raise ValueError(f"{key}: cannot import {path!r}: {exc!r}") from exc
        try:
            for attribute in parts[split:]:
                obj = getattr(obj, attribute)
        except AttributeError:
            break
        except Exception as exc:  # a module __getattr__ that raises something else
            raise ValueError(f"{key}: cannot import {path!r}: {exc!r}") from exc
        return obj
    raise ValueError(f"{key}: cannot import {path!r}")


def _import_exception_types(key: str, value: object) -> tuple[type[BaseException], ...]:
    paths = [value] if isinstance(value, str) else value
    if not isinstance(paths, (list, tuple)):
        raise ValueError(f"{key} must be a dotted path or a list of them, got {value!r}")
    types = []
    for path in paths:
        obj = _import_object(key, path)
        if not (isinstance(obj, type) and issubclass(obj, BaseException)):
            raise ValueError(f"{key}: {path!r} is not an exception type, got {obj!r}")
        types.append(obj)
    return tuple(types)


class ServicePresets:
    """Ready-made configs for common kinds of dependency."""

    @staticmethod
    def http_api() -> CircuitBreakerConfig:
        """An HTTP API: 5 consecutive failures trip it, 30 s open."""
        return CircuitBreakerConfig(failure_threshold_count=5, reset_timeout=30.0)

    @staticmethod
    def database() -> CircuitBreakerConfig:
        """A database: 3 consecutive failures trip it, 60 s open."""
        return CircuitBreakerConfig(failure_threshold_count=3, reset_timeout=60.0)

    @staticmethod
    def critical_service() -> CircuitBreakerConfig:
        """A critical dependency: 2 consecutive failures trip it, 5 minutes open."""
        return CircuitBreakerConfig(failure_threshold_count=2, reset_timeout=300.0)

    @staticmethod
    def high_volume() -> CircuitBreakerConfig:
        """A high-volume service: 20 failures, or 50 % of at least 20 calls, in 60 s; 30 s open."""
        return CircuitBreakerConfig(
            failure_threshold_count=20,
            failure_threshold_percentage=50.0,
            failure_window=60.0,
            minimum_calls=20,
            reset_timeout=30.0,
        )
