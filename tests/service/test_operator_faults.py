"""What an operator's host does to the node, for real: a read-only or foreign state directory, a full disk.

Each scenario runs in a private mount namespace (``unshare --mount``, root), so the read-only bind mount
and the small tmpfs exist for that process tree only (:mod:`tests.service.fault_scenario`).
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

from tests.conftest import missing_tool

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
SCENARIO_TIMEOUT_S = 420.0


def _require_namespaces() -> None:
    if os.geteuid() != 0:
        missing_tool("the operator-fault scenarios need root (unshare --mount, bind mounts, tmpfs)")
    for tool in ("unshare", "mount", "setpriv"):
        if shutil.which(tool) is None:
            missing_tool(f"{tool} (util-linux) is not installed")


def scenario(name: str, workdir: Path, *args: str) -> dict[str, Any]:
    _require_namespaces()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))}
    command = ["unshare", "--mount", "--propagation", "private", sys.executable, "-m", "tests.service.fault_scenario"]
    done = subprocess.run(
        [*command, name, str(workdir), *args], env=env, capture_output=True, text=True, timeout=SCENARIO_TIMEOUT_S
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads((workdir / "result.json").read_text())
    return result


def _one_clean_line(run: dict[str, Any]) -> str:
    lines = run["stderr"].strip().splitlines()
    assert run["returncode"] == 2, run
    assert len(lines) == 1 and "Traceback" not in run["stderr"], run["stderr"]
    return str(lines[0])


def test_a_read_only_state_directory_is_one_line_exit_2_and_doctor_agrees(tmp_path: Path) -> None:
    result = scenario("readonly", tmp_path)
    line = _one_clean_line(result["run"])
    assert f"state directory (journal, heartbeat, scratch): {tmp_path / 'state'} is not writable: Read-only file system" in line
    assert "(setting state_dir, from environment CARBON_NODE_STATE_DIR)" in line
    assert not (tmp_path / "cache").exists()  # nothing half-created
    doctor = json.loads(result["doctor"]["stdout"])
    state = next(c for c in doctor["checks"] if c["name"] == "state_dir")
    assert state["status"] == "fail" and "Read-only file system" in state["detail"]
    assert result["doctor"]["returncode"] == 1


def test_a_state_directory_the_service_user_cannot_write_is_one_line_exit_2(tmp_path: Path) -> None:
    result = scenario("denied", tmp_path)
    line = _one_clean_line(result["run"])
    assert f"{result['state']} is not writable: Permission denied" in line
    assert "the node's user (nobody)" in line


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    pytest.importorskip("transformers")
    from carbon_node.measure.tiny import build_tiny_text_model

    return str(build_tiny_text_model(tmp_path_factory.mktemp("models") / "tiny-bert", weights=True))


def test_a_full_disk_suspends_the_journal_and_it_resumes_and_replays_once_space_returns(tmp_path: Path, tiny_model: str) -> None:
    result = scenario("full", tmp_path, tiny_model)
    log = result["log"]
    assert result["before"]["mode"] == "tracker", log
    assert [a["mode"] for a in result["while_full"]] == ["no_model", "no_model"], log
    assert result["suspended"] and result["resumed"], result["events"]
    assert "journal_disabled" not in result["events"]
    assert result["after"]["mode"] == "tracker", log
    assert result["stop_status"] == 0
    # After the restart every task comes back from the journal file: the one answered before the disk
    # filled, the two answered while it was full (kept in memory, written on recovery), the one after.
    assert result["after_restart"] == {"1.1": True, "2.1": True, "2.2": True, "3.1": True}, log
