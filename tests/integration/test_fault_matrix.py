"""Fault matrix: real ``carbon-node run`` processes on a private DDS domain, faults injected from outside.

For every fault: each task gets exactly one output (or, when its inputs are replayed, the very same
output again), no task is answered twice with different values, and the node (or its restart) answers
the next task. Simulated CPU power, 0.3 s windows and tiny models built in tmp_path keep it short.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cyclonedds.core import Policy, Qos
from cyclonedds.domain import DomainParticipant
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from carbon_node.bus.orchestrator import Orchestrator
from carbon_node.bus.qos import OUTPUT_TOPIC
from carbon_node.core import TaskId
from carbon_node.measure.tiny import build_tiny_text_model
from carbon_node.wire import CO2FootprintImpl, HWResourceImpl, MLModelImpl, Status, UserInputImpl
from tests.conftest import LOOPBACK_CYCLONE_XML, next_domain

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

WINDOW_S = 0.3
START_TIMEOUT_S = 60.0
ANSWER_TIMEOUT_S = 60.0


# -- harness -------------------------------------------------------------------------------------


class OutputLog:
    """Every output sample published on the domain, per task, in arrival order (KEEP_ALL: none coalesced)."""

    def __init__(self, domain_id: int) -> None:
        self._participant = DomainParticipant(domain_id)
        qos = Qos(
            Policy.Reliability.Reliable(max_blocking_time=duration(seconds=1)),
            Policy.Durability.TransientLocal,
            Policy.History.KeepAll,
            Policy.DataRepresentation(use_cdrv0_representation=True),
        )
        self._reader = DataReader(self._participant, Topic(self._participant, OUTPUT_TOPIC, CO2FootprintImpl), qos=qos)
        self._by_task: dict[TaskId, list[tuple[float, float, float, bytes]]] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while not self._stop.is_set():
            samples = self._reader.take(N=1000)
            if not samples:
                time.sleep(0.02)
                continue
            with self._cond:
                for s in samples:
                    if not isinstance(s, CO2FootprintImpl):
                        continue  # an unregister/dispose notice, not an output
                    key = TaskId(s.task_id.problem_id, s.task_id.iteration_id)
                    value = (s.carbon_footprint, s.energy_consumption, s.carbon_intensity, bytes(s.extra_data))
                    self._by_task.setdefault(key, []).append(value)
                self._cond.notify_all()

    def wait(self, task_ids: list[TaskId], timeout_s: float = ANSWER_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not all(t in self._by_task for t in task_ids):
                left = deadline - time.monotonic()
                missing = [str(t) for t in task_ids if t not in self._by_task]
                assert left > 0, f"no output within {timeout_s} s for {len(missing)} tasks, e.g. {missing[:5]}"
                self._cond.wait(min(left, 0.2))

    def answers(self, task_id: TaskId) -> list[tuple[float, float, float, bytes]]:
        with self._cond:
            return list(self._by_task.get(task_id, []))

    def extra(self, task_id: TaskId) -> dict[str, Any]:
        answers = self.answers(task_id)
        assert answers, f"task {task_id} has no output"
        return dict(json.loads(answers[0][3].decode("utf-8")))

    def assert_one_value_each(self, task_ids: list[TaskId]) -> None:
        """Every task answered, and every answer of a task identical (a replay may repeat it, never change it)."""
        for task_id in task_ids:
            answers = self.answers(task_id)
            assert answers, f"task {task_id} was not answered"
            assert all(a == answers[0] for a in answers), f"task {task_id} answered with different values: {answers}"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._participant.__del__()


def descendants(pid: int) -> list[int]:
    """All processes below ``pid`` (children first), from /proc."""
    found: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop(0)
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found.extend(kids)
            queue.extend(kids)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def worker_pids(node_pid: int) -> list[int]:
    """The measurement worker(s) under the node: python children that are not multiprocessing's helpers."""
    return [p for p in descendants(node_pid) if "resource_tracker" not in cmdline(p) and "forkserver" not in cmdline(p)]


