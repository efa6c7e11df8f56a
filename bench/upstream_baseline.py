"""A node that behaves like the upstream wp3 carbon node, for side-by-side benchmarks (not for production).

It reproduces the *behaviour* described in PROTOCOL.md sections 4 and 7.4 (upstream design), written
from that description, on the same Cyclone bus, wire types and QoS as carbon-node, because the upstream
``sustainml_py`` bindings cannot be installed here:

- the heavy imports (torch, transformers, carbontracker) happen at start-up, before the participant;
- INITIALIZING is published when the status writer exists, IDLE once the input readers exist;
- inputs are joined by task id counting one notification per input; 2 dispatcher threads;
- per task: status RUNNING, the callback, status IDLE, then the output sample (upstream order);
- NO_MODEL: zeros; ``model_path`` ending in ``.onnx``: power x latency (hours) x a process-wide grid
  intensity (``SUSTAINML_GRID_CI``, else a 0.5 s tracker calibration);
- otherwise a child process is forked per task with a 60 s limit; it loads the model config and
  tokenizer again, builds the model from its config, constructs a new CarbonTracker, runs forward passes
  for ``CT_TARGET_SECONDS`` in one epoch, stops the tracker, sleeps 0.3 s so the log is flushed, parses
  the newest log and returns grams CO2; energy and carbon are scaled by ``latency_h * 3600 / window``.

Deviation, so that it can run on a machine without RAPL: when ``CARBON_NODE_SIM_CPU_TDP_W`` is set the
tracker is given the same simulated CPU as carbon-node (upstream has no such option).

Run: ``python bench/upstream_baseline.py`` with ``SUSTAINML_DOMAIN_ID`` set; stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

# Upstream imports the ML stack at module import, before the node exists: part of its start-up cost.
import torch
import transformers
from carbontracker import parser
from carbontracker.tracker import CarbonTracker
from cyclonedds.core import InstanceState, Policy, Qos, ReadCondition, SampleState, ViewState, WaitSet
from cyclonedds.domain import DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from carbon_node.bus import qos as node_qos
from carbon_node.bus.cyclone import configure_cyclone
from carbon_node.wire import (
    CO2FootprintImpl,
    HWResourceImpl,
    MLModelImpl,
    NodeStatusImpl,
    Status,
    UserInputImpl,
)

NODE_NAME = "CARBON_FOOTPRINT_NODE"
CHILD_TIMEOUT_S = 60.0
LOG_ROOT = Path(tempfile.gettempdir()) / "carbon-node-bench-baseline-logs"

_grid_ci = float(os.environ.get("SUSTAINML_GRID_CI") or 0.0)
_grid_ci_lock = threading.Lock()


def _tracker_kwargs() -> dict[str, Any]:
    tdp = os.environ.get("CARBON_NODE_SIM_CPU_TDP_W")
    if not tdp:
        return {}
    util = float(os.environ.get("CARBON_NODE_SIM_CPU_UTIL") or 1.0)
    return {"sim_cpu": "simulated", "sim_cpu_tdp": float(tdp), "sim_cpu_util": util}


def _newest_log_values(log_dir: str) -> tuple[float | None, float | None]:
    """(grams CO2, kWh) of the newest tracker log: 'actual' first, then 'pred'; first positive value."""
    try:
        logs = parser.parse_all_logs(log_dir=log_dir)
    except Exception:
        return None, None
    if not logs:
        return None, None
    entry = logs[-1]

    def first_positive(key: str) -> float | None:
        for section in (entry.get("actual") or {}, entry.get("pred") or {}):
            if key in section and float(section[key]) > 0:
                return float(section[key])
        return None

    return first_positive("co2eq (g)"), first_positive("energy (kWh)")


def _model_and_input(name: str) -> tuple[Any, dict[str, Any]]:
    """Build the model from its config (random weights) and a dummy text input, again for every task."""
    config = transformers.AutoConfig.from_pretrained(name)
    model = transformers.AutoModel.from_config(config)
    tokenizer = transformers.AutoTokenizer.from_pretrained(name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or "<|endoftext|>"
    inputs = dict(tokenizer("How to prepare coffee?", return_tensors="pt", padding=True, truncation=True))
    return model.eval(), inputs


def _tracker_child(log_dir: str, model_name: str, window_s: float, queue: Any) -> None:
    try:
        model, inputs = _model_and_input(model_name)
        tracker = CarbonTracker(epochs=1, log_dir=log_dir, verbose=0, **_tracker_kwargs())
        tracker.epoch_start()
        start = time.time()
        with torch.inference_mode():
            while time.time() - start < window_s:
                model(**inputs)
        tracker.epoch_end()
        tracker.stop()
        time.sleep(0.3)  # upstream waits for the log to be flushed
        carbon_g, _ = _newest_log_values(log_dir)
        queue.put(float(carbon_g or 0.0))
    except Exception as exc:
        queue.put(RuntimeError(str(exc)))


def _calibrate_ci() -> float:
    log_dir = LOG_ROOT / f"ci_calib_{int(time.time())}_{os.getpid()}"
    log_dir.mkdir(parents=True, exist_ok=True)
    tracker = CarbonTracker(epochs=1, log_dir=str(log_dir), verbose=0, **_tracker_kwargs())
    tracker.epoch_start()
    start = time.time()
    while time.time() - start < 0.5:
        (torch.rand(256, 256) @ torch.rand(256, 256)).sum().item()
    tracker.epoch_end()
    tracker.stop()
    time.sleep(0.2)
    carbon_g, energy_kwh = _newest_log_values(str(log_dir))
    return carbon_g / energy_kwh if carbon_g and energy_kwh else 0.0


def compute(ml: MLModelImpl, ui: UserInputImpl, hw: HWResourceImpl) -> tuple[float, float, float, dict[str, Any]]:
    """The upstream callback's arithmetic: (carbon g, energy kWh, intensity g/kWh, extra_data)."""
    global _grid_ci
    model_name = ml.model
    extra: dict[str, Any] = {"num_outputs": 1, "model_restrains": [model_name]}
    try:
        user = json.loads("".join(chr(b) for b in ui.extra_data)) if ui.extra_data else {}
    except json.JSONDecodeError:
        user = {}
    if isinstance(user, dict):
        if "num_outputs" in user and user["num_outputs"] != "":
            extra["num_outputs"] = user["num_outputs"]
        if "model_restrains" in user:
            merged: list[Any] = []
            for item in [model_name, *list(user["model_restrains"])]:
                if item not in merged:
                    merged.append(item)
            extra["model_restrains"] = merged
    if model_name.upper() == "NO_MODEL":
        extra.update(mode="no_model", error="No model selected (NO_MODEL). Carbon footprint not computed.")
        return 0.0, 0.0, 0.0, extra
    if ml.model_path.endswith(".onnx"):
        with _grid_ci_lock:
            if not os.environ.get("SUSTAINML_GRID_CI") and _grid_ci <= 0:
                _grid_ci = _calibrate_ci()
            ci = _grid_ci
        energy_kwh = hw.power_consumption * hw.latency / 1000.0
        extra["mode"] = "onnx_hw_only"
        extra["grid_ci_source"] = "env" if os.environ.get("SUSTAINML_GRID_CI") else "calibrated_or_fallback"
        return energy_kwh * ci, energy_kwh, ci, extra
    window_s = float(os.environ.get("CT_TARGET_SECONDS", "1.0"))
    log_dir = LOG_ROOT / f"{int(time.time())}_{os.getpid()}"
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        queue: Any = multiprocessing.get_context("fork").Queue()
        child = multiprocessing.get_context("fork").Process(
            target=_tracker_child, args=(str(log_dir), model_name, window_s, queue)
        )
        child.start()
        child.join(timeout=CHILD_TIMEOUT_S)
        if child.is_alive():
            child.terminate()
            child.join()
            raise RuntimeError("tracker child process did not finish within the timeout period")
        if child.exitcode == 70:
            raise RuntimeError("No hardware components available")
        if queue.empty():
            raise RuntimeError("No result obtained from the tracker process")
        result = queue.get()
        if isinstance(result, Exception):
            raise RuntimeError(f"Error creating tracker: {result}")
        carbon_g = float(result)
        _, tracker_kwh = _newest_log_values(str(log_dir))
        energy_kwh = tracker_kwh if tracker_kwh and tracker_kwh > 0 else hw.power_consumption * hw.latency / 1000.0
        latency_s = hw.latency * 3600.0
        if window_s > 0 and latency_s > 0:
            per_window = window_s / latency_s
            carbon_g /= per_window
            energy_kwh /= per_window
        intensity = carbon_g / energy_kwh if energy_kwh > 0 else 0.0
        with _grid_ci_lock:
            _grid_ci = intensity
        extra["mode"] = "tracker"
        return carbon_g, energy_kwh, intensity, extra
    except Exception as exc:
        extra.update(mode="error", error=f"Failed to obtain carbon footprint information: {exc}")
        return 0.0, 0.0, 0.0, extra


