"""`carbon-node where`: the zone, figure, source, year and match the node would use for a place."""

from __future__ import annotations

import io
import json
import subprocess
import sys

from carbon_node.cli.where import run_where
from carbon_node.service.settings import Settings


def test_where_prints_the_zone_figure_source_year_and_match() -> None:
    out = io.StringIO()
    assert run_where(Settings(), "Paris, Texas", "", False, out) == 0
    text = out.getvalue()
    for expected in ("US-TX (subnational)", "codecarbon", "eGRID2023", "2023", "Paris (city, US-TX)", "how: city"):
        assert expected in text


def test_where_json_has_the_keys_a_task_carries() -> None:
    out = io.StringIO()
    assert run_where(Settings(), "Madrid", "", True, out) == 0
    answer = json.loads(out.getvalue())
    assert (answer["grid_ci_zone"], answer["grid_ci_source"], answer["grid_ci_zone_kind"]) == ("ES", "offline_table", "country")
    assert answer["grid_ci_match"]["text"] == "Madrid" and answer["warnings"] == []


def test_where_exits_1_for_a_place_it_does_not_know_and_says_what_it_would_use() -> None:
    out = io.StringIO()
    assert run_where(Settings(), "Xyzzy", "", False, out) == 1
    assert "world average" in out.getvalue() and "Xyzzy" in out.getvalue()


def test_a_configured_intensity_answers_where_as_it_answers_tasks() -> None:
    out = io.StringIO()
    assert run_where(Settings(grid_ci_g_per_kwh=123.0), "Madrid", "", True, out) == 0
    answer = json.loads(out.getvalue())
    assert (answer["grid_ci_g_per_kwh"], answer["grid_ci_source"], answer["grid_ci_match"]["how"]) == (123.0, "env", "configured")


def test_the_where_command_runs_from_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "carbon_node", "where", "--json", "us-east-1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["grid_ci_zone"] == "US-VA"
