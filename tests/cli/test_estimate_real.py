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


def test_without_a_counter_one_and_two_torch_threads_publish_the_window_powers_the_load_model_predicts(
    text_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This machine has no readable counter (a VM, or RAPL root-only): the published CPU power is the load
    model's, and it follows the threads the model keeps busy, where carbontracker's is one constant."""
    import os

    from carbon_node.measure.load_power import tdp_ratio
    from carbon_node.measure.power import rapl_readable

    if rapl_readable() or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs a host without readable RAPL counters and with 2 or more CPUs")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    published: dict[int, dict[str, object]] = {}
    for threads in (1, 2):
        out = io.StringIO()
        status = run_estimate(
            Settings(window_s=1.0, device="cpu", latency_unit="s", torch_threads=threads, per_inference="measured"),
            text_model,
            0.0,
            0.0,
            "",
            "",
            True,
            out,
            io.StringIO(),
        )
        assert status == 0, out.getvalue()
        extra = json.loads(out.getvalue())["extra_data"]
        assert (extra["power_source"], extra["energy_figure"]) == ("tdp_table", "load_model")
        assert extra["carbontracker_energy_kwh"] > 0  # carbontracker ran the window too
        model = extra["power_model"]
        # the published window energy is the model's power over the window, PUE included
        window_w = (
            extra["measured_per_inference"]["energy_kwh"] * extra["forward_passes"] * 3.6e6 / extra["pue"] / extra["window_s"]
        )
        assert window_w == pytest.approx(model["cpu_power_w"], rel=1e-6)
        # and the model's power is its curve at the load, for the CPUs the process occupies
        predicted = model["tdp_w"] * tdp_ratio(model["load"]) * model["occupied_cpus"] / model["socket_threads"]
        assert model["cpu_power_w"] == pytest.approx(predicted)
        assert model["torch_threads"] == threads and model["occupied_cpus"] >= threads
        published[threads] = model
    one, two = published[1], published[2]
    ratio = float(two["cpu_power_w"]) / float(one["cpu_power_w"])  # type: ignore[arg-type]
    expected = (tdp_ratio(two["load"]) * two["occupied_cpus"]) / (tdp_ratio(one["load"]) * one["occupied_cpus"])  # type: ignore[arg-type, operator]
    print(f"window CPU power: 1 thread {one['cpu_power_w']:.3f} W, 2 threads {two['cpu_power_w']:.3f} W, ratio {ratio:.3f}")
    assert ratio == pytest.approx(expected) and ratio > 1.1