@dataclass
class NodeProcess:
    """One ``carbon-node run`` process and what it needs to be restarted identically."""

    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, orchestrator: Orchestrator) -> None:
        seen = len(orchestrator.statuses())
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "carbon_node", "run"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.starts.append(self.process)
        orchestrator.wait_status(Status.NODE_IDLE, START_TIMEOUT_S, after=seen)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        for process in self.starts:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def node_env(domain_id: int, state_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CYCLONEDDS_URI=LOOPBACK_CYCLONE_XML,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        SUSTAINML_DOMAIN_ID=str(domain_id),
        CARBON_NODE_STATE_DIR=str(state_dir),
        CARBON_NODE_CACHE_DIR=str(state_dir / "cache"),
        CT_TARGET_SECONDS=str(WINDOW_S),
        SUSTAINML_GRID_CI="400",
        CARBON_NODE_SIM_CPU_TDP_W="30",
        CARBON_NODE_SIM_CPU_UTIL="1.0",
        CARBON_NODE_MEASURE_CACHE_TTL_S="0",
        CARBON_NODE_LOG_FORMAT="json",
        CARBON_NODE_SHUTDOWN_TIMEOUT_S="10",
        OMP_NUM_THREADS="1",
    )
    env.update(extra)
    return env


class Tasks:
    """Task ids and inputs for one test, published through the orchestrator."""

    def __init__(self, orchestrator: Orchestrator, first_problem: int) -> None:
        self.orchestrator = orchestrator
        self._next = first_problem
        self.issued: list[TaskId] = []

    def new_id(self) -> TaskId:
        self._next += 1
        task_id = TaskId(self._next, 1)
        self.issued.append(task_id)
        return task_id

    def release_all(self) -> None:
        """Unregister every input sent so far: the contract bounds live instances at 500 per reader."""
        for task_id in self.issued:
            self.orchestrator.release_task(task_id)
        self.issued.clear()

    @staticmethod
    def inputs(task_id: TaskId, model: str, model_path: str = "") -> tuple[MLModelImpl, HWResourceImpl, UserInputImpl]:
        key = _wire_id(task_id)
        return (
            MLModelImpl(model=model, model_path=model_path, task_id=key),
            HWResourceImpl(hw_description="test", power_consumption=10.0, latency=1e-6, task_id=key),
            UserInputImpl(extra_data=list(b'{"num_outputs": 1}'), task_id=key),
        )

    def send(self, model: str, model_path: str = "") -> TaskId:
        task_id = self.new_id()
        ml, hw, ui = self.inputs(task_id, model, model_path)
        self.orchestrator.publish_task(task_id, ml, hw, ui)
        return task_id


def _wire_id(task_id: TaskId) -> Any:
    from carbon_node.wire import TaskIdImpl

    return TaskIdImpl(task_id.problem_id, task_id.iteration_id)


@dataclass
class Harness:
    node: NodeProcess
    orchestrator: Orchestrator
    outputs: OutputLog
    tasks: Tasks
    tiny: str
    tmp: Path


@contextmanager
def _harness(tmp: Path, domain_id: int, **env: str) -> Iterator[Harness]:
    tiny = str(build_tiny_text_model(tmp / "tiny"))
    orchestrator = Orchestrator(domain_id)
    outputs = OutputLog(domain_id)
    node = NodeProcess(node_env(domain_id, tmp / "state", **env), tmp / "node.log")
    try:
        node.start(orchestrator)
        yield Harness(node, orchestrator, outputs, Tasks(orchestrator, 1000), tiny, tmp)
    finally:
        node.stop()
        outputs.close()
        orchestrator.close()


def assert_answers_next_task(h: Harness) -> None:
    """The node, as it is now, answers a fresh measured task with a real measurement."""
    task_id = h.tasks.send(h.tiny)
    h.outputs.wait([task_id])
    extra = h.outputs.extra(task_id)
    assert extra["mode"] == "tracker", extra
    assert len(h.outputs.answers(task_id)) == 1


# -- one shared node for the faults it survives without a restart ----------------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    # Module-scoped, so it takes its domain the way the dds_domain fixture does (a fresh, unused id), and
    # sets the loopback configuration itself (the autouse fixture is function-scoped).
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CYCLONEDDS_URI", LOOPBACK_CYCLONE_XML)
        with _harness(
            tmp_path_factory.mktemp("shared-node"),
            next_domain(),
            CARBON_NODE_MAX_MODEL_MB="20",
            CARBON_NODE_INPUT_TIMEOUT_S="1.5",
        ) as harness:
            yield harness


def test_a_worker_killed_during_a_measurement_gives_one_output_and_is_replaced(shared: Harness) -> None:
    h = shared
    before = len(h.orchestrator.statuses())
    task_id = h.tasks.send(h.tiny)
    h.orchestrator.wait_status(Status.NODE_RUNNING, 30, after=before)
    time.sleep(0.1)
    victims = worker_pids(h.node.pid)
    assert victims, "no worker process found under the node"
    for pid in victims:
        os.kill(pid, signal.SIGKILL)

    h.outputs.wait([task_id])
    assert len(h.outputs.answers(task_id)) == 1
    assert h.node.alive()
    assert_answers_next_task(h)
    assert set(worker_pids(h.node.pid)).isdisjoint(victims)


