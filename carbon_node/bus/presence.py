"""The standby rule for a node whose SustainML side is the upstream bindings: presence on a Cyclone participant of its own.

On the Cyclone bus the runtime takes part in the rule of :mod:`carbon_node.bus.standby` from its own
bus thread. On the upstream bus (``sustainml_py``, Fast DDS) the SustainML side is native code that
publishes its status as soon as its node exists and answers every task it receives (upstream
behaviour, K5), so the node cannot hold tasks there. :class:`Presence` therefore keeps the node out of
SustainML's sight until the rule makes it active: a Cyclone participant (``CARBON_NODE_PRESENCE``, not
a name the orchestrator maps to a node) announces it, reads the other announcements and, while
standing by, the outputs the active node publishes; once active it calls ``on_active`` (the upstream
node is created then, and publishes its status). That node then receives the orchestrator's held
inputs (TRANSIENT_LOCAL) and answers each, as upstream does: a task the old active node had answered
is answered again with the very output it had published (:meth:`Presence.answered`), the others are
computed. One thread of its own (``carbon-presence``) waits on the participant's waitset.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import structlog
from cyclonedds.core import GuardCondition, InstanceState, ReadCondition, SampleState, ViewState, WaitSet
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from carbon_node.bus.announce import AnnouncementBoard, Announcer
from carbon_node.bus.cyclone import create_participant, delete_entity, take_samples
from carbon_node.bus.qos import OUTPUT_TOPIC, standby_output_reader_qos
from carbon_node.bus.standby import Standby, StandbyOptions, StandbyView
from carbon_node.core import TaskId, TaskOutput
from carbon_node.wire import CO2FootprintImpl

__all__ = ["PRESENCE_NAME", "Presence"]

log = structlog.get_logger(__name__)

PRESENCE_NAME = "CARBON_NODE_PRESENCE"
"""The entity name of the presence participant (the orchestrator maps only SustainML node names)."""

_ANSWERS_KEPT = 4096
"""Outputs of the active node kept for a takeover (the orchestrator holds at most 500 tasks)."""

_WAIT_S = 0.5


class Presence:
    """Announces a node on ``domain_id`` and decides its role; ``on_active`` is called once, when it becomes active."""

    def __init__(
        self,
        domain_id: int,
        options: StandbyOptions,
        on_active: Callable[[], None],
        on_role: Callable[[StandbyView], None] | None = None,
        heartbeat: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_active = on_active
        self._on_role = on_role
        self._heartbeat = heartbeat
        self._activated = False
        self._lock = threading.Lock()
        self._answers: OrderedDict[TaskId, TaskOutput] = OrderedDict()
        self._participant: Any = create_participant(domain_id, PRESENCE_NAME)
        try:
            state = "starting" if options.enabled else "active"
            announcer = Announcer(
                self._participant,
                role="node",
                node_id=options.node_id,
                state=state,
                standby_enabled=options.enabled,
                detail=options.detail,
            )
            board = AnnouncementBoard(self._participant)
            self.standby = Standby(announcer, board, clock=clock, grace_s=options.grace_s, enabled=options.enabled)
            self._waitset = WaitSet(self._participant)
            self._guard = GuardCondition(self._participant)
            self._waitset.attach(self._guard)
            self._waitset.attach(board.condition)
            self._outputs: DataReader[CO2FootprintImpl] | None = None
            self._outputs_condition: ReadCondition | None = None
            if options.enabled:
                self._outputs = DataReader(
                    self._participant,
                    Topic(self._participant, OUTPUT_TOPIC, CO2FootprintImpl),
                    qos=standby_output_reader_qos(),
                )
                self._outputs_condition = ReadCondition(self._outputs, SampleState.NotRead | ViewState.Any | InstanceState.Any)
                self._waitset.attach(self._outputs_condition)
        except BaseException:
            delete_entity(self._participant)
            raise
        self._running = True
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen for the grace, decide (``on_active`` at once when active), then follow the others on a thread."""
        time.sleep(self.standby.decide_in_s())
        self._step()
        self._thread = threading.Thread(target=self._loop, name="carbon-presence", daemon=True)
        self._thread.start()

    def view(self) -> StandbyView:
        with self._lock:
            return self.standby.view()

    def answered(self, task_id: TaskId) -> TaskOutput | None:
        """The output the active node published for ``task_id`` while this node stood by, or None."""
        with self._lock:
            return self._answers.get(task_id)

    def stop_following(self) -> None:
        """Stop applying the rule (the node is stopping): no takeover starts after this returns."""
        self._running = False
        self._guard.set(True)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)

    def close(self) -> None:
        """Unannounce (the others take over at once) and delete the participant."""
        self.stop_following()
        self.standby.announcer.close()
        delete_entity(self._participant)

    def _loop(self) -> None:
        while self._running:
            if self._heartbeat is not None:
                self._heartbeat()
            self._waitset.wait(duration(seconds=_WAIT_S))
            try:
                self._step()
            except Exception:  # keep following: a bad sample must not end the presence
                log.exception("presence_step_failed")

    def _step(self) -> None:
        with self._lock:
            reader = self._outputs
            while reader is not None:
                samples = take_samples(reader, 256)
                for sample in samples:
                    if isinstance(sample, CO2FootprintImpl):
                        task_id = TaskId(sample.task_id.problem_id, sample.task_id.iteration_id)
                        self._answers.pop(task_id, None)
                        self._answers[task_id] = TaskOutput.published(
                            task_id, sample.carbon_footprint, sample.energy_consumption, sample.carbon_intensity,
                            bytes(sample.extra_data),
                        )  # fmt: skip
                        if len(self._answers) > _ANSWERS_KEPT:
                            self._answers.popitem(last=False)
                if len(samples) < 256:
                    break
            role = self.standby.update()
            view = self.standby.view() if role is not None else None
            if role == "active" and self._outputs is not None:
                if self._outputs_condition is not None:
                    self._waitset.detach(self._outputs_condition)
                delete_entity(self._outputs_condition)
                delete_entity(self._outputs)  # an active node does not read outputs (its own) back
                self._outputs = self._outputs_condition = None
        if role == "standby" and self._activated:
            # Upstream's node, once created, answers every task it receives: it cannot stand by again.
            log.warning("standby.cannot_step_down", bus="sustainml", active_node=view.active_node_id if view else None)
        if role == "active" and not self._activated:
            self._activated = True
            self._on_active()  # before the role is told: whoever hears "active" finds the node running
        if view is not None and self._on_role is not None:
            self._on_role(view)
