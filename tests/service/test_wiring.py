"""The engine and the measurer get the node's settings as plain values, built in one place."""

from __future__ import annotations

from pathlib import Path

from carbon_node.engine.config import EngineConfig
from carbon_node.service.settings import Settings
from carbon_node.service.wiring import engine_config, worker_measurer


def test_the_engines_defaults_are_the_node_settings_defaults() -> None:
    assert engine_config(Settings()) == EngineConfig()


def test_every_engine_field_is_a_node_setting_of_the_same_name() -> None:
    fields = set(EngineConfig.__dataclass_fields__)
    assert fields <= set(Settings.model_fields)


def test_settings_reach_the_engine_as_values() -> None:
    settings = Settings(window_s=2.5, latency_unit="s", model_dirs="/srv/a:/srv/b", sim_cpu_tdp_w=40.0, grid_ci_g_per_kwh=12.0)
    config = engine_config(settings)
    assert (config.window_s, config.latency_unit, config.sim_cpu_tdp_w, config.grid_ci_g_per_kwh) == (2.5, "s", 40.0, 12.0)
    assert config.model_dirs == ("/srv/a", "/srv/b")


def test_the_worker_measurer_takes_its_bounds_and_caches_from_the_settings(tmp_path: Path) -> None:
    settings = Settings(task_timeout_s=12.0, measure_cache_ttl_s=5.0, model_cache_max_models=2, cache_dir=tmp_path / "c")
    measurer = worker_measurer(settings, tmp_path / "scratch")
    assert measurer.task_timeout_s == 12.0
    assert measurer.measure_cache_ttl_s == 5.0


def test_a_measure_host_measures_with_its_own_cpu_power_model() -> None:
    from carbon_node.service.pool import spec_template

    assert spec_template(Settings()).cpu_power_model == "load_model"
    assert spec_template(Settings(cpu_power_model="carbontracker")).cpu_power_model == "carbontracker"
