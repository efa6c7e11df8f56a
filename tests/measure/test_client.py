"""The worker measurer, with real spawned worker processes, real carbontracker and tiny models."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from carbon_node.measure.client import WorkerMeasurer
from carbon_node.measure.power import rapl_readable
from carbon_node.measure.protocol import Measurement, MeasureSpec, MeasureTimeout, ModelRejected, WorkerCrashed

from .conftest import WORKER_READY_TIMEOUT_S

SIM_POWER_W = 10.0
WINDOW_S = 0.4


def simulated(model: str, window_s: float = WINDOW_S, **fields: object) -> MeasureSpec:
    return MeasureSpec(model=model, window_s=window_s, sim_cpu_tdp_w=SIM_POWER_W, **fields)  # type: ignore[arg-type]


def measure_in_thread(measurer: WorkerMeasurer, spec: MeasureSpec) -> tuple[threading.Thread, dict[str, object]]:
    """Start ``measurer.measure(spec)`` in a thread; the dict gets ``result`` or ``error``."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = measurer.measure(spec)
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def wait_until_measuring(measurer: WorkerMeasurer, timeout_s: float = 30.0) -> None:
    """Wait until the worker has a carbontracker window open (its private log directory exists)."""
    deadline = time.monotonic() + timeout_s
    scratch = measurer._config.scratch_dir
    while time.monotonic() < deadline:
        if any(path.name.startswith("ct-") for path in scratch.iterdir()):
            return
        time.sleep(0.05)
    raise AssertionError("the worker never started a window")


def test_energy_per_pass_is_simulated_power_times_window_times_pue_over_passes(
    measurer: WorkerMeasurer, tiny_models: dict[str, str]
) -> None:
    measurement = measurer.measure(simulated(tiny_models["text"], window_s=1.0))
    expected_per_pass_kwh = SIM_POWER_W * measurement.window_s * measurement.pue / 3.6e6 / measurement.forward_passes
    assert measurement.energy_per_pass_kwh == pytest.approx(expected_per_pass_kwh, rel=0.02)
    assert measurement.power_source == "simulated"


def test_without_sim_settings_this_machine_reports_the_tdp_table_estimate(
    measurer: WorkerMeasurer, tiny_models: dict[str, str]
) -> None:
    measurement = measurer.measure(MeasureSpec(model=tiny_models["image"], window_s=WINDOW_S))
    assert measurement.power_source == ("rapl" if rapl_readable() else "tdp_table")
    assert measurement.energy_kwh > 0
    assert measurement.components == ("cpu",)


def test_a_measurement_describes_model_device_dtype_and_tracker(measurer: WorkerMeasurer, tiny_models: dict[str, str]) -> None:
    measurement = measurer.measure(simulated(tiny_models["seq2seq"]))
    assert (measurement.model_class, measurement.device, measurement.dtype) == ("T5Model", "cpu", "float32")
    assert measurement.carbontracker_version == "2.4.7"
    assert measurement.cached is False


def test_a_rejected_model_raises_model_rejected_and_keeps_the_worker(
    measurer: WorkerMeasurer, tiny_models: dict[str, str]
) -> None:
    pid = measurer.worker_pid
    with pytest.raises(ModelRejected, match="not supported"):
        measurer.measure(simulated(tiny_models["text"], unsupported_models=("bert",)))
    assert measurer.worker_pid == pid


def test_only_scratch_logs_of_the_worker_remain_after_measuring(measurer: WorkerMeasurer, tiny_models: dict[str, str]) -> None:
    measurer.measure(simulated(tiny_models["text"]))
    assert {path.name for path in measurer._config.scratch_dir.iterdir()} <= {"worker.log", "worker.log.1"}


def test_a_worker_killed_mid_measurement_raises_worker_crashed_and_the_next_measure_works(
    measurer: WorkerMeasurer, tiny_models: dict[str, str]
) -> None:
    restarts = measurer.worker_restarts
    thread, outcome = measure_in_thread(measurer, simulated(tiny_models["text"], window_s=20.0))
    wait_until_measuring(measurer)
    pid = measurer.worker_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    thread.join(30.0)
    assert isinstance(outcome.get("error"), WorkerCrashed)
    assert "SIGKILL" in str(outcome["error"])
    assert measurer.worker_restarts == restarts + 1
    assert measurer.measure(simulated(tiny_models["text"])).forward_passes > 0


