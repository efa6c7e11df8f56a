"""The Cyclone node runtime, driven by a real orchestrator participant on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog.testing
from structlog.testing import capture_logs

from carbon_node.bus.orchestrator import Orchestrator
from carbon_node.bus.runtime import NodeRuntime
from carbon_node.core import Answered, Lane, TaskId, TaskInputs, TaskOutput, base_extra_data, error_output
from carbon_node.wire import (
    CmdNode,
    CO2FootprintImpl,
    HWResourceImpl,
    MLModelImpl,
    NodeStatusImpl,
    Status,
    TaskIdImpl,
    UserInputImpl,
)

WAIT_S = 10.0  # generous bound for one DDS round trip on a loaded 2-core machine


class ScriptedHandler:
    """A TaskHandler whose behaviour is chosen by the model name of the task."""

    def __init__(self) -> None:
        self.handled: list[TaskId] = []
        self.threads: dict[str, str] = {}
        """The thread that handled each model."""
        self.slow_started = threading.Event()
        self.slow_release = threading.Event()
        self.aborted = False

    def lane(self, inputs: TaskInputs) -> Lane:
        assert inputs.ml_model is not None
        if inputs.ml_model.model == "lane-crash":
            raise RuntimeError("no lane")
        if inputs.ml_model.model.startswith("inline"):
            return Lane.INLINE
        return Lane.MEASURE if inputs.ml_model.model.startswith("slow") else Lane.FAST

    def handle(self, inputs: TaskInputs) -> TaskOutput:
        assert inputs.ml_model is not None
        model = inputs.ml_model.model
        self.handled.append(inputs.task_id)
        self.threads[model] = threading.current_thread().name
        if model == "crash":
            raise RuntimeError("callback exploded")
        if model.startswith("slow"):
            self.slow_started.set()
            self.slow_release.wait(WAIT_S)
        if model == "bad-extra":
            return TaskOutput(inputs.task_id, 1.0, 1.0, 1.0, {"num_outputs": "many"})
        extra = {**base_extra_data(model, {}), "mode": "no_model"}
        return TaskOutput(inputs.task_id, 1.5, 2.5, 600.0, extra, node_error=model == "node-error")

    def fail(self, inputs: TaskInputs, message: str) -> TaskOutput:
        return error_output(inputs, message)

    def abort(self) -> None:
        self.aborted = True


class MemoryJournal:
    """The smallest Journal: outputs and their inputs' fingerprints by task id, in memory."""

    def __init__(self) -> None:
        self.outputs: dict[TaskId, TaskOutput] = {}
        self.fingerprints: dict[TaskId, str | None] = {}

    def lookup(self, task_id: TaskId) -> Answered | None:
        output = self.outputs.get(task_id)
        return Answered(output, self.fingerprints[task_id]) if output is not None else None

    def record(self, output: TaskOutput, inputs_fingerprint: str | None = None) -> None:
        self.outputs[output.task_id] = output
        self.fingerprints[output.task_id] = inputs_fingerprint


def extra(output: CO2FootprintImpl) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(bytes(output.extra_data))
    return decoded


def task(orchestrator: Orchestrator, problem_id: int, model: str = "NO_MODEL") -> TaskId:
    task_id = TaskId(problem_id, 1)
    orchestrator.publish_task(task_id, MLModelImpl(model=model), HWResourceImpl(), UserInputImpl())
    return task_id


@pytest.fixture
def orchestrator(dds_domain: int) -> Iterator[Orchestrator]:
    with Orchestrator(dds_domain) as orch:
        yield orch


@pytest.fixture
def handler() -> ScriptedHandler:
    return ScriptedHandler()


@pytest.fixture
def start_node(dds_domain: int, handler: ScriptedHandler) -> Iterator[Callable[..., NodeRuntime]]:
    runtimes: list[NodeRuntime] = []

    def start(**options: Any) -> NodeRuntime:
        runtime = NodeRuntime(options.pop("handler", handler), domain_id=dds_domain, **options)
        runtime.start(WAIT_S)
        runtimes.append(runtime)
        return runtime

    yield start
    handler.slow_release.set()
    for runtime in runtimes:
        runtime.stop(WAIT_S)


