"""The measure host's deployment: its systemd unit verifies, stays hardened, runs serve-measurements; the
image runs a measure host with the same entry point."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.test_deploy import MAX_EXPOSURE, systemd_analyze

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "systemd" / "carbon-node-measure-host.service"
NODE_UNIT = REPO / "deploy" / "systemd" / "carbon-node.service"


@pytest.fixture
def unit_here(tmp_path: Path) -> Path:
    script = Path(sys.executable).parent / "carbon-node"
    if not script.exists():
        pytest.skip("the carbon-node console script is not installed next to this interpreter")
    path = tmp_path / UNIT.name
    path.write_text(UNIT.read_text().replace("/opt/carbon-node/bin/carbon-node", str(script)))
    return path


def test_the_measure_host_unit_passes_systemd_analyze_verify(unit_here: Path) -> None:
    done = subprocess.run([systemd_analyze(), "verify", str(unit_here)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""


def test_the_measure_host_unit_exposure_is_as_low_as_the_nodes(unit_here: Path) -> None:
    done = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", "--no-pager", str(unit_here)], capture_output=True, text=True, timeout=60
    )
    match = re.search(r"Overall exposure level for carbon-node-measure-host\.service: ([0-9.]+)", done.stdout)
    assert match, done.stdout[-2000:] + done.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE


def test_the_measure_host_unit_serves_measurements_with_the_nodes_hardening_and_its_own_directories() -> None:
    unit = UNIT.read_text()
    assert re.search(r"^ExecStart=/opt/carbon-node/bin/carbon-node serve-measurements$", unit, re.MULTILINE)
    assert "ExecReload" not in unit  # a measure host reads its settings at start only
    hardening = [
        line
        for line in NODE_UNIT.read_text().splitlines()
        if re.match(r"^(Protect|Restrict|System|Capab|Ambient|NoNew|Private|Lock|RemoveIPC|UMask)", line)
    ]
    assert hardening and all(line in unit.splitlines() for line in hardening)
    for directive in ("Type=notify", "WatchdogSec=30", "DynamicUser=yes", "StateDirectory=carbon-node-measure-host"):
        assert re.search(rf"^{re.escape(directive)}$", unit, re.MULTILINE), directive
    from carbon_node.service.settings import Settings

    stop_s = int(re.search(r"^TimeoutStopSec=(\d+)", unit, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert stop_s > Settings.model_fields["shutdown_timeout_s"].default


def test_the_image_runs_a_measure_host_through_its_entry_point() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["carbon-node"\]$', dockerfile, re.MULTILINE)  # `docker run IMAGE serve-measurements`
    assert "serve-measurements" in dockerfile