def test_a_measurement_over_the_task_timeout_raises_and_the_next_measure_works(
    measurer: WorkerMeasurer, tiny_models: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(measurer, "task_timeout_s", 3.0)
    old_pid = measurer.worker_pid
    with pytest.raises(MeasureTimeout, match=r"exceeded its time limit of 3 s .*the worker was replaced"):
        measurer.measure(simulated(tiny_models["text"], window_s=30.0))
    assert measurer.worker_pid != old_pid
    monkeypatch.setattr(measurer, "task_timeout_s", 60.0)
    assert measurer.measure(simulated(tiny_models["text"])).forward_passes > 0


def test_abort_ends_the_running_measurement_with_worker_crashed(measurer: WorkerMeasurer, tiny_models: dict[str, str]) -> None:
    thread, outcome = measure_in_thread(measurer, simulated(tiny_models["text"], window_s=20.0))
    wait_until_measuring(measurer)
    assert measurer.abort() is True
    thread.join(30.0)
    assert isinstance(outcome.get("error"), WorkerCrashed)
    assert "aborted" in str(outcome["error"])


def test_abort_without_a_running_measurement_does_nothing(measurer: WorkerMeasurer) -> None:
    assert measurer.abort() is False


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def cached_measurer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WorkerMeasurer, FakeClock]]:
    """A worker measurer with a one-minute measurement cache on a fake clock."""
    clock = FakeClock()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        worker_measurer = WorkerMeasurer(scratch_dir=tmp_path_factory.mktemp("cached"), measure_cache_ttl_s=60.0, clock=clock)
        worker_measurer.start()
    with worker_measurer:
        assert worker_measurer.wait_ready(WORKER_READY_TIMEOUT_S)
        yield worker_measurer, clock


def test_a_repeated_spec_within_the_ttl_is_answered_from_the_cache(
    cached_measurer: tuple[WorkerMeasurer, FakeClock], tiny_models: dict[str, str]
) -> None:
    measurer, clock = cached_measurer
    first = measurer.measure(simulated(tiny_models["image"]))
    clock.now += 59.0
    second = measurer.measure(simulated(tiny_models["image"]))
    assert second.cached is True
    assert (second.measured_at, second.forward_passes, second.energy_kwh) == (
        first.measured_at,
        first.forward_passes,
        first.energy_kwh,
    )
    # the cached answer carries its own interval: the parts measured with it
    assert first.uncertainty is not None and second.uncertainty == first.uncertainty


def test_a_cached_measurement_expires_after_the_ttl(
    cached_measurer: tuple[WorkerMeasurer, FakeClock], tiny_models: dict[str, str]
) -> None:
    measurer, clock = cached_measurer
    first = measurer.measure(simulated(tiny_models["video"]))
    clock.now += 60.0
    second = measurer.measure(simulated(tiny_models["video"]))
    assert second.cached is False
    assert second.measured_at != first.measured_at


def test_a_different_window_is_not_answered_from_the_cache(
    cached_measurer: tuple[WorkerMeasurer, FakeClock], tiny_models: dict[str, str]
) -> None:
    measurer, _ = cached_measurer
    measurer.measure(simulated(tiny_models["image"]))
    assert measurer.measure(simulated(tiny_models["image"], window_s=WINDOW_S + 0.1)).cached is False


def test_a_zero_ttl_disables_the_measurement_cache(measurer: WorkerMeasurer, tiny_models: dict[str, str]) -> None:
    first: Measurement = measurer.measure(simulated(tiny_models["image"]))
    second = measurer.measure(simulated(tiny_models["image"]))
    assert (first.cached, second.cached) == (False, False)
    assert second.measured_at != first.measured_at


