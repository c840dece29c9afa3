"""`python -m circuitry simulate`: replay a trace or a scenario through breaker configs.

```
python -m circuitry simulate (--scenario NAME | --trace FILE) [--preset NAME]...
        [--config FILE]... [--seed N] [--unhealthy START:END]... [--timeline]
        [--json] [--plot FILE.png]
```

Bad input (a bad row, an unknown preset, scenario or config key) prints one
line naming what is wrong and exits with status 2, without a traceback.

A trace is read twice, streamed both times: once to check every row (so
that an error is reported before any output) and count them, once to replay
it. A trace whose rows are not in start order is loaded whole and sorted for
the replay (about 150 bytes per call).
"""

from __future__ import annotations

from .simulation._cli import Progress, entry, main
from .simulation._errors import InputError
from .simulation._plot import Profile, plot
from .simulation._trace import Trace

__all__ = ["InputError", "Profile", "Progress", "Trace", "main", "plot"]

if __name__ == "__main__":
    entry()
