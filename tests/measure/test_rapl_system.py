"""RAPL end to end: ``carbon-node estimate`` with a fake package counter in a private mount namespace.

carbontracker reads the hard-coded ``/sys/class/powercap``, so the only way to test its RAPL path and the
node's cross-check together is to replace that directory, for one process tree: ``unshare --mount``
(root), a tmpfs there, and a writer advancing ``energy_uj`` at exactly 25 W (:mod:`tests.measure.rapl_scenario`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from carbon_node.measure.tracker import PUE
from tests.conftest import missing_tool

pytestmark = pytest.mark.system

WATTS = 25.0
WINDOW_S = 2.0
TOLERANCE = 0.005
CARBONTRACKER_TOLERANCE = 0.05
SCENARIO_TIMEOUT_S = 300.0
REPO = Path(__file__).resolve().parents[2]


def _require_namespaces() -> None:
    if os.geteuid() != 0:
        missing_tool("the RAPL end-to-end tests need root (unshare --mount, tmpfs over /sys/class/powercap)")
    for tool in ("unshare", "mount", "setpriv"):
        if shutil.which(tool) is None:
            missing_tool(f"{tool} (util-linux) is not installed")
    # A tmpfs over a sysfs directory, in a mount namespace that ends with the command.
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "mount", "-t", "tmpfs", "probe", "/sys/class"],
        capture_output=True,
        timeout=30,
    )
    if probe.returncode != 0:
        missing_tool(f"mount namespaces are not permitted here: {probe.stderr.decode(errors='replace').strip()}")


@pytest.fixture(scope="module")
def text_model(tiny_models: dict[str, str]) -> str:
    return tiny_models["text"]


def estimate(scenario: str, model: str, tmp_path: Path) -> dict[str, Any]:
    """Run the scenario; the estimate's JSON output, with ``_wraps`` (the writer's) and ``_stderr`` added."""
    _require_namespaces()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("CARBON_NODE_", "SUSTAINML_", "CT_"))}
    environ.update(
        {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), environ.get("PYTHONPATH", "")])),
            "CARBON_NODE_TORCH_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
        }
    )
    estimate_args = [
        model,
        "--json",
        "--window-s",
        str(WINDOW_S),
        "--per-inference",
        "measured",
        "--grid-ci-g-per-kwh",
        "100",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    command = ["unshare", "--mount", "--propagation", "private", sys.executable, "-m", "tests.measure.rapl_scenario"]
    done = subprocess.run(
        [*command, scenario, str(tmp_path), "--", *estimate_args],
        env=environ,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=SCENARIO_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))
    assert result["returncode"] == 0, result["stderr"]
    output: dict[str, Any] = json.loads(result["stdout"])
    output["_wraps"] = result["wraps"]
    output["_stderr"] = result["stderr"]
    return output


def expected_per_inference_kwh(extra: dict[str, Any]) -> float:
    return WATTS * PUE * extra["window_s"] / extra["forward_passes"] / 3.6e6


def test_a_steady_package_counter_is_measured_as_rapl(text_model: str, tmp_path: Path) -> None:
    output = estimate("steady", text_model, tmp_path)
    extra = output["extra_data"]
    assert (extra["mode"], extra["power_source"], extra["power_sources"]["cpu"]) == ("tracker", "rapl", "rapl")
    assert extra["torch_threads"] == 1
    expected = expected_per_inference_kwh(extra)
    # The counters, read at the window edges, are exact.
    assert extra["counter_energy_kwh"] / extra["forward_passes"] == pytest.approx(expected, rel=TOLERANCE)
    # carbontracker's figure agrees within FAR_RELATIVE, so it is the one published. It is one 1 s sample
    # divided by the nominal second: on a loaded machine its second read comes late (it was seen 2.7 %
    # high on 2 shared cores), hence the wider bound on it.
    assert extra["energy_figure"] == "carbontracker" and extra["power_model"] is None
    assert extra["uncertainty"]["parts"]["power_source"]["factor"] == [0.75, 1.35]  # a counter's part
    published = extra["measured_per_inference"]["energy_kwh"]
    assert published == pytest.approx(extra["carbontracker_energy_kwh"] / extra["forward_passes"], rel=1e-9)
    assert published == output["energy_consumption"] == pytest.approx(expected, rel=CARBONTRACKER_TOLERANCE)


def test_a_counter_wrapping_inside_the_window_still_gives_the_right_non_zero_figure(text_model: str, tmp_path: Path) -> None:
    output = estimate("wrap", text_model, tmp_path)
    extra = output["extra_data"]
    # The counter wraps every second: at least once inside the 2 s window, and once inside each of
    # carbontracker's one-second samples, which then read almost nothing.
    assert output["_wraps"] >= 2
    assert (extra["mode"], extra["power_source"]) == ("tracker", "rapl")
    # carbontracker's one-second samples straddle a wrap: its figure is not the one published.
    assert extra["energy_figure"] == "rapl_counter"
    assert output["energy_consumption"] > 0
    assert extra["measured_per_inference"]["energy_kwh"] == pytest.approx(expected_per_inference_kwh(extra), rel=TOLERANCE)
    assert any("counter figure is published" in note for note in extra["measurement_notes"])


@pytest.mark.parametrize(("scenario", "reason"), [("missing", "does not exist"), ("denied", "permission denied")])
def test_unreadable_counters_fall_back_to_the_tdp_table_and_say_so(
    text_model: str, tmp_path: Path, scenario: str, reason: str
) -> None:
    output = estimate(scenario, text_model, tmp_path)
    extra = output["extra_data"]
    # No counter: the TDP table's CPU, its power from the window's load (carbontracker's figure kept beside it).
    assert (extra["mode"], extra["power_source"], extra["energy_figure"]) == ("tracker", "tdp_table", "load_model")
    assert extra["power_model"]["name"] == "boavizta_teads_tdp_curve" and extra["carbontracker_energy_kwh"] > 0
    assert extra["counter_energy_kwh"] is None
    assert output["energy_consumption"] > 0
    notes = [note for note in extra["measurement_notes"] if "RAPL counters are not readable" in note]
    assert notes and reason in notes[0] and "TDP-table estimate" in notes[0]
