"""Which configuration file is read: a named one must exist; systemd's default one is optional."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def config_show(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("CARBON_NODE_", "SUSTAINML_", "CT_", "CONFIGURATION_"))}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "carbon_node", "config", "show", "--json"], env=environ, capture_output=True, text=True, timeout=60
    )


def shown(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    payload: dict[str, Any] = json.loads(done.stdout)
    return payload


def test_an_absent_file_in_systemds_configuration_directory_means_defaults(tmp_path: Path) -> None:
    payload = shown(config_show({"CONFIGURATION_DIRECTORY": str(tmp_path)}))
    assert payload["config_file"] is None
    assert {row["source"] for row in payload["settings"]} == {"default"}


def test_the_file_in_systemds_configuration_directory_is_read_when_present(tmp_path: Path) -> None:
    (tmp_path / "carbon-node.toml").write_text("[carbon_node]\nwindow_s = 2.5\n")
    payload = shown(config_show({"CONFIGURATION_DIRECTORY": str(tmp_path)}))
    assert payload["config_file"] == str(tmp_path / "carbon-node.toml")
    row = next(r for r in payload["settings"] if r["setting"] == "window_s")
    assert (row["value"], row["source"]) == (2.5, f"file {tmp_path / 'carbon-node.toml'}")


def test_a_file_named_by_carbon_node_config_must_exist_even_under_systemd(tmp_path: Path) -> None:
    done = config_show({"CONFIGURATION_DIRECTORY": str(tmp_path), "CARBON_NODE_CONFIG": str(tmp_path / "typo.toml")})
    assert done.returncode == 2
    assert "cannot read configuration file" in done.stderr and "typo.toml" in done.stderr


def test_a_named_file_wins_over_the_default_one(tmp_path: Path) -> None:
    (tmp_path / "carbon-node.toml").write_text("window_s = 2.5\n")
    named = tmp_path / "named.toml"
    named.write_text("window_s = 3.5\n")
    payload = shown(config_show({"CONFIGURATION_DIRECTORY": str(tmp_path), "CARBON_NODE_CONFIG": str(named)}))
    assert payload["config_file"] == str(named)
