"""How a call ended, as far as the breaker is concerned: its `Outcome`.

The adapters classify (they alone call user code: `failure_predicate` and
`result_is_failure`); the core takes the outcome as a value.
"""

from __future__ import annotations

import enum
import importlib
import logging
import sys
from collections.abc import Callable
from typing import Any

from ._config import CircuitBreakerConfig
from ._errors import CircuitOpenError

logger = logging.getLogger("circuitry")

__all__ = [
    "Classifying",
    "FAILURE",
    "IGNORED",
    "SUCCESS",
    "ExceptionGroupType",
    "Outcome",
    "classify_exception",
    "classify_group",
    "classify_leaf",
    "classify_result",
]


class Outcome(enum.Enum):
    """How a call ended, as far as the breaker is concerned."""

    SUCCESS = "success"
    FAILURE = "failure"
    IGNORED = "ignored"  # neither: ignored exceptions, cancellation, KeyboardInterrupt


SUCCESS = Outcome.SUCCESS
FAILURE = Outcome.FAILURE
IGNORED = Outcome.IGNORED


if sys.version_info >= (3, 11):
    ExceptionGroupType: type[BaseException] = BaseExceptionGroup  # noqa: F821 (3.11+)
else:  # the backport, which anyio and trio raise on 3.10 (anyio depends on it there)
    ExceptionGroupType = importlib.import_module("exceptiongroup").BaseExceptionGroup


def classify_exception(config: CircuitBreakerConfig, exc: BaseException) -> Outcome:
    """The outcome of a call that raised `exc`.

    Ignored types win; a recorded type is a failure unless `failure_predicate`
    says otherwise; any other `Exception` means the service answered (success);
    any other `BaseException` (KeyboardInterrupt, cancellation) is ignored.
    An exception group is classified by its leaves (see `classify_group`).
    Calls `failure_predicate`, which is user code: do not hold a lock.
    """
    if isinstance(exc, ExceptionGroupType):
        return classify_group(exc, lambda leaf: classify_leaf(config, leaf))
    return classify_leaf(config, exc)


def classify_leaf(config: CircuitBreakerConfig, exc: BaseException) -> Outcome:
    """`classify_exception` for an exception that is not a group."""
    if isinstance(exc, config.ignore_exceptions):
        return IGNORED
    if isinstance(exc, config.record_exceptions):
        predicate = config.failure_predicate
        if predicate is None or predicate(exc):
            return FAILURE
    return SUCCESS if isinstance(exc, Exception) else IGNORED


def classify_group(group: BaseException, classify: Callable[[BaseException], Outcome]) -> Outcome:
    """The outcome of a call that raised the exception group `group` (a task group's).

    Each leaf, nested groups flattened, in order, is classified by `classify`,
    which never sees a group: the call failed if any leaf is a failure,
    succeeded if every leaf is a success, and is ignored otherwise (an ignored
    exception or a cancellation beside answers). The first failure decides:
    the leaves after it are not classified.
    """
    outcome = SUCCESS
    groups = [iter(group.exceptions)]  # type: ignore[attr-defined]
    while groups:
        exc = next(groups[-1], None)
        if exc is None:
            groups.pop()
        elif isinstance(exc, ExceptionGroupType):
            groups.append(iter(exc.exceptions))
        else:
            leaf = classify(exc)
            if leaf is FAILURE:
                return FAILURE
            if leaf is IGNORED:
                outcome = IGNORED
    return outcome


def classify_result(config: CircuitBreakerConfig, result: object) -> Outcome:
    """The outcome of a call that returned `result` (calls `result_is_failure`)."""
    predicate = config.result_is_failure
    if predicate is not None and predicate(result):
        return FAILURE
    return SUCCESS


class Classifying:
    """How a breaker counts a call's exception or result, user code guarded (a mixin)."""

    __slots__ = ()

    _config: CircuitBreakerConfig
    _name: str
    _parent: Any  # a chain's parent breaker, or None (see circuitry._chain)

    def _exception_outcome(self, exc: BaseException) -> Outcome:
        if isinstance(exc, ExceptionGroupType):  # a task group's: each leaf comes back here
            return classify_group(exc, self._exception_outcome)
        if type(exc) is CircuitOpenError and self._rejected_here(exc.breaker):
            # This breaker's own rejection of a call nested in this one, or its
            # parent's (a chain): no outcome of the dependency, so never this
            # call's failure.
            return IGNORED
        try:
            return classify_leaf(self._config, exc)
        except Exception:
            # The exception was recorded and the predicate broke: count the failure.
            logger.exception("circuit %r: failure_predicate raised", self._name)
            return FAILURE

    def _rejected_here(self, origin: object) -> bool:
        """Whether `origin` (what raised a CircuitOpenError) is this breaker or an ancestor."""
        breaker: Any = self
        while breaker is not None:
            if origin is breaker:
                return True
            breaker = breaker._parent
        return False

    def _permit_outcome(self, exc: BaseException) -> Outcome:
        """How `Permit.record_exception` counts `exc` (the async adapter adds cancellation)."""
        return self._exception_outcome(exc)

    def _result_outcome(self, result: object) -> Outcome:
        try:
            return classify_result(self._config, result)
        except Exception:
            logger.exception("circuit %r: result_is_failure raised", self._name)
            return SUCCESS