def test_importing_the_client_does_not_import_torch_transformers_or_carbontracker() -> None:
    code = (
        "import sys, carbon_node.measure.client, carbon_node.measure.tiny; "
        "print([m for m in ('torch', 'transformers', 'carbontracker') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_a_closed_measurer_refuses_to_measure(tmp_path: Path, tiny_models: dict[str, str]) -> None:
    measurer = WorkerMeasurer(scratch_dir=tmp_path)
    measurer.close()
    with pytest.raises(Exception, match="closed"):
        measurer.measure(simulated(tiny_models["text"]))


def test_the_worker_caches_hub_models_in_the_configured_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with WorkerMeasurer(scratch_dir=tmp_path / "scratch", hub_cache_dir=tmp_path / "hf") as measurer:
        measurer.start()
        assert measurer.wait_ready(WORKER_READY_TIMEOUT_S)
        ready = measurer.worker_ready
        assert ready is not None
        assert Path(ready.hub_cache).is_relative_to(tmp_path / "hf")
    assert "HF_HOME" not in os.environ  # set in the worker only


def test_a_task_that_times_out_while_the_worker_starts_leaves_the_worker_starting(
    tmp_path: Path, tiny_models: dict[str, str]
) -> None:
    with WorkerMeasurer(scratch_dir=tmp_path / "scratch", task_timeout_s=0.05) as measurer:
        measurer.start()
        pid = measurer.worker_pid
        with pytest.raises(MeasureTimeout, match="while the measurement worker was still starting"):
            measurer.measure(simulated(tiny_models["text"]))
        assert measurer.wait_ready(WORKER_READY_TIMEOUT_S)
        assert measurer.worker_pid == pid  # not replaced: a short task limit cannot starve the worker
        # The request, sent at once, expired before the worker could take it: dropped, not measured.
        log = tmp_path / "scratch" / "worker.log"
        deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
        while "worker.request_expired" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "worker.request_expired" in log.read_text()
        assert "model.loaded" not in log.read_text()


def test_a_task_waiting_at_start_is_served_before_the_generic_warm_up(tmp_path: Path, tiny_models: dict[str, str]) -> None:
    """The first task's own model load is its warm-up: the worker builds no warm-up model before it."""
    with WorkerMeasurer(scratch_dir=tmp_path / "scratch") as measurer:
        measurer.start()
        measurement = measurer.measure(simulated(tiny_models["text"]))
        assert measurement.forward_passes > 0
        log = (tmp_path / "scratch" / "worker.log").read_text()
        assert "model.loaded" in log
        assert "worker.primed" not in log.split("model.loaded")[0]


def test_a_process_that_exits_without_closing_its_measurer_does_not_hang(tmp_path: Path) -> None:
    script = f"""
from pathlib import Path
from carbon_node.measure.client import WorkerMeasurer
if __name__ == "__main__":
    measurer = WorkerMeasurer(scratch_dir=Path({str(tmp_path / "scratch")!r}))
    measurer.start()
    assert measurer.wait_ready(120)
    print("worker", measurer.worker_pid, flush=True)
    raise SystemExit(5)  # no close(): the worker must not keep the process from exiting
"""
    path = tmp_path / "exits.py"
    path.write_text(script)
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=150)
    assert done.returncode == 5, done.stderr[-2000:]
    worker_pid = int(done.stdout.split()[-1])
    assert not Path(f"/proc/{worker_pid}").exists() or "zombie" in Path(f"/proc/{worker_pid}/status").read_text()


@pytest.fixture
def without_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers spawned from now on cannot import torch (a spawned worker starts with this process's sys.path)."""
    package = tmp_path / "no-torch" / "torch"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    monkeypatch.syspath_prepend(str(package.parent))


@pytest.mark.usefixtures("without_torch")
def test_a_worker_that_cannot_import_torch_and_exits_before_any_request_is_not_replaced(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    from carbon_node.measure.protocol import MeasureError

    measurer = WorkerMeasurer(scratch_dir=tmp_path / "scratch", prime_tdp_table=False)
    try:
        measurer.start()
        deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
        while measurer.worker_pid is not None and time.monotonic() < deadline:
            time.sleep(0.02)  # the worker says why it cannot measure, then exits
        assert measurer.worker_pid is None
        with capture_logs() as logs:
            for _ in range(2):
                with pytest.raises(MeasureError, match="torch is not installed"):
                    measurer.measure(simulated("any-model"))
        assert "measure.worker_started" not in [entry["event"] for entry in logs]  # none per task
    finally:
        measurer.close()


@pytest.mark.usefixtures("without_torch")
def test_a_request_to_a_worker_that_just_exited_reads_its_reason_instead_of_calling_it_a_crash(tmp_path: Path) -> None:
    """The worker may exit between the client's liveness check and its request: the request then cannot
    be sent, and the reason the worker left in the pipe is the answer, not "the worker died"."""
    from carbon_node.measure.client import _Worker
    from carbon_node.measure.protocol import MeasureError

    measurer = WorkerMeasurer(scratch_dir=tmp_path / "scratch", prime_tdp_table=False)
    worker = _Worker(measurer._config)
    try:
        worker.process.join(WORKER_READY_TIMEOUT_S)  # it says why it cannot measure, then exits
        assert not worker.process.is_alive()
        with pytest.raises(MeasureError, match="torch is not installed") as raised:
            measurer._ask(worker, simulated("any-model"))
        assert not isinstance(raised.value, WorkerCrashed)
    finally:
        measurer.close()
