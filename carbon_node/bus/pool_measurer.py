"""The node's placing measurer: each measurement on a live measure host with the task's hardware, else locally.

:class:`PoolMeasurer` implements :class:`~carbon_node.measure.placement.PlacingMeasurer` for the engine:

- :meth:`~PoolMeasurer.place` (on the bus thread, when the task is routed) chooses among the live hosts
  of the :class:`~carbon_node.bus.pool_client.PoolClient` with :func:`~carbon_node.bus.pool_routing.choose_host`;
  the task then waits in that host's queue (the dispatcher's lane for it), or in the node's own lane when
  no live host has its hardware;
- :meth:`~PoolMeasurer.measure_placed` (on that lane) sends the request and waits for the host's
  :class:`~carbon_node.measure.protocol.Measurement`, at most the task timeout (``task_timeout_s``) plus
  :data:`REPLY_GRACE_S`.

What a failing host costs (the task is answered either way, once):

| the host ... | then |
|---|---|
| is gone before the request is sent, or during it (liveliness lost: within 2 s) | fallback |
| does not answer within the timeout | fallback; the host is avoided for :data:`AVOID_S` |
| answers that it cannot measure the model (a path absent there, a load error) | fallback |
| sends a measurement that does not decode | fallback |

The fallback (``pool_fallback``) is ``local``: the node's own worker measures the task and
``measured_on.reason`` says what failed; or ``error``: the task is answered ``mode: error`` naming the
host. A host that comes back (a new process, a new id) is chosen again as soon as it is announced. A
reply that comes after its request was given up is dropped by the client.

Measurement caches are per host: each host's worker keeps its own (keyed by the model's identity there),
the node's worker its own; the placement prefers the host that measured a model last, so that a
repeated model is answered from that host's cache.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Literal

import structlog

from carbon_node.bus.pool_client import Outcome, PoolClient
from carbon_node.bus.pool_routing import choose_host
from carbon_node.bus.pool_types import measurement_from_json
from carbon_node.measure.placement import (
    LOCAL_QUEUE,
    MeasuredOn,
    Placement,
    PlacementFailed,
    local_measured_on,
)
from carbon_node.measure.protocol import Measurement, Measurer, MeasureSpec, WorkerCrashed

__all__ = ["AVOID_S", "REPLY_GRACE_S", "PoolMeasurer"]

log = structlog.get_logger(__name__)

REPLY_GRACE_S = 5.0
"""Seconds the node waits for a reply beyond the task timeout it sends: the host's own worker gives up at
that timeout and still answers (an error), which then arrives in time."""

AVOID_S = 60.0
"""Seconds a host that did not answer in time is left out of the placement."""

_AFFINITY_MODELS = 1024
"""Models whose last host the measurer remembers (oldest forgotten first)."""

Fallback = Literal["local", "error"]


class PoolMeasurer:
    """See the module docstring.

    ``local`` measures on the node's own worker; ``hardware`` is what the node's own host answers to;
    ``task_timeout_s`` is read for every request (a reload changes it); ``on_measurement`` sees each
    measurement a host made (metrics); ``reply_grace_s``, ``avoid_s``: :data:`REPLY_GRACE_S`, :data:`AVOID_S`.
    Until :meth:`connect` is given a client, every task is local.
    """

    def __init__(
        self,
        local: Measurer,
        *,
        hardware: Sequence[str] = (),
        fallback: Fallback = "local",
        task_timeout_s: Callable[[], float] = lambda: 75.0,
        on_measurement: Callable[[Measurement], None] | None = None,
        reply_grace_s: float = REPLY_GRACE_S,
        avoid_s: float = AVOID_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.local = local
        self.reply_grace_s = reply_grace_s
        self.avoid_s = avoid_s
        self.hardware = tuple(hardware)
        self.fallback = fallback
        self._timeout_s = task_timeout_s
        self._on_measurement = on_measurement
        self._clock = clock
        self.client: PoolClient | None = None
        self._lock = threading.Lock()
        self._queued: dict[str, int] = {}
        self._avoid_until: dict[str, float] = {}
        self._last_host: OrderedDict[str, str] = OrderedDict()
        self.counts = {"remote": 0, "fallback": 0, "error": 0}
        """Measurements made by a host, moved to the node after a host failed, answered as errors."""

    def connect(self, client: PoolClient) -> None:
        """Use ``client``'s hosts from now on."""
        self.client = client

    # -- placement (bus thread) -----------------------------------------------------------------

    def place(self, hardware: str, model: str) -> Placement:
        client = self.client
        if client is None:
            reason = "the measure host pool is not connected"
            return Placement(LOCAL_QUEUE, local_measured_on(hardware, self.hardware, reason), hardware)
        now = self._clock()
        with self._lock:
            queued = dict(self._queued)
            avoid = {host for host, until in self._avoid_until.items() if until > now}
            last = self._last_host.get(model)
        choice = choose_host(hardware, client.hosts(), queued=queued, avoid=avoid, last_host=last)
        if choice.host is None:
            return Placement(LOCAL_QUEUE, local_measured_on(hardware, self.hardware, choice.reason), hardware)
        with self._lock:
            self._queued[choice.host.host_id] = self._queued.get(choice.host.host_id, 0) + 1
        return Placement(choice.host.host_id, MeasuredOn(choice.host.host_id, choice.hardware, True, choice.reason), hardware)

    # -- measuring (a lane) ---------------------------------------------------------------------

    def measure(self, spec: MeasureSpec) -> Measurement:
        """A measurement on the node's own worker (the plain :class:`Measurer` protocol)."""
        return self.local.measure(spec)

    def measure_placed(self, spec: MeasureSpec, placement: Placement) -> tuple[Measurement, MeasuredOn]:
        if placement.local:
            return self.local.measure(spec), placement.measured_on
        try:
            return self._remote(spec, placement)
        finally:
            with self._lock:
                left = self._queued.get(placement.queue, 0) - 1
                if left > 0:
                    self._queued[placement.queue] = left
                else:
                    self._queued.pop(placement.queue, None)

    def _remote(self, spec: MeasureSpec, placement: Placement) -> tuple[Measurement, MeasuredOn]:
        host = placement.queue
        client = self.client
        if client is None or not client.is_live(host):
            return self._fall_back(spec, placement, f"measure host {host} went away before the measurement (liveliness lost)")
        timeout_s = float(self._timeout_s()) + self.reply_grace_s
        outcome = client.ask(
            host, model=spec.model, window_s=spec.window_s, unsupported_models=spec.unsupported_models, timeout_s=timeout_s
        )
        if outcome.kind == "reply" and outcome.reply is not None:
            return self._answered(spec, placement, outcome)
        if outcome.kind == "aborted":
            raise WorkerCrashed(f"the measurement of {spec.model!r} on measure host {host} was aborted")
        if outcome.kind == "timeout":
            with self._lock:
                self._avoid_until[host] = self._clock() + self.avoid_s
            why = f"measure host {host} did not answer within {timeout_s:g} s (left out for {self.avoid_s:g} s)"
        elif outcome.kind == "gone":
            why = f"measure host {host} went away during the measurement (liveliness lost after {outcome.elapsed_s:.1f} s)"
        else:
            why = f"the request to measure host {host} could not be sent ({outcome.detail})"
        return self._fall_back(spec, placement, why)

    def _answered(self, spec: MeasureSpec, placement: Placement, outcome: Outcome) -> tuple[Measurement, MeasuredOn]:
        host, reply = placement.queue, outcome.reply
        assert reply is not None
        if reply.status != "measured":
            return self._fall_back(spec, placement, f"measure host {host} could not measure it: {reply.message[:500]}")
        try:
            measurement = measurement_from_json(reply.measurement)
        except ValueError as exc:
            return self._fall_back(spec, placement, f"measure host {host} sent an invalid measurement ({str(exc)[:300]})")
        with self._lock:
            self.counts["remote"] += 1
            self._last_host.pop(spec.model, None)
            self._last_host[spec.model] = host
            while len(self._last_host) > _AFFINITY_MODELS:
                self._last_host.popitem(last=False)
        if self._on_measurement is not None:
            try:
                self._on_measurement(measurement)
            except Exception:  # metrics must not fail a task
                log.exception("pool.on_measurement_failed")
        return measurement, placement.measured_on

    def _fall_back(self, spec: MeasureSpec, placement: Placement, why: str) -> tuple[Measurement, MeasuredOn]:
        log.warning("pool.host_failed", host=placement.queue, model=spec.model[:200], reason=why, fallback=self.fallback)
        if self.fallback == "error":
            with self._lock:
                self.counts["error"] += 1
            where = MeasuredOn(placement.queue, placement.measured_on.hardware, placement.measured_on.matched, why)
            raise PlacementFailed(f"{why}; not measured elsewhere (pool_fallback is error)", where)
        with self._lock:
            self.counts["fallback"] += 1
        measurement = self.local.measure(spec)  # the worker's lock keeps it apart from the local lane's windows
        return measurement, local_measured_on(placement.hardware_wanted, self.hardware, f"{why}: measured locally")

    # -- service ---------------------------------------------------------------------------------

    def abort(self) -> None:
        """Abort the running measurements: the local worker's, and every request waiting on a host (stop)."""
        if self.client is not None:
            self.client.cancel_all("the node is stopping")
        abort = getattr(self.local, "abort", None)
        if callable(abort):
            abort()

    def close(self) -> None:
        """Leave the pool (the local measurer is its owner's to close)."""
        client, self.client = self.client, None
        if client is not None:
            client.close()

    def stats(self) -> dict[str, float]:
        """Numbers for metrics: live hosts, measurements by hosts, fallbacks, errors, late replies."""
        client = self.client
        with self._lock:
            counts = dict(self.counts)
        return {
            "pool_hosts": float(len(client.hosts())) if client is not None else 0.0,
            "pool_remote_measurements": float(counts["remote"]),
            "pool_fallbacks": float(counts["fallback"]),
            "pool_errors": float(counts["error"]),
            "pool_late_replies": float(client.late_replies) if client is not None else 0.0,
        }

    def describe(self) -> dict[str, Any]:
        """The pool as ``describe`` and ``doctor`` show it: this node's id, the live hosts, the counts."""
        client = self.client
        hosts = client.hosts() if client is not None else []
        return {
            "enabled": True,
            "connected": client is not None,
            "node_id": client.node_id if client is not None else None,
            "fallback": self.fallback,
            "local_hardware": list(self.hardware),
            "hosts": [
                {
                    "host_id": h.host_id,
                    "host_name": h.host_name,
                    "hardware": list(h.hardware),
                    "power_sources": list(h.power_sources),
                    "state": h.state,
                    "version": h.version,
                }
                for h in hosts
            ],
            "stats": self.stats(),
        }
