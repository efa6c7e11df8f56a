"""The orchestrator side of tests/system/test_pool.py, run inside the node's network namespace.

Reads one JSON command per line on stdin and writes one JSON event per line on stdout:

- ``{"cmd": "publish", "id": N, "model": PATH, "hw": TEXT}``: publish the three inputs of task N.1;
- ``{"cmd": "hosts"}``: answers ``{"event": "hosts", "hosts": [{"host_id", "hardware", "state"}, ...]}``;
- ``{"cmd": "count"}``: answers ``{"event": "count", "samples": K}``, the output samples received in all (a
  second output for a task counts again);
- ``{"cmd": "quit"}``: leave.

The first output of each task becomes ``{"event": "output", "id": N, "extra": {...}, "t": SECONDS}``
(``time.monotonic()``, one clock for the whole machine, as the ``published`` events' ``t``).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from carbon_node.bus.announce import AnnouncementBoard
from carbon_node.bus.cyclone import create_participant
from carbon_node.bus.orchestrator import Orchestrator
from carbon_node.core import TaskId, decode_extra_data
from carbon_node.wire import HWResourceImpl, MLModelImpl, UserInputImpl

_out_lock = threading.Lock()


def emit(event: dict[str, Any]) -> None:
    with _out_lock:
        print(json.dumps(event), flush=True)


def main() -> int:
    domain = int(sys.argv[1])
    orchestrator = Orchestrator(domain)
    board = AnnouncementBoard(create_participant(domain, "POOL_TEST_DRIVER"))
    stop = threading.Event()

    def forward_outputs() -> None:
        forwarded: set[TaskId] = set()
        while not stop.is_set():
            time.sleep(0.05)
            for task_id, sample in orchestrator.outputs().items():
                if task_id not in forwarded:
                    forwarded.add(task_id)
                    extra, _ = decode_extra_data(sample.extra_data)
                    emit({"event": "output", "id": task_id.problem_id, "extra": extra, "t": time.monotonic()})

    threading.Thread(target=forward_outputs, daemon=True).start()
    emit({"event": "ready"})
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "publish":
            orchestrator.publish_task(
                TaskId(command["id"], 1),
                MLModelImpl(model=command["model"]),
                HWResourceImpl(hw_description=command["hw"], latency=1e-5),
                UserInputImpl(),
            )
            emit({"event": "published", "id": command["id"], "t": time.monotonic()})
        elif command["cmd"] == "hosts":
            hosts = [{"host_id": a.node_id, "hardware": list(a.hardware), "state": a.state} for a in board.live("measure_host")]
            emit({"event": "hosts", "hosts": hosts})
        elif command["cmd"] == "count":
            emit({"event": "count", "samples": orchestrator.output_count()})
        elif command["cmd"] == "quit":
            break
    stop.set()
    orchestrator.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
