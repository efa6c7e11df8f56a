"""carbon-node's NO_MODEL throughput through the bus, journal on and off: ``python bench/throughput.py``.

A focused companion of ``bench/run.py`` (same client, loopback domain and node settings): for each
journal setting it starts ``python -m carbon_node run``, runs ``--runs`` throughput runs of ``--tasks``
NO_MODEL tasks (400 in flight) on that node and prints answered tasks per second of each run and their
median. ``--profile FILE`` samples the node with ``py-spy`` (``pip install py-spy``; not a project
dependency) during the runs and writes collapsed stacks to ``FILE.<journal>``, for finding where the time goes
(``py-spy record --gil`` on the node's pid shows only the threads holding the GIL: where its CPU goes).
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from run import Bench, wait_quiet  # noqa: E402

from carbon_node.wire import Status  # noqa: E402


def sample(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` (all threads, native frames off) until SIGINT, collapsed stacks to ``out``."""
    command = ["py-spy", "record", "-p", str(pid), "-r", "500", "--threads", "-f", "raw", "-o", str(out)]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached
    return spy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per run (default 1000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per node (default 3)")
    parser.add_argument("--journal", choices=["on", "off", "both"], default="both")
    parser.add_argument("--profile", type=Path, help="write py-spy's collapsed stacks of the node to FILE.<journal>")
    args = parser.parse_args()
    settings = ["on", "off"] if args.journal == "both" else [args.journal]
    with tempfile.TemporaryDirectory(prefix="carbon-node-throughput-") as tmp:
        bench = Bench(quick=True, work=Path(tmp))
        try:
            for journal in settings:
                with bench.node("carbon-node", CARBON_NODE_JOURNAL="true" if journal == "on" else "false") as node:
                    bench.client.wait_status(Status.NODE_IDLE, node.spawned_s, 60)
                    bench.client.wait_matched(10)
                    wait_quiet(node.process.pid)  # the measurement worker's imports done
                    bench.throughput(100, model="NO_MODEL")  # warm-up: imports, first status, first commit
                    spy = sample(node.process.pid, Path(f"{args.profile}.{journal}")) if args.profile else None
                    rates = []
                    for _ in range(args.runs):
                        rate, lost = bench.throughput(args.tasks, model="NO_MODEL")
                        rates.append(rate)
                        print(f"journal {journal}: {rate:7.0f} tasks/s, {lost} lost", flush=True)
                    if spy is not None:
                        spy.send_signal(signal.SIGINT)
                        spy.wait(timeout=30)
                print(f"journal {journal}: median {statistics.median(rates):.0f} tasks/s over {len(rates)} runs", flush=True)
        finally:
            bench.client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