def test_a_model_larger_than_the_memory_limit_is_refused_with_an_error_output(shared: Harness) -> None:
    h = shared
    big = h.tmp / "big-model"
    big.mkdir()
    # BERT-base dimensions (about 110 M parameters, ~420 MiB in float32): over the 20 MiB limit.
    (big / "config.json").write_text(
        json.dumps(
            {
                "model_type": "bert",
                "hidden_size": 768,
                "num_hidden_layers": 12,
                "num_attention_heads": 12,
                "intermediate_size": 3072,
                "vocab_size": 30522,
            }
        )
    )
    task_id = h.tasks.send(str(big))
    h.outputs.wait([task_id])
    extra = h.outputs.extra(task_id)
    assert extra["mode"] == "error"
    assert "too large" in extra["error"] and "MiB" in extra["error"], extra["error"]
    assert len(h.outputs.answers(task_id)) == 1
    assert_answers_next_task(h)


def test_duplicate_inputs_give_one_output_per_task(shared: Harness) -> None:
    h = shared
    task_id = h.tasks.new_id()
    ml, hw, ui = Tasks.inputs(task_id, "NO_MODEL")
    for _ in range(3):
        h.orchestrator.publish_ml_model(task_id, ml)
    h.orchestrator.publish_hw(task_id, hw)
    h.orchestrator.publish_hw(task_id, hw)
    h.orchestrator.publish_user_input(task_id, ui)
    h.outputs.wait([task_id])
    time.sleep(0.5)  # room for a wrong second answer to arrive
    assert len(h.outputs.answers(task_id)) == 1
    assert h.outputs.extra(task_id)["mode"] == "no_model"


def test_an_onnx_model_path_absent_on_this_host_is_answered_from_hw_power_and_latency(shared: Harness) -> None:
    # The ML model provider runs elsewhere: its export path does not exist here, and upstream never opens it.
    h = shared
    task_id = h.tasks.send("standin", model_path="exports/standin_model.onnx")
    h.outputs.wait([task_id])
    answers = h.outputs.answers(task_id)
    assert len(answers) == 1
    carbon_g, energy_kwh, intensity, _ = answers[0]
    extra = h.outputs.extra(task_id)
    assert extra["mode"] == "onnx_hw_only", extra
    assert extra["onnx_file_present"] is False
    assert "error" not in extra
    # 10 W x 1e-6 h (the node's default latency unit) = 1e-5 Wh = 1e-8 kWh, at the fixed 400 g/kWh.
    assert energy_kwh == pytest.approx(1e-8)
    assert intensity == pytest.approx(400.0)
    assert carbon_g == pytest.approx(4e-6)


def test_inputs_in_any_order_and_interleaved_across_tasks_are_joined_by_task_id(shared: Harness) -> None:
    h = shared
    first, second = h.tasks.new_id(), h.tasks.new_id()
    ml1, hw1, ui1 = Tasks.inputs(first, "NO_MODEL")
    ml2, hw2, ui2 = Tasks.inputs(second, h.tiny)
    h.orchestrator.publish_hw(second, hw2)
    h.orchestrator.publish_user_input(first, ui1)
    h.orchestrator.publish_ml_model(second, ml2)
    h.orchestrator.publish_hw(first, hw1)
    h.orchestrator.publish_user_input(second, ui2)
    h.orchestrator.publish_ml_model(first, ml1)
    h.outputs.wait([first, second])
    assert h.outputs.extra(first)["mode"] == "no_model"
    assert h.outputs.extra(second)["mode"] == "tracker"
    h.outputs.assert_one_value_each([first, second])
    assert len(h.outputs.answers(first)) == len(h.outputs.answers(second)) == 1


def test_a_task_whose_inputs_never_complete_gets_one_error_output_after_the_input_timeout(shared: Harness) -> None:
    h = shared
    task_id = h.tasks.new_id()
    ml, hw, _ = Tasks.inputs(task_id, h.tiny)
    h.orchestrator.publish_ml_model(task_id, ml)
    h.orchestrator.publish_hw(task_id, hw)
    h.outputs.wait([task_id], timeout_s=30)
    extra = h.outputs.extra(task_id)
    assert extra["mode"] == "error"
    assert "user_input" in extra["error"], extra["error"]
    assert isinstance(extra["num_outputs"], int) and extra["num_outputs"] >= 1
    time.sleep(2.0)  # a second input timeout must not answer it again
    assert len(h.outputs.answers(task_id)) == 1
    assert_answers_next_task(h)


