"""The ``carbon-node`` command line, run as a user runs it: in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from carbon_node.cli import build_parser
from carbon_node.service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SUBCOMMANDS = ("run", "send-task", "estimate", "doctor", "config", "demo", "serve-measurements", "hosts")


def carbon_node(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("CARBON_NODE_", "SUSTAINML_", "CT_"))}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "carbon_node", *args], env=environ, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def config_values(*args: str, env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    done = carbon_node("config", "show", "--json", *args, env=env)
    assert done.returncode == 0, done.stderr
    return {row["setting"]: row for row in json.loads(done.stdout)["settings"]}


@pytest.fixture
def toml_file(tmp_path: Path) -> Path:
    path = tmp_path / "carbon-node.toml"
    path.write_text("[carbon_node]\nwindow_s = 2.0\ndomain_id = 11\ngrid_ci_g_per_kwh = 100.0\n")
    return path


def test_defaults_apply_when_nothing_is_set() -> None:
    rows = config_values()
    assert (rows["window_s"]["value"], rows["window_s"]["source"]) == (1.0, "default")


def test_toml_file_overrides_defaults(toml_file: Path) -> None:
    rows = config_values("--config", str(toml_file))
    assert (rows["window_s"]["value"], rows["window_s"]["source"]) == (2.0, f"file {toml_file}")


def test_config_file_can_come_from_carbon_node_config(toml_file: Path) -> None:
    rows = config_values(env={"CARBON_NODE_CONFIG": str(toml_file)})
    assert rows["domain_id"]["value"] == 11


def test_environment_overrides_the_toml_file(toml_file: Path) -> None:
    rows = config_values("--config", str(toml_file), env={"CT_TARGET_SECONDS": "3.5"})
    assert (rows["window_s"]["value"], rows["window_s"]["source"]) == (3.5, "env")
    assert rows["domain_id"]["value"] == 11


def test_flags_override_the_environment(toml_file: Path) -> None:
    rows = config_values("--config", str(toml_file), "--window-s", "4.5", env={"CT_TARGET_SECONDS": "3.5"})
    assert (rows["window_s"]["value"], rows["window_s"]["source"]) == (4.5, "flag")


def test_boolean_flags_have_a_negative_form() -> None:
    rows = config_values("--no-journal", env={"CARBON_NODE_JOURNAL": "true"})
    assert (rows["journal"]["value"], rows["journal"]["source"]) == (False, "flag")


def test_config_show_table_names_each_setting_its_variable_and_source() -> None:
    done = carbon_node("config", "show", env={"SUSTAINML_DOMAIN_ID": "9"})
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["SETTING", "ENVIRONMENT", "VALUE", "SOURCE"]
    assert len(lines) == 1 + len(Settings.model_fields)
    assert next(line for line in lines if line.startswith("domain_id ")).split() == [
        "domain_id",
        "SUSTAINML_DOMAIN_ID",
        "9",
        "env",
    ]


def test_config_show_masks_the_api_key() -> None:
    done = carbon_node("config", "show", env={"CARBON_NODE_ELECTRICITYMAPS_API_KEY": "s3cret"})
    assert "s3cret" not in done.stdout
    assert "***" in done.stdout


def test_an_invalid_environment_value_exits_2_naming_setting_value_and_bounds() -> None:
    done = carbon_node("run", env={"CT_TARGET_SECONDS": "-1"})
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "window_s" in done.stderr and "CT_TARGET_SECONDS" in done.stderr and "'-1'" in done.stderr
    assert "> 0" in done.stderr


def test_an_invalid_flag_value_exits_2() -> None:
    done = carbon_node("run", "--domain-id", "500")
    assert done.returncode == 2
    assert "domain_id" in done.stderr and "'500'" in done.stderr and "<= 232" in done.stderr


def test_a_choice_outside_the_allowed_set_exits_2_listing_the_choices() -> None:
    done = carbon_node("run", "--bus", "zeromq")
    assert done.returncode == 2
    assert "cyclone" in done.stderr and "sustainml" in done.stderr


def test_an_unknown_key_in_the_toml_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("window_seconds = 2\n")
    done = carbon_node("config", "show", "--config", str(path))
    assert done.returncode == 2
    assert "window_seconds" in done.stderr


def test_a_missing_config_file_exits_2(tmp_path: Path) -> None:
    done = carbon_node("config", "show", "--config", str(tmp_path / "absent.toml"))
    assert done.returncode == 2
    assert "absent.toml" in done.stderr


def test_version_prints_the_package_version() -> None:
    from importlib import metadata

    done = carbon_node("--version")
    assert done.stdout.strip() == f"carbon-node {metadata.version('carbon-node')}"


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command: str) -> None:
    done = carbon_node(command, "--help")
    assert done.returncode == 0
    assert done.stdout.startswith(f"usage: carbon-node {command}")


def test_run_help_lists_every_setting_except_secrets_with_its_variable() -> None:
    text = carbon_node("run", "--help").stdout
    for name in Settings.model_fields:
        flag = "--" + name.replace("_", "-")
        if name == "electricitymaps_api_key":
            assert flag not in text
        else:
            assert flag in text, flag


def test_every_flag_of_the_parser_maps_to_a_setting_or_an_option_of_its_command() -> None:
    parser = build_parser()
    run = parser.parse_args(["run", "--window-s", "2", "--device", "cpu", "--metrics-port", "9100"])
    assert (run.window_s, run.device, run.metrics_port) == ("2", "cpu", "9100")
    assert not hasattr(parser.parse_args(["run"]), "window_s")


def test_top_level_script_runs_the_node_cli() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "carbon_node.py"), "--help"], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert done.returncode == 0
    assert done.stdout.startswith("usage: carbon-node run")


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "carbon-node"
    if not script.exists():
        pytest.skip("the carbon-node console script is not installed next to this interpreter")
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0


def test_estimate_takes_the_model_as_a_positional_argument(tmp_path: Path) -> None:
    from carbon_node.measure.tiny import build_tiny_onnx

    onnx = build_tiny_onnx(tmp_path / "m.onnx")
    done = carbon_node("estimate", "unet", "--model-path", str(onnx), "--latency", "0.001", "--power", "10", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["extra_data"]["mode"] == "onnx_hw_only"


def test_estimate_without_a_model_or_with_two_different_ones_exits_2() -> None:
    assert carbon_node("estimate").returncode == 2
    done = carbon_node("estimate", "a", "--model", "b")
    assert done.returncode == 2
    assert "give the model once" in done.stderr


def test_send_task_accepts_the_short_domain_and_timeout_spellings() -> None:
    args = build_parser().parse_args(["send-task", "--model", "NO_MODEL", "--domain", "7", "--timeout", "3"])
    assert (args.domain_id, args.timeout_s) == ("7", 3.0)


def test_an_empty_variable_counts_as_unset() -> None:
    rows = config_values(env={"SUSTAINML_DOMAIN_ID": "", "SUSTAINML_GRID_CI": " ", "CT_TARGET_SECONDS": ""})
    assert (rows["domain_id"]["value"], rows["domain_id"]["source"]) == (0, "default")
    assert rows["window_s"]["source"] == "default"
