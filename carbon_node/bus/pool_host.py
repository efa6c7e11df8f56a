"""A measure host: serves measurement requests addressed to it over DDS, one window at a time.

:class:`MeasureHost` runs ``carbon-node serve-measurements``: the same measurement worker as a node
(any :class:`~carbon_node.measure.protocol.Measurer`), no SustainML topic at all. On a Cyclone DDS
participant of its own (``CARBON_NODE_MEASURE_HOST``) it

- announces itself (:mod:`carbon_node.bus.announce`, role ``measure_host``): its id, host name, hardware
  names, the power sources it can read, its version, ``idle`` or ``busy`` (``unavailable`` once its
  worker said it cannot measure here: torch or carbontracker missing; nodes then leave it out), and in
  ``detail`` its queue length, the measurements it served and its pid. The announcement is written once the request reader
  exists, so that a node never asks a host that cannot hear it, and it is unregistered on a clean stop;
- takes the requests whose ``host_id`` is its own and queues them (at most ``max_queue``; beyond, an
  ``error`` reply at once), checks every field (a peer may send anything: an invalid request gets an
  ``error`` reply, never an exception), and measures them one after the other on its measure thread
  (``carbon-host-measure``) with its own settings (:attr:`MeasureHost.template`: device, simulated power,
  model directories, limits) and the request's model, window and unsupported models;
- answers each with a reply carrying the worker's Measurement (status ``measured``), or ``rejected``
  (the model cannot be measured here: a path that does not exist on this host, an unsupported model),
  or ``error``;
- drops a queued request whose node gave it up (the request instance disposed or unregistered), and one
  whose ``timeout_s`` has passed while it waited; forgets a reply once its request instance is gone, and
  keeps at most :data:`MAX_REPLIES_KEPT` replies registered.

Stopping (:meth:`MeasureHost.stop`) answers the queued requests ``error`` at once (their nodes fall back
without waiting), lets the running window finish within the time given, then unregisters the
announcement and leaves the domain.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from carbon_node.bus.announce import Announcer, new_node_id
from carbon_node.bus.pool_endpoints import PoolEndpoints
from carbon_node.bus.pool_types import (
    REPLY_TOPIC,
    REQUEST_TOPIC,
    CarbonNodeMeasureReplyImpl,
    CarbonNodeMeasureRequestImpl,
    ReplyStatus,
    measurement_to_json,
)
from carbon_node.core import MAX_LIST_ITEMS, MAX_TEXT_CHARS
from carbon_node.measure.protocol import MeasureError, Measurer, MeasureSpec, ModelRejected

__all__ = ["HOST_PARTICIPANT_NAME", "MAX_REPLIES_KEPT", "MeasureHost", "check_request"]

log = structlog.get_logger(__name__)

HOST_PARTICIPANT_NAME = "CARBON_NODE_MEASURE_HOST"

MAX_REPLIES_KEPT = 256
"""Replies kept registered (TRANSIENT_LOCAL) for nodes that have not taken them yet; older ones are
unregistered (their node gave up long ago)."""

MAX_WINDOW_S = 3600.0
MAX_TIMEOUT_S = 86400.0
_POLL_S = 0.5
_HANDLES_KEPT = 8192
"""Request instances remembered (to read a later "gone" notice); the oldest are forgotten first."""


def check_request(request: CarbonNodeMeasureRequestImpl) -> str | None:
    """What is wrong with a request (one line), or None when it can be served."""
    if not request.model.strip():
        return "model is empty"
    if len(request.model) > MAX_TEXT_CHARS:
        return f"model is {len(request.model)} characters, over {MAX_TEXT_CHARS}"
    if not (math.isfinite(request.window_s) and 0 < request.window_s <= MAX_WINDOW_S):
        return f"window_s is {request.window_s!r}; expected a number of seconds in (0, {MAX_WINDOW_S:g}]"
    if not (math.isfinite(request.timeout_s) and 0 < request.timeout_s <= MAX_TIMEOUT_S):
        return f"timeout_s is {request.timeout_s!r}; expected a number of seconds in (0, {MAX_TIMEOUT_S:g}]"
    if len(request.unsupported_models) > MAX_LIST_ITEMS:
        return f"unsupported_models has {len(request.unsupported_models)} entries, over {MAX_LIST_ITEMS}"
    if any(len(item) > MAX_TEXT_CHARS for item in request.unsupported_models):
        return f"an unsupported_models entry is over {MAX_TEXT_CHARS} characters"
    return None


@dataclass
class _Queued:
    request: CarbonNodeMeasureRequestImpl
    received_s: float

    @property
    def key(self) -> tuple[str, str]:
        return (self.request.request_id, self.request.host_id)


class MeasureHost:
    """See the module docstring.

    ``template`` is the MeasureSpec of this host's settings (its ``model``, ``window_s`` and
    ``unsupported_models`` are replaced per request); ``hardware`` and ``power_sources`` are announced;
    ``heartbeat`` is called by the host's DDS thread at every wake-up (at least every 0.5 s).
    """

    def __init__(
        self,
        measurer: Measurer,
        *,
        domain_id: int,
        template: MeasureSpec,
        hardware: Sequence[str] = (),
        power_sources: Sequence[str] = (),
        host_id: str | None = None,
        max_queue: int = 64,
        detail: Mapping[str, Any] | None = None,
        heartbeat: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.measurer = measurer
        self.domain_id = domain_id
        self.template = template
        self.hardware = tuple(hardware)
        self.power_sources = tuple(power_sources)
        self.host_id = host_id or new_node_id()
        self.max_queue = max_queue
        self._detail = dict(detail or {})
        self._heartbeat = heartbeat
        self._clock = clock
        self._changed = threading.Condition()
        self._queue: deque[_Queued] = deque()
        self._running: _Queued | None = None
        self._replied: OrderedDict[tuple[str, str], CarbonNodeMeasureReplyImpl] = OrderedDict()
        self._handles: OrderedDict[int, tuple[str, str]] = OrderedDict()
        self._open = False
        self._endpoints: PoolEndpoints[CarbonNodeMeasureRequestImpl, CarbonNodeMeasureReplyImpl] | None = None
        self._announcer: Announcer | None = None
        self._threads: list[threading.Thread] = []
        self.counts = {"measured": 0, "rejected": 0, "error": 0, "dropped": 0}
        """Replies sent per status, and requests dropped unanswered (given up by their node, expired)."""

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Join the domain, start serving, then announce this host (returns at once)."""
        self._endpoints = PoolEndpoints(
            self.domain_id,
            HOST_PARTICIPANT_NAME,
            (REQUEST_TOPIC, CarbonNodeMeasureRequestImpl),
            (REPLY_TOPIC, CarbonNodeMeasureReplyImpl),
        )
        self._open = True
        self._threads = [
            threading.Thread(target=self._serve_bus, name="carbon-host-bus", daemon=True),
            threading.Thread(target=self._serve_measurements, name="carbon-host-measure", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        assert self._endpoints.participant is not None
        self._announcer = Announcer(
            self._endpoints.participant,
            role="measure_host",
            node_id=self.host_id,
            state="idle",
            hardware=self.hardware,
            power_sources=self.power_sources,
            detail=self._announced_detail(),
        )
        log.info("host.serving", host=self.host_id, domain_id=self.domain_id, hardware=list(self.hardware))

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Answer the queued requests ``error``, let the running measurement finish within ``timeout_s``
        (then abort it, when the measurer can), unregister the announcement, leave the domain. True when
        nothing had to be aborted."""
        with self._changed:
            if not self._open:
                return True
            self._open = False
            queued = list(self._queue)
            self._queue.clear()
            self._changed.notify_all()
        for item in queued:
            self._reply(item, "error", "the measure host is stopping")
        deadline = time.monotonic() + timeout_s
        with self._changed:
            clean = self._changed.wait_for(lambda: self._running is None, timeout=timeout_s)
        if not clean:
            abort = getattr(self.measurer, "abort", None)
            if callable(abort):
                abort()
        if self._announcer is not None:
            self._announcer.close()
        if self._endpoints is not None:
            self._endpoints.wake()
        for thread in self._threads:
            thread.join(max(0.1, min(2.0, deadline - time.monotonic())))
        if self._endpoints is not None:
            self._endpoints.close()
        log.info("host.stopped", host=self.host_id, clean=clean, **self.stats())
        return clean

    def stats(self) -> dict[str, int]:
        with self._changed:
            return {**self.counts, "queued": len(self._queue), "running": int(self._running is not None)}

    # -- the DDS thread --------------------------------------------------------------------------

    def _serve_bus(self) -> None:
        endpoints = self._endpoints
        assert endpoints is not None
        while self._open:
            if self._heartbeat is not None:
                self._heartbeat()
            try:
                endpoints.wait(_POLL_S)
                if self._open:
                    self._take_requests(endpoints)
            except Exception:  # keep serving: one bad sample must not end the host
                log.exception("host.bus_step_failed")
                time.sleep(0.05)

    def _take_requests(self, endpoints: PoolEndpoints[CarbonNodeMeasureRequestImpl, CarbonNodeMeasureReplyImpl]) -> None:
        for received in endpoints.take():
            request = received.sample
            if request is None or not received.alive:
                key = self._handles.pop(received.instance_handle, None)
                if key is not None:
                    self._given_up(key)
                continue
            if request.host_id != self.host_id:
                continue  # addressed to another host
            item = _Queued(request, self._clock())
            self._handles[received.instance_handle] = item.key
            while len(self._handles) > _HANDLES_KEPT:
                self._handles.popitem(last=False)
            problem = check_request(request)
            if problem is not None:
                log.warning("host.invalid_request", request_id=request.request_id[:200], problem=problem)
                self._reply(item, "error", f"invalid request: {problem}")
                continue
            with self._changed:
                full = len(self._queue) >= self.max_queue
                if not full:
                    self._queue.append(item)
                    self._changed.notify_all()
            if full:
                self._reply(item, "error", f"the measure host's queue is full ({self.max_queue} requests)")
            else:
                self._announce()

    def _given_up(self, key: tuple[str, str]) -> None:
        """The node no longer wants ``key``: drop it from the queue, forget its reply."""
        with self._changed:
            before = len(self._queue)
            self._queue = deque(item for item in self._queue if item.key != key)
            dropped = before - len(self._queue)
            reply = self._replied.pop(key, None)
            self.counts["dropped"] += dropped
        if dropped:
            log.info("host.request_given_up", request_id=key[0][:200])
            self._announce()
        if reply is not None and self._endpoints is not None:
            self._endpoints.unregister(reply)

    # -- the measure thread ----------------------------------------------------------------------

    def _serve_measurements(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._queue) or not self._open, timeout=_POLL_S)
                if not self._open:
                    return
                if not self._queue:
                    continue
                item = self._running = self._queue.popleft()
            try:
                self._announce()
                self._measure(item)
            except Exception:  # answered below if it was not; the thread goes on
                log.exception("host.measure_failed", request_id=item.request.request_id[:200])
                self._reply(item, "error", "internal error on the measure host")
            finally:
                with self._changed:
                    self._running = None
                    self._changed.notify_all()
                self._announce()

    def _measure(self, item: _Queued) -> None:
        request = item.request
        waited_s = self._clock() - item.received_s
        if waited_s >= request.timeout_s:
            with self._changed:
                self.counts["dropped"] += 1
            log.info("host.request_expired", request_id=request.request_id[:200], waited_s=round(waited_s, 3))
            return
        spec = dataclasses.replace(
            self.template,
            model=request.model,
            window_s=float(request.window_s),
            unsupported_models=tuple(item.strip().lower() for item in request.unsupported_models if item.strip()),
        )
        try:
            measurement = self.measurer.measure(spec)
        except ModelRejected as exc:
            self._reply(item, "rejected", str(exc))
            return
        except MeasureError as exc:
            self._reply(item, "error", str(exc))
            return
        self._reply(item, "measured", "", measurement_to_json(measurement))

    # -- writing ---------------------------------------------------------------------------------

    def _reply(self, item: _Queued, status: ReplyStatus, message: str, measurement: str = "") -> None:
        request = item.request
        reply = CarbonNodeMeasureReplyImpl(
            request_id=request.request_id,
            host_id=self.host_id,
            status=status,
            message=message,
            measurement=measurement,
            queued_s=max(0.0, self._clock() - item.received_s),
        )
        endpoints = self._endpoints
        if endpoints is None:
            return
        try:
            endpoints.writer.write(reply)
        except Exception as exc:  # the domain is going away: the node falls back on its own
            log.warning("host.reply_failed", request_id=request.request_id[:200], error=str(exc)[:300])
            return
        log.info("host.replied", request_id=request.request_id[:200], status=status, message=message[:300] or None)
        with self._changed:
            self.counts[status] += 1
            self._replied[item.key] = reply
            old = self._replied.popitem(last=False)[1] if len(self._replied) > MAX_REPLIES_KEPT else None
        if old is not None:
            endpoints.unregister(old)

    def _announced_detail(self) -> dict[str, Any]:
        detail = {**self._detail, "pid": os.getpid(), "queue": len(self._queue), "served": self.counts["measured"]}
        unavailable = getattr(self.measurer, "unavailable", None)
        if unavailable:
            detail["unavailable"] = str(unavailable)[:500]
        return detail

    def _announce(self) -> None:
        announcer = self._announcer
        if announcer is None:
            return
        with self._changed:
            state = "busy" if self._running is not None or self._queue else "idle"
            detail = self._announced_detail()
        if "unavailable" in detail:  # installed without the measure extra: nodes must not choose it
            state = "unavailable"
        try:
            announcer.update(state=state, detail=detail)
        except Exception as exc:  # leaving the domain: the lease ends the announcement
            log.warning("host.announce_failed", error=str(exc)[:300])
