"""`import circuitry` imports none of the optional extras' libraries."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

EXTRAS = (
    "prometheus_client",
    "opentelemetry",
    "httpx",
    "httpx2",
    "requests",
    "aiohttp",
    "tenacity",
    "stamina",
    "matplotlib",
    "redis",
)


def imported_after(*modules: str) -> set[str]:
    """The top-level packages in sys.modules of a fresh interpreter after importing `modules`."""
    code = (
        "import json, sys\n"
        + "".join(f"import {module}\n" for module in modules)
        + "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def test_import_circuitry_and_its_core_modules_imports_no_extra() -> None:
    imported = imported_after("circuitry", "circuitry.events", "circuitry.testing")
    assert "circuitry" in imported
    assert imported.isdisjoint(EXTRAS), sorted(imported & set(EXTRAS))


@pytest.mark.parametrize(
    ("module", "library"),
    [
        ("circuitry.prometheus", "prometheus_client"),
        ("circuitry.opentelemetry", "opentelemetry"),
        ("circuitry.httpx", "httpx"),
        ("circuitry.httpx2", "httpx2"),
        ("circuitry.requests", "requests"),
        ("circuitry.aiohttp", "aiohttp"),
    ],
)
def test_an_integration_module_imports_its_library_and_no_other(module: str, library: str) -> None:
    # The check above could pass by accident if nothing were ever imported: it is not.
    imported = imported_after(module)
    assert library in imported
    assert imported.isdisjoint(set(EXTRAS) - {library}), sorted(imported & set(EXTRAS))
