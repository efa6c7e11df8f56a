"""``carbon-node run`` starts its measurement worker before it imports the DDS types and the metrics."""

from __future__ import annotations

import subprocess
import sys

HEAVY_BEFORE_THE_WORKER = ("cyclonedds", "prometheus_client", "carbon_node.core", "carbon_node.wire", "torch")


def test_the_command_line_and_the_daemon_import_no_dds_types_before_the_worker_starts() -> None:
    code = (
        "import sys; import carbon_node.cli, carbon_node.service.daemon, carbon_node.service.dirs, carbon_node.service.wiring; "
        f"print([m for m in {HEAVY_BEFORE_THE_WORKER!r} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
