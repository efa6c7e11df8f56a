"""``carbon-node demo``: the whole loop on one machine, with no framework, no model hub and no root.

1. build a tiny BERT model in a temporary directory (:func:`carbon_node.measure.tiny.build_tiny_text_model`);
2. start ``carbon-node run`` in a child process on a private DDS domain, on loopback unless
   ``CYCLONEDDS_URI`` is set, with a throw-away state directory (without readable RAPL counters the
   window's power is carbontracker's CPU TDP-table estimate, and the table says so);
3. send it one task through the bus as the orchestrator would (:func:`carbon_node.bus.send_task.send_task`);
4. print the answer as a table, stop the node with SIGTERM and check that it exited 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, TextIO

import structlog

from carbon_node.core import CarbonNodeError
from carbon_node.service.settings import LoadedSettings

__all__ = ["LOOPBACK_CYCLONE_XML", "demo_domain", "format_table", "run_demo"]

log = structlog.get_logger(__name__)

LOOPBACK_CYCLONE_XML = (
    '<CycloneDDS><Domain Id="any"><General><Interfaces>'
    '<NetworkInterface address="127.0.0.1" multicast="true"/>'
    "</Interfaces></General></Domain></CycloneDDS>"
)
"""The demo's DDS traffic stays on this machine."""

DEMO_LATENCY_H = 1e-5
"""HW latency of the demo task in hours (36 ms per inference), the upstream unit."""

DEMO_POWER_W = 30.0
"""HW power of the demo task in W (used only if the measurement has no energy)."""

_STOP_TIMEOUT_S = 30.0


def demo_domain(loaded: LoadedSettings) -> int:
    """The configured domain if one was given, else a private one (200-229) derived from the pid."""
    if loaded.sources.get("domain_id", "default") != "default":
        return loaded.settings.domain_id
    return 200 + os.getpid() % 30


def _child_env(loaded: LoadedSettings, domain_id: int, state_dir: Path) -> dict[str, str]:
    settings = loaded.settings
    env = dict(os.environ)
    env.update(
        {
            "SUSTAINML_DOMAIN_ID": str(domain_id),
            "CT_TARGET_SECONDS": str(settings.window_s),
            "CARBON_NODE_STATE_DIR": str(state_dir),
            "CARBON_NODE_JOURNAL": "false",
            "CARBON_NODE_LOG_FORMAT": "json",
            "CARBON_NODE_BUS": "cyclone",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
    )
    env.pop("CARBON_NODE_METRICS_PORT", None)
    env.pop("NOTIFY_SOCKET", None)
    env.setdefault("CYCLONEDDS_URI", LOOPBACK_CYCLONE_XML)
    if settings.sim_cpu_tdp_w is not None:
        env["CARBON_NODE_SIM_CPU_TDP_W"] = str(settings.sim_cpu_tdp_w)
    return env


def format_table(result: Any) -> str:
    """The demo's answer: the three published doubles with units, then the provenance that explains them."""
    extra = result.extra_data
    rows = [
        ("task_id", str(result.task_id), ""),
        ("mode", str(extra.get("mode", "")), ""),
        ("carbon_footprint", f"{result.carbon_g:.6g}", "gCO2e per inference"),
        ("energy_consumption", f"{result.energy_kwh:.6g}", "kWh per inference"),
        ("carbon_intensity", f"{result.grid_ci_g_per_kwh:.6g}", "gCO2e/kWh"),
    ]
    for key, unit in (
        ("grid_ci_source", ""),
        ("power_source", ""),
        ("components", ""),
        ("window_s", "s"),
        ("forward_passes", "passes in the window"),
        ("scaling", ""),
        ("error", ""),
    ):
        if key in extra:
            value = extra[key]
            text = (
                ", ".join(map(str, value))
                if isinstance(value, list)
                else f"{value:.4g}"
                if isinstance(value, float)
                else str(value)
            )
            rows.append((key, text, unit))
    rows.append(("round_trip", f"{result.round_trip_s:.2f}", "s"))
    width = max(len(name) for name, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    return "\n".join(f"{name:<{width}}  {value:<{value_width}}  {unit}".rstrip() for name, value, unit in rows)


def _stop(node: subprocess.Popen[bytes]) -> int:
    if node.poll() is None:
        node.send_signal(signal.SIGTERM)
    try:
        return node.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        node.kill()
        return node.wait(timeout=_STOP_TIMEOUT_S)


def run_demo(loaded: LoadedSettings, *, timeout_s: float, as_json: bool, out: TextIO) -> int:
    """Run the demo; 0 when the node answered with a measured result and stopped cleanly."""
    from carbon_node.bus.send_task import format_result, send_task
    from carbon_node.measure.tiny import build_tiny_text_model

    domain_id = demo_domain(loaded)
    # This process's orchestrator must use the same interfaces as the node (Cyclone reads this at participant creation).
    os.environ.setdefault("CYCLONEDDS_URI", LOOPBACK_CYCLONE_XML)
    with tempfile.TemporaryDirectory(prefix="carbon-node-demo-") as tmp:
        root = Path(tmp)
        model_dir = build_tiny_text_model(root / "tiny-bert")
        node_log = root / "node.log"
        env = _child_env(loaded, domain_id, root / "state")
        log.info(
            "demo.starting_node",
            domain_id=domain_id,
            model=str(model_dir),
            simulated_power_w=env.get("CARBON_NODE_SIM_CPU_TDP_W"),
        )
        with node_log.open("wb") as log_file:
            node = subprocess.Popen(
                [sys.executable, "-m", "carbon_node", "run"], env=env, stdout=log_file, stderr=subprocess.STDOUT
            )
            outcome: dict[str, Any] = {}

            def send() -> None:
                try:
                    outcome["result"] = send_task(
                        model=str(model_dir), latency=DEMO_LATENCY_H, power=DEMO_POWER_W, domain_id=domain_id, timeout_s=timeout_s
                    )
                except CarbonNodeError as exc:
                    outcome["error"] = str(exc)

            sender = threading.Thread(target=send, name="demo-send", daemon=True)
            sender.start()
            try:
                # Wait for the answer, but give up at once if the node dies first.
                while sender.is_alive() and node.poll() is None:
                    sender.join(0.2)
                sender.join(timeout_s)
            finally:
                status = _stop(node)
        if "result" not in outcome:
            tail = node_log.read_text(errors="replace")[-3000:]
            reason = outcome.get("error") or f"the node exited with status {node.returncode} before answering"
            print(f"demo failed: {reason}\n--- node log (tail) ---\n{tail}", file=sys.stderr)
            return 1
        result = outcome["result"]
        print(format_result(result, True) if as_json else format_table(result), file=out)
        if status != 0:
            print(f"demo: the node exited with status {status} after SIGTERM", file=sys.stderr)
            return 1
        log.info("demo.done", node_exit_status=status)
        return 0 if result.extra_data.get("mode") != "error" else 1
