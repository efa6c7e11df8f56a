"""The measure lanes: one FIFO per measure queue, queues run at the same time, each in order."""

from __future__ import annotations

import threading
import time

from carbon_node.bus.lanes import LOCAL_QUEUE, Job, KeyedLanes, measure_queue
from carbon_node.core import Lane, TaskId, TaskInputs, TaskOutput
from carbon_node.testing import make_inputs

WAIT_S = 10.0


def job(n: int) -> Job:
    inputs = TaskInputs(TaskId(n, 1))
    return Job(inputs, Lane.MEASURE, 0.0, lambda: TaskOutput(inputs.task_id, 0, 0, 0))


class Recorder:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.done: list[tuple[str, int]] = []
        self.running = 0
        self.most_at_once = 0
        self.lock = threading.Lock()
        self.finished = threading.Condition(self.lock)

    def run(self, item: Job) -> None:
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(self.delay_s)
        with self.finished:
            self.running -= 1
            self.done.append((threading.current_thread().name, item.inputs.task_id.problem_id))
            self.finished.notify_all()

    def wait(self, count: int) -> None:
        with self.finished:
            assert self.finished.wait_for(lambda: len(self.done) >= count, timeout=WAIT_S)


def test_queues_run_at_the_same_time_and_each_keeps_its_order() -> None:
    recorder = Recorder(delay_s=0.2)
    lanes = KeyedLanes("host", recorder.run)
    started = time.monotonic()
    for n in range(3):
        lanes.submit("host-a", job(n))
        lanes.submit("host-b", job(10 + n))
    recorder.wait(6)
    assert time.monotonic() - started < 1.0  # two queues of 3 x 0.2 s side by side, not 1.2 s one after the other
    assert recorder.most_at_once == 2
    by_queue: dict[str, list[int]] = {}
    for thread, n in recorder.done:
        by_queue.setdefault(thread, []).append(n)
    assert sorted(by_queue.values()) == [[0, 1, 2], [10, 11, 12]]
    assert lanes.close(WAIT_S)


def test_a_queue_whose_jobs_are_done_leaves_no_thread_behind_and_starts_again_on_the_next_job() -> None:
    recorder = Recorder()
    lanes = KeyedLanes("host", recorder.run)
    lanes.submit("gone:1:a", job(1))
    recorder.wait(1)
    deadline = time.monotonic() + WAIT_S
    while any(t.name.startswith("carbon-host-gone") for t in threading.enumerate()):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    lanes.submit("gone:1:a", job(2))
    recorder.wait(2)
    assert lanes.close(WAIT_S)


def test_drain_returns_the_jobs_not_started_and_close_starts_no_more() -> None:
    release = threading.Event()
    ran: list[int] = []
    lanes = KeyedLanes("host", lambda item: (ran.append(item.inputs.task_id.problem_id), release.wait(WAIT_S)))
    for n in range(3):
        lanes.submit("a", job(n))
    deadline = time.monotonic() + WAIT_S
    while not ran:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert lanes.queued() == {"a": 2}
    assert [j.inputs.task_id.problem_id for j in lanes.drain()] == [1, 2]
    release.set()
    assert lanes.close(WAIT_S)
    assert ran == [0]


class WithQueue:
    def __init__(self, answer: object) -> None:
        self.answer = answer

    def measure_queue(self, inputs: TaskInputs) -> object:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_the_measure_queue_is_the_handlers_choice_or_the_local_lane() -> None:
    inputs = make_inputs()
    assert measure_queue(WithQueue("gpu:1:a"), inputs) == "gpu:1:a"  # type: ignore[arg-type]
    assert measure_queue(object(), inputs) == LOCAL_QUEUE  # type: ignore[arg-type]  # a handler without one
    assert measure_queue(WithQueue(RuntimeError("boom")), inputs) == LOCAL_QUEUE  # type: ignore[arg-type]
    assert measure_queue(WithQueue(7), inputs) == LOCAL_QUEUE  # type: ignore[arg-type]
