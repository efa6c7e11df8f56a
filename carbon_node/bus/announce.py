"""Who is on the domain: carbon-node processes announce themselves on one keyed topic with a liveliness lease.

Every carbon-node process that takes part in a feature spanning hosts writes one sample on
``/carbon_node/announcement`` (:class:`CarbonNodeAnnouncementImpl`, declared in ``idl/carbon_node.idl``):
a node that answers SustainML tasks (role ``node``) and a measure host (role ``measure_host``). The
topic is TRANSIENT_LOCAL, so a process that starts later reads everyone already there, and its
writers have an AUTOMATIC liveliness lease of :data:`LEASE_S` seconds: DDS asserts it for us (no
heartbeat messages of our own), and when a process dies or its network goes, every reader sees its
instance turn NOT_ALIVE within the lease. A process that stops cleanly unregisters its instance at
once. A changed state (``active`` / ``standby``, ``idle`` / ``busy``) is written again on the same
instance (key: ``node_id``).

:class:`Announcer` writes one process's announcement; :class:`AnnouncementBoard` reads the live ones
(a ``ReadCondition`` for a waitset tells its owner when something changed, a liveliness loss
included). Neither runs Python code on Cyclone's threads.
"""

import contextlib
import dataclasses
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from cyclonedds.core import InstanceState, Policy, Qos, ReadCondition, SampleState, ViewState
from cyclonedds.domain import DomainParticipant
from cyclonedds.idl import IdlStruct
from cyclonedds.idl.annotations import final, key
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from carbon_node.base import version

if TYPE_CHECKING:  # what the cyclonedds annotations hold, in terms a type checker understands
    from builtins import float as float64
    from builtins import list as sequence
else:
    from cyclonedds.idl.types import float64, sequence

__all__ = [
    "ANNOUNCEMENT_TOPIC",
    "LEASE_S",
    "AnnouncementBoard",
    "Announcer",
    "CarbonNodeAnnouncementImpl",
    "Role",
    "announcement_qos",
    "new_node_id",
]

ANNOUNCEMENT_TOPIC = "/carbon_node/announcement"

LEASE_S = 2.0
"""Liveliness lease (seconds) of every announcement: a process that dies is gone for all readers within
this time (measured on loopback: 2.0 s after SIGKILL)."""

Role = Literal["node", "measure_host"]


