"""The orchestrator side of the bus, for users (``carbon-node send-task``) and tests.

:class:`Orchestrator` plays the SustainML orchestrator and the two provider nodes at once: it writes
the three inputs of a task with the peers' QoS (PROTOCOL.md 3.2) and records what the carbon node
publishes (outputs, status samples, configuration responses) on a background thread. Every wait is
bounded. :mod:`carbon_node.bus.send_task` is the one-shot form (``carbon-node send-task``).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import structlog
from cyclonedds.core import GuardCondition, InstanceState, Policy, Qos, ReadCondition, SampleState, ViewState, WaitSet
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from carbon_node.bus.config_service import CARBON_NODE_ID
from carbon_node.bus.cyclone import NODE_NAME, BusError, create_participant, delete_entity
from carbon_node.bus.qos import (
    CONTROL_TOPIC,
    HW_RESOURCES_TOPIC,
    ML_MODEL_TOPIC,
    OUTPUT_TOPIC,
    REQUEST_TOPIC,
    RESPONSE_TOPIC,
    STATUS_TOPIC,
    USER_INPUT_TOPIC,
    config_qos,
    orchestrator_input_writer_qos,
    orchestrator_output_reader_qos,
)
from carbon_node.core import TaskId
from carbon_node.wire import (
    CmdNode,
    CmdTask,
    CO2FootprintImpl,
    HWResourceImpl,
    MLModelImpl,
    NodeControlImpl,
    NodeStatusImpl,
    RequestTypeImpl,
    ResponseTypeImpl,
    Status,
    TaskIdImpl,
    UserInputImpl,
)

__all__ = [
    "NodeNotSeen",
    "Orchestrator",
    "OrchestratorTimeout",
    "new_task_id",
]

log = structlog.get_logger(__name__)

INJECTOR_NAME = "CARBON_NODE_ORCHESTRATOR"
"""Entity name of this tool's participant (not ``ORCHESTRATOR_NODE``, to stay distinct from the real one)."""

_STATUS_HISTORY = 64  # deeper than upstream's 1, so that tests see every transition
_POLL_S = 0.2
_T = TypeVar("_T")

_iterations = itertools.count(1)


class OrchestratorTimeout(BusError):
    """A bounded wait ended without what it waited for; the message names what was not received."""


class NodeNotSeen(OrchestratorTimeout):
    """No carbon node was discovered on the domain (no status sample) within the wait."""


def new_task_id() -> TaskId:
    """A task id unlikely to collide with earlier runs' TRANSIENT_LOCAL history on the same domain.

    ``problem_id`` mixes the wall-clock second (about 12 days before it repeats) with the process id;
    ``iteration_id`` counts the tasks of this process. Both stay below 2**31 for signed consumers.
    """
    problem_id = ((int(time.time()) % (1 << 20)) << 11) | (os.getpid() % (1 << 11))
    return TaskId(max(1, problem_id), next(_iterations))


def _key(task_id: TaskId) -> TaskIdImpl:
    return TaskIdImpl(task_id.problem_id, task_id.iteration_id)


