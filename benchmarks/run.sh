#!/usr/bin/env bash
# Build the benchmark venv (benchmarks/.venv, gitignored) and run the benchmarks:
# peers_bench.py, bench_internals.py, and bench_redis.py when redis-server is installed.
#
#   benchmarks/run.sh            # full run (a few minutes)
#   benchmarks/run.sh --quick    # smoke run (well under a minute)
#
# Extra arguments go to every script (--quick, --repeats R). The peers are
# installed ONLY into benchmarks/.venv: they are never dependencies of circuitry.
# Environment: PYTHON (interpreter for the venv), REBUILD=1 (recreate the venv).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
PYTHON="${PYTHON:-/root/.pyenv/versions/3.13.0/bin/python}"
VENV="$HERE/.venv"

# Pinned so that runs are comparable over time; bump deliberately.
PEERS=(
    "pybreaker==1.4.1"
    "circuitbreaker==2.1.3"
    "purgatory==3.0.1"
    "aiobreaker==1.2.0"
    "pyresilience==0.4.1"
    "interlock-cb==2.8.2"
    "nopanic==0.3.0"
    "fluxgate==0.9.4"
    "trio==0.35.0"
    # redis-py: circuitry.redis (bench_redis.py) and pybreaker's CircuitRedisStorage
    "redis==8.1.0"
)

STAMP="$VENV/.bench-requirements"
WANT="$("$PYTHON" -c 'import sys; print(sys.version)') ${PEERS[*]} editable=$REPO"

if [[ "${REBUILD:-0}" == 1 || ! -x "$VENV/bin/python" ]]; then
    echo "# creating $VENV with $PYTHON" >&2
    "$PYTHON" -m venv --clear "$VENV"
fi
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$WANT" ]]; then
    echo "# installing circuitry (editable) and the peers into $VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$REPO" "${PEERS[@]}"
    printf '%s' "$WANT" > "$STAMP"
fi

cd "$HERE"
"$VENV/bin/python" -c 'import circuitry, sys; print("# circuitry from", circuitry.__file__, file=sys.stderr)'
"$VENV/bin/python" "$HERE/peers_bench.py" "$@"
echo
"$VENV/bin/python" "$HERE/bench_internals.py" "$@"
echo
if command -v redis-server >/dev/null; then
    "$VENV/bin/python" "$HERE/bench_redis.py" "$@"
else
    echo "# redis-server not installed: bench_redis.py skipped (Debian: apt-get install redis-server)" >&2
fi
