"""What an operator's host does to the node, for real, in this mount namespace (root, under ``unshare -m``).

    unshare --mount --propagation private python -m tests.service.fault_scenario SCENARIO WORKDIR [MODEL]

Scenarios (each writes ``WORKDIR/result.json``):

- ``readonly``: ``WORKDIR/state`` is bind-mounted read-only; ``carbon-node run`` and ``doctor`` on it;
- ``denied``: ``WORKDIR/state`` belongs to root (0755) and the node runs as ``nobody`` (``setpriv``);
- ``full``: ``WORKDIR/state`` is a 400 KiB tmpfs. A node answers a measured task, the tmpfs is filled,
  the node answers NO_MODEL tasks (its journal suspends), space is freed, the journal resumes, a measured
  task is answered again; then the node is restarted and answers the same inputs (still held by the
  orchestrator, TRANSIENT_LOCAL) from its journal.

Nothing outside this process's mount namespace changes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from carbon_node.bus.orchestrator import Orchestrator
from carbon_node.core import TaskId
from carbon_node.wire import HWResourceImpl, MLModelImpl, Status, UserInputImpl

RUN_TIMEOUT_S = 60.0
IDLE_TIMEOUT_S = 60.0
ANSWER_TIMEOUT_S = 120.0
RESUME_TIMEOUT_S = 45.0


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True, timeout=30)


def _env(workdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARBON_NODE_", "SUSTAINML_", "CT_"))}
    env.update(
        {
            "CARBON_NODE_STATE_DIR": str(workdir / "state"),
            "CARBON_NODE_CACHE_DIR": str(workdir / "cache"),
            "CARBON_NODE_LOG_FORMAT": "json",
            "CARBON_NODE_BUS": "cyclone",
            "HF_HUB_OFFLINE": "1",
        }
    )
    env.update(extra)
    return env


def _carbon_node(env: dict[str, str], *args: str, prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    done = subprocess.run(
        [*prefix, sys.executable, "-m", "carbon_node", *args], env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    return {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def readonly(workdir: Path) -> dict[str, Any]:
    state = workdir / "state"
    state.mkdir()
    _mount("--bind", str(state), str(state))
    _mount("-o", "remount,bind,ro", str(state))
    env = _env(workdir)
    return {"run": _carbon_node(env, "run"), "doctor": _carbon_node(env, "doctor", "--quick", "--json")}


def denied(workdir: Path) -> dict[str, Any]:
    # Under a world-traversable directory (pytest's own is 0700): only the state directory is not writable.
    base = Path(tempfile.mkdtemp(prefix="carbon-node-denied-"))
    try:
        base.chmod(0o755)
        (base / "state").mkdir(mode=0o755)
        (base / "cache").mkdir()
        (base / "cache").chmod(0o777)
        env = _env(base, HOME=str(base / "cache"))
        nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all")
        return {"state": str(base / "state"), "run": _carbon_node(env, "run", prefix=nobody)}
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _task(orchestrator: Orchestrator, task: TaskId, model: str) -> None:
    orchestrator.publish_task(
        task, MLModelImpl(model=model), HWResourceImpl(latency=0.001, power_consumption=1.0), UserInputImpl()
    )


def _start_node(env: dict[str, str], log_path: Path) -> subprocess.Popen[str]:
    log = log_path.open("a")
    return subprocess.Popen([sys.executable, "-m", "carbon_node", "run"], env=env, stderr=log, stdout=log, text=True)


def _events(log_path: Path) -> list[dict[str, Any]]:
    events = []
    for line in log_path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                events.append(record)
    return events


def _wait_event(log_path: Path, name: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(e.get("event") == name for e in _events(log_path)):
            return True
        time.sleep(0.2)
    return False


def _fill(directory: Path) -> None:
    """Write until the file system is full (the last write and the close fail with ENOSPC)."""
    with contextlib.suppress(OSError), (directory / "filler").open("wb", buffering=0) as handle:
        while True:
            handle.write(b"\0" * 4096)


def _answer(orchestrator: Orchestrator, task: TaskId) -> dict[str, Any]:
    output = orchestrator.wait_output(task, ANSWER_TIMEOUT_S)
    extra = json.loads(bytes(output.extra_data).decode("utf-8"))
    return {"mode": extra.get("mode"), "error": extra.get("error"), "energy_kwh": output.energy_consumption}


def full(workdir: Path, model: str) -> dict[str, Any]:
    state = workdir / "state"
    state.mkdir()
    _mount("-t", "tmpfs", "-o", "size=400k,mode=0755", "carbon-state", str(state))
    domain = 50 + os.getpid() % 150
    env = _env(workdir, SUSTAINML_DOMAIN_ID=str(domain), CARBON_NODE_SIM_CPU_TDP_W="40", CT_TARGET_SECONDS="0.3")
    log_path = workdir / "node.log"
    result: dict[str, Any] = {}
    with Orchestrator(domain) as orchestrator:
        node = _start_node(env, log_path)
        try:
            orchestrator.wait_status(Status.NODE_IDLE, IDLE_TIMEOUT_S)
            _task(orchestrator, TaskId(1, 1), model)
            result["before"] = _answer(orchestrator, TaskId(1, 1))
            _fill(state)
            _task(orchestrator, TaskId(2, 1), "NO_MODEL")
            _task(orchestrator, TaskId(2, 2), "NO_MODEL")
            result["while_full"] = [_answer(orchestrator, TaskId(2, i)) for i in (1, 2)]
            result["suspended"] = _wait_event(log_path, "journal_suspended", RESUME_TIMEOUT_S)
            (state / "filler").unlink()
            result["resumed"] = _wait_event(log_path, "journal_resumed", RESUME_TIMEOUT_S)
            _task(orchestrator, TaskId(3, 1), model)
            result["after"] = _answer(orchestrator, TaskId(3, 1))
            node.send_signal(signal.SIGTERM)
            result["stop_status"] = node.wait(RUN_TIMEOUT_S)
            answered_before = len([e for e in _events(log_path) if e.get("event") == "task_answered"])
            # The same inputs, still held by the orchestrator (TRANSIENT_LOCAL), reach the restarted node.
            node = _start_node(env, log_path)
            deadline = time.monotonic() + ANSWER_TIMEOUT_S
            while time.monotonic() < deadline:
                answers = [e for e in _events(log_path) if e.get("event") == "task_answered"][answered_before:]
                if len(answers) >= 4:
                    break
                time.sleep(0.2)
            result["after_restart"] = {a["task_id"]: a.get("replay") for a in answers}
        finally:
            if node.poll() is None:
                node.send_signal(signal.SIGTERM)
                try:
                    node.wait(RUN_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    node.kill()
    result["events"] = [e.get("event") for e in _events(log_path)]
    result["log"] = log_path.read_text()[-20000:]
    return result


def main(argv: list[str]) -> int:
    scenario, workdir_arg, *rest = argv
    workdir = Path(workdir_arg)
    if scenario == "readonly":
        result = readonly(workdir)
    elif scenario == "denied":
        result = denied(workdir)
    elif scenario == "full":
        result = full(workdir, rest[0])
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    (workdir / "result.json").write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