class BaselineNode:
    """The upstream node's DDS side: join by counting, 2 worker threads, status then output."""

    def __init__(self, domain_id: int) -> None:
        configure_cyclone()
        self.dp = DomainParticipant(domain_id, qos=Qos(Policy.EntityName(NODE_NAME)))
        self.status_writer = DataWriter(
            self.dp, Topic(self.dp, node_qos.STATUS_TOPIC, NodeStatusImpl), qos=node_qos.status_writer_qos()
        )
        self._status = Status.NODE_INACTIVE
        self._status_lock = threading.Lock()
        self.set_status(Status.NODE_INITIALIZING)
        rq = node_qos.input_reader_qos()
        self.readers: dict[str, DataReader[Any]] = {
            "ml": DataReader(self.dp, Topic(self.dp, node_qos.ML_MODEL_TOPIC, MLModelImpl), qos=rq),
            "hw": DataReader(self.dp, Topic(self.dp, node_qos.HW_RESOURCES_TOPIC, HWResourceImpl), qos=rq),
            "ui": DataReader(self.dp, Topic(self.dp, node_qos.USER_INPUT_TOPIC, UserInputImpl), qos=rq),
        }
        self.output_writer = DataWriter(
            self.dp, Topic(self.dp, node_qos.OUTPUT_TOPIC, CO2FootprintImpl), qos=node_qos.output_writer_qos()
        )
        self.pool = ThreadPoolExecutor(max_workers=2)
        self.buffers: dict[str, dict[tuple[int, int], Any]] = {name: {} for name in self.readers}
        self.counts: dict[tuple[int, int], int] = defaultdict(int)
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def set_status(self, status: Status) -> None:
        with self._status_lock:
            self._status = status
            self.status_writer.write(NodeStatusImpl(node_status=status, node_name=NODE_NAME))

    def run_task(self, key: tuple[int, int]) -> None:
        with self.lock:
            ml, hw, ui = (self.buffers[name].pop(key, None) for name in ("ml", "hw", "ui"))
        if ml is None or hw is None or ui is None:
            return  # upstream silently drops a task that fired with an input missing
        if self._status != Status.NODE_RUNNING:
            self.set_status(Status.NODE_RUNNING)
        carbon_g, energy_kwh, intensity, extra = compute(ml, ui, hw)
        self.set_status(Status.NODE_IDLE)
        self.output_writer.write(
            CO2FootprintImpl(carbon_g, energy_kwh, intensity, list(json.dumps(extra).encode("utf-8")), ml.task_id)
        )

    def spin(self) -> None:
        waitset = WaitSet(self.dp)
        mask = SampleState.NotRead | ViewState.Any | InstanceState.Alive
        conditions = {name: ReadCondition(reader, mask) for name, reader in self.readers.items()}
        for condition in conditions.values():
            waitset.attach(condition)
        self.set_status(Status.NODE_IDLE)
        while not self.stop.is_set():
            waitset.wait(duration(milliseconds=100))
            for name, reader in self.readers.items():
                for sample in reader.take(N=500, condition=conditions[name]):
                    key = (sample.task_id.problem_id, sample.task_id.iteration_id)
                    if key == (0, 0):
                        continue  # "Invalid Task Id"
                    with self.lock:
                        self.buffers[name].setdefault(key, sample)  # a duplicate is counted, not stored
                        self.counts[key] += 1
                        fire = self.counts[key] == 3
                        if fire:
                            del self.counts[key]
                    if fire:
                        self.pool.submit(self.run_task, key)
        self.pool.shutdown(wait=True)


def main() -> int:
    domain_id = int(os.environ.get("SUSTAINML_DOMAIN_ID", "0"))
    node = BaselineNode(domain_id)
    signal.signal(signal.SIGTERM, lambda *_: node.stop.set())
    signal.signal(signal.SIGINT, lambda *_: node.stop.set())
    node.spin()
    # Leave without running DDS and multiprocessing teardown, which can wait on forked children.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
