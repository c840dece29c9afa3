"""examples/llm_failover.py: two fake LLM APIs on loopback, failover through a BreakerPool."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "llm_failover.py"
EXPECTED = ["primary"] * 2 + ["backup"] * 4 + ["primary"] * 2


def test_the_example_fails_over_and_back() -> None:
    spec = importlib.util.spec_from_file_location("llm_failover", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        answered = module.main()
    assert answered == EXPECTED
    lines = output.getvalue().splitlines()
    assert (
        "request 4: 'backup-model says: question 4' (answered by backup; primary circuit open)"
        in lines
    )
    assert lines[-2].endswith("(answered by primary; primary circuit closed)")


def test_the_example_runs_as_a_script() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    answered = [
        line.split("answered by ")[1].split(";")[0]
        for line in done.stdout.splitlines()
        if "answered by" in line
    ]
    assert answered == EXPECTED
    assert done.stderr == ""