def test_status_goes_initializing_idle_running_idle_error_terminating(
    orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime]
) -> None:
    runtime = start_node()
    orchestrator.wait_output(task(orchestrator, 1), WAIT_S)
    orchestrator.wait_output(task(orchestrator, 2, "node-error"), WAIT_S)
    runtime.stop(WAIT_S)
    orchestrator.wait_status(Status.NODE_TERMINATING, WAIT_S)
    assert orchestrator.status_names() == [
        "NODE_INITIALIZING",
        "NODE_IDLE",
        "NODE_RUNNING",
        "NODE_IDLE",
        "NODE_RUNNING",
        "NODE_ERROR",
        "NODE_TERMINATING",
    ]


def test_every_task_publishes_running_then_idle_before_its_output_as_upstream_does(
    orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime]
) -> None:
    """K4, sample for sample: tasks one after another each publish RUNNING, then IDLE, then the output."""
    start_node()
    for i in range(3):
        orchestrator.wait_output(task(orchestrator, 80 + i), WAIT_S)
    orchestrator.wait_status(Status.NODE_IDLE, WAIT_S, after=7)
    assert orchestrator.status_names() == ["NODE_INITIALIZING", "NODE_IDLE", *["NODE_RUNNING", "NODE_IDLE"] * 3]


def test_a_task_ending_while_another_runs_publishes_running_and_the_last_one_idle(
    orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime], handler: ScriptedHandler
) -> None:
    """As upstream with concurrent tasks (PROTOCOL.md 4.2): IDLE only when no other task runs."""
    start_node()
    slow = task(orchestrator, 90, "slow")
    assert handler.slow_started.wait(WAIT_S)
    quick = [task(orchestrator, 91 + i) for i in range(5)]
    for task_id in quick:
        orchestrator.wait_output(task_id, WAIT_S)
    handler.slow_release.set()
    orchestrator.wait_output(slow, WAIT_S)
    orchestrator.wait_status(Status.NODE_IDLE, WAIT_S, after=3)
    names = orchestrator.status_names()
    assert names[:3] == ["NODE_INITIALIZING", "NODE_IDLE", "NODE_RUNNING"]
    assert names[-1] == "NODE_IDLE" and "NODE_IDLE" not in names[2:-1]
    assert names.count("NODE_RUNNING") == 1 + len(quick)  # the start, then one per quick task's end
    assert sorted(orchestrator.outputs()) == sorted([slow, *quick])
    assert orchestrator.output_count() == 6


def test_the_status_sample_has_upstream_fields(orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime]) -> None:
    start_node()
    orchestrator.wait_status(Status.NODE_IDLE, WAIT_S)
    sample = orchestrator.last_status_sample()
    assert sample is not None
    assert sample == NodeStatusImpl(node_status=Status.NODE_IDLE, node_name="CARBON_FOOTPRINT_NODE", task_id=TaskIdImpl(0, 0))
    assert (sample.task_status.name, sample.error_code.name, sample.error_description) == ("TASK_WAITING", "NO_ERROR", "")


@pytest.mark.parametrize("order", ["ml,hw,user", "user,hw,ml", "hw,user,ml"])
def test_a_task_fires_whatever_the_input_order(
    order: str, orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime]
) -> None:
    start_node()
    task_id = TaskId(11, 3)
    publish = {
        "ml": lambda: orchestrator.publish_ml_model(task_id, MLModelImpl(model="NO_MODEL")),
        "hw": lambda: orchestrator.publish_hw(task_id, HWResourceImpl()),
        "user": lambda: orchestrator.publish_user_input(task_id, UserInputImpl()),
    }
    for name in order.split(","):
        publish[name]()
    output = orchestrator.wait_output(task_id, WAIT_S)
    assert (output.task_id.problem_id, output.task_id.iteration_id) == (11, 3)
    assert output.carbon_footprint == 1.5


