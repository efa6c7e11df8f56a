"""Caches that know what they hold: a model changed behind the same string is loaded and measured anew."""

from __future__ import annotations

import os
import shutil
import timeit
from collections.abc import Iterator
from pathlib import Path

import pytest

from carbon_node.measure import tiny
from carbon_node.measure.client import WorkerMeasurer
from carbon_node.measure.identity import directory_identity, hub_identity, model_identity, snapshot_identity
from carbon_node.measure.measure_service import MeasureService
from carbon_node.measure.protocol import MeasureSpec
from carbon_node.measure.worker_pipe import WorkerConfig

from .conftest import WORKER_READY_TIMEOUT_S

WINDOW_S = 0.5


def simulated(model: str) -> MeasureSpec:
    return MeasureSpec(model=model, window_s=WINDOW_S, sim_cpu_tdp_w=10.0)


def small_gpt2(directory: Path) -> Path:
    return tiny.build_bare_model(directory, "gpt2", layers=2, hidden=32)


def large_gpt2(directory: Path) -> Path:
    return tiny.build_bare_model(directory, "gpt2", layers=8, hidden=256)


def replace_with(directory: Path, build: object) -> None:
    """Overwrite ``directory`` with another model, as an operator's new ``save_pretrained`` would."""
    shutil.rmtree(directory)
    build(directory)  # type: ignore[operator]


def hub_snapshot(hub_cache: Path, model: str, commit: str, build: object) -> Path:
    """A hub cache entry for ``model`` at ``commit`` (the layout huggingface_hub writes), now ``refs/main``."""
    repo = hub_cache / ("models--" + model.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    build(snapshot)  # type: ignore[operator]
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


# identity


def test_an_untouched_directory_keeps_its_identity(tmp_path: Path) -> None:
    directory = small_gpt2(tmp_path / "m")
    assert directory_identity(directory) == directory_identity(directory) is not None


def test_a_model_saved_again_at_the_same_path_has_another_identity(tmp_path: Path) -> None:
    directory = small_gpt2(tmp_path / "m")
    before = directory_identity(directory)
    replace_with(directory, large_gpt2)
    assert directory_identity(directory) != before


def test_a_config_edit_that_keeps_size_and_time_changes_the_identity(tmp_path: Path) -> None:
    directory = small_gpt2(tmp_path / "m")
    config = directory / "config.json"
    before = directory_identity(directory)
    stat = config.stat()
    config.write_text(config.read_text().replace('"n_layer": 2', '"n_layer": 3'))
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert config.stat().st_size == stat.st_size
    assert directory_identity(directory) != before


def test_a_missing_directory_has_no_identity(tmp_path: Path) -> None:
    assert directory_identity(tmp_path / "absent") is None
    assert model_identity(str(tmp_path / "absent"), None) is None


def test_a_hub_id_is_identified_by_the_commit_of_its_cached_main(tmp_path: Path) -> None:
    snapshot = hub_snapshot(tmp_path, "org/tiny", "a" * 40, small_gpt2)
    assert hub_identity("org/tiny", tmp_path) == snapshot_identity(snapshot) == "rev:" + "a" * 40
    assert model_identity("org/tiny", tmp_path) == "rev:" + "a" * 40
    assert model_identity("org/absent", tmp_path) is None
    assert model_identity("org/tiny", None) is None


def test_the_identity_check_costs_well_under_a_millisecond_per_task(tmp_path: Path) -> None:
    # A stat of a few files and one small read; the weights (here 4 MB) are never read.
    directory = large_gpt2(tmp_path / "m")
    per_call_s = min(timeit.repeat(lambda: directory_identity(directory), number=200, repeat=3)) / 200
    assert per_call_s < 1e-3, per_call_s


# the worker's model cache


def test_the_worker_loads_a_model_replaced_at_the_same_path_and_drops_the_old_one(tmp_path: Path) -> None:
    service = MeasureService(WorkerConfig(scratch_dir=tmp_path / "scratch"))
    directory = small_gpt2(tmp_path / "m")
    first = service.measure(simulated(str(directory)))
    assert service.measure(simulated(str(directory))).load_s == 0.0  # the fast path stays
    replace_with(directory, large_gpt2)
    second = service.measure(simulated(str(directory)))
    assert second.load_s > 0.0
    assert second.model_identity != first.model_identity
    assert len(service.models) == 1  # the stale version left the cache


# the measurement cache


@pytest.fixture(scope="module")
def cached_measurer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WorkerMeasurer, Path]]:
    """A worker measurer with a one-hour measurement cache and its own hub cache directory."""
    hf_home = tmp_path_factory.mktemp("hf")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.delenv("HF_HOME", raising=False)
        patch.delenv("HF_HUB_CACHE", raising=False)
        measurer = WorkerMeasurer(
            scratch_dir=tmp_path_factory.mktemp("scratch"), measure_cache_ttl_s=3600.0, hub_cache_dir=hf_home
        )
        measurer.start()
    with measurer:
        assert measurer.wait_ready(WORKER_READY_TIMEOUT_S)
        yield measurer, hf_home / "hub"


def test_a_local_model_replaced_at_the_same_path_is_measured_anew(
    cached_measurer: tuple[WorkerMeasurer, Path], tmp_path: Path
) -> None:
    measurer, _ = cached_measurer
    directory = small_gpt2(tmp_path / "m")
    first = measurer.measure(simulated(str(directory)))
    repeated = measurer.measure(simulated(str(directory)))
    assert (first.cached, repeated.cached) == (False, True)
    replace_with(directory, large_gpt2)
    changed = measurer.measure(simulated(str(directory)))
    assert changed.cached is False
    assert changed.forward_passes != first.forward_passes
    assert changed.energy_per_pass_kwh != first.energy_per_pass_kwh
    assert measurer.measure(simulated(str(directory))).cached is True


def test_a_hub_id_whose_cached_revision_moved_is_measured_anew(cached_measurer: tuple[WorkerMeasurer, Path]) -> None:
    measurer, hub_cache = cached_measurer
    hub_snapshot(hub_cache, "org/tiny-gpt2", "1" * 40, small_gpt2)
    first = measurer.measure(simulated("org/tiny-gpt2"))
    assert measurer.measure(simulated("org/tiny-gpt2")).cached is True
    hub_snapshot(hub_cache, "org/tiny-gpt2", "2" * 40, large_gpt2)
    changed = measurer.measure(simulated("org/tiny-gpt2"))
    assert changed.cached is False
    assert (first.model_identity, changed.model_identity) == ("rev:" + "1" * 40, "rev:" + "2" * 40)
    assert changed.forward_passes != first.forward_passes
