"""docs/how-to/tuning.md, run: record live calls, tune on them, load the result in shadow mode."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

from circuitry import CircuitBreakerConfig, CircuitBreakerManager, CircuitOpenError
from circuitry.__main__ import main
from circuitry.testing import FakeClock

PAGE = Path(__file__).resolve().parent.parent / "docs" / "how-to" / "tuning.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.DOTALL)


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.DOTALL)


def test_the_loop_runs_as_the_page_tells(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    if sys.version_info < (3, 11):  # the page imports tomli there, as it says
        import tomli

        monkeypatch.setitem(sys.modules, "tomllib", tomli)
    record, shadow, real = python_blocks()

    # 1. Record: the page's block, with traffic between subscribe and close. The
    # manager's clock is a FakeClock starting at an epoch time, so that the
    # page's ISO-8601 unhealthy period (14:02:00 to 14:09:30) falls in the trace.
    clock = FakeClock(start=1764770400.0)  # 2025-12-03T14:00:00Z
    monkeypatch.setattr(time, "time", clock)
    namespace: dict[str, object] = {}
    before, after = record.split("recorder.close()")
    exec(before, namespace)
    manager = namespace["manager"]
    assert isinstance(manager, CircuitBreakerManager)
    namespace["recorder"].sample = 1.0  # type: ignore[attr-defined]  (every call, for the test)
    down = (1764770400.0 + 120, 1764770400.0 + 570)
    for _ in range(6000):  # 10 calls a second for 10 minutes, down from 14:02 to 14:09:30
        clock.advance(0.1)
        failing = down[0] <= clock() < down[1]
        try:
            with manager.breaker("payments"):
                if failing:
                    raise ConnectionError("payments is down")
        except (ConnectionError, CircuitOpenError):
            pass
    exec("recorder.close()" + after, namespace)
    assert Path("calls.csv").read_text().count("\n") > 1000

    # 2. Tune: the page's command, as written (budget and seed included).
    (command,) = [b for b in bash_blocks() if "circuitry tune" in b]
    argv = command.replace("\\\n", " ").split()[3:]  # after "python -m circuitry"
    assert argv[0] == "tune"
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "> recommended: #" in out
    assert "unhealthy: 119.9-569.9 s" in out  # from the first call, at 14:00:00.1
    tuned = Path("tuned.toml").read_text()
    assert tuned.startswith("# Recommended by python -m circuitry tune")

    # 3. Shadow: the page's block loads it; a shadow breaker counts what it would reject.
    namespace = {}
    exec(shadow, namespace)
    assert "calls would have been rejected" in capsys.readouterr().out
    loaded = namespace["tuned"]
    assert isinstance(loaded, CircuitBreakerConfig)
    assert loaded.shadow is False
    breaker = namespace["shadow"].breaker("payments")  # type: ignore[attr-defined]
    assert breaker.config.shadow is True
    for _ in range(60):  # a dead dependency: the shadow breaker lets every call run
        with pytest.raises(ConnectionError), breaker:
            raise ConnectionError("down")
    assert breaker.metrics().total_shadow_rejected > 0

    # 4. For real.
    exec(real, namespace)
    real_manager = namespace["manager"]
    assert isinstance(real_manager, CircuitBreakerManager)
    assert real_manager.breaker("payments").config == loaded
