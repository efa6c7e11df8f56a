"""The state and cache directories are checked before start-up: one clear line, exit status 2, nothing created.

A read-only file system and a directory the service user cannot write are exercised for real in
``tests/service/test_operator_faults.py`` (a read-only bind mount in a mount namespace, an unprivileged user).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from carbon_node.service.dirs import directory_problem, prepare_directories
from carbon_node.service.settings import SettingsError, load_settings


def test_a_file_where_the_directory_should_be_is_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("")
    assert directory_problem(tmp_path / "state") == f"{tmp_path / 'state'} is not a directory"


def test_a_directory_under_a_file_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    problem = directory_problem(tmp_path / "file" / "deeper" / "state")
    assert problem == f"{tmp_path / 'file' / 'deeper' / 'state'} cannot be created: {tmp_path / 'file'} is not a directory"


def test_a_directory_is_created_with_its_missing_parents(tmp_path: Path) -> None:
    assert directory_problem(tmp_path / "home" / ".local" / "state" / "carbon-node") is None


def test_prepare_names_the_setting_its_origin_and_the_fix_and_creates_nothing(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    loaded = load_settings(
        {"state_dir": str(tmp_path / "file" / "state")},
        environ={"CARBON_NODE_CACHE_DIR": str(tmp_path / "cache")},
    )
    with pytest.raises(SettingsError) as caught:
        prepare_directories(loaded.settings, loaded.sources)
    message = str(caught.value)
    assert message.startswith("state directory (journal, heartbeat, scratch): ")
    assert "(setting state_dir, from command-line flag)" in message
    assert "CARBON_NODE_STATE_DIR or --state-dir" in message
    assert not (tmp_path / "cache").exists()  # nothing half-created


def test_prepare_creates_both_directories_and_the_scratch_the_cache_inside_the_state(tmp_path: Path) -> None:
    loaded = load_settings({"state_dir": str(tmp_path / "s"), "cache_dir": str(tmp_path / "s" / "c")}, environ={})
    prepare_directories(loaded.settings, loaded.sources)
    assert (tmp_path / "s" / "scratch").is_dir() and (tmp_path / "s" / "c").is_dir()


def test_run_with_an_unusable_state_dir_is_one_line_and_exit_status_2(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARBON_NODE_", "SUSTAINML_", "CT_"))}
    env["CARBON_NODE_STATE_DIR"] = str(tmp_path / "file")
    env["CARBON_NODE_CACHE_DIR"] = str(tmp_path / "cache")
    done = subprocess.run([sys.executable, "-m", "carbon_node", "run"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"carbon-node: error: state directory (journal, heartbeat, scratch): {tmp_path / 'file'}")
    assert "environment CARBON_NODE_STATE_DIR" in lines[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "cache").exists()
