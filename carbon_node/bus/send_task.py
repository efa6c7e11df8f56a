"""``carbon-node send-task``: one task sent as the orchestrator would, its answer waited for and shown.

:func:`send_task` opens an :class:`~carbon_node.bus.orchestrator.Orchestrator` for one task: it
converts the HW latency to the unit the node reads (asking the node, :func:`node_latency_unit`),
publishes the three inputs, says early when no carbon node is seen on the domain
(:class:`~carbon_node.bus.orchestrator.NodeNotSeen`), and waits for the output within its time limit.
:func:`format_result` shows the answer as JSON or as aligned lines with units.
"""

from __future__ import annotations

import itertools
import json
import textwrap
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from carbon_node.bus.orchestrator import Orchestrator, OrchestratorTimeout, new_task_id
from carbon_node.core import LATENCY_UNIT_S, TaskId, decode_extra_data
from carbon_node.wire import HWResourceImpl, MLModelImpl, UserInputImpl

__all__ = ["SendResult", "format_result", "node_latency_unit", "send_task"]

_transactions = itertools.count(1)


@dataclass(frozen=True)
class SendResult:
    """What the carbon node answered to one task."""

    task_id: str
    carbon_g: float
    energy_kwh: float
    grid_ci_g_per_kwh: float
    extra_data: Mapping[str, Any]
    statuses: list[str]
    round_trip_s: float
    """Seconds from writing the inputs to receiving the output."""
    latency_sent: float = 0.0
    """``HWResource.latency`` as written, in the node's unit (see ``latency_note``)."""
    latency_note: str = ""
    """How ``latency_sent`` was obtained when it was converted (the node's unit and how it is known)."""


UPSTREAM_LATENCY_UNIT = "h"
"""The unit upstream nodes read ``HWResource.latency`` in (and this node's default)."""

DESCRIBE_TIMEOUT_S = 3.0
"""Seconds :func:`node_latency_unit` waits for the node's describe answer."""


def node_latency_unit(orchestrator: Orchestrator, timeout_s: float) -> tuple[str, str]:
    """The unit the carbon node reads ``HWResource.latency`` in, and how that is known.

    Waits up to ``timeout_s`` for the node's status (so that it has been discovered), then asks it
    ``{"command": "describe"}`` (at most :data:`DESCRIBE_TIMEOUT_S`). A node that does not describe
    itself (the upstream node) is assumed to read hours, upstream's unit. Raises
    :class:`OrchestratorTimeout` when no carbon node is seen at all.
    """
    orchestrator.wait_node(timeout_s)
    try:
        response = orchestrator.request_configuration(
            '{"command": "describe"}', transaction_id=next(_transactions), timeout_s=min(timeout_s, DESCRIBE_TIMEOUT_S)
        )
        described = json.loads(response.configuration) if response.success else {}
    except (OrchestratorTimeout, json.JSONDecodeError):
        described = {}
    unit = described.get("settings", {}).get("latency_unit") if isinstance(described, dict) else None
    if unit in LATENCY_UNIT_S:
        return str(unit), "the node's describe answer"
    return UPSTREAM_LATENCY_UNIT, "assumed: the node did not describe itself (upstream reads hours)"


def _json_bytes(value: Mapping[str, Any] | None) -> list[int]:
    return list(json.dumps(dict(value)).encode("utf-8")) if value is not None else []