def test_five_hundred_tasks_published_at_once_are_each_answered_exactly_once(shared: Harness) -> None:
    h = shared
    onnx = h.tmp / "m.onnx"
    from carbon_node.measure.tiny import build_tiny_onnx

    build_tiny_onnx(onnx)
    h.tasks.release_all()  # the earlier tests' tasks would otherwise hold instances of the 500 allowed
    ids = [h.tasks.send("NO_MODEL") if i % 2 else h.tasks.send("tiny-onnx", str(onnx)) for i in range(500)]
    h.outputs.wait(ids, timeout_s=90)
    time.sleep(0.5)
    assert [len(h.outputs.answers(t)) for t in ids] == [1] * 500
    modes = {h.outputs.extra(t)["mode"] for t in ids}
    assert modes == {"no_model", "onnx_hw_only"}
    for task_id in ids:
        h.orchestrator.release_task(task_id)
    assert h.node.alive()


# -- faults that take the node (or its worker) down --------------------------------------------------


def test_a_measurement_over_its_time_limit_gives_an_error_output_and_the_node_goes_on(tmp_path: Path, dds_domain: int) -> None:
    # Every measurement (a 0.3 s window) exceeds a 0.25 s limit; non-measuring tasks still flow.
    with _harness(tmp_path, dds_domain, CARBON_NODE_TASK_TIMEOUT_S="0.25") as h:
        slow = h.tasks.send(h.tiny)
        h.outputs.wait([slow])
        extra = h.outputs.extra(slow)
        assert extra["mode"] == "error"
        assert "time" in extra["error"].lower(), extra["error"]
        again = h.tasks.send(h.tiny)
        after = h.tasks.send("NO_MODEL")
        h.outputs.wait([again, after])
        assert h.outputs.extra(again)["mode"] == "error"
        assert h.outputs.extra(after)["mode"] == "no_model"
        assert [len(h.outputs.answers(t)) for t in (slow, again, after)] == [1, 1, 1]
        assert h.node.alive()


def test_sigterm_during_a_measurement_answers_it_once_and_exits_cleanly(tmp_path: Path, dds_domain: int) -> None:
    with _harness(tmp_path, dds_domain, CT_TARGET_SECONDS="1.5") as h:
        before = len(h.orchestrator.statuses())
        running = h.tasks.send(h.tiny)
        h.orchestrator.wait_status(Status.NODE_RUNNING, 30, after=before)
        time.sleep(0.3)
        assert h.node.process is not None
        h.node.process.send_signal(signal.SIGTERM)
        assert h.node.process.wait(timeout=40) == 0, h.node.log_text()[-3000:]
        h.outputs.wait([running], timeout_s=5)
        assert len(h.outputs.answers(running)) == 1

        h.node.start(h.orchestrator)  # the replayed inputs meet the journal: same answer, if any
        next_task = h.tasks.send("NO_MODEL")
        h.outputs.wait([next_task])
        h.outputs.assert_one_value_each([running, next_task])


def test_a_node_killed_and_restarted_replays_answered_tasks_identically_and_answers_pending_ones(
    tmp_path: Path, dds_domain: int
) -> None:
    with _harness(tmp_path, dds_domain, CT_TARGET_SECONDS="1.0") as h:
        answered = h.tasks.send(h.tiny)
        h.outputs.wait([answered])
        first_answer = h.outputs.answers(answered)[0]

        before = len(h.orchestrator.statuses())
        in_flight = h.tasks.send(str(build_tiny_text_model(tmp_path / "tiny2")))
        incomplete = h.tasks.new_id()
        ml, hw, ui = Tasks.inputs(incomplete, h.tiny)
        h.orchestrator.publish_ml_model(incomplete, ml)
        h.orchestrator.publish_hw(incomplete, hw)
        h.orchestrator.wait_status(Status.NODE_RUNNING, 30, after=before)
        for pid in [h.node.pid, *descendants(h.node.pid)]:
            os.kill(pid, signal.SIGKILL)
        assert h.node.process is not None
        h.node.process.wait(timeout=10)
        killed_answers = len(h.outputs.answers(in_flight))

        h.node.start(h.orchestrator)  # same state dir; the orchestrator's transient-local inputs replay
        h.orchestrator.publish_user_input(incomplete, ui)
        h.outputs.wait([in_flight, incomplete])
        deadline = time.monotonic() + 20
        while len(h.outputs.answers(answered)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)

        replays = h.outputs.answers(answered)
        assert len(replays) == 2, "the restarted node did not answer the replayed task"
        assert replays[1] == first_answer  # from the journal: same doubles, same bytes (measured_at included)
        # Killed before answering: answered once now; answered just before the kill: replayed identically.
        assert len(h.outputs.answers(in_flight)) == (1 if killed_answers == 0 else 2)
        h.outputs.assert_one_value_each([answered, in_flight, incomplete])
        assert h.outputs.extra(incomplete)["mode"] == "tracker"
        assert_answers_next_task(h)