def test_a_duplicate_input_replaces_the_pending_one(orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime]) -> None:
    runtime = start_node()
    task_id = TaskId(12, 1)
    orchestrator.publish_ml_model(task_id, MLModelImpl(model="first"))
    orchestrator.publish_hw(task_id, HWResourceImpl())
    wait_for(lambda: runtime.pending_count() == 1)
    orchestrator.publish_ml_model(task_id, MLModelImpl(model="second"))
    orchestrator.publish_user_input(task_id, UserInputImpl())
    assert extra(orchestrator.wait_output(task_id, WAIT_S))["model_restrains"] == ["second"]


def test_task_id_zero_zero_is_never_answered(orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime]) -> None:
    runtime = start_node()
    orchestrator.publish_task(TaskId(0, 0), MLModelImpl(model="NO_MODEL"), HWResourceImpl(), UserInputImpl())
    orchestrator.wait_output(task(orchestrator, 13), WAIT_S)
    assert set(orchestrator.outputs()) == {TaskId(13, 1)}
    assert runtime.stats().answered == 1 and runtime.pending_count() == 0


def test_an_incomplete_task_expires_with_an_error_naming_the_missing_inputs(
    orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime]
) -> None:
    start_node(input_timeout_s=0.3)
    task_id = TaskId(14, 1)
    orchestrator.publish_user_input(task_id, UserInputImpl(extra_data=list(b'{"num_outputs": 2}')))
    data = extra(orchestrator.wait_output(task_id, WAIT_S))
    assert data["mode"] == "error"
    assert "missing inputs: ml_model, hw_resources" in data["error"]
    assert data["num_outputs"] == 2


_BAD_WRITER = """
import sys, time
from cyclonedds.pub import DataWriter
from cyclonedds.topic import Topic
from carbon_node.bus.cyclone import create_participant
from carbon_node.bus.qos import USER_INPUT_TOPIC, orchestrator_input_writer_qos
from carbon_node.wire import TaskIdImpl, UserInputImpl

class NotUtf8(str):
    def encode(self, *args, **kwargs):
        return b"\\xff\\xfe"  # what a peer may put in a DDS string: not UTF-8

participant = create_participant(int(sys.argv[1]), "HOSTILE_PEER")
writer = DataWriter(participant, Topic(participant, USER_INPUT_TOPIC, UserInputImpl), qos=orchestrator_input_writer_qos())
deadline = time.monotonic() + 10
while not writer.get_matched_subscriptions() and time.monotonic() < deadline:
    time.sleep(0.05)
writer.write(UserInputImpl(modality=NotUtf8("x"), task_id=TaskIdImpl(int(sys.argv[2]), 1)))
writer.write(UserInputImpl(task_id=TaskIdImpl(int(sys.argv[3]), 1)))  # same batch: must survive
time.sleep(2.0)
"""


def test_an_undecodable_input_is_dropped_alone_and_its_task_still_gets_one_output(
    orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime], dds_domain: int
) -> None:
    start_node(input_timeout_s=1.5)
    bad, good = TaskId(31, 1), TaskId(32, 1)
    for task_id in (bad, good):
        orchestrator.publish_ml_model(task_id, MLModelImpl(model="NO_MODEL"))
        orchestrator.publish_hw(task_id, HWResourceImpl())
    writer = subprocess.run(
        [sys.executable, "-c", _BAD_WRITER, str(dds_domain), str(bad.problem_id), str(good.problem_id)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert writer.returncode == 0, writer.stderr
    assert extra(orchestrator.wait_output(good, WAIT_S))["mode"] == "no_model"
    data = extra(orchestrator.wait_output(bad, WAIT_S))
    assert data["mode"] == "error" and "missing inputs: user_input" in data["error"]


def test_beyond_max_pending_the_oldest_task_is_answered_with_an_error(
    orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime]
) -> None:
    runtime = start_node(max_pending=2)
    for problem_id in (21, 22, 23):
        orchestrator.publish_ml_model(TaskId(problem_id, 1), MLModelImpl(model="NO_MODEL"))
    data = extra(orchestrator.wait_output(TaskId(21, 1), WAIT_S))
    assert data["mode"] == "error" and "evicted" in data["error"]
    assert runtime.pending_count() == 2


def test_a_task_id_is_answered_at_most_once(orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime]) -> None:
    runtime = start_node()
    first = task(orchestrator, 31)
    orchestrator.wait_output(first, WAIT_S)
    orchestrator.publish_ml_model(first, MLModelImpl(model="NO_MODEL"))  # a late, repeated input
    task(orchestrator, 31, "NO_MODEL")  # the whole task again
    orchestrator.wait_output(task(orchestrator, 32), WAIT_S)
    assert orchestrator.output_count() == 2
    assert runtime.stats().answered == 2


