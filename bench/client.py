"""The benchmark's orchestrator stand-in: publishes task inputs and timestamps what the node answers.

Both nodes under test (carbon-node and the upstream-design baseline) are driven by this one client,
over the same Cyclone bus, wire types and QoS, so that every figure is measured the same way. Times
are ``time.perf_counter()`` seconds of this process, taken when a sample is taken from the reader
(a background thread waits on both readers with a 50 ms bound).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cyclonedds.core import InstanceState, Policy, Qos, ReadCondition, SampleState, ViewState, WaitSet
from cyclonedds.domain import DomainParticipant
from cyclonedds.internal import InvalidSample
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
    TaskIdImpl,
    UserInputImpl,
)

NODE_NAME = "CARBON_FOOTPRINT_NODE"


def _client_qos() -> Qos:
    # Reliable, transient-local, one sample per task instance like the orchestrator, but without its
    # 500-instance limit: the benchmark publishes more tasks than that and must not be the bottleneck.
    return Qos(
        Policy.Reliability.Reliable(max_blocking_time=duration(seconds=5)),
        Policy.Durability.TransientLocal,
        Policy.History.KeepLast(depth=1),
        Policy.DataRepresentation(use_cdrv0_representation=True),
    )


@dataclass
class Answer:
    """One output sample as received: doubles, decoded extra_data and the receive time (perf_counter s)."""

    carbon_g: float
    energy_kwh: float
    grid_ci_g_per_kwh: float
    extra_data: dict[str, Any]
    received_s: float


@dataclass
class Observed:
    """Everything the client saw, keyed by ``(problem_id, iteration_id)``."""

    outputs: dict[tuple[int, int], list[Answer]] = field(default_factory=dict)
    statuses: list[tuple[float, Status]] = field(default_factory=list)


class BenchClient:
    """Publishes task inputs on ``domain_id`` and records outputs and node statuses as they arrive."""

    def __init__(self, domain_id: int) -> None:
        configure_cyclone()
        self.participant = DomainParticipant(domain_id, qos=Qos(Policy.EntityName("ORCHESTRATOR_NODE")))
        dp = self.participant
        wq = _client_qos()
        self._ml = DataWriter(dp, Topic(dp, node_qos.ML_MODEL_TOPIC, MLModelImpl), qos=wq)
        self._hw = DataWriter(dp, Topic(dp, node_qos.HW_RESOURCES_TOPIC, HWResourceImpl), qos=wq)
        self._ui = DataWriter(dp, Topic(dp, node_qos.USER_INPUT_TOPIC, UserInputImpl), qos=wq)
        self._out = DataReader(dp, Topic(dp, node_qos.OUTPUT_TOPIC, CO2FootprintImpl), qos=wq)
        self._status = DataReader(dp, Topic(dp, node_qos.STATUS_TOPIC, NodeStatusImpl), qos=wq)
        self.observed = Observed()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._waitset = WaitSet(dp)
        # Any instance state: the node unregisters an output instance once 256 newer outputs exist, and
        # a sample of it not taken by then (a client lagging on a loaded machine) must still count.
        mask = SampleState.Any | ViewState.Any | InstanceState.Any
        self._out_cond = ReadCondition(self._out, mask)
        self._status_cond = ReadCondition(self._status, mask)
        self._waitset.attach(self._out_cond)
        self._waitset.attach(self._status_cond)
        self._thread = threading.Thread(target=self._pump, name="bench-client", daemon=True)
        self._thread.start()

    # -- receiving ---------------------------------------------------------------------------------

    def _pump(self) -> None:
        while not self._stop.is_set():
            self._waitset.wait(duration(milliseconds=50))
            now = time.perf_counter()
            outputs = self._out.take(N=1000, condition=self._out_cond)
            statuses = self._status.take(N=100, condition=self._status_cond)
            if not outputs and not statuses:
                continue
            with self._cond:
                for sample in outputs:
                    if isinstance(sample, InvalidSample):
                        continue  # an unregister notice
                    try:
                        extra = json.loads(bytes(sample.extra_data).decode("utf-8"))
                    except ValueError:
                        extra = {"_invalid_extra_data": bytes(sample.extra_data).hex()}
                    key = (sample.task_id.problem_id, sample.task_id.iteration_id)
                    answer = Answer(sample.carbon_footprint, sample.energy_consumption, sample.carbon_intensity, extra, now)
                    self.observed.outputs.setdefault(key, []).append(answer)
                for status in statuses:
                    if not isinstance(status, InvalidSample) and status.node_name == NODE_NAME:
                        self.observed.statuses.append((now, status.node_status))
                self._cond.notify_all()

    def wait_outputs(self, keys: Iterable[tuple[int, int]], timeout_s: float) -> bool:
        """Wait until every task in ``keys`` has an output; False when ``timeout_s`` passed first."""
        wanted = set(keys)
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not wanted.issubset(self.observed.outputs):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))
        return True

    def output_count(self) -> int:
        """Tasks with at least one output so far."""
        with self._cond:
            return len(self.observed.outputs)

    def wait_more_outputs(self, seen: int, timeout_s: float) -> bool:
        """Wait until more than ``seen`` tasks have an output; False when ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self.observed.outputs) <= seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))
        return True

    def wait_status(self, status: Status, after_s: float, timeout_s: float) -> float | None:
        """The receive time of the first ``status`` sample received after ``after_s``, or None on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for when, seen in self.observed.statuses:
                    if seen == status and when >= after_s:
                        return when
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.2))

    def wait_matched(self, timeout_s: float) -> bool:
        """Wait until a node's input readers and output writer are matched with this client."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (
                self._ml.get_matched_subscriptions()
                and self._hw.get_matched_subscriptions()
                and self._ui.get_matched_subscriptions()
                and self._out.get_matched_publications()
            ):
                return True
            time.sleep(0.02)
        return False

    # -- publishing --------------------------------------------------------------------------------

    def publish(
        self,
        problem_id: int,
        iteration_id: int = 1,
        *,
        model: str = "NO_MODEL",
        model_path: str = "",
        latency: float = 0.0,
        power_w: float = 0.0,
        user_extra: Mapping[str, Any] | None = None,
        hw_description: str = "bench",
    ) -> float:
        """Publish the three inputs of one task; returns the perf_counter time before the first write."""
        task_id = TaskIdImpl(problem_id, iteration_id)
        extra = list(json.dumps(dict(user_extra or {"num_outputs": 1})).encode("utf-8"))
        started = time.perf_counter()
        self._ml.write(MLModelImpl(model_path=model_path, model=model, task_id=task_id))
        self._hw.write(HWResourceImpl(hw_description=hw_description, power_consumption=power_w, latency=latency, task_id=task_id))
        self._ui.write(UserInputImpl(problem_short_description="bench", extra_data=extra, task_id=task_id))
        return started

    def forget(self, problem_id: int, iteration_id: int = 1) -> None:
        """Unregister a task's input instances, as a client that no longer needs them replayed."""
        task_id = TaskIdImpl(problem_id, iteration_id)
        self._ml.unregister_instance(MLModelImpl(task_id=task_id))
        self._hw.unregister_instance(HWResourceImpl(task_id=task_id))
        self._ui.unregister_instance(UserInputImpl(task_id=task_id))

    def answered(self, problem_ids: Iterable[int], iteration_id: int = 1) -> list[int]:
        """The problems among ``problem_ids`` that have an output (one lock round for all of them)."""
        with self._cond:
            outputs = self.observed.outputs
            return [p for p in problem_ids if (p, iteration_id) in outputs]

    def answers(self, problem_id: int, iteration_id: int = 1) -> list[Answer]:
        with self._cond:
            return list(self.observed.outputs.get((problem_id, iteration_id), []))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.participant.__del__()
