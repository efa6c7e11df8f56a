"""Which live measure host measures a task: a pure choice over the hosts' announcements.

:func:`choose_host` takes the task's ``hw_description`` and the live measure hosts (their announced
hardware names, state and start time) and picks one, or none, saying why in words. The order:

1. hosts whose hardware matches the description (:func:`carbon_node.measure.hardware.match_quality`),
   an exact match before a match by words; hosts the node avoids (one that did not answer in time, for
   a while) and hosts that do not serve (state ``unavailable``) are left out;
2. then the fewest measurements this node has queued on the host (spreads distinct models over hosts of
   the same hardware), one fewer counted for the host that measured this model last for this node (its
   measurement cache may answer at once), which also wins a tie;
3. then ``idle`` before ``busy`` (another node may use it), the oldest process, the smallest id.

No I/O, no clock: the pool measurer (:mod:`carbon_node.bus.pool_measurer`) passes everything in.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from carbon_node.bus.announce import CarbonNodeAnnouncementImpl
from carbon_node.measure.hardware import EXACT, MAX_NAME_CHARS, NO_MATCH, match_quality

__all__ = ["SERVING_STATES", "Choice", "HostView", "choose_host", "host_view"]

MAX_HOST_NAMES = 64
"""Hardware names of one host that the node considers (a peer may announce any number)."""

SERVING_STATES = frozenset({"idle", "busy"})
"""Announced states of a host that takes requests (``unavailable``: its worker cannot measure)."""

_LISTED_HOSTS = 5
"""Hosts named in a "none matches" reason (the rest are counted)."""
_SHOWN_CHARS = 120
"""Longest hw_description or hardware name quoted in a reason."""


@dataclass(frozen=True)
class HostView:
    """What the node knows of a live measure host (from its announcement)."""

    host_id: str
    host_name: str
    hardware: tuple[str, ...]
    state: str = "idle"
    started_at_s: float = 0.0
    power_sources: tuple[str, ...] = ()
    version: str = ""


def host_view(announcement: CarbonNodeAnnouncementImpl) -> HostView:
    """The :class:`HostView` of a ``measure_host`` announcement."""
    return HostView(
        host_id=announcement.node_id,
        host_name=announcement.host_name,
        hardware=tuple(str(name)[:MAX_NAME_CHARS] for name in announcement.hardware[:MAX_HOST_NAMES]),
        state=announcement.state,
        started_at_s=float(announcement.started_at_s),
        power_sources=tuple(str(name)[:MAX_NAME_CHARS] for name in announcement.power_sources[:MAX_HOST_NAMES]),
        version=announcement.version,
    )


@dataclass(frozen=True)
class Choice:
    """The host chosen (None: measure locally), the hardware name that matched, and why."""

    host: HostView | None
    hardware: str
    reason: str


def _best(description: str, host: HostView) -> tuple[int, str]:
    quality, name = NO_MATCH, ""
    for candidate in host.hardware:
        found = match_quality(description, candidate)
        if found > quality:
            quality, name = found, candidate
    return quality, name


def _short(text: str) -> str:
    """``text`` cut to :data:`_SHOWN_CHARS` characters for a reason (a description may be long)."""
    return text if len(text) <= _SHOWN_CHARS else f"{text[:_SHOWN_CHARS]}..."


def _listing(hosts: Iterable[HostView]) -> str:
    items = [f"{h.host_id} ({_short(', '.join(h.hardware)) or 'no hardware names'})" for h in hosts]
    more = f" and {len(items) - _LISTED_HOSTS} more" if len(items) > _LISTED_HOSTS else ""
    return "; ".join(items[:_LISTED_HOSTS]) + more


def choose_host(
    description: str,
    hosts: Iterable[HostView],
    *,
    queued: Mapping[str, int] | None = None,
    avoid: Collection[str] = (),
    last_host: str | None = None,
) -> Choice:
    """The host that measures a task for ``description`` (see the module docstring).

    ``queued``: measurements this node has queued or running per host id; ``avoid``: host ids left out;
    ``last_host``: the host that measured this model last for this node.
    """
    live = list(hosts)
    if not description.strip():
        return Choice(None, "", "the task names no hardware (hw_description is empty)")
    if not live:
        return Choice(None, "", "no live measure host")
    queued = queued or {}
    ranked: list[tuple[tuple[int, int, int, int, float, str], HostView, str]] = []
    for host in live:
        quality, name = _best(description, host)
        if quality == NO_MATCH or host.host_id in avoid or host.state not in SERVING_STATES:
            continue
        affinity = host.host_id == last_host
        rank = (
            -quality,
            queued.get(host.host_id, 0) - int(affinity),
            0 if affinity else 1,
            0 if host.state == "idle" else 1,
            host.started_at_s,
            host.host_id,
        )
        ranked.append((rank, host, name))
    if not ranked:
        avoided = [h for h in live if h.host_id in avoid and _best(description, h)[0] > NO_MATCH]
        if avoided:
            return Choice(None, "", f"the measure hosts with this hardware did not answer in time lately: {_listing(avoided)}")
        idle = [h for h in live if h.state not in SERVING_STATES and _best(description, h)[0] > NO_MATCH]
        if idle:
            return Choice(None, "", f"the measure hosts with this hardware cannot measure (unavailable): {_listing(idle)}")
        return Choice(None, "", f"no live measure host has hardware matching {_short(description)!r} (live: {_listing(live)})")
    rank, host, name = min(ranked, key=lambda item: item[0])
    how = "equal to" if -rank[0] == EXACT else "matching"
    return Choice(host, name, f"measure host {host.host_id} has hardware {name!r}, {how} hw_description {_short(description)!r}")
