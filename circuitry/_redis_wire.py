"""Redis's wire format for a shared circuit: the script, its arguments, its replies.

`circuitry._shared` plans requests and applies replies as Python values
(`Request`, `Reply`); `circuitry.redis` sends them. This module holds what
lies between: the EVALSHA command for a request (ARGV[1], the request's line;
ARGV[2], the config argument), the reply's text taken apart, and the script
itself (`SCRIPT`).

The rules the script shares with the Python side are written once, here or
in `circuitry._core`, and the script takes them from there: Lua generated
at load time (`script()`: `prologue()` before `_circuit.lua`, and
`off_fast_path()` in it, after its fast path) from
- `CONFIG_FIELDS`: the config argument's fields, in order
  (`config_argument` writes them; the script binds each to a local of its
  name);
- `CircuitState`: the state codes (a local per state: `CLOSED = 'closed'`);
- `circuitry._core.Trigger` and `_TRANSITIONS`: a local per trigger, and the
  transition table (`next_state`), the manual controls' included.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from ._config import AdaptiveThrottle, CircuitBreakerConfig
from ._shared import Reply, Request, SharedCore
from ._state import CircuitState
from ._transitions import _TRANSITIONS, Trigger

__all__ = [
    "CONFIG_FIELDS",
    "KEYS",
    "line_for",
    "SCRIPT",
    "SCRIPT_SHA",
    "argv",
    "command_for",
    "config_argument",
    "parse_reply",
    "off_fast_path",
    "packed_for",
    "prologue",
    "resp",
    "script",
]

KEYS = 5
"""Keys of one circuit (`RedisStore.keys`), all with its hash tag."""

CONFIG_FIELDS: tuple[str, ...] = (
    # The fast path's (a CLOSED record): the script takes these at once, as strings.
    "config_id",  # a digest of the rest: the config's fingerprint, kept with the state
    "ttl",  # ms (the store's)
    "failure_window",
    "failure_threshold_count",
    "failure_threshold_percentage",
    "minimum_calls",
    "slow_call_rate_threshold",
    "failure_window_calls",  # (a count window's records take the full path)
    # The others, only after the fast path (`off_fast_path()`), as numbers.
    "success_threshold_count",
    "test_request_count",
    "half_open_max_wait",
    "reset_timeout",
    "reset_timeout_multiplier",
    "max_reset_timeout",
    "half_open_failure_rate",
    "adaptive_throttle",  # its window (s): the script keeps the throttle's buckets over it
    "lease",  # s (the store's)
)
"""The config argument (the script's ARGV[2]), field by field: '' for a field that is None.

The `CircuitBreakerConfig` fields of those names, and the store's `ttl` and
`lease`; all comma-separated, preceded by `config_id`.
"""

_FAST_PATH = 8
"""The first fields of `CONFIG_FIELDS`: what the script's fast path reads."""

_COUNTS = frozenset(
    {
        "ttl",
        "failure_threshold_count",
        "minimum_calls",
        "success_threshold_count",
        "test_request_count",
        "failure_window_calls",
    }
)
"""Fields written as integers; the others are seconds or percentages, written as floats."""

_STATES = {state.value: state for state in CircuitState}


def config_argument(config: CircuitBreakerConfig, ttl_ms: int, lease: float) -> str:
    """The script's ARGV[2] for `config`, with the store's TTL and lease (`CONFIG_FIELDS`).

    Written once per circuit: a float as its repr, so that the script reads
    back the very value; `config_id` a digest of the rest, so that processes
    that share a circuit with different configs can tell (the same config
    writes the same text, in any process and any version that keeps this
    format).
    """
    fields = []
    for name in CONFIG_FIELDS[1:]:
        value: object = (
            ttl_ms if name == "ttl" else lease if name == "lease" else getattr(config, name)
        )
        if isinstance(value, AdaptiveThrottle):
            value = value.window  # (k and the rest are the process's: it draws)
        if value is None:
            fields.append("")
        elif name in _COUNTS:
            fields.append(str(value))
        else:
            assert isinstance(value, int | float)
            fields.append(repr(float(value)))
    rules = ",".join(fields)
    digest = hashlib.blake2b(rules.encode(), digest_size=8).hexdigest()
    return f"{digest},{rules}"


def command_for(
    core: SharedCore, request: Request, now: str, line: bytes | None = None
) -> tuple[str | bytes, ...]:
    """EVALSHA with its arguments for `request`, as bytes (redis-py then encodes nothing).

    `now`: the script's time ('' for Redis TIME). What every request of a
    circuit sends alike (the script, its keys, the config argument) is
    encoded once, at the circuit's first request, and kept on its core
    (`SharedCore.wire`): per request only the request's own line is built
    and encoded. The command's name stays a str, as redis-py's own commands
    send it (its cluster routing and metrics read it).

    ARGV[1], the line: op, now, the jitter factor of an open period this
    request starts, the request's id, the op's own arguments; ARGV[2] the
    config argument; ARGV[3] and ARGV[4], only after a lost reply, the
    permits to give back and the lost requests' ids (see `_circuit.lua`).
    `line`: `line_for`'s, when the caller has made it already (its jitter is
    drawn once per request).
    """
    head, rules = (core.wire or _wire(core))[:2]
    if line is None:
        line = line_for(core, request, now)
    if request.release or request.lost:
        return (
            *head,
            line,
            rules,
            " ".join(request.release).encode(),
            " ".join(request.lost).encode(),
        )
    return (*head, line, rules)


def line_for(core: SharedCore, request: Request, now: str) -> bytes:
    """The request's line (the script's ARGV[1]; see `command_for`), encoded."""
    return ",".join(
        (request.op, now, core.no_jitter or core.jitter(), request.rid, *request.args)
    ).encode()


def packed_for(core: SharedCore, request: Request, now: str, line: bytes) -> bytes:
    """`command_for`'s command in Redis' protocol (RESP), as redis-py's `pack_command` makes it.

    For `RedisStore`'s own path to a plain client's connection (no
    `execute_command`): the frame of what every request of the circuit sends
    alike is kept on its core (`SharedCore.wire`), so that per request only
    the line is framed; a request that gives permits back or names lost
    replies (after a timeout, rare) is framed whole. `line`: `line_for`'s.
    """
    wire = core.wire or _wire(core)
    if request.release or request.lost:
        return resp(command_for(core, request, now, line))
    return b"%s$%d\r\n%s\r\n%s" % (wire[2], len(line), line, wire[3])


def resp(command: tuple[str | bytes, ...]) -> bytes:
    """`command` (a str or bytes per argument) as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(command)]
    for argument in command:
        data = argument.encode() if isinstance(argument, str) else argument
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _wire(core: SharedCore) -> tuple[tuple[str | bytes, ...], bytes, bytes, bytes]:
    """What every request of `core`'s circuit sends alike, encoded (kept as `core.wire`).

    The command's head (EVALSHA, the script's id, the keys) and the config
    argument, as `command_for` sends them; and as `packed_for` frames them:
    the array's header (a request without permits or lost replies: 10
    arguments) with the head's bulk strings, and the config argument's.
    """
    store = core.store
    head: tuple[str | bytes, ...] = (
        "EVALSHA",
        SCRIPT_SHA.encode(),
        str(KEYS).encode(),
        *(key.encode() for key in core.keys),
    )
    rules = config_argument(core.config, store.ttl_ms(), store.lease_for(core.config)).encode()
    framed = resp(head)
    start = b"*%d\r\n" % (len(head) + 2) + framed[framed.index(b"\r\n") + 2 :]
    wire = core.wire = (head, rules, start, resp((rules,))[4:])
    return wire


def argv(core: SharedCore, request: Request, now: str) -> tuple[str, ...]:
    """The script's ARGV for `request`, as text (what `command_for` sends after the keys)."""
    return tuple(
        part.decode() if isinstance(part, bytes) else part
        for part in command_for(core, request, now)[3 + KEYS :]
    )


