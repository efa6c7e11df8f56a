"""The node's end of the measurement pool: the live measure hosts, requests out, replies in, over DDS.

:class:`PoolClient` joins the SustainML domain with a Cyclone DDS participant of its own
(``CARBON_NODE_POOL``; the node's SustainML bus, Cyclone or upstream, is untouched) and keeps one thread
(``carbon-pool``) that:

- reads the announcements (:mod:`carbon_node.bus.announce`) and keeps the live ``measure_host`` ones
  (:meth:`PoolClient.hosts`); a host that dies or loses the network is gone within the liveliness lease
  (2 s), and every request waiting on it ends at once as ``gone``;
- takes the replies and hands each to the request waiting for it, matched by key (request id and host
  id); a reply to this node that no request waits for any more (abandoned: timed out, its host declared
  gone, the node stopping) is dropped and counted (:attr:`PoolClient.late_replies`); replies to other
  nodes (their request ids start with their own node id) are skipped.

:meth:`PoolClient.ask` writes one request and waits for its outcome, at most its ``timeout_s``; whatever
the outcome, the request instance is then disposed and unregistered, which tells the host to drop it
if still queued and to forget its reply. Nothing a peer sends can raise out of the thread or make a wait
longer than its bound.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import structlog

from carbon_node.bus.announce import new_node_id
from carbon_node.bus.pool_endpoints import PoolEndpoints
from carbon_node.bus.pool_routing import HostView, host_view
from carbon_node.bus.pool_types import REPLY_TOPIC, REQUEST_TOPIC, CarbonNodeMeasureReplyImpl, CarbonNodeMeasureRequestImpl

__all__ = ["POOL_PARTICIPANT_NAME", "Outcome", "PoolClient"]

log = structlog.get_logger(__name__)

POOL_PARTICIPANT_NAME = "CARBON_NODE_POOL"
"""Entity name of the node's pool participant (not the SustainML node's: the orchestrator ignores it)."""

_POLL_S = 0.5
"""Longest wait of the pool thread between two looks at the board (a lost liveliness also wakes it)."""


@dataclass(frozen=True)
class Outcome:
    """How one request ended: ``reply`` (``reply`` set), ``gone`` (its host's announcement went: liveliness
    lost or unregistered), ``timeout``, ``aborted`` (:meth:`PoolClient.cancel_all`) or ``unsent``."""

    kind: Literal["reply", "gone", "timeout", "aborted", "unsent"]
    elapsed_s: float
    reply: CarbonNodeMeasureReplyImpl | None = None
    detail: str = ""


class _Waiting:
    """One request waiting for its outcome."""

    def __init__(self, host_id: str) -> None:
        self.host_id = host_id
        self.done = threading.Event()
        self.kind: Literal["reply", "gone", "aborted"] | None = None
        self.reply: CarbonNodeMeasureReplyImpl | None = None

    def resolve(self, kind: Literal["reply", "gone", "aborted"], reply: CarbonNodeMeasureReplyImpl | None = None) -> None:
        if not self.done.is_set():
            self.kind, self.reply = kind, reply
            self.done.set()


class PoolClient:
    """See the module docstring. ``endpoints`` replaces the DDS entities (tests)."""

    def __init__(
        self,
        domain_id: int,
        *,
        node_id: str | None = None,
        endpoints: PoolEndpoints[CarbonNodeMeasureReplyImpl, CarbonNodeMeasureRequestImpl] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node_id = node_id or new_node_id()
        self._endpoints = endpoints or PoolEndpoints(
            domain_id,
            POOL_PARTICIPANT_NAME,
            (REPLY_TOPIC, CarbonNodeMeasureReplyImpl),
            (REQUEST_TOPIC, CarbonNodeMeasureRequestImpl),
        )
        self._clock = clock
        self._lock = threading.Lock()
        self._live: dict[str, HostView] = {}
        self._waiting: dict[tuple[str, str], _Waiting] = {}
        self._numbers = itertools.count(1)
        self._open = True
        self.started_s = clock()
        self.late_replies = 0
        """Replies no request waited for any more (dropped)."""
        self._thread = threading.Thread(target=self._serve, name="carbon-pool", daemon=True)
        self._thread.start()

    # -- queries ---------------------------------------------------------------------------------

    def hosts(self) -> list[HostView]:
        """The live measure hosts, oldest first (as of the pool thread's last look, at most 0.5 s ago)."""
        with self._lock:
            return sorted(self._live.values(), key=lambda h: (h.started_at_s, h.host_id))

    def is_live(self, host_id: str) -> bool:
        with self._lock:
            return host_id in self._live

    def in_flight(self) -> int:
        with self._lock:
            return len(self._waiting)

    # -- requests --------------------------------------------------------------------------------

    def ask(self, host_id: str, *, model: str, window_s: float, unsupported_models: Sequence[str], timeout_s: float) -> Outcome:
        """Ask ``host_id`` to measure ``model`` and wait for the outcome, at most ``timeout_s`` seconds."""
        started = self._clock()
        request = CarbonNodeMeasureRequestImpl(
            request_id=f"{self.node_id}/{next(self._numbers)}",
            host_id=host_id,
            node_id=self.node_id,
            model=model,
            window_s=float(window_s),
            unsupported_models=list(unsupported_models),
            timeout_s=float(timeout_s),
        )
        key = (request.request_id, host_id)
        waiting = _Waiting(host_id)
        with self._lock:
            if not self._open:
                return Outcome("aborted", 0.0, detail="the pool client is closed")
            if host_id not in self._live:
                return Outcome("gone", 0.0, detail="not live when the request was to be sent")
            self._waiting[key] = waiting
        try:
            try:
                self._endpoints.writer.write(request)
            except Exception as exc:  # a full or closing writer: the request never left
                return Outcome("unsent", self._clock() - started, detail=f"{type(exc).__name__}: {exc}")
            if not waiting.done.wait(max(0.0, timeout_s)):
                return Outcome("timeout", self._clock() - started)
            assert waiting.kind is not None
            return Outcome(waiting.kind, self._clock() - started, waiting.reply)
        finally:
            with self._lock:
                self._waiting.pop(key, None)
            self._endpoints.unregister(request, dispose=True)

    def cancel_all(self, detail: str = "aborted") -> int:
        """End every waiting request as ``aborted`` (a node stopping); their late replies are dropped."""
        with self._lock:
            waiting = list(self._waiting.values())
        for entry in waiting:
            entry.resolve("aborted")
        if waiting:
            log.info("pool.requests_aborted", count=len(waiting), detail=detail)
        return len(waiting)

    def close(self) -> None:
        """Abort the waiting requests, stop the thread and leave the domain; idempotent."""
        with self._lock:
            if not self._open:
                return
            self._open = False
        self.cancel_all("the pool client is closing")
        self._endpoints.wake()
        self._thread.join(2.0)
        self._endpoints.close()

    # -- the pool thread -------------------------------------------------------------------------

    def _serve(self) -> None:
        while self._open:
            try:
                self._endpoints.wait(_POLL_S)
                if not self._open:
                    return
                self._look()
            except Exception:  # keep serving: a bad sample or a DDS hiccup must not end the pool thread
                log.exception("pool.client_step_failed")
                time.sleep(0.05)

    def _look(self) -> None:
        board = self._endpoints.board
        try:
            board.refresh()
        except Exception as exc:  # an undecodable announcement: that batch is lost, the next one is read
            log.warning("pool.announcements_unreadable", error=f"{type(exc).__name__}: {exc}"[:300])
        live = {a.node_id: host_view(a) for a in board.live("measure_host")}
        with self._lock:
            appeared = live.keys() - self._live.keys()
            vanished = self._live.keys() - live.keys()
            self._live = live
            gone = [w for w in self._waiting.values() if w.host_id not in live]
        for host_id in sorted(appeared):
            log.info("pool.host_live", host=host_id, hardware=list(live[host_id].hardware))
        for host_id in sorted(vanished):
            log.warning("pool.host_gone", host=host_id)
        for entry in gone:
            entry.resolve("gone")
        mine = f"{self.node_id}/"
        for received in self._endpoints.take():
            reply = received.sample
            if reply is None or not received.alive:
                continue  # the host unregistered a reply (we disposed its request): nothing to do
            if not reply.request_id.startswith(mine):
                continue  # a reply to another node that uses the same hosts
            with self._lock:
                found = self._waiting.get((reply.request_id, reply.host_id))
            if found is None:
                self.late_replies += 1
                log.info("pool.late_reply_dropped", request_id=reply.request_id[:200], host=reply.host_id[:200])
                continue
            found.resolve("reply", reply)