def test_a_crashing_handler_gives_an_error_output_and_the_node_stays_alive(
    orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime]
) -> None:
    start_node()
    data = extra(orchestrator.wait_output(task(orchestrator, 41, "crash"), WAIT_S))
    assert data["mode"] == "error" and data["error"] == "RuntimeError: callback exploded"
    lane_data = extra(orchestrator.wait_output(task(orchestrator, 42, "lane-crash"), WAIT_S))
    assert "no lane" in lane_data["error"]
    assert extra(orchestrator.wait_output(task(orchestrator, 43), WAIT_S))["mode"] == "no_model"


def test_an_output_with_invalid_extra_data_is_replaced_by_an_error_output(
    orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime]
) -> None:
    start_node()
    output = orchestrator.wait_output(task(orchestrator, 44, "bad-extra"), WAIT_S)
    data = extra(output)
    assert data["mode"] == "error" and "num_outputs" in data["error"]
    assert (output.carbon_footprint, data["num_outputs"], data["model_restrains"]) == (0.0, 1, ["bad-extra"])


def test_a_fast_task_is_not_blocked_behind_a_running_measurement(
    orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime], handler: ScriptedHandler
) -> None:
    start_node()
    slow = task(orchestrator, 51, "slow")
    assert handler.slow_started.wait(WAIT_S)
    orchestrator.wait_output(task(orchestrator, 52), WAIT_S)
    assert slow not in orchestrator.outputs()
    handler.slow_release.set()
    orchestrator.wait_output(slow, WAIT_S)


def test_measurements_run_one_at_a_time_in_arrival_order(
    orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime], handler: ScriptedHandler
) -> None:
    runtime = start_node()
    first = task(orchestrator, 53, "slow-a")
    assert handler.slow_started.wait(WAIT_S)
    second = task(orchestrator, 54, "slow-b")
    wait_for(lambda: runtime.stats().in_flight == 2)
    assert handler.handled == [first]
    handler.slow_release.set()
    orchestrator.wait_outputs(2, WAIT_S)
    assert handler.handled == [first, second]


def test_configuration_describe_answers_with_describe_json(
    orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime]
) -> None:
    start_node(describe=lambda: {"version": "0.1.0", "window_s": 1.0})
    response = orchestrator.request_configuration('{"command": "describe"}', transaction_id=1, timeout_s=WAIT_S)
    assert (response.node_id, response.transaction_id, response.success, response.err_code.name) == (1, 1, True, "NO_ERROR")
    assert json.loads(response.configuration) == {"version": "0.1.0", "window_s": 1.0}


def test_an_unsupported_configuration_is_answered_as_upstream(
    orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime]
) -> None:
    start_node(describe=lambda: {})
    response = orchestrator.request_configuration("dummy2", transaction_id=7, timeout_s=WAIT_S)
    assert (response.node_id, response.transaction_id, response.success, response.err_code.name) == (
        1,
        7,
        False,
        "INTERNAL_ERROR",
    )
    assert json.loads(response.configuration) == {"error": "Unsupported configuration request: dummy2"}


def test_configuration_requests_for_other_nodes_are_not_answered(
    orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime]
) -> None:
    start_node()
    orchestrator.send_configuration_request("x", transaction_id=1, node_id=3)  # for the HW resources node
    orchestrator.request_configuration("x", transaction_id=2, timeout_s=WAIT_S)
    assert orchestrator.responses().keys() == {(1, 2)}


