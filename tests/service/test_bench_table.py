"""The benchmark's table: medians over interleaved rounds, and each ratio with its spread over the rounds."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from table import Row, ratio_text, render, round_ratios, value  # noqa: E402


def test_a_figure_is_the_median_over_the_rounds_and_tasks_lost_the_most_in_one() -> None:
    results = {"rtt": {"carbon-node": [1.0, 3.0, 2.0]}, "lost": {"baseline": [500, 0, 499]}}
    assert value(results, Row("rtt", ""), "carbon-node") == 2.0
    assert value(results, Row("lost", "", worst=True), "baseline") == 500


def test_each_round_gives_one_ratio_of_the_two_designs_measured_in_it() -> None:
    # a transient load in round 2 slows both designs: the ratio of that round stays near the others
    results = {"rtt": {"carbon-node": [1.0, 2.0, 1.1], "baseline": [3.0, 6.2, 3.2]}}
    ratios = round_ratios(results, Row("rtt", ""))
    assert ratios == [3.0, 3.1, 3.2 / 1.1]
    assert ratio_text(results, Row("rtt", "")) == "3 (2.91-3.1, 3 rounds)"
    throughput = {"tps": {"carbon-node": [100.0, 50.0], "baseline": [80.0, 50.0]}}
    assert round_ratios(throughput, Row("tps", "", better="higher")) == [1.25, 1.0]


def test_the_table_shows_the_medians_and_the_ratio_with_its_range() -> None:
    results = {"rtt": {"carbon-node": [1.0, 2.0, 1.1], "baseline": [3.0, 6.2, 3.2]}}
    text = render(
        results,
        [Row("rtt", "Round trip (s)", "<= 1.25", lambda v, _: v <= 1.25)],
        quick=True,
        elapsed_s=1.0,
        rounds=3,
        tasks=1000,
        sim_tdp_w=40.0,
        footnote="footnote",
    )
    row = next(line for line in text.splitlines() if line.startswith("| Round trip"))
    assert row == "| Round trip (s) | 1.1 | 3.2 | 3 (2.91-3.1, 3 rounds) | <= 1.25 | pass |"
    assert "3 interleaved rounds" in text.splitlines()[0]
