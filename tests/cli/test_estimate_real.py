"""``carbon-node estimate`` with its own real measurement worker, real carbontracker and a tiny local model."""

from __future__ import annotations

import io
import json

import pytest

from carbon_node.cli.estimate import run_estimate
from carbon_node.service.settings import Settings

tiny = pytest.importorskip("carbon_node.measure.tiny")
pytest.importorskip("carbon_node.measure.client")

WINDOW_S = 0.3


@pytest.fixture(scope="module")
def text_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tiny.build_tiny_text_model(tmp_path_factory.mktemp("tiny") / "text").resolve())


def settings(**values: object) -> Settings:
    return Settings(window_s=WINDOW_S, device="cpu", latency_unit="s", **values)


def test_the_estimate_command_measures_with_its_own_worker(text_model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out, err = io.StringIO(), io.StringIO()
    status = run_estimate(settings(sim_cpu_tdp_w=40.0), text_model, 0.02, 5.0, "Germany", "", True, out, err)
    result = json.loads(out.getvalue())
    assert status == 0, result
    assert result["extra_data"]["mode"] == "tracker"
    assert result["extra_data"]["grid_ci_source"] == "offline_table"
    assert result["carbon_intensity"] == pytest.approx(344.13992)
    assert "measurement worker ready" in err.getvalue()
    assert "loading model" in err.getvalue() and "then a 0.3 s window" in err.getvalue()
