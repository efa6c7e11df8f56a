"""``carbon-node estimate`` as a newcomer meets it: its table, its options, its checks, its stderr."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from carbon_node.cli import build_parser
from carbon_node.cli.estimate import TABLE_WIDTH, check_model_argument, format_output
from carbon_node.cli.flags import ESTIMATE_FIELDS
from carbon_node.engine import Engine
from carbon_node.engine.config import EngineConfig
from carbon_node.service.settings import Settings, SettingsError
from carbon_node.testing import FakeMeasurer, make_inputs, make_measurement
from tests.cli.test_cli import carbon_node

TORCH_MISSING = "import sys\nraise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n"


def table(latency: float, **settings: object) -> dict[str, str]:
    engine = Engine(EngineConfig(latency_unit="s", **settings), FakeMeasurer(make_measurement(energy_kwh=0.002, window_s=2.0)))
    text = format_output(engine.handle(make_inputs(latency=latency, region="France")), as_json=False)
    return {line.split("  ")[0]: line for line in text.splitlines() if not line.startswith(" ")}


def test_without_a_hw_latency_the_table_says_the_values_cover_the_whole_window() -> None:
    line = table(0.0)["carbon footprint"]
    assert "whole window, not per inference" in line
    assert "per inference," not in line


def test_with_a_hw_latency_the_table_says_how_the_window_was_scaled_per_inference() -> None:
    assert "per inference: window energy x HW latency / window" in table(0.5)["carbon footprint"]
    assert "per inference: window energy / forward passes" in table(0.5, per_inference="measured")["carbon footprint"]


def test_a_long_error_wraps_under_its_label_and_leaves_the_value_column_narrow(tmp_path: Path) -> None:
    # An ONNX path answers from HW power x latency whether or not the file exists; NaN power is an error.
    onnx_path = tmp_path / ("x" * 90) / "missing.onnx"
    done = carbon_node("estimate", "unet", "--model-path", str(onnx_path), "--latency", "1", "--power", "nan")
    lines = done.stdout.splitlines()
    assert done.returncode == 1
    assert lines[0].split() == ["mode", "error"]
    assert len(lines[0]) < 20
    assert all(len(line) <= TABLE_WIDTH for line in lines), lines
    assert lines[1].startswith("error  ") and lines[2].startswith("       ")


def test_estimate_help_lists_only_the_settings_it_uses() -> None:
    estimate = build_parser()._subparsers._group_actions[0].choices["estimate"]  # type: ignore[union-attr]
    text = estimate.format_help()
    for daemon_only in ("--bus", "--domain-id", "--journal", "--metrics-port", "--state-dir", "--shutdown-timeout-s"):
        assert daemon_only not in text, daemon_only
    for used in ("--window-s", "--latency-unit", "--grid-ci-g-per-kwh", "--device", "--model-dirs", "--log-level"):
        assert used in text, used
    assert "exit status: 0" in text
    settings_flags = {action.dest for action in estimate._actions if action.dest in Settings.model_fields}
    assert settings_flags == set(ESTIMATE_FIELDS) - {"electricitymaps_api_key"}


def test_an_invalid_setting_estimate_does_not_use_does_not_stop_it() -> None:
    done = carbon_node("estimate", "NO_MODEL", env={"SUSTAINML_DOMAIN_ID": "abc", "CARBON_NODE_METRICS_PORT": "0"})
    assert done.returncode == 0, done.stderr  # no_model: answered as asked, neither an error nor a usage error
    assert "No model selected" in done.stdout
    assert "invalid setting" not in done.stderr


def test_an_invalid_setting_estimate_uses_is_still_refused() -> None:
    done = carbon_node("estimate", "NO_MODEL", env={"CT_TARGET_SECONDS": "-1"})
    assert done.returncode == 2
    assert "invalid setting window_s" in done.stderr


@pytest.mark.parametrize("model", ["./not-here", "../nor-here", "a;rm -rf x", "/no/such/model/dir"])
def test_a_refused_model_is_refused_before_any_worker_starts(model: str, tmp_path: Path) -> None:
    started = time.monotonic()
    done = carbon_node("estimate", model, cwd=tmp_path)
    elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    assert "starting the measurement worker" not in done.stderr
    assert done.stderr.startswith("carbon-node: error: model") and repr(model) in done.stderr, done.stderr
    print(f"{model!r} refused in {elapsed:.2f} s")


def test_a_relative_model_directory_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert check_model_argument("models/tiny") == str(tmp_path / "models" / "tiny")
    assert check_model_argument("./models/tiny") == str(tmp_path / "models" / "tiny")
    assert check_model_argument("bert-base-uncased") == "bert-base-uncased"  # a hub id stays one
    with pytest.raises(SettingsError, match="outside the allowed model directories"):
        check_model_argument("models/tiny", allowed_dirs=(str(tmp_path / "elsewhere"),))


def test_without_the_measure_extra_estimate_says_what_is_missing_with_readable_stderr(tmp_path: Path) -> None:
    shim = tmp_path / "shim" / "torch"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text(TORCH_MISSING)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    env = {
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "shim"), os.environ.get("PYTHONPATH", "")]),
        "CARBON_NODE_LOG_FORMAT": "json",
    }
    done = carbon_node("estimate", "m", env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert "measurement unavailable: torch is not installed (install carbon-node[measure])" in " ".join(done.stdout.split())
    assert "loading model" not in done.stderr  # nothing to load: the reason comes at once
    assert '"level": "info"' not in done.stderr, done.stderr  # logs held at warning: progress stays readable
    assert "starting the measurement worker..." in done.stderr


def test_a_measured_estimate_ends_without_a_leaked_semaphore_warning(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from carbon_node.measure.tiny import build_tiny_text_model

    build_tiny_text_model(tmp_path / "models" / "tiny-bert", weights=True)
    done = carbon_node("estimate", "models/tiny-bert", "--window-s", "0.2", "--sim-cpu-tdp-w", "40", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "resource_tracker" not in done.stderr and "leaked" not in done.stderr, done.stderr
