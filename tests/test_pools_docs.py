"""docs/how-to/pools.md: its blocks run in order and print what the page says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def test_the_pools_page_runs_and_prints_what_it_says() -> None:
    page = ROOT / "docs" / "how-to" / "pools.md"
    namespace: dict[str, object] = {"__name__": "pools_page"}
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        for number, source in enumerate(BLOCK.findall(page.read_text(encoding="utf-8")), 1):
            exec(compile(source, f"pools.md block {number}", "exec"), namespace)
    assert output.getvalue().splitlines() == [
        "42.0",
        "41.5",
        "41.5 41.5",
        "CircuitState.OPEN",
        "anthropic: hello",
        "anthropic: again",
        "CircuitState.OPEN",
        "anthropic: third",
        "suppressed: c",
        "suppressed: d",
        "d is down",
        "['open', 'open', 'closed', 'closed']",
        "CircuitState.OPEN CircuitState.CLOSED",
        "circuit 'api' is open; retry after 60.0s",
    ]
