"""How the CLI shows a run's output: whole when small, cut when large."""

from __future__ import annotations

import json

from clients.render import SHOWN_OUTPUT_LINES, shown_output


def test_a_small_output_is_shown_whole() -> None:
    output = {"faces": [{"x": 1}], "count": 1}
    assert shown_output(output) == json.dumps(output, indent=2)


def test_a_large_output_is_cut_and_says_how_to_get_all_of_it() -> None:
    output = {"values": list(range(1000))}
    lines = shown_output(output).split("\n")  # {, "values": [, 1000 values, ], }
    assert len(lines) == SHOWN_OUTPUT_LINES + 1
    assert lines[-1].startswith(f"… {1004 - SHOWN_OUTPUT_LINES} more lines")
    assert f"({len(json.dumps(output))} bytes as JSON)" in lines[-1]
    assert "--json" in lines[-1]