def parse_reply(raw: bytes | str) -> Reply | None:
    """A reply from the script's string (see `_circuit.lua`); None for '=' (no change)."""
    if raw == b"=" or raw == "=":
        return None
    text = raw.decode() if isinstance(raw, bytes) else raw
    (
        state,
        generation,
        in_state,
        left,
        moves,
        admitted,
        differs,
        calls,
        failures,
        slow,
        consecutive,
        trials,
        successes,
        now,
        owed,
        requests,
        accepts,
        suppressed,
    ) = text.split("|")
    return Reply(
        _STATES[state],
        int(generation),
        max(0.0, float(in_state)),
        float(left) if left else None,
        _moves(moves) if moves else (),
        admitted == "1",
        differs == "1",
        int(calls),
        int(failures),
        int(slow),
        int(consecutive),
        int(trials),
        int(successes),
        float(now) if now else None,
        tuple((rid, _moves(made)) for rid, made in (entry.split("=") for entry in owed.split(";")))
        if owed
        else (),
        (int(requests), int(accepts)) if requests else None,
        suppressed == "1",
    )


def _moves(text: str) -> tuple[tuple[CircuitState, CircuitState], ...]:
    """Transitions from the script's 'old>new,...'."""
    return tuple(
        (_STATES[old], _STATES[new]) for old, new in (move.split(">") for move in text.split(","))
    )


