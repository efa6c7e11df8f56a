"""Shared pieces of the pool tests: measure hosts on a loopback domain, in this process or in a child
process (to SIGKILL), a fake measurer that takes its time, and a bounded wait."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from carbon_node.bus.pool_host import MeasureHost
from carbon_node.measure.protocol import MeasureError, Measurement, MeasureSpec
from carbon_node.testing import make_measurement

WAIT_S = 10.0
TEMPLATE = MeasureSpec(model="", window_s=1.0, device="cpu", sim_cpu_tdp_w=700.0, sim_cpu_util=1.0, max_model_mb=64.0)


def until(check: Callable[[], object], timeout_s: float = WAIT_S) -> float:
    """Seconds until ``check()`` is true; fails after ``timeout_s``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout_s, "condition not reached"
        time.sleep(0.02)
    return time.monotonic() - started


class SlowMeasurer:
    """Answers ``result`` (with the spec's model) after ``delay_s``, or raises ``error``; records the specs
    and the most measurements it ever ran at once."""

    def __init__(self, delay_s: float = 0.0, result: Measurement | None = None, error: MeasureError | None = None) -> None:
        self.delay_s = delay_s
        self.result = result or make_measurement()
        self.error = error
        self.calls: list[MeasureSpec] = []
        self.running = 0
        self.most_at_once = 0
        self.started = threading.Event()
        self._lock = threading.Lock()

    def measure(self, spec: MeasureSpec) -> Measurement:
        with self._lock:
            self.calls.append(spec)
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        self.started.set()
        try:
            time.sleep(self.delay_s)
            if self.error is not None:
                raise self.error
            return replace(self.result, model=spec.model)
        finally:
            with self._lock:
                self.running -= 1


def start_host(domain: int, *hardware: str, measurer: Any = None, **options: Any) -> MeasureHost:
    host = MeasureHost(
        measurer if measurer is not None else SlowMeasurer(),
        domain_id=domain,
        template=TEMPLATE,
        hardware=hardware,
        power_sources=["simulated"],
        **options,
    )
    host.start()
    return host


_CHILD_HOST = """
import sys, time
import structlog
structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout carries the host id only
from carbon_node.bus.pool_host import MeasureHost
from carbon_node.measure.protocol import MeasureSpec
from carbon_node.testing import make_measurement
domain, delay_s, energy_kwh, hardware = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]

class Slow:
    def measure(self, spec):
        time.sleep(delay_s)
        return make_measurement(model=spec.model, energy_kwh=energy_kwh)

host = MeasureHost(Slow(), domain_id=domain, template=MeasureSpec(model="", window_s=1.0), hardware=[hardware])
host.start()
print("HOST", host.host_id, flush=True)
time.sleep(600)
"""


class ChildHost:
    """A measure host in a child process (a fake measurer taking ``delay_s``), to SIGKILL."""

    def __init__(self, domain: int, hardware: str, delay_s: float, energy_kwh: float = 7e-4) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _CHILD_HOST, str(domain), str(delay_s), str(energy_kwh), hardware],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        self.host_id = ""
        for line in self.process.stdout:  # its log lines first (structlog writes to stdout by default)
            if line.startswith("HOST "):
                self.host_id = line.split()[1]
                break
        assert self.host_id, "the child host did not start"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(WAIT_S)
