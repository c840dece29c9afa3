"""The docs' code: every Python block parses, and the tutorial runs and prints what it says."""

from __future__ import annotations

import ast
import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text(encoding="utf-8"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_python_block_parses(page: Path) -> None:
    for number, source in enumerate(blocks(page), 1):
        try:
            compile(source, f"{page.name} block {number}", "exec", ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        except SyntaxError as exc:
            pytest.fail(f"{page.name}, Python block {number}: {exc}")


def test_tutorial_runs_and_prints_what_it_says() -> None:
    namespace: dict[str, object] = {"__name__": "tutorial"}
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        for number, source in enumerate(blocks(ROOT / "docs" / "tutorial.md"), 1):
            exec(compile(source, f"tutorial block {number}", "exec"), namespace)
    printed = output.getvalue().splitlines()
    # Each `print(...)  # value` comment in the tutorial, in order.
    expected = [
        "CircuitState.CLOSED",
        "CircuitState.OPEN",
        "circuit 'inventory' is open; retry after 30.0s",
        "30.0",
        "CircuitState.HALF_OPEN",
        "7",
        "CircuitState.CLOSED",
        "3 1 1",
        "3 25%",
        "7",
        "7",
        "row 42",
        "AlertLevel.HEALTHY",
    ]
    assert printed == expected
