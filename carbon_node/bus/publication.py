"""Publication: every status and output sample the node writes, in upstream's status sequence (PROTOCOL.md 4.2).

:class:`Publication` is the one object that writes on the node's status and output topics (the
writers are :class:`~carbon_node.bus.entities.BusEntities`'s, attached here once created), so that
holding or redirecting the node's writes is a matter of this class alone. Per task it follows
upstream's sequence sample for sample, bursts included: a task that starts while the status is not
NODE_RUNNING publishes NODE_RUNNING first; its answer publishes the status first (NODE_ERROR if the
output asks for it; NODE_IDLE when no other task runs, else NODE_RUNNING; K4: IDLE after every task),
then the ``CO2FootprintImpl``.

Kept lean for the hot path: the status samples are serialized once, when the status writer is
attached, and written as bytes; outputs are encoded directly
(:func:`~carbon_node.bus.cyclone.encode_output`) from ``extra_data`` bytes the caller already checked.
The newest outputs stay registered (TRANSIENT_LOCAL history); older instances are unregistered.

It uses the runtime's lock, not one of its own: the status and the output of an answer go out
together, in the order the runtime's bookkeeping decided them. Methods that say so are called with
that lock held.
"""

from __future__ import annotations

import threading
from collections import deque

import structlog
from cyclonedds.pub import DataWriter

from carbon_node.bus.cyclone import (
    NODE_NAME,
    encode_output,
    encode_output_key,
    serialize_for,
    unregister_serialized,
    write_serialized,
)
from carbon_node.core import TaskId, TaskOutput
from carbon_node.wire import NodeStatusImpl, Status, TaskIdImpl

__all__ = ["Publication", "make_status"]

log = structlog.get_logger("carbon_node.bus.runtime")  # the node runtime's events keep their logger name

_OUTPUTS_KEPT = 256
"""Outputs kept registered (TRANSIENT_LOCAL history); older ones are unregistered."""


def make_status(status: Status) -> NodeStatusImpl:
    """A status sample as upstream writes it: only ``node_status`` varies (PROTOCOL.md 4.2)."""
    return NodeStatusImpl(node_status=status, node_name=NODE_NAME, task_id=TaskIdImpl(0, 0))


class Publication:
    """The node's status and output writes, under the runtime's ``lock``.

    Without a status writer (before :meth:`attach_status`, after :meth:`detach`) status samples are
    skipped; without an output writer an output is logged as not published.
    """

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._status_writer: DataWriter | None = None
        self._output_writer: DataWriter | None = None
        self._status_bytes: dict[Status, bytes] = {}
        self._status: Status | None = None
        self._running = 0
        self._published_keys: deque[TaskId] = deque()

    # -- writers ---------------------------------------------------------------------------------

    def attach_status(self, writer: DataWriter) -> None:
        """Write status samples with ``writer`` from now on; every status sample is serialized here, once."""
        self._status_bytes = {status: serialize_for(writer, make_status(status)) for status in Status}
        self._status_writer = writer

    def attach_output(self, writer: DataWriter) -> None:
        """Write outputs with ``writer`` from now on."""
        self._output_writer = writer

    def detach(self) -> None:
        """Forget both writers (their participant is being deleted)."""
        self._status_writer = self._output_writer = None

    # -- the status sequence ---------------------------------------------------------------------

    def publish_status(self, status: Status) -> None:
        """Write the ``status`` sample (takes the lock: callable with or without it)."""
        writer = self._status_writer
        if writer is None:
            return
        with self._lock:
            try:
                write_serialized(writer, self._status_bytes[status])
                self._status = status
            except Exception:
                log.exception("status_publish_failed", status=status.name)

    def task_started(self) -> None:
        """A task starts running: NODE_RUNNING first unless that is the status already. Under the lock."""
        self._running += 1
        if self._status is not Status.NODE_RUNNING:
            self.publish_status(Status.NODE_RUNNING)

    def task_ended(self) -> None:
        """A task stopped running (its answer may still be on its way). Under the lock."""
        self._running -= 1

    def answer(self, output: TaskOutput, extra_bytes: bytes | None = None) -> None:
        """Publish a task's answer: the status it calls for, then ``output``. Under the lock.

        ``extra_bytes`` is ``output``'s encoded ``extra_data`` when the caller already checked it.
        """
        if output.node_error:
            status = Status.NODE_ERROR
        elif self._running > 0:
            status = Status.NODE_RUNNING
        else:
            status = Status.NODE_IDLE
        self.publish_status(status)
        self._publish_output(output, extra_bytes)

    # -- outputs ---------------------------------------------------------------------------------

    def _publish_output(self, output: TaskOutput, extra_bytes: bytes | None) -> None:
        writer = self._output_writer
        if writer is None:
            log.error("output_not_published", task_id=str(output.task_id), reason="no output writer")
            return
        task_id = output.task_id
        try:
            data = encode_output(
                float(output.carbon_g),
                float(output.energy_kwh),
                float(output.grid_ci_g_per_kwh),
                output.extra_data_bytes() if extra_bytes is None else extra_bytes,
                task_id.problem_id,
                task_id.iteration_id,
            )
            write_serialized(writer, data)
        except Exception:
            log.exception("output_publish_failed", task_id=str(task_id))
            return
        self._published_keys.append(task_id)
        if len(self._published_keys) > _OUTPUTS_KEPT:
            oldest = self._published_keys.popleft()
            try:
                unregister_serialized(writer, encode_output_key(oldest.problem_id, oldest.iteration_id))
            except Exception:
                log.exception("output_unregister_failed", task_id=str(oldest))
