"""The public surface is exactly __all__ (after anyio's test_all_attributes)."""

from __future__ import annotations

import types

import pytest

import circuitry
import circuitry.events
import circuitry.testing


def _public_names(module: types.ModuleType, *, defined_here: bool) -> set[str]:
    """Public classes and functions of `module` (only those it defines, if asked)."""
    names = set()
    for name, value in vars(module).items():
        if name.startswith("_") or not hasattr(value, "__module__"):
            continue
        origin = value.__module__ or ""
        if defined_here and origin != module.__name__:
            continue
        if origin.startswith("circuitry"):
            names.add(name)
    return names


def test_package_all_matches_public_names() -> None:
    assert set(circuitry.__all__) == _public_names(circuitry, defined_here=False)


@pytest.mark.parametrize("module", [circuitry.events, circuitry.testing])
def test_module_all_matches_public_names(module: types.ModuleType) -> None:
    # Type aliases (events.Event) have no __module__, so they are only checked to exist.
    assert _public_names(module, defined_here=True) <= set(module.__all__)
    for name in module.__all__:
        assert hasattr(module, name), name


def test_all_is_sorted() -> None:
    assert circuitry.__all__ == sorted(circuitry.__all__)


def test_contract_names_are_importable() -> None:
    from circuitry import (  # noqa: F401
        Alert,
        AlertLevel,
        CircuitBreaker,
        CircuitBreakerConfig,
        CircuitBreakerError,
        CircuitMetrics,
        CircuitOpenError,
        CircuitState,
        ServicePresets,
    )
    from circuitry.testing import FakeClock  # noqa: F401
