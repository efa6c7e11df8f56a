"""Which node answers: one active node per domain, the others stand by and take over when it is gone.

Every node that answers SustainML tasks announces itself (:mod:`carbon_node.bus.announce`: role
``node``, its start time, whether it takes part). The rule is deterministic over the *live*
announcements, so every node reaches the same answer without a protocol of its own: among the live
nodes that take part, the one that started first is active (ties: the smaller ``node_id``). A node
started later therefore never takes over from a live active node, and a restarted node (a new start
time) comes back as a standby. When the active node dies or loses the network, DDS ends its
announcement within the liveliness lease (:data:`~carbon_node.bus.announce.LEASE_S`), every standby
applies the rule again, and the oldest one left becomes active.

A new node decides after :data:`DECISION_GRACE_S`: the announcements already on the domain
(TRANSIENT_LOCAL) reach it within that time on a working network, together with the task inputs the
orchestrator holds; until it has decided it publishes nothing and holds its tasks.

A standby assembles tasks as the active node does but publishes neither status nor outputs: it
*holds* each released task (:meth:`Standby.hold`) and reads ``/sustainml/carbon_tracker/output``
(:meth:`Standby.observe`): a held task whose output the active node published is dropped, and that
output is kept in the standby's own journal with the fingerprint of the inputs it answered, so that a
replay after a takeover is answered identically. On takeover the node publishes its status and answers
every task it still holds, once (:meth:`Standby.take_held`). Two active nodes that discover each other
(a healed network partition) resolve it by the same rule: the younger one steps down.

Where a task can get two outputs: the active node wrote it and died before the output reached the
standby (one network transit), or the two nodes could not see each other while the orchestrator saw
both (a partition: both are active, as two upstream nodes would be). This module does no DDS I/O of
its own beyond the board it is given; the runtime feeds it and acts on what it decides.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from carbon_node.bus.announce import AnnouncementBoard, Announcer, CarbonNodeAnnouncementImpl
from carbon_node.bus.assembler import Release
from carbon_node.core import Journal, TaskId, TaskOutput

__all__ = ["DECISION_GRACE_S", "Role", "Standby", "StandbyOptions", "StandbyView", "active_node"]

log = structlog.get_logger(__name__)

DECISION_GRACE_S = 0.2
"""Seconds a starting node listens before it decides whether it is active (discovery on a LAN or on
loopback takes tens of milliseconds; the setting ``standby_grace_s`` raises it for slower networks)."""

MAX_HELD = 10_000
"""Released tasks a standby holds at most; beyond, the oldest is dropped (and logged)."""

OUTPUT_RACE_S = 30.0
"""An output seen at most this long before its task's inputs completed here answers that task."""

_SEEN_KEPT = 4096
"""Outputs kept for tasks not (yet) assembled here; older ones are forgotten first."""

Role = Literal["starting", "active", "standby"]


@dataclass(frozen=True)
class StandbyOptions:
    """How a node takes part: ``enabled`` False announces the node (others see it) but it always answers,
    as upstream nodes do."""

    enabled: bool = True
    node_id: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    """Shown to the other nodes in the announcement (bus, host, version, ...)."""
    grace_s: float = DECISION_GRACE_S


def active_node(live: Sequence[CarbonNodeAnnouncementImpl]) -> CarbonNodeAnnouncementImpl | None:
    """The active node among ``live`` announcements: the earliest-started node that takes part."""
    candidates = [a for a in live if a.role == "node" and a.standby_enabled]
    return min(candidates, key=lambda a: (a.started_at_s, a.node_id), default=None)


@dataclass(frozen=True)
class StandbyView:
    """What the node tells about its role (describe, metrics, health, doctor)."""

    role: Role
    node_id: str
    active_node_id: str | None
    active_host: str | None
    others: tuple[str, ...]
    """The other live nodes, as ``node_id (state)``."""
    held: int

    def as_dict(self) -> dict[str, object]:
        return {
            "role": self.role,
            "node_id": self.node_id,
            "active_node": self.active_node_id,
            "active_host": self.active_host,
            "other_nodes": list(self.others),
            "held_tasks": self.held,
        }