class Orchestrator:
    """A participant that writes task inputs and records the carbon node's outputs and status."""

    def __init__(self, domain_id: int, *, name: str = INJECTOR_NAME) -> None:
        self.domain_id = domain_id
        self._participant = create_participant(domain_id, name)
        p = self._participant
        writer_qos = orchestrator_input_writer_qos()
        self._ml_writer = DataWriter(p, Topic(p, ML_MODEL_TOPIC, MLModelImpl), qos=writer_qos)
        self._hw_writer = DataWriter(p, Topic(p, HW_RESOURCES_TOPIC, HWResourceImpl), qos=writer_qos)
        self._user_writer = DataWriter(p, Topic(p, USER_INPUT_TOPIC, UserInputImpl), qos=writer_qos)
        self._control_writer = DataWriter(p, Topic(p, CONTROL_TOPIC, NodeControlImpl), qos=writer_qos)
        self._request_writer = DataWriter(p, Topic(p, REQUEST_TOPIC, RequestTypeImpl), qos=config_qos())
        self._output_reader: DataReader[CO2FootprintImpl] = DataReader(
            p, Topic(p, OUTPUT_TOPIC, CO2FootprintImpl), qos=orchestrator_output_reader_qos()
        )
        status_qos = Qos(
            Policy.Reliability.Reliable(max_blocking_time=duration(milliseconds=100)),
            Policy.Durability.TransientLocal,
            Policy.History.KeepLast(depth=_STATUS_HISTORY),
            Policy.DataRepresentation(use_cdrv0_representation=True),
        )
        self._status_reader: DataReader[NodeStatusImpl] = DataReader(p, Topic(p, STATUS_TOPIC, NodeStatusImpl), qos=status_qos)
        self._response_reader: DataReader[ResponseTypeImpl] = DataReader(
            p, Topic(p, RESPONSE_TOPIC, ResponseTypeImpl), qos=config_qos()
        )
        self._changed = threading.Condition()
        self._outputs: dict[TaskId, CO2FootprintImpl] = {}
        self._output_order: list[TaskId] = []
        self._statuses: list[Status] = []
        self._last_status: NodeStatusImpl | None = None
        self._responses: dict[tuple[int, int], ResponseTypeImpl] = {}
        self._waitset = WaitSet(p)
        self._guard = GuardCondition(p)
        self._waitset.attach(self._guard)
        unread = SampleState.NotRead | ViewState.Any | InstanceState.Any
        self._conditions = [ReadCondition(r, unread) for r in (self._output_reader, self._status_reader, self._response_reader)]
        for condition in self._conditions:
            self._waitset.attach(condition)
        self._open = True
        self._thread = threading.Thread(target=self._collect, name="carbon-orchestrator", daemon=True)
        self._thread.start()

    # -- writing ---------------------------------------------------------------------------------

    def publish_ml_model(self, task_id: TaskId, sample: MLModelImpl) -> None:
        sample.task_id = _key(task_id)
        self._ml_writer.write(sample)

    def publish_hw(self, task_id: TaskId, sample: HWResourceImpl) -> None:
        sample.task_id = _key(task_id)
        self._hw_writer.write(sample)

    def publish_user_input(self, task_id: TaskId, sample: UserInputImpl) -> None:
        sample.task_id = _key(task_id)
        self._user_writer.write(sample)

    def publish_task(self, task_id: TaskId, ml_model: MLModelImpl, hw: HWResourceImpl, user_input: UserInputImpl) -> None:
        """Write the three inputs of ``task_id`` (user input first, as the orchestrator does)."""
        self.publish_user_input(task_id, user_input)
        self.publish_ml_model(task_id, ml_model)
        self.publish_hw(task_id, hw)

    def release_task(self, task_id: TaskId) -> None:
        """Unregister the task's inputs, so that neither side keeps its instances (bounded at 500 each)."""
        key = _key(task_id)
        samples: list[tuple[DataWriter, Any]] = [
            (self._ml_writer, MLModelImpl(task_id=key)),
            (self._hw_writer, HWResourceImpl(task_id=key)),
            (self._user_writer, UserInputImpl(task_id=key)),
        ]
        for writer, sample in samples:
            try:
                writer.unregister_instance(sample)
            except Exception:  # never written on this writer
                log.debug("unregister_skipped", task_id=str(task_id), topic=type(sample).__name__)

    def send_control(self, cmd_node: CmdNode, cmd_task: CmdTask = CmdTask.NO_CMD_TASK, task_id: TaskId | None = None) -> None:
        """Write a command on ``/sustainml/control`` addressed to the carbon node."""
        key = _key(task_id) if task_id is not None else TaskIdImpl()
        self._control_writer.write(
            NodeControlImpl(
                cmd_node=cmd_node, cmd_task=cmd_task, target_node=NODE_NAME, source_node="ORCHESTRATOR_NODE", task_id=key
            )
        )

    def send_configuration_request(self, configuration: str, *, transaction_id: int, node_id: int = CARBON_NODE_ID) -> None:
        """Write a legacy configuration request without waiting for the response."""
        self._request_writer.write(RequestTypeImpl(node_id=node_id, transaction_id=transaction_id, configuration=configuration))

    def request_configuration(
        self, configuration: str, *, transaction_id: int, node_id: int = CARBON_NODE_ID, timeout_s: float = 10.0
    ) -> ResponseTypeImpl:
        """Send a legacy configuration request and wait for its response (same node and transaction id)."""
        self.send_configuration_request(configuration, transaction_id=transaction_id, node_id=node_id)
        return self._wait(
            lambda: self._responses.get((node_id, transaction_id)),
            timeout_s,
            lambda: f"no configuration response for node {node_id}, transaction {transaction_id} within {timeout_s:g} s",
        )

    def responses(self) -> dict[tuple[int, int], ResponseTypeImpl]:
        """Configuration responses received so far, by (node_id, transaction_id)."""
        with self._changed:
            return dict(self._responses)

    # -- waiting ---------------------------------------------------------------------------------

    def wait_node(self, timeout_s: float) -> NodeStatusImpl:
        """The carbon node's first status sample (its status is TRANSIENT_LOCAL: seen once it is discovered)."""
        return self._wait(
            lambda: self._last_status,
            timeout_s,
            lambda: f"no carbon node seen on domain {self.domain_id} within {timeout_s:g} s (no status sample)",
            NodeNotSeen,
        )

    def wait_output(self, task_id: TaskId, timeout_s: float) -> CO2FootprintImpl:
        """The carbon node's output for ``task_id``; raises :class:`OrchestratorTimeout` after ``timeout_s``."""
        return self._wait(lambda: self._outputs.get(task_id), timeout_s, lambda: self._missing_output(task_id, timeout_s))

    def wait_outputs(self, count: int, timeout_s: float) -> list[CO2FootprintImpl]:
        """The first ``count`` outputs received (arrival order); raises after ``timeout_s`` naming how many came."""

        def ready() -> list[CO2FootprintImpl] | None:
            if len(self._output_order) < count:
                return None
            return [self._outputs[t] for t in self._output_order[:count]]

        return self._wait(ready, timeout_s, lambda: f"{len(self._output_order)} of {count} outputs within {timeout_s:g} s")

    def wait_status(self, status: Status, timeout_s: float, *, after: int = 0) -> int:
        """Wait for ``status`` at index ``after`` or later of :meth:`statuses`; return its index."""

        def found() -> int | None:
            for index in range(after, len(self._statuses)):
                if self._statuses[index] is status:
                    return index
            return None

        return self._wait(
            found, timeout_s, lambda: f"status {status.name} not seen within {timeout_s:g} s; seen: {self.status_names()}"
        )

    def outputs(self) -> dict[TaskId, CO2FootprintImpl]:
        """Every output received so far, by task id."""
        with self._changed:
            return dict(self._outputs)

    def output_count(self) -> int:
        """Output samples received so far (a second sample for one task id counts again)."""
        with self._changed:
            return len(self._output_order)

    def statuses(self) -> list[Status]:
        """The carbon node's status samples in arrival order."""
        with self._changed:
            return list(self._statuses)

    def last_status_sample(self) -> NodeStatusImpl | None:
        """The carbon node's latest status sample, all fields."""
        with self._changed:
            return self._last_status

    def status_names(self) -> list[str]:
        return [s.name for s in self.statuses()]

    def close(self) -> None:
        """Stop the collector thread and delete the participant."""
        if not self._open:
            return
        self._open = False
        self._guard.set(True)
        self._thread.join(2.0)
        delete_entity(self._participant)

    def __enter__(self) -> Orchestrator:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------

    def _missing_output(self, task_id: TaskId, timeout_s: float) -> str:
        seen = self.status_names()
        node = "carbon node seen" if seen else "carbon node never seen (no status sample)"
        return f"no output for task {task_id} within {timeout_s:g} s; {node}; statuses: {seen}"

    def _wait(
        self,
        ready: Callable[[], _T | None],
        timeout_s: float,
        describe: Callable[[], str],
        error: type[OrchestratorTimeout] = OrchestratorTimeout,
    ) -> _T:
        with self._changed:
            result: list[_T] = []

            def check() -> bool:
                value = ready()
                if value is None:
                    return False
                result.append(value)
                return True

            if self._changed.wait_for(check, timeout=timeout_s):
                return result[0]
        raise error(describe())

    def _collect(self) -> None:
        while self._open:
            try:
                self._waitset.wait(duration(seconds=_POLL_S))
                self._take_all()
            except Exception:  # keep collecting; a failure here only loses observations
                log.exception("orchestrator_collect_failed")
                time.sleep(_POLL_S)

    def _take_all(self) -> None:
        outputs = [s for s in self._output_reader.take(N=256) if isinstance(s, CO2FootprintImpl)]
        statuses = [s for s in self._status_reader.take(N=256) if isinstance(s, NodeStatusImpl) and s.node_name == NODE_NAME]
        responses = [s for s in self._response_reader.take(N=64) if isinstance(s, ResponseTypeImpl)]
        if not (outputs or statuses or responses):
            return
        with self._changed:
            for output in outputs:
                task_id = TaskId(output.task_id.problem_id, output.task_id.iteration_id)
                self._outputs[task_id] = output
                self._output_order.append(task_id)
            self._statuses.extend(s.node_status for s in statuses)
            if statuses:
                self._last_status = statuses[-1]
            for response in responses:
                self._responses[(response.node_id, response.transaction_id)] = response
            self._changed.notify_all()
