"""Using the package as a library prints nothing of its own: no debug line when the bus is first used."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_package_and_joining_the_bus_prints_nothing(dds_domain: int) -> None:
    script = f"""
import carbon_node
from carbon_node.bus.orchestrator import Orchestrator
with Orchestrator({dds_domain}):
    pass
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")
