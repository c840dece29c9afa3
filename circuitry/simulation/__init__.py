"""What-if simulator: replay calls through breaker configs and see what each would have done.

```python
from circuitry import ServicePresets
from circuitry.simulation import Call, scenario, simulate

outage = scenario("outage")
reports = simulate(outage.calls, {"http_api": ServicePresets.http_api()}, outage.unhealthy)
print(reports["http_api"].detect_seconds)
```

Each config replays the same calls through the library's own core
(`circuitry._core.CircuitCore`) on simulated time: nothing sleeps, and no
clock is read. A call is admitted or rejected at its `start` and completes at
`start + duration`, so calls overlap as they did in the input: a call in
flight when the circuit opens comes back as a late result, counted in the
totals but never moving the circuit. Completions wait in a heap; at one
instant, calls that end are counted before calls that start.

Transitions that time alone makes (the open period passing, a trial hanging
past `half_open_max_wait`) are applied at the instant they fall due, as a
breaker whose `state` is read at that instant would show them.

Calls with a `service` get one breaker per service (as a
`CircuitBreakerManager` gives), each with the config under test.

`tune` searches a base config's values on the same replay and recommends
one (`python -m circuitry tune`).

`TraceRecorder` writes live calls (a breaker's, or a manager's) as such a
trace, to replay them later.
"""

from __future__ import annotations

from ._record import TraceRecorder

# OUTCOMES and Row are not in __all__, but were reachable here and are on the
# reference page (docs/reference/simulation.md lists its members): kept so.
from ._replay import OUTCOMES as OUTCOMES
from ._replay import REPORT_FIELDS, Call, SimulationReport, simulate, simulate_rows
from ._replay import Row as Row
from ._scenarios import Scenario, scenario, scenarios
from ._tune import RANGES, Tuned, TuneResult, tune

__all__ = [
    "RANGES",
    "REPORT_FIELDS",
    "Call",
    "Scenario",
    "SimulationReport",
    "TraceRecorder",
    "TuneResult",
    "Tuned",
    "scenario",
    "scenarios",
    "simulate",
    "simulate_rows",
    "tune",
]