def test_control_commands_are_logged_and_ignored(orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime]) -> None:
    runtime = start_node()
    with structlog.testing.capture_logs() as logs:
        orchestrator.send_control(CmdNode.STOP_NODE)
        orchestrator.wait_output(task(orchestrator, 61), WAIT_S)
    events = [entry for entry in logs if entry["event"] == "control_command_ignored"]
    assert [(e["cmd_node"], e["target_node"]) for e in events] == [("STOP_NODE", "CARBON_FOOTPRINT_NODE")]
    assert runtime.stats().answered == 1


def test_a_journal_replays_the_stored_output_after_restart_without_recomputing(
    orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime], handler: ScriptedHandler
) -> None:
    journal = MemoryJournal()
    first_node = start_node(journal=journal)
    task_id = task(orchestrator, 71)
    first = orchestrator.wait_output(task_id, WAIT_S)
    first_node.stop(WAIT_S)
    second_node = start_node(journal=journal)  # TRANSIENT_LOCAL replays the inputs to the new node
    wait_for(lambda: orchestrator.output_count() == 2)
    replayed = orchestrator.outputs()[task_id]
    assert (replayed.carbon_footprint, replayed.energy_consumption, replayed.carbon_intensity, replayed.extra_data) == (
        first.carbon_footprint,
        first.energy_consumption,
        first.carbon_intensity,
        first.extra_data,
    )
    assert handler.handled == [task_id]
    assert second_node.stats().replayed == 1


def test_a_task_id_reused_with_other_inputs_in_the_same_lifetime_is_computed_from_the_new_inputs(
    orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime], handler: ScriptedHandler
) -> None:
    journal = MemoryJournal()
    runtime = start_node(journal=journal)
    task_id = task(orchestrator, 73, "first-model")
    orchestrator.wait_output(task_id, WAIT_S)
    with capture_logs() as logs:
        task(orchestrator, 73, "second-model")  # an orchestrator restarted, numbering from 1 again
        wait_for(lambda: orchestrator.output_count() == 2)
    assert extra(orchestrator.outputs()[task_id])["model_restrains"] == ["second-model"]
    assert journal.outputs[task_id].extra_data["model_restrains"] == ["second-model"]  # the row replaced
    assert "task_id_reused" in [e["event"] for e in logs]
    task(orchestrator, 73, "second-model")  # the very same inputs again: the journal's answer, not recomputed
    wait_for(lambda: orchestrator.output_count() == 3)
    assert extra(orchestrator.outputs()[task_id])["model_restrains"] == ["second-model"]
    assert handler.handled == [task_id, task_id]
    assert runtime.stats().replayed == 1


def test_a_task_id_reused_while_its_earlier_task_runs_is_computed_after_it(
    orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime], handler: ScriptedHandler
) -> None:
    answered: list[TaskOutput] = []
    start_node(journal=MemoryJournal(), on_output=answered.append)
    task_id = task(orchestrator, 75, "slow-first")
    assert handler.slow_started.wait(WAIT_S)
    task(orchestrator, 75, "second")  # new inputs for the same id while the first is being measured
    time.sleep(0.3)
    handler.slow_release.set()
    wait_for(lambda: len(answered) == 2)
    assert [a.extra_data["model_restrains"] for a in answered] == [["slow-first"], ["second"]]

    # Both are written to one output instance in a fraction of a millisecond: a KEEP_LAST(1) reader
    # may see only the second, and the second is what it must end with.
    def ends_with_second() -> bool:
        output = orchestrator.outputs().get(task_id)
        return output is not None and extra(output)["model_restrains"] == ["second"]

    wait_for(ends_with_second)
    assert handler.handled == [task_id, task_id]


def test_inline_tasks_are_answered_on_the_bus_thread_and_fast_ones_on_a_lane(
    orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime], handler: ScriptedHandler
) -> None:
    start_node()
    orchestrator.wait_output(task(orchestrator, 77, "inline-model"), WAIT_S)
    orchestrator.wait_output(task(orchestrator, 78, "fast-model"), WAIT_S)
    assert handler.threads["inline-model"] == "carbon-bus"
    assert handler.threads["fast-model"].startswith("carbon-fast-")