@dataclass
@final
class CarbonNodeAnnouncementImpl(IdlStruct, typename="CarbonNodeAnnouncementImpl"):
    """One process's announcement (field order = ``idl/carbon_node.idl``)."""

    node_id: str = ""
    key("node_id")
    role: str = "node"
    host_name: str = ""
    version: str = ""
    started_at_s: float64 = 0.0
    standby_enabled: bool = True
    state: str = ""
    hardware: sequence[str] = field(default_factory=list)
    power_sources: sequence[str] = field(default_factory=list)
    detail: str = "{}"

    def details(self) -> dict[str, Any]:
        """``detail`` decoded (empty when it is not a JSON object)."""
        try:
            value = json.loads(self.detail or "{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


def announcement_qos(lease_s: float = LEASE_S) -> Qos:
    """Both ends of the announcement topic: RELIABLE, TRANSIENT_LOCAL, KEEP_LAST 1, AUTOMATIC liveliness
    with ``lease_s``, XCDR1."""
    return Qos(
        Policy.Reliability.Reliable(max_blocking_time=duration(milliseconds=100)),
        Policy.Durability.TransientLocal,
        Policy.History.KeepLast(depth=1),
        Policy.Liveliness.Automatic(lease_duration=duration(seconds=lease_s)),
        Policy.DataRepresentation(use_cdrv0_representation=True),
    )


def new_node_id() -> str:
    """An id unique to this process: host name, pid and 6 random hex digits (readable in logs)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Announcer:
    """Writes this process's announcement and keeps it current; :meth:`close` unregisters it.

    Keep a reference for as long as the announcement should stand: cyclonedds deletes a writer that is
    garbage-collected, and the announcement goes with it."""

    def __init__(
        self,
        participant: DomainParticipant,
        *,
        role: Role,
        node_id: str | None = None,
        state: str = "",
        standby_enabled: bool = True,
        hardware: Sequence[str] = (),
        power_sources: Sequence[str] = (),
        detail: Mapping[str, Any] | None = None,
        started_at_s: float | None = None,
        lease_s: float = LEASE_S,
    ) -> None:
        self._lock = threading.Lock()
        self._writer: DataWriter | None = DataWriter(
            participant, Topic(participant, ANNOUNCEMENT_TOPIC, CarbonNodeAnnouncementImpl), qos=announcement_qos(lease_s)
        )
        self.sample = CarbonNodeAnnouncementImpl(
            node_id=node_id or new_node_id(),
            role=role,
            host_name=socket.gethostname(),
            version=version(),
            started_at_s=time.time() if started_at_s is None else started_at_s,
            standby_enabled=standby_enabled,
            state=state,
            hardware=list(hardware),
            power_sources=list(power_sources),
            detail=json.dumps(dict(detail or {}), sort_keys=True),
        )
        self._writer.write(self.sample)

    @property
    def node_id(self) -> str:
        return self.sample.node_id

    def update(self, *, state: str | None = None, detail: Mapping[str, Any] | None = None) -> None:
        """Write the announcement again with a new ``state`` and/or ``detail`` (nothing when unchanged)."""
        with self._lock:
            changes: dict[str, Any] = {}
            if state is not None and state != self.sample.state:
                changes["state"] = state
            if detail is not None:
                encoded = json.dumps(dict(detail), sort_keys=True)
                if encoded != self.sample.detail:
                    changes["detail"] = encoded
            if not changes or self._writer is None:
                return
            self.sample = dataclasses.replace(self.sample, **changes)
            self._writer.write(self.sample)

    def close(self) -> None:
        """Unregister the announcement: readers see it gone at once, not after the lease."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            # The participant may already be going away: the lease ends the announcement then.
            with contextlib.suppress(Exception):
                writer.unregister_instance(self.sample)


class AnnouncementBoard:
    """The live announcements of the domain (this process's own included, when it announces)."""

    def __init__(self, participant: DomainParticipant, lease_s: float = LEASE_S) -> None:
        self._reader: DataReader[CarbonNodeAnnouncementImpl] = DataReader(
            participant, Topic(participant, ANNOUNCEMENT_TOPIC, CarbonNodeAnnouncementImpl), qos=announcement_qos(lease_s)
        )
        self.condition = ReadCondition(self._reader, SampleState.NotRead | ViewState.Any | InstanceState.Any)
        """Triggers when an announcement arrives, changes or goes (attach it to a waitset)."""
        self._lock = threading.Lock()
        self._live: dict[str, CarbonNodeAnnouncementImpl] = {}
        self._node_of: dict[int, str] = {}  # instance handle -> node_id (a liveliness loss names the handle)

    def refresh(self) -> bool:
        """Read what changed since the last call; True when the set of live announcements changed."""
        with self._lock:
            before = dict(self._live)
            for sample in self._reader.take(N=256):
                info = sample.sample_info  # type: ignore[attr-defined]  # set by cyclonedds on every sample
                if info.instance_state != InstanceState.Alive:
                    node = self._node_of.pop(info.instance_handle, None)
                    if node is not None:
                        self._live.pop(node, None)
                elif info.valid_data and isinstance(sample, CarbonNodeAnnouncementImpl):
                    self._node_of[info.instance_handle] = sample.node_id
                    self._live[sample.node_id] = sample
            return before != self._live

    def live(self, role: Role | None = None) -> list[CarbonNodeAnnouncementImpl]:
        """The live announcements (of ``role`` when given), oldest process first (then by ``node_id``)."""
        self.refresh()
        with self._lock:
            found = [a for a in self._live.values() if role is None or a.role == role]
        return sorted(found, key=lambda a: (a.started_at_s, a.node_id))