class Standby:
    """The active/standby state of one node, fed by the runtime's bus thread (not thread-safe: the
    runtime calls it under its lock)."""

    def __init__(
        self,
        announcer: Announcer,
        board: AnnouncementBoard,
        *,
        journal: Journal | None = None,
        fingerprint_of: Callable[[Release], str | None] = lambda release: release.fingerprint,
        clock: Callable[[], float] = time.monotonic,
        grace_s: float = DECISION_GRACE_S,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        """False: the node is announced but always active (it does not take part in the rule)."""
        self.announcer = announcer
        self.board = board
        self._journal = journal
        self._fingerprint_of = fingerprint_of
        self._clock = clock
        self._decide_at = clock() + (grace_s if enabled else 0.0)
        self.role: Role = "starting"
        self._active: CarbonNodeAnnouncementImpl | None = None
        self._live: list[CarbonNodeAnnouncementImpl] = []
        self._held: OrderedDict[TaskId, Release] = OrderedDict()
        self._seen: OrderedDict[TaskId, tuple[float, TaskOutput]] = OrderedDict()  # outputs of tasks not held yet

    @property
    def node_id(self) -> str:
        return self.announcer.node_id

    @property
    def holding(self) -> bool:
        """Whether released tasks are held instead of answered (starting or standing by)."""
        return self.role != "active"

    def decide_in_s(self) -> float:
        """Seconds until a starting node decides (0 once it has)."""
        return 0.0 if self.role != "starting" else max(0.0, self._decide_at - self._clock())

    # -- the rule ----------------------------------------------------------------------------------

    def update(self) -> Role | None:
        """Apply the rule to the live announcements; the new role when it changed, else None."""
        self._live = self.board.live("node")
        if self.role == "starting" and self._clock() < self._decide_at:
            return None
        active = active_node(self._live)
        # Our own announcement may not be read back yet: we are live as far as we are concerned.
        mine = self.announcer.sample
        if not self.enabled or active is None or (mine.started_at_s, mine.node_id) < (active.started_at_s, active.node_id):
            active = mine
        self._active = active
        role: Role = "active" if active.node_id == self.node_id else "standby"
        if role == self.role:
            return None
        previous, self.role = self.role, role
        self.announcer.update(state=role)
        event = {"starting": "standby.decided", "active": "standby.stepped_down", "standby": "standby.took_over"}[previous]
        log.info(
            event, role=role, node_id=self.node_id, active_node=active.node_id, active_host=active.host_name, held=len(self._held)
        )
        return role

    # -- tasks while holding -----------------------------------------------------------------------

    def hold(self, release: Release) -> None:
        """Keep a released task for a takeover, unless its output was already seen."""
        task_id = release.inputs.task_id
        seen = self._seen.pop(task_id, None)
        if seen is not None and self._clock() - seen[0] <= OUTPUT_RACE_S:
            self._answered(seen[1], release)  # the active node answered it before its inputs completed here
            return
        self._held.pop(task_id, None)
        self._held[task_id] = release
        if len(self._held) > MAX_HELD:
            dropped, _ = self._held.popitem(last=False)
            log.warning("standby.held_task_dropped", task_id=str(dropped), max_held=MAX_HELD)

    def observe(self, output: TaskOutput) -> None:
        """An output of the active node: its held task is answered (and journaled with its inputs' fingerprint)."""
        task_id = output.task_id
        release = self._held.pop(task_id, None)
        if release is None:
            self._seen.pop(task_id, None)
            self._seen[task_id] = (self._clock(), output)
            if len(self._seen) > _SEEN_KEPT:
                self._seen.popitem(last=False)
            return
        self._answered(output, release)

    def _answered(self, output: TaskOutput, release: Release) -> None:
        """Keep the active node's answer to ``release`` in this node's journal, for a replay after a takeover."""
        if self._journal is not None:
            self._journal.record(output, self._fingerprint_of(release))

    def take_held(self) -> list[Release]:
        """Every held task, in arrival order, to be answered now (a takeover)."""
        held, self._held = list(self._held.values()), OrderedDict()
        return held

    # -- what it tells -------------------------------------------------------------------------------

    def view(self) -> StandbyView:
        active = self._active
        others = tuple(f"{a.node_id} ({a.state or '?'})" for a in self._live if a.node_id != self.node_id)
        return StandbyView(
            role=self.role,
            node_id=self.node_id,
            active_node_id=active.node_id if active is not None else None,
            active_host=active.host_name if active is not None else None,
            others=others,
            held=len(self._held),
        )