# -- the script ---------------------------------------------------------------------------


def prologue() -> str:
    """The Lua that the script starts with: the states, the triggers, the fast path's config.

    Locals only: on the fast path (a CLOSED record) it costs what reading the
    fast path's fields costs anyway.
    """
    states = list(CircuitState)
    triggers = list(Trigger)
    fast = CONFIG_FIELDS[:_FAST_PATH]
    lines = [
        "-- Generated by circuitry/_redis_wire.py (prologue()) from the tables the Python",
        "-- side uses: change them there, not here.",
        "",
        "-- The states (CircuitState), as the script stores and answers them.",
        *_wrapped("local ", [state.name for state in states], " ="),
        *_wrapped("  ", [_lua(state.value) for state in states]),
        "-- The triggers (circuitry._core.Trigger): a control request names one.",
        *_wrapped("local ", [trigger.name for trigger in triggers], " ="),
        *_wrapped("  ", [_lua(trigger.name) for trigger in triggers]),
        "-- The config (ARGV[2]), by name (circuitry._redis_wire.CONFIG_FIELDS): the fast",
        "-- path's fields, as strings ('' for none); the others come after the fast path.",
        *_wrapped("local ", fast, " ="),
        f"  string.match(ARGV[2], '^{','.join([_FIELD] * len(fast))},')",
        "",
    ]
    return "\n".join(lines)


def off_fast_path() -> str:
    """The Lua the script has after its fast path: the rest of the config, the transitions.

    (Not in the prologue: a function there would be made on every call.)
    """
    states = list(CircuitState)
    fast, rest = CONFIG_FIELDS[:_FAST_PATH], CONFIG_FIELDS[_FAST_PATH:]
    lines = [
        "-- Generated by circuitry/_redis_wire.py (off_fast_path()): the rest of the config",
        "-- (CONFIG_FIELDS), by name, as numbers (nil for none) ...",
        *_wrapped("local ", rest, " ="),
        f"  string.match(ARGV[2], '^{'[^,]*,' * len(fast)}{','.join([_FIELD] * len(rest))}$')",
        *(f"{name} = tonumber({name})" for name in rest),
        "-- ... and circuitry._core._TRANSITIONS: the state `trigger` takes `state` to (nil:",
        "-- none).",
        "local function next_state(state, trigger)",
        "  return ({",
        *(
            line
            for state in states
            for line in _wrapped(
                f"    {state.value} = {{",
                [
                    f"{trigger.name} = {new.name}"
                    for (old, trigger), new in _TRANSITIONS.items()
                    if old is state
                ],
                "},",
            )
        ),
        "  })[state][trigger]",
        "end",
        "",
    ]
    return "\n".join(lines)


_FIELD = "([^,]*)"
_HERE = "--[[generated: off the fast path]]\n"
"""The line of `_circuit.lua` that `off_fast_path()` takes the place of."""


def script(body: str) -> str:
    """The script Redis runs: `prologue()`, then `body` with `off_fast_path()` in its place."""
    if body.count(_HERE) != 1:
        raise ValueError(f"the script must have the line {_HERE.strip()!r} once")
    return prologue() + body.replace(_HERE, off_fast_path())


def _wrapped(head: str, items: list[str] | tuple[str, ...], tail: str = "") -> list[str]:
    """`head`, `items` comma-separated, `tail`, in lines of at most 100 characters."""
    lines = [head]
    indent = " " * (len(head) - len(head.lstrip()) + 2)
    for i, item in enumerate(items):
        text = item + ("," if i < len(items) - 1 else tail)
        if len(lines[-1]) + 1 + len(text) > 100 and lines[-1].strip():
            lines[-1] = lines[-1].rstrip()
            lines.append(indent + text)
        else:
            lines[-1] += ("" if lines[-1] == head else " ") + text
    return lines


def _lua(text: str) -> str:
    """`text` as a Lua string literal (the names here need no escapes)."""
    if not text.isidentifier():
        raise ValueError(f"not a plain name: {text!r}")
    return f"'{text}'"


SCRIPT = script(resources.files("circuitry").joinpath("_circuit.lua").read_text(encoding="utf-8"))
"""The script Redis runs: `_circuit.lua`, with the Lua generated here."""
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()
"""The script's id (EVALSHA; EVAL of `SCRIPT` when the server lacks it): its text's digest.

A change of the script's arguments or reply (the record's "may trip", the
reply's "suppressed") is a new script under a new id: processes of two
versions sharing a circuit each run their own script, with its own
arguments and reply, on the same keys. What they share is the stored
state's format (`_circuit.lua`, "Stored"), and `config_id`.
"""
