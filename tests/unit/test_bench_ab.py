"""How ``bench.ab`` reads two versions' figures as ratios (the measuring itself is a
benchmark, run by ``python -m bench.ab BASE [HEAD]``, not a test)."""

from __future__ import annotations

import pytest

from bench.ab import combine, main, summarize


def test_a_sitting_reads_head_over_base_block_by_block_and_burst_by_burst() -> None:
    found = summarize(
        block_p50={"base": [0.004, 0.005, 0.006], "head": [0.002, 0.005, 0.009]},
        every={"base": [0.004] * 98 + [0.020] * 2, "head": [0.003] * 100},
        rates={"base": [1000.0, 800.0], "head": [1500.0, 800.0]},
        started_first="head",
    )
    assert found["started_first"] == "head"
    assert found["sequential_p50_ratio"] == 1.0  # the median of 0.5, 1.0, 1.5
    assert found["sequential_block_ratios"] == [0.5, 1.0, 1.5]
    assert found["bulk_runs_per_second_ratio"] == 1.25  # the median of 1.5 and 1.0
    assert found["base"]["p50_ms"] == 4.0 and found["base"]["p99_ms"] == 20.0
    assert found["head"]["block_p50_ms"] == [2.0, 5.0, 9.0]


def test_a_sitting_reads_the_cpu_per_run_of_all_processes_burst_by_burst() -> None:
    found = summarize(
        {"base": [], "head": []},
        {"base": [], "head": []},
        {"base": [1000.0, 1000.0], "head": [1000.0, 1000.0]},
        "base",
        cpu={
            "base": [{"scheduler": 300.0, "executor": 300.0}, {"scheduler": 400.0}],
            "head": [{"scheduler": 300.0, "executor": 240.0}, {"scheduler": 300.0}],
        },
    )
    assert found["bulk_cpu_per_run_ratio"] == 0.825  # the median of 540/600 and 300/400
    assert found["head"]["bulk_cpu_us_per_run"] == {"executor": 120.0, "scheduler": 300.0}
    assert found["base"]["bulk_cpu_us_per_run"] == {"executor": 150.0, "scheduler": 350.0}
    assert combine([found, {"bulk_cpu_per_run_ratio": 1 / 0.825}])["bulk_cpu_per_run_ratio"] == 1


def test_the_sittings_combine_so_that_the_stack_started_first_has_no_edge() -> None:
    # The same code on both sides; whichever stack starts first looks 10% faster.
    base_first = {"sequential_p50_ratio": 1.1, "bulk_runs_per_second_ratio": 0.95}
    head_first = {"sequential_p50_ratio": 1 / 1.1, "bulk_runs_per_second_ratio": 1 / 0.95}
    assert combine([base_first, head_first]) == {
        "sequential_p50_ratio": 1.0,
        "bulk_runs_per_second_ratio": 1.0,
    }
    assert combine([{"sequential_p50_ratio": 0.9}]) == {"sequential_p50_ratio": 0.9}


def test_no_sequential_block_means_no_sequential_ratio() -> None:
    found = summarize(
        {"base": [], "head": []}, {"base": [], "head": []}, {"base": [9.0], "head": [9.0]}, "base"
    )
    assert "sequential_p50_ratio" not in found and found["bulk_runs_per_second_ratio"] == 1.0


@pytest.mark.parametrize(
    "args",
    [
        ["--blocks", "0"],
        ["--runs", "100000"],
        ["--bursts", "-1"],
        ["--burst-runs", "0"],
        ["--head-python", "/no/such/python"],
    ],
)
def test_every_load_is_bounded(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["HEAD", *args])
    assert stopped.value.code == 2
    assert args[0] in capsys.readouterr().err
