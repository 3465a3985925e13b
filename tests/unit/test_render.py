"""How the CLI shows a run's output: whole when small, cut when large."""

from __future__ import annotations

import json

from clients.render import SHOWN_OUTPUT_LINES, shown_output


def test_a_small_output_is_shown_whole_however_many_lines_it_takes() -> None:
    output = {"descriptor": [0.125] * 128, "count": 1}  # a face's features: 133 lines
    assert shown_output(output) == json.dumps(output, indent=2)


def test_a_large_output_is_cut_and_says_how_to_get_all_of_it() -> None:
    output = {"values": list(range(10_000))}  # over SHOWN_OUTPUT_BYTES
    lines = shown_output(output).split("\n")  # {, "values": [, 10000 values, ], }
    assert len(lines) == SHOWN_OUTPUT_LINES + 1
    assert lines[-1].startswith(f"… {10_004 - SHOWN_OUTPUT_LINES} more lines")
    assert f"({len(json.dumps(output))} bytes as JSON)" in lines[-1]
    assert "--json" in lines[-1]
