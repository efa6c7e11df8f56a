"""The pool's DDS entities, on a participant of their own: one reader, one writer, a waitset, a board.

Both ends of the pool (a node's :class:`~carbon_node.bus.pool_client.PoolClient`, a measure host's
:class:`~carbon_node.bus.pool_host.MeasureHost`) hold the same shape: a Cyclone DDS participant on the
SustainML domain (whichever bus the node uses for SustainML itself: the pool is Cyclone either way), a
reader of the topic they receive, a writer of the topic they send, an announcement board (who is live,
:mod:`carbon_node.bus.announce`), and one waitset that wakes their thread when a sample or an
announcement arrives or :meth:`PoolEndpoints.wake` is called. :meth:`PoolEndpoints.take` decodes each
sample on its own (a peer's bad bytes are dropped and logged, never raised) and keeps the notices that a
request or reply instance is gone (disposed, or its writer unregistered it or died).

Every wait is bounded; nothing here runs Python code on Cyclone's threads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import structlog
from cyclonedds._clayer import ddspy_take
from cyclonedds.core import DDSException, GuardCondition, InstanceState, ReadCondition, SampleState, ViewState, WaitSet
from cyclonedds.domain import DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from carbon_node.bus.announce import AnnouncementBoard
from carbon_node.bus.cyclone import create_participant, delete_entity
from carbon_node.bus.pool_types import pool_qos

__all__ = ["PoolEndpoints", "Received"]

log = structlog.get_logger(__name__)

_In = TypeVar("_In")
_Out = TypeVar("_Out")

_TAKE_BATCH = 256


@dataclass(frozen=True)
class Received(Generic[_In]):
    """One sample taken: its data (None for a notice that its instance is gone) and its instance handle."""

    sample: _In | None
    instance_handle: int
    alive: bool


class PoolEndpoints(Generic[_In, _Out]):
    """A participant named ``name`` on ``domain_id`` with a reader of ``in_topic``, a writer of ``out_topic``
    and an announcement board, all on the pool's QoS (:func:`~carbon_node.bus.pool_types.pool_qos`)."""

    def __init__(
        self,
        domain_id: int,
        name: str,
        in_topic: tuple[str, type[_In]],
        out_topic: tuple[str, type[_Out]],
        participant_factory: Callable[[int, str], DomainParticipant] = create_participant,
    ) -> None:
        self.participant: DomainParticipant | None = participant_factory(domain_id, name)
        p = self.participant
        try:
            self._in_type = in_topic[1]
            self.reader: DataReader[Any] = DataReader(p, Topic(p, in_topic[0], in_topic[1]), qos=pool_qos())
            self.writer: DataWriter = DataWriter(p, Topic(p, out_topic[0], out_topic[1]), qos=pool_qos())
            self.board = AnnouncementBoard(p)
            self._waitset = WaitSet(p)
            self._guard = GuardCondition(p)
            self._waitset.attach(self._guard)
            self._waitset.attach(ReadCondition(self.reader, SampleState.NotRead | ViewState.Any | InstanceState.Any))
            self._waitset.attach(self.board.condition)
        except Exception:
            self.close()
            raise

    def wait(self, timeout_s: float) -> None:
        """Block until a sample or an announcement arrives, :meth:`wake` is called, or ``timeout_s`` passes."""
        self._waitset.wait(duration(seconds=timeout_s))
        if self._guard.read():
            self._guard.set(False)

    def wake(self) -> None:
        """End the current :meth:`wait` (a stop)."""
        with contextlib.suppress(DDSException):
            self._guard.set(True)

    def take(self) -> list[Received[_In]]:
        """The samples and instance-gone notices of the reader; undecodable samples are logged and dropped."""
        result = ddspy_take(self.reader._ref, SampleState.Any | ViewState.Any | InstanceState.Any, _TAKE_BATCH)
        if isinstance(result, int):
            raise DDSException(result, f"Occurred while taking data in {self.reader!r}")
        taken: list[Received[_In]] = []
        for data, info in result:
            alive = info.instance_state == InstanceState.Alive
            if not info.valid_data:
                taken.append(Received(None, info.instance_handle, alive))
                continue
            try:
                sample = self._in_type.deserialize(data)  # type: ignore[attr-defined]  # an IdlStruct
            except Exception as exc:  # a peer's bytes: never let them stop the reader
                log.warning(
                    "pool.undecodable_sample_dropped", topic=self.reader.topic.name, error=f"{type(exc).__name__}: {exc}"[:300]
                )
                continue
            taken.append(Received(sample, info.instance_handle, alive))
        return taken

    def unregister(self, sample: _Out, *, dispose: bool = False) -> None:
        """Forget an instance this end wrote (``dispose``: tell the readers it is no longer wanted first)."""
        with contextlib.suppress(DDSException, AttributeError):
            if dispose:
                self.writer.dispose(sample)
            self.writer.unregister_instance(sample)

    def close(self) -> None:
        """Delete the participant and every entity on it; idempotent."""
        participant, self.participant = self.participant, None
        with contextlib.suppress(Exception):  # a half-built or already deleted participant
            delete_entity(participant)