def test_an_inline_task_is_answered_while_a_measurement_runs(
    orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime], handler: ScriptedHandler
) -> None:
    start_node()
    task(orchestrator, 79, "slow")
    assert handler.slow_started.wait(WAIT_S)
    try:
        output = orchestrator.wait_output(task(orchestrator, 80, "inline-model"), WAIT_S)
        assert extra(output)["mode"] == "no_model"
    finally:
        handler.slow_release.set()


def test_on_output_receives_queue_and_total_durations(orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime]) -> None:
    seen: list[TaskOutput] = []
    start_node(on_output=seen.append)
    orchestrator.wait_output(task(orchestrator, 81), WAIT_S)
    wait_for(lambda: len(seen) == 1)
    assert seen[0].task_id == TaskId(81, 1)
    assert seen[0].timings["total_s"] >= seen[0].timings["queue_s"] >= 0.0


def test_stop_aborts_a_stuck_task_and_answers_it_with_an_error(
    orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime], handler: ScriptedHandler
) -> None:
    runtime = start_node()
    stuck = task(orchestrator, 91, "slow")
    assert handler.slow_started.wait(WAIT_S)
    queued = task(orchestrator, 92, "slow")
    wait_for(lambda: runtime.stats().in_flight == 2)
    assert runtime.stop(0.2) is False
    assert handler.aborted
    for task_id in (stuck, queued):
        assert extra(orchestrator.wait_output(task_id, WAIT_S))["mode"] == "error"
    orchestrator.wait_status(Status.NODE_TERMINATING, WAIT_S)


def test_stop_lets_a_running_task_finish_within_the_timeout(
    orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime], handler: ScriptedHandler
) -> None:
    runtime = start_node()
    running = task(orchestrator, 93, "slow")
    assert handler.slow_started.wait(WAIT_S)
    threading.Timer(0.2, handler.slow_release.set).start()
    assert runtime.stop(WAIT_S) is True
    assert extra(orchestrator.wait_output(running, WAIT_S))["mode"] == "no_model"
    assert not handler.aborted


def wait_for(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    """Poll ``condition`` until true; fail the test after ``timeout_s``."""
    done = threading.Event()
    deadline = threading.Timer(timeout_s, done.set)
    deadline.start()
    try:
        while not condition():
            if done.wait(0.02):
                pytest.fail(f"condition not met within {timeout_s} s")
    finally:
        deadline.cancel()


class ExitingHandler(ScriptedHandler):
    """A callback that calls sys.exit() on the model 'slow-exit' (a measure-lane task)."""

    def handle(self, inputs: TaskInputs) -> TaskOutput:
        assert inputs.ml_model is not None
        if inputs.ml_model.model == "slow-exit":
            raise SystemExit(3)
        return super().handle(inputs)


def test_a_callback_calling_sys_exit_does_not_kill_its_lane(
    orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime]
) -> None:
    handler = ExitingHandler()
    handler.slow_release.set()
    start_node(handler=handler)
    first = task(orchestrator, 41, "slow-exit")
    assert extra(orchestrator.wait_output(first, WAIT_S))["mode"] == "error"
    second = task(orchestrator, 42, "slow-after")  # same (single-threaded) measure lane
    assert extra(orchestrator.wait_output(second, WAIT_S))["mode"] == "no_model"


class SlowJournal(MemoryJournal):
    """Records take 50 ms, as a commit may: time for stop() and a finishing lane to race."""

    def record(self, output: TaskOutput, inputs_fingerprint: str | None = None) -> None:
        time.sleep(0.05)
        super().record(output, inputs_fingerprint)


def test_the_journal_holds_the_output_that_was_published_when_stop_races_a_finishing_task(
    orchestrator: Orchestrator, start_node: Callable[..., NodeRuntime], handler: ScriptedHandler
) -> None:
    journal = SlowJournal()
    handler.abort = handler.slow_release.set  # type: ignore[method-assign]  # abort lets the task finish
    runtime = start_node(journal=journal)
    task_id = task(orchestrator, 43, "slow")
    assert handler.slow_started.wait(WAIT_S)
    runtime.stop(0.3)
    published = orchestrator.wait_output(task_id, WAIT_S)
    assert journal.outputs[task_id].extra_data_bytes() == bytes(published.extra_data)
