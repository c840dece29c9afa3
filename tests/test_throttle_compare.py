"""docs/configuration.md's throttle table is what benchmarks/throttle_compare.py measures.

The simulator's scenarios are seeded and the Go ports draw from a seeded
`random`, so the table is exact: a change to the throttle, the presets or a
scenario that moves a number fails here until the page says so.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def throttle_compare() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "throttle_compare", ROOT / "benchmarks" / "throttle_compare.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def documented_brownout() -> list[tuple[int, int, int, str]]:
    """(failed sent, healthy rejected, wasted, recovered after) per row of the page's table."""
    page = (ROOT / "docs" / "configuration.md").read_text()
    table = page[page.index("| brownout, 40 % fail for 5 min") :].split("\n\n")[0]
    rows = []
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        failed, rejected, wasted = (int(cell.replace(",", "")) for cell in cells[1:4])
        rows.append((failed, rejected, wasted, cells[4]))
    return rows


def test_the_documented_brownout_table_is_measured() -> None:
    measured = [row for row in throttle_compare().table() if row[0] == "brownout"]
    assert len(measured) == len(documented_brownout()) == 5
    for (_, label, _, failed, rejected, recover), documented in zip(
        measured, documented_brownout(), strict=True
    ):
        shown = "-" if label.startswith("kratos") else f"{recover:.1f} s"
        assert (failed, rejected, failed + rejected, shown) == documented, label


def test_kratos_never_rejects_a_call_in_the_brownout() -> None:
    # The page says so (its "recovers in" is "-": nothing to recover from).
    from circuitry.simulation import scenario

    compare = throttle_compare()
    calls = sorted(scenario("brownout").calls, key=lambda c: c.start)
    assert all(admitted for _, admitted in compare.replay_go(calls, compare.kratos))
    assert "kratos never rejects a call" in " ".join(
        (ROOT / "docs" / "configuration.md").read_text().split()
    )


def test_the_documented_outage_sentence_is_measured() -> None:
    page = " ".join((ROOT / "docs" / "configuration.md").read_text().split())
    outage = [row for row in throttle_compare().table() if row[0] == "outage"]
    presets = {row[2:] for row in outage if row[1].startswith("http_api")}
    assert len(presets) == 1  # every row with the preset is the same
    go_zero = next(row for row in outage if row[1].startswith("go-zero"))
    kratos = next(row for row in outage if row[1].startswith("kratos"))
    said = re.search(r"sends (\d+) failed calls and recovers after ([\d.]+) s", page)
    assert said is not None
    assert (int(said[1]), float(said[2])) == (go_zero[3], round(go_zero[5], 1))
    assert f"kratos never engages and sends {kratos[3]:,}" in page
    assert kratos[4] == 0  # it never rejected a call