# -- node and orchestrator restarted together: task ids start again from 1.1 ------------------------


def node_events(node: NodeProcess, event: str, task_id: TaskId) -> list[dict[str, Any]]:
    """The node's JSON log records of ``event`` for ``task_id``, in order."""
    found = []
    for line in node.log_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == event and record.get("task_id") == str(task_id):
            found.append(record)
    return found


def journal_row(state_dir: Path, task_id: TaskId) -> tuple[str, str | None]:
    """The journal's ``extra_data`` text and inputs fingerprint for ``task_id`` (the node stopped)."""
    import sqlite3

    conn = sqlite3.connect(state_dir / "journal.sqlite3")
    try:
        row = conn.execute(
            "SELECT extra_data, inputs_fingerprint FROM answered WHERE problem_id = ? AND iteration_id = ?",
            (task_id.problem_id, task_id.iteration_id),
        ).fetchone()
    finally:
        conn.close()
    assert row is not None, f"no journal row for {task_id}"
    return str(row[0]), row[1]


@pytest.mark.timeout(300)
def test_after_node_and_orchestrator_restart_a_reused_task_id_is_answered_from_its_new_inputs(
    tmp_path: Path, dds_domain: int
) -> None:
    state = tmp_path / "state"
    tiny = str(build_tiny_text_model(tmp_path / "tiny"))
    node = NodeProcess(node_env(dds_domain, state), tmp_path / "node.log")
    outputs = OutputLog(dds_domain)
    task_id = TaskId(1, 1)  # what upstream's orchestrator numbers its first task, after every start
    orchestrator = Orchestrator(dds_domain)
    try:
        node.start(orchestrator)
        orchestrator.publish_task(task_id, *Tasks.inputs(task_id, tiny))
        outputs.wait([task_id])
        assert outputs.extra(task_id)["mode"] == "tracker"
        node.stop()

        # A host reboot: both restart, nobody holds the old history, the new orchestrator sends 1.1 again.
        orchestrator.close()
        orchestrator = Orchestrator(dds_domain)
        node.start(orchestrator)
        key = _wire_id(task_id)
        new_inputs = (
            MLModelImpl(model="NO_MODEL", task_id=key),
            HWResourceImpl(hw_description="test", power_consumption=10.0, latency=1e-6, task_id=key),
            UserInputImpl(extra_data=list(b'{"num_outputs": 2, "model_restrains": ["gpt2-large"]}'), task_id=key),
        )
        orchestrator.publish_task(task_id, *new_inputs)
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while len(outputs.answers(task_id)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        answers = outputs.answers(task_id)
        assert len(answers) == 2, "the reused task id was not answered"
        new = json.loads(answers[1][3])
        assert (new["mode"], new["model_restrains"], new["num_outputs"]) == ("no_model", ["NO_MODEL", "gpt2-large"], 2)
        assert answers[1][:3] == (0.0, 0.0, 0.0)
        assert [r["replay"] for r in node_events(node, "task_answered", task_id)] == [False, False]
        assert len(node_events(node, "task_id_reused", task_id)) == 1

        # The same inputs again, from the same orchestrator: the journal's answer, unchanged and instant.
        orchestrator.publish_task(task_id, *new_inputs)
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while len(outputs.answers(task_id)) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert outputs.answers(task_id)[2:] == [answers[1]]
        assert [r["replay"] for r in node_events(node, "task_answered", task_id)] == [False, False, True]
        node.stop()
        extra_text, fingerprint = journal_row(state, task_id)
        assert json.loads(extra_text)["mode"] == "no_model"  # the row was replaced
        assert fingerprint is not None and fingerprint.startswith("v1:")
    finally:
        node.stop()
        outputs.close()
        orchestrator.close()
