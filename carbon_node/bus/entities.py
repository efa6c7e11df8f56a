"""The node's DDS entities: participant, topics, readers, writers and the waitset, created and deleted together.

Every entity is a child of one participant, so deleting it (:meth:`BusEntities.close`) deletes them
all. They are created in two steps, so that NODE_INITIALIZING goes out before anything else exists:
:class:`BusEntities` creates the participant and the status writer, then :meth:`BusEntities.open_tasks`
the readers of the three task inputs and of ``/sustainml/control``, the output writer, the
configuration service, and the waitset the bus thread waits on (a read condition per reader for
samples not read yet, and a guard condition that :meth:`BusEntities.wake` sets). Topic names and QoS
are :mod:`carbon_node.bus.qos`'s.
"""

from __future__ import annotations

from typing import Any

from cyclonedds.core import GuardCondition, InstanceState, ReadCondition, SampleState, ViewState, WaitSet
from cyclonedds.domain import DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from carbon_node.bus.assembler import InputKind
from carbon_node.bus.config_service import ConfigResponder, ConfigService
from carbon_node.bus.cyclone import create_participant, delete_entity
from carbon_node.bus.qos import (
    CONTROL_TOPIC,
    HW_RESOURCES_TOPIC,
    ML_MODEL_TOPIC,
    OUTPUT_TOPIC,
    STATUS_TOPIC,
    USER_INPUT_TOPIC,
    control_reader_qos,
    input_reader_qos,
    output_writer_qos,
    standby_output_reader_qos,
    status_writer_qos,
)
from carbon_node.wire import CO2FootprintImpl, HWResourceImpl, MLModelImpl, NodeControlImpl, NodeStatusImpl, UserInputImpl

__all__ = ["BusEntities"]

_INPUTS: list[tuple[InputKind, str, type[Any]]] = [
    (InputKind.ML_MODEL, ML_MODEL_TOPIC, MLModelImpl),
    (InputKind.HW_RESOURCES, HW_RESOURCES_TOPIC, HWResourceImpl),
    (InputKind.USER_INPUT, USER_INPUT_TOPIC, UserInputImpl),
]


class BusEntities:
    """The node's participant on ``domain_id`` and its status writer; :meth:`open_tasks` adds the rest.

    After :meth:`close` every handle is None (or empty): a bus thread still finishing a step finds nothing to read.
    """

    def __init__(self, domain_id: int) -> None:
        participant = create_participant(domain_id)
        try:
            self.status_writer: DataWriter | None = DataWriter(
                participant, Topic(participant, STATUS_TOPIC, NodeStatusImpl), qos=status_writer_qos()
            )
        except BaseException:
            delete_entity(participant)
            raise
        self.participant: DomainParticipant | None = participant
        self.output_writer: DataWriter | None = None
        self.input_readers: list[tuple[InputKind, DataReader[Any]]] = []
        self.control_reader: DataReader[NodeControlImpl] | None = None
        self.config: ConfigService | None = None
        self.waitset: WaitSet | None = None
        self.guard: GuardCondition | None = None
        self.conditions: list[ReadCondition] = []
        self.output_reader: DataReader[CO2FootprintImpl] | None = None
        self._output_condition: ReadCondition | None = None

    def open_tasks(self, responder: ConfigResponder) -> None:
        """Create the readers, the output writer, the configuration service (answering with ``responder``)
        and the waitset with a condition for each reader."""
        participant = self.participant
        assert participant is not None
        self.control_reader = DataReader(
            participant, Topic(participant, CONTROL_TOPIC, NodeControlImpl), qos=control_reader_qos()
        )
        self.waitset = WaitSet(participant)
        self.guard = GuardCondition(participant)
        self.waitset.attach(self.guard)
        any_unread = SampleState.NotRead | ViewState.Any | InstanceState.Any
        for kind, topic_name, data_type in _INPUTS:
            reader: DataReader[Any] = DataReader(participant, Topic(participant, topic_name, data_type), qos=input_reader_qos())
            self.input_readers.append((kind, reader))
        self.output_writer = DataWriter(participant, Topic(participant, OUTPUT_TOPIC, CO2FootprintImpl), qos=output_writer_qos())
        self.config = ConfigService(participant, responder)
        self.conditions = [ReadCondition(r, any_unread) for _, r in self.input_readers]
        self.conditions.append(ReadCondition(self.control_reader, any_unread))
        self.conditions.append(self.config.condition)
        for condition in self.conditions:
            self.waitset.attach(condition)

    def watch(self, condition: Any) -> None:
        """Wake the bus thread on ``condition`` too (a condition of a reader on this participant)."""
        assert self.waitset is not None
        self.waitset.attach(condition)

    def open_output_watch(self) -> DataReader[CO2FootprintImpl]:
        """A reader of the output topic, watched by the bus thread: a standby reads what the active node
        answers. Closed by :meth:`close_output_watch` when the node becomes active."""
        participant = self.participant
        assert participant is not None and self.waitset is not None
        if self.output_reader is None:
            self.output_reader = DataReader(
                participant, Topic(participant, OUTPUT_TOPIC, CO2FootprintImpl), qos=standby_output_reader_qos()
            )
            self._output_condition = ReadCondition(self.output_reader, SampleState.NotRead | ViewState.Any | InstanceState.Any)
            self.waitset.attach(self._output_condition)
        return self.output_reader

    def close_output_watch(self) -> None:
        """Delete the output reader (an active node does not read its own outputs back)."""
        reader, condition = self.output_reader, self._output_condition
        self.output_reader = self._output_condition = None
        if condition is not None and self.waitset is not None:
            self.waitset.detach(condition)
        delete_entity(condition)
        delete_entity(reader)

    def wait(self, timeout_s: float) -> None:
        """Block until a reader has samples not read yet, :meth:`wake` was called, or ``timeout_s`` passed.

        The binding releases the GIL while waiting.
        """
        waitset, guard = self.waitset, self.guard
        assert waitset is not None and guard is not None
        waitset.wait(duration(seconds=timeout_s))
        if guard.read():
            guard.set(False)

    def wake(self) -> None:
        """End the bus thread's current :meth:`wait` (stop)."""
        if self.guard is not None:
            self.guard.set(True)

    def close(self) -> None:
        """Delete the participant and with it every entity; forget the handles."""
        participant, self.participant = self.participant, None
        self.status_writer = self.output_writer = self.control_reader = None
        self.output_reader = self._output_condition = None
        self.input_readers = []
        self.config = None
        self.waitset = self.guard = None
        delete_entity(participant)
