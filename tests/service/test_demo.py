"""``carbon-node demo``: the whole loop (node process, tiny local model, one task over DDS) on this machine."""

from __future__ import annotations

import os
import subprocess
import sys


def test_demo_measures_a_tiny_model_through_the_bus_and_exits_0(dds_domain: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBON_NODE_")}
    done = subprocess.run(
        [sys.executable, "-m", "carbon_node", "demo", "--domain-id", str(dds_domain), "--timeout-s", "150"],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines() if line.strip()}
    assert rows["mode"] == ["tracker"]
    assert float(rows["energy_consumption"][0]) > 0
    assert rows["energy_consumption"][1] == "kWh"
    assert rows["carbon_footprint"][1] == "gCO2e"
    assert int(rows["forward_passes"][0]) > 0