def send_task(
    *,
    model: str,
    model_path: str = "",
    latency: float = 0.0,
    power: float = 0.0,
    user_extra: Mapping[str, Any] | None = None,
    ml_extra: Mapping[str, Any] | None = None,
    domain_id: int,
    timeout_s: float,
    task_id: TaskId | None = None,
    latency_unit: str | None = None,
    discovery_timeout_s: float | None = None,
    hw_description: str = "",
    region: str = "",
    continent: str = "",
) -> SendResult:
    """Publish one task (model, HW latency, power in W, the selected hardware's name, the user's place) and
    wait for its output.

    ``latency`` is in the node's own unit when ``latency_unit`` is None; otherwise it is in
    ``latency_unit`` (h, s or ms) and converted to the node's unit (:func:`node_latency_unit`).
    Raises :class:`NodeNotSeen` when no carbon node's status is seen within ``discovery_timeout_s``
    seconds (None: ``timeout_s``; the inputs are TRANSIENT_LOCAL, so a node discovered later still gets
    them), and :class:`OrchestratorTimeout` naming what was not received within ``timeout_s`` seconds.
    """
    task = task_id or new_task_id()
    started_wait = time.monotonic()
    discovery_s = timeout_s if discovery_timeout_s is None else min(discovery_timeout_s, timeout_s)
    with Orchestrator(domain_id) as orchestrator:
        latency_sent, note = latency, ""
        if latency_unit is not None and latency != 0:
            node_unit, known = node_latency_unit(orchestrator, timeout_s)
            latency_sent = latency * LATENCY_UNIT_S[latency_unit] / LATENCY_UNIT_S[node_unit]
            note = f"{latency:g} {latency_unit} sent as {latency_sent:g} {node_unit} (node's unit: {known})"
        started = time.monotonic()
        orchestrator.publish_task(
            task,
            MLModelImpl(model=model, model_path=model_path, extra_data=_json_bytes(ml_extra)),
            HWResourceImpl(hw_description=hw_description, latency=latency_sent, power_consumption=power),
            UserInputImpl(geo_location_region=region, geo_location_continent=continent, extra_data=_json_bytes(user_extra)),
        )
        orchestrator.wait_node(discovery_s)
        output = orchestrator.wait_output(task, max(0.0, timeout_s - (time.monotonic() - started_wait)))
        round_trip_s = time.monotonic() - started
        statuses = orchestrator.status_names()
        orchestrator.release_task(task)
    extra, problem = decode_extra_data(output.extra_data)
    if problem is not None:
        extra = {"undecodable_extra_data": problem}
    return SendResult(
        task_id=str(task),
        carbon_g=output.carbon_footprint,
        energy_kwh=output.energy_consumption,
        grid_ci_g_per_kwh=output.carbon_intensity,
        extra_data=extra,
        statuses=statuses,
        round_trip_s=round_trip_s,
        latency_sent=latency_sent,
        latency_note=note,
    )


def format_result(result: SendResult, as_json: bool) -> str:
    """``result`` as one JSON object, or as aligned human-readable lines with units."""
    if as_json:
        return json.dumps(asdict(result), sort_keys=True, default=str)
    lines = [
        f"task_id            {result.task_id}",
        f"carbon_footprint   {result.carbon_g:.6g} gCO2e",
        f"energy_consumption {result.energy_kwh:.6g} kWh",
        f"carbon_intensity   {result.grid_ci_g_per_kwh:.6g} gCO2e/kWh",
        f"mode               {result.extra_data.get('mode', '')}",
    ]
    if "error" in result.extra_data:
        lines.append(f"error              {result.extra_data['error']}")
    if result.latency_note:
        lines.append(f"latency            {result.latency_note}")
    lines.append(f"statuses           {' -> '.join(result.statuses) or '(none)'}")
    lines.append(f"round_trip         {result.round_trip_s * 1000:.1f} ms")
    lines.append("extra_data")
    lines.extend(_extra_data_lines(result.extra_data))
    return "\n".join(lines)


_TEXT_WIDTH = 100
"""Characters a line of :func:`format_result` may take; longer values wrap under themselves."""


def _extra_data_lines(extra: Mapping[str, Any]) -> list[str]:
    """One line per ``extra_data`` key (in the node's order), its value as compact JSON (a text as is),
    wrapped under itself past :data:`_TEXT_WIDTH` characters."""
    if not extra:
        return ["  (empty)"]
    width = min(max(len(str(key)) for key in extra), 28)
    indent = " " * (width + 4)
    lines: list[str] = []
    for key, value in extra.items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=False, separators=(", ", ": "))
        lines.append(
            textwrap.fill(
                text,
                _TEXT_WIDTH,
                initial_indent=f"  {key!s:<{width}}  ",
                subsequent_indent=indent,
                break_on_hyphens=False,
            )
        )
    return lines
