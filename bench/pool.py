"""The measurement pool's benchmark: distinct-model throughput against the number of measure hosts.

``python bench/pool.py [--models 30] [--hosts 0,1,2,3] [--repeats 1]``: for each number of hosts, a fresh
node (``carbon-node run``) and that many fresh measure hosts (``carbon-node serve-measurements``, all named
"bench accelerator") on a private loopback DDS domain, with simulated power, then ``--models`` tasks at
once, each for a distinct model directory and that hardware. 0 hosts is the node's own measure lane: the
baseline, measured in the same run. Each configuration is warmed up first (one task per worker, not
counted: a worker imports torch and its first model class once). Throughput: tasks / seconds from the
first publication to the last answer (the median over ``--repeats``).

Prints a markdown table and writes it into ``bench/results.md`` (after the main table: the section from
:data:`POOL_MARK` on, which ``bench/run.py`` keeps when it rewrites the file) and into the README
(between :data:`README_MARKS`). Not for CI: minutes, and its figures depend on the machine's load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from client import BenchClient  # noqa: E402

HARDWARE = "bench accelerator"
WINDOW_S = 1.0
SIM_TDP_W = 40.0
DOMAIN_FIRST, DOMAIN_SPAN = 100, 40  # private DDS domains 100-139 (bench/run.py uses 150-229)
POOL_MARK = "<!-- pool rows: python bench/pool.py -->"
README_MARKS = ("<!-- pool table: python bench/pool.py -->", "<!-- end pool table -->")
LOOPBACK_CYCLONE_XML = (
    '<CycloneDDS><Domain Id="any"><General><Interfaces>'
    '<NetworkInterface address="127.0.0.1" multicast="true"/>'
    "</Interfaces></General></Domain></CycloneDDS>"
)


def keep_pool_section(path: Path) -> str:
    """The pool section of an existing results file (from :data:`POOL_MARK` on), for ``bench/run.py`` to
    keep when it rewrites the file; empty when there is none."""
    try:
        text = path.read_text()
    except OSError:
        return ""
    at = text.find(POOL_MARK)
    return "\n" + text[at:] if at >= 0 else ""


def cpu_model() -> str:
    from carbon_node.measure.hardware import cpu_model as detect

    return detect() or "unknown CPU"


class PoolBench:
    def __init__(self, work: Path, models: int) -> None:
        self.work = work
        self.count = models
        self.runs = 0
        os.environ["CYCLONEDDS_URI"] = LOOPBACK_CYCLONE_XML
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        from carbon_node.measure.tiny import build_tiny_text_model

        self.built = build_tiny_text_model(work / "built" / "tiny-bert")
        self.problem = 0

    def models(self, prefix: str, count: int) -> list[Path]:
        """``count`` copies of the tiny model: distinct directories, so each is measured anew."""
        dirs = []
        for i in range(count):
            directory = self.work / "models" / f"{prefix}{i}"
            if not directory.exists():
                shutil.copytree(self.built, directory)
            dirs.append(directory)
        return dirs

    def env(self, domain: int, role: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            SUSTAINML_DOMAIN_ID=str(domain),
            CT_TARGET_SECONDS=str(WINDOW_S),
            CARBON_NODE_SIM_CPU_TDP_W=str(SIM_TDP_W),
            CARBON_NODE_SIM_CPU_UTIL="1.0",
            CARBON_NODE_STATE_DIR=str(self.work / f"state-{role}-{time.monotonic_ns()}"),
            CARBON_NODE_LOG_LEVEL="warning",
            CARBON_NODE_TASK_TIMEOUT_S="120",
            OMP_NUM_THREADS="1",
        )
        return env

    @contextmanager
    def processes(self, domain: int, hosts: int) -> Iterator[None]:
        started: list[subprocess.Popen[bytes]] = []
        log = (self.work / "processes.log").open("ab")
        try:
            for i in range(hosts):
                command = [sys.executable, "-m", "carbon_node", "serve-measurements", "--hardware-name", HARDWARE]
                started.append(subprocess.Popen(command, env=self.env(domain, f"host{i}"), stdout=log, stderr=log))
            command = [sys.executable, "-m", "carbon_node", "run", "--bus", "cyclone"]
            started.append(subprocess.Popen(command, env=self.env(domain, "node"), stdout=log, stderr=log))
            yield
        finally:
            for process in started:
                process.terminate()
            for process in started:
                try:
                    process.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
            log.close()

    def publish_all(self, client: BenchClient, models: list[Path]) -> tuple[list[int], float]:
        problems = []
        started = time.perf_counter()
        for model in models:
            self.problem += 1
            client.publish(self.problem, model=str(model), latency=1e-6, power_w=10.0, hw_description=HARDWARE)
            problems.append(self.problem)
        return problems, started

    def run(self, hosts: int) -> dict[str, Any]:
        """One configuration: ``hosts`` measure hosts, warmed up, then ``count`` distinct models at once."""
        self.runs += 1
        domain = DOMAIN_FIRST + (os.getpid() + self.runs) % DOMAIN_SPAN
        client = BenchClient(domain)
        try:
            with self.processes(domain, hosts):
                from carbon_node.bus.announce import AnnouncementBoard

                board = AnnouncementBoard(client.participant)
                deadline = time.monotonic() + 60
                while len(board.live("measure_host")) < hosts or not client.wait_matched(0.1):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{hosts} hosts and the node not seen within 60 s")
                    time.sleep(0.1)
                warm, _ = self.publish_all(client, self.models(f"warm{self.runs}-", max(1, hosts)))
                if not client.wait_outputs([(p, 1) for p in warm], 180.0):
                    raise RuntimeError("warm-up tasks not answered within 180 s")
                problems, started = self.publish_all(client, self.models(f"run{self.runs}-", self.count))
                if not client.wait_outputs([(p, 1) for p in problems], 600.0):
                    raise RuntimeError("tasks not answered within 600 s")
                answers = [client.answers(p)[0] for p in problems]
        finally:
            client.close()
        elapsed_s = max(a.received_s for a in answers) - started
        where = Counter(a.extra_data.get("measured_on", {}).get("host", "?") for a in answers)
        modes = Counter(a.extra_data.get("mode") for a in answers)
        if modes != Counter({"tracker": self.count}):
            raise RuntimeError(f"not every task was measured: {dict(modes)}")
        if hosts and (where.get("local") or len(where) != hosts):
            raise RuntimeError(f"the tasks were not spread over the {hosts} hosts: {dict(where)}")
        return {"elapsed_s": elapsed_s, "per_host": sorted(where.values(), reverse=True)}


def render(rows: dict[int, list[dict[str, Any]]], models: int, elapsed_s: float) -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    baseline = statistics.median(models / r["elapsed_s"] for r in rows.get(0, [])) if 0 in rows else float("nan")
    lines = [
        POOL_MARK,
        f"## Measurement pool: distinct-model throughput against measure hosts ({time.strftime('%Y-%m-%d %H:%M')},"
        f" {elapsed_s:.0f} s)",
        "",
        f"Machine: {cpu_model()}, {usable} usable CPUs; every host and the node on it (loopback DDS), simulated power"
        f" {SIM_TDP_W:g} W, {WINDOW_S:g} s windows, {models} distinct tiny models (about 1 M parameters) published at once.",
        "",
        "| Measures on | Distinct models / s | Seconds for all | x the node's own lane | Tasks per host |",
        "|---|---:|---:|---:|---|",
    ]
    for hosts, runs in sorted(rows.items()):
        rate = statistics.median(models / r["elapsed_s"] for r in runs)
        seconds = statistics.median(r["elapsed_s"] for r in runs)
        label = "the node's own lane (baseline)" if hosts == 0 else f"{hosts} measure host{'s' if hosts > 1 else ''}"
        spread = " / ".join(str(n) for n in runs[0]["per_host"])
        lines.append(f"| {label} | {rate:.3g} | {seconds:.3g} | {rate / baseline:.2f} | {spread} |")
    lines += [
        "",
        "Each row: a fresh node and fresh hosts on a DDS domain of their own, each worker warmed up with one task"
        " (not counted); the rate is tasks / seconds from the first publication to the last answer"
        f"{' (median of the repeats)' if max(len(r) for r in rows.values()) > 1 else ''}. A window runs its forward"
        " passes for a fixed time, so hosts on one machine overlap their windows and only the rest of a measurement"
        " (loading the model, carbontracker's start and stop) competes for its CPUs: on separate machines the hosts"
        " would not share even that.",
    ]
    return "\n".join(lines) + "\n"


def write(table: str) -> None:
    results = BENCH_DIR / "results.md"
    text = results.read_text() if results.exists() else ""
    at = text.find(POOL_MARK)
    head = text[:at].rstrip("\n") if at >= 0 else text.rstrip("\n")
    results.write_text(f"{head}\n\n{table}" if head else table)
    readme = BENCH_DIR.parent / "README.md"
    body = readme.read_text()
    start, end = body.find(README_MARKS[0]), body.find(README_MARKS[1])
    if start >= 0 and end > start:
        section = table.replace(POOL_MARK + "\n", "").replace("## Measurement pool", "#### Measurement pool", 1)
        readme.write_text(body[: start + len(README_MARKS[0])] + "\n" + section + body[end:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=30, help="distinct models per configuration (default 30)")
    parser.add_argument("--hosts", default="0,1,2,3", help="numbers of measure hosts (default 0,1,2,3; 0: the node's lane)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per configuration (default 1)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    counts = [int(part) for part in args.hosts.split(",") if part.strip()]
    started = time.perf_counter()
    rows: dict[int, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="carbon-node-pool-bench-") as tmp:
        bench = PoolBench(Path(tmp), args.models)
        for _ in range(args.repeats):
            for hosts in counts:
                result = bench.run(hosts)
                rows.setdefault(hosts, []).append(result)
                print(f"  {hosts} host(s): {args.models / result['elapsed_s']:.3g} models/s ({result['per_host']})", flush=True)
    table = render(rows, args.models, time.perf_counter() - started)
    print(table)
    if not args.no_write:
        write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
