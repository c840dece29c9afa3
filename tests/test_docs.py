"""The docs' code: every Python block parses; the tutorial and README's examples run."""

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


# -- README's three examples run, and print what the README says -------------------------


def readme_block(containing: str) -> str:
    matching = [b for b in blocks(ROOT / "README.md") if containing in b]
    assert len(matching) == 1, f"expected one README block with {containing!r}"
    return matching[0]


def run_printing(source: str, name: str) -> list[str]:
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(source, name, "exec"), {"__name__": name})
    return output.getvalue().splitlines()


def test_readme_threads_example_fails_five_times_then_rejects() -> None:
    printed = run_printing(readme_block('name="payments")\n\n\n@payments'), "README threads")
    assert printed == ["failed"] * 5 + ["rejected at once, retry in 30s"] * 2


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_readme_async_example_times_out_twice_then_rejects(backend: str) -> None:
    source = readme_block("anyio.run(main)")
    if backend == "trio":
        source = source.replace("\nanyio.run(main)", '\nanyio.run(main, backend="trio")', 1)
        assert 'backend="trio")  #' in source
    assert run_printing(source, f"README async ({backend})") == ["timed out"] * 2 + ["rejected"]


def test_readme_redis_example_opens_the_circuit_for_another_process(redis_url: str) -> None:
    import subprocess
    import sys

    from circuitry import CircuitBreaker, CircuitOpenError, CircuitState, ServicePresets
    from circuitry.redis import RedisStore

    source = readme_block("RedisStore.from_url")
    assert source.count('"redis://localhost:6379/0"') == 1
    source = source.replace('"redis://localhost:6379/0"', repr(redis_url))
    # One process runs the README's code...
    done = subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "open\n"
    # ...and another (this one) finds the circuit open and is rejected without calling.
    store = RedisStore.from_url(redis_url, namespace="shop")
    try:
        payments = CircuitBreaker(ServicePresets.http_api(), name="payments", store=store)
        assert payments.state is CircuitState.OPEN
        with pytest.raises(CircuitOpenError):
            payments.call(pytest.fail, "never called")
    finally:
        store.close()


def test_every_extra_is_in_the_readme_and_docs_home_tables() -> None:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extras = set(project["project"]["optional-dependencies"]) - {"test", "docs"}
    assert {"redis", "plot", "all"} <= extras
    for page in (ROOT / "README.md", ROOT / "docs" / "index.md"):
        text = page.read_text(encoding="utf-8")
        missing = sorted(extra for extra in extras if f"\n| `{extra}` |" not in text)
        assert not missing, f"{page.name}'s extras table lacks {missing}"


def test_the_site_ships_what_it_renders_with_no_cdn() -> None:
    # The states page's mermaid diagram: Material uses a global `mermaid` when the
    # page has one and fetches it from a CDN only when not, so the vendored script
    # must be listed (and present); fonts come from the system, not Google Fonts.
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert "  - assets/javascripts/mermaid.min.js\n" in config
    assert "  font: false" in config
    script = ROOT / "docs" / "assets" / "javascripts" / "mermaid.min.js"
    assert script.stat().st_size > 1_000_000
    assert "MIT License" in script.with_name("mermaid.LICENSE").read_text(encoding="utf-8")
    assert "```mermaid" in (ROOT / "docs" / "states.md").read_text(encoding="utf-8")
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for cdn in ("unpkg.com", "cdn.jsdelivr.net", "fonts.googleapis.com"):
            assert cdn not in text, f"{page.name} loads from {cdn}"
