"""Redis key names are defined once: ``services/scheduler/keys.py`` for Python, and the
helpers at the top of ``lib.lua`` for the scripts, which must name the same keys; no script
builds a key name inline."""

from __future__ import annotations

import re
from pathlib import Path

from services.scheduler import keys

LUA = Path(keys.__file__).parent / "lua"
HELPER = re.compile(
    r"^local function (\w+)\(P(?:, (\w+))?\) return P \.\. '([^']*)'(?: \.\. (\w+))? end$", re.M
)


def lua_helpers() -> dict[str, str]:
    """Each key helper of lib.lua, applied to the prefix and the argument 'X' ('r1:a' for a
    step key)."""
    found = {}
    for name, param, text, used in HELPER.findall((LUA / "lib.lua").read_text()):
        assert param == used, name
        found[name] = keys.PREFIX + text + ("r1:a" if param == "member" else "X" if param else "")
    return found


def test_lua_key_helpers_name_the_keys_keys_py_names() -> None:
    assert lua_helpers() == {
        "step_hash": keys.step("r1", "a"),
        "run_hash": keys.run("X"),
        "events_key": keys.events("X"),
        "queue_key": keys.queue("X"),
        "outputs_key": keys.outputs("X"),
        "logs_key": keys.logs("r1", "a"),
        "idempotency_key": keys.idempotency("X"),
        "leases_key": keys.LEASES,
        "delayed_key": keys.DELAYED,
        "held_key": keys.held("X"),
        "fair_key": keys.FAIR,
        "unfinished_key": keys.UNFINISHED,
        "deadlines_key": keys.DEADLINES,
        "rate_key": keys.rate("X"),
        "places_key": keys.places("X"),
        "place_waits_key": keys.place_waits("X"),
        "place_limits_key": keys.PLACE_LIMITS,
        "task_limits_key": keys.TASK_LIMITS,
        "signals_key": keys.SIGNALS,
    }


def test_no_script_builds_a_key_name_inline() -> None:
    for script in sorted(LUA.glob("*.lua")):
        for number, line in enumerate(script.read_text().splitlines(), 1):
            code = line.split("--", 1)[0]
            if script.name == "lib.lua" and HELPER.match(line):
                continue
            assert "P .. '" not in code, f"{script.name}:{number}: {line.strip()}"


def test_every_script_says_what_it_reads_and_writes() -> None:
    for script in sorted(LUA.glob("*.lua")):
        if script.name == "lib.lua":
            continue
        header = script.read_text().split("\n\n", 1)[0]
        assert header.startswith(f"-- {script.name}:"), script.name
        assert "KEYS" in header and "ARGV" in header, script.name
