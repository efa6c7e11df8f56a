"""The assembler joins task inputs by task id: order, duplicates, invalid ids, timeouts, bounds, at most once."""

from __future__ import annotations

from typing import Any

import pytest

from carbon_node.bus.assembler import Assembler, InputKind, ReleaseKind
from carbon_node.core import TaskId
from carbon_node.wire import HWResourceImpl, MLModelImpl, TaskIdImpl, UserInputImpl

ML, HW, USER = InputKind.ML_MODEL, InputKind.HW_RESOURCES, InputKind.USER_INPUT


class FakeClock:
    """A settable monotonic clock, in seconds."""

    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def sample(kind: InputKind, problem_id: int, iteration_id: int = 1, tag: str = "") -> Any:
    task = TaskIdImpl(problem_id, iteration_id)
    if kind is ML:
        return MLModelImpl(model=tag or "m", task_id=task)
    if kind is HW:
        return HWResourceImpl(hw_description=tag, task_id=task)
    return UserInputImpl(problem_definition=tag, task_id=task)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.mark.parametrize(
    "order",
    [(ML, HW, USER), (ML, USER, HW), (HW, ML, USER), (HW, USER, ML), (USER, ML, HW), (USER, HW, ML)],
    ids=lambda order: "-".join(k.value for k in order),
)
def test_a_task_is_released_when_its_third_input_arrives_in_any_order(order: tuple[InputKind, ...], clock: FakeClock) -> None:
    assembler = Assembler(clock=clock)
    assert assembler.add(order[0], sample(order[0], 7)) == []
    assert assembler.add(order[1], sample(order[1], 7)) == []
    (release,) = assembler.add(order[2], sample(order[2], 7))
    assert release.kind is ReleaseKind.COMPLETE
    assert release.inputs.task_id == TaskId(7, 1)
    assert release.inputs.complete
    assert release.error is None
    assert assembler.pending_count == 0


def test_inputs_of_different_tasks_are_not_mixed(clock: FakeClock) -> None:
    assembler = Assembler(clock=clock)
    assembler.add(ML, sample(ML, 1))
    assembler.add(HW, sample(HW, 2))
    assert assembler.add(USER, sample(USER, 1)) == []
    assert assembler.add(USER, sample(USER, 2, iteration_id=2)) == []
    assert assembler.pending_count == 3


@pytest.mark.parametrize("kind", [ML, HW, USER])
def test_task_id_zero_zero_is_rejected(kind: InputKind, clock: FakeClock) -> None:
    assembler = Assembler(clock=clock)
    assert assembler.add(kind, sample(kind, 0, 0)) == []
    assert assembler.pending_count == 0


def test_a_second_sample_of_the_same_input_replaces_the_first(clock: FakeClock) -> None:
    assembler = Assembler(clock=clock)
    assembler.add(ML, sample(ML, 3, tag="first"))
    assembler.add(ML, sample(ML, 3, tag="second"))
    assembler.add(HW, sample(HW, 3))
    (release,) = assembler.add(USER, sample(USER, 3))
    assert release.inputs.ml_model is not None
    assert release.inputs.ml_model.model == "second"


def test_an_incomplete_task_expires_after_the_input_timeout_naming_missing_inputs(clock: FakeClock) -> None:
    assembler = Assembler(input_timeout_s=900.0, clock=clock)
    assembler.add(USER, sample(USER, 4))
    clock.now_s += 899.0
    assert assembler.expire() == []
    clock.now_s += 1.0
    (release,) = assembler.expire()
    assert release.kind is ReleaseKind.EXPIRED
    assert release.inputs.missing == ["ml_model", "hw_resources"]
    assert release.error is not None and "ml_model, hw_resources" in release.error and "900 s" in release.error
    assert assembler.pending_count == 0


def test_next_expiry_is_the_oldest_pending_task_plus_the_timeout(clock: FakeClock) -> None:
    assembler = Assembler(input_timeout_s=10.0, clock=clock)
    assert assembler.next_expiry_s() is None
    assembler.add(ML, sample(ML, 1))
    clock.now_s += 3.0
    assembler.add(ML, sample(ML, 2))
    assert assembler.next_expiry_s() == pytest.approx(110.0)


def test_the_oldest_pending_task_is_evicted_beyond_max_pending(clock: FakeClock) -> None:
    assembler = Assembler(max_pending=2, clock=clock)
    assembler.add(ML, sample(ML, 1))
    assembler.add(ML, sample(ML, 2))
    (release,) = assembler.add(HW, sample(HW, 3))
    assert release.kind is ReleaseKind.EVICTED
    assert release.inputs.task_id == TaskId(1, 1)
    assert release.error is not None and "more than 2" in release.error
    assert assembler.pending_count == 2


@pytest.mark.parametrize("kind", [ML, HW, USER])
def test_inputs_arriving_after_a_task_was_released_are_ignored(kind: InputKind, clock: FakeClock) -> None:
    assembler = Assembler(clock=clock)
    for k in (ML, HW, USER):
        assembler.add(k, sample(k, 5))
    assert assembler.add(kind, sample(kind, 5)) == []
    assert assembler.pending_count == 0
    assert assembler.was_released(TaskId(5, 1))


def test_an_expired_task_is_not_released_again_when_its_inputs_complete_late(clock: FakeClock) -> None:
    assembler = Assembler(input_timeout_s=1.0, clock=clock)
    assembler.add(ML, sample(ML, 6))
    clock.now_s += 2.0
    assert len(assembler.expire()) == 1
    assert assembler.add(HW, sample(HW, 6)) == []
    assert assembler.add(USER, sample(USER, 6)) == []
    assert assembler.pending_count == 0


def test_the_memory_of_answered_ids_is_bounded(clock: FakeClock) -> None:
    assembler = Assembler(answered_capacity=2, clock=clock)
    for problem_id in (1, 2, 3):
        for k in (ML, HW, USER):
            assembler.add(k, sample(k, problem_id))
    assert not assembler.was_released(TaskId(1, 1))
    assert assembler.was_released(TaskId(2, 1)) and assembler.was_released(TaskId(3, 1))


def test_release_times_come_from_the_injected_clock(clock: FakeClock) -> None:
    assembler = Assembler(clock=clock)
    assembler.add(ML, sample(ML, 8))
    clock.now_s += 2.5
    assembler.add(HW, sample(HW, 8))
    (release,) = assembler.add(USER, sample(USER, 8))
    assert (release.first_input_s, release.released_s) == (100.0, 102.5)


@pytest.mark.parametrize("kwargs", [{"input_timeout_s": 0.0}, {"max_pending": 0}, {"answered_capacity": 0}])
def test_invalid_bounds_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Assembler(**kwargs)


def _send_all(assembler: Assembler, problem_id: int, tag: str = "") -> list[Any]:
    releases: list[Any] = []
    for k in (ML, HW, USER):
        releases.extend(assembler.add(k, sample(k, problem_id, tag=tag)))
    return releases


def test_a_released_task_id_whose_three_inputs_come_again_is_released_again_with_what_was_answered(
    clock: FakeClock,
) -> None:
    assembler = Assembler(clock=clock)
    (first,) = _send_all(assembler, 5, tag="a")
    assert first.fingerprint is not None and first.answered_before is None
    (again,) = _send_all(assembler, 5, tag="b")  # a restarted orchestrator numbering from 1 again
    assert again.kind is ReleaseKind.COMPLETE
    assert again.inputs.ml_model.model == "b"
    assert again.answered_before == first.fingerprint != again.fingerprint
    (third,) = _send_all(assembler, 5, tag="b")  # the same inputs once more
    assert third.fingerprint == again.fingerprint == third.answered_before


def test_late_inputs_of_a_released_task_that_never_complete_are_dropped_without_an_answer(clock: FakeClock) -> None:
    assembler = Assembler(input_timeout_s=1.0, clock=clock)
    _send_all(assembler, 5)
    assert assembler.add(USER, sample(USER, 5, tag="new")) == []
    assert assembler.next_expiry_s() == pytest.approx(101.0)
    clock.now_s += 2.0
    assert assembler.expire() == []
    assert assembler.next_expiry_s() is None
    assert assembler.add(ML, sample(ML, 5)) == [] and assembler.add(HW, sample(HW, 5)) == []  # the held one is gone


def test_reloaded_bounds_apply_to_held_and_new_tasks(clock: FakeClock) -> None:
    assembler = Assembler(input_timeout_s=900.0, max_pending=3, clock=clock)
    for problem in (1, 2, 3):
        assembler.add(ML, sample(ML, problem))
    assembler.reconfigure(input_timeout_s=10.0, max_pending=3)
    assert assembler.next_expiry_s() == pytest.approx(110.0)
    clock.now_s += 10.0
    assert [r.inputs.task_id for r in assembler.expire()] == [TaskId(1, 1), TaskId(2, 1), TaskId(3, 1)]
    assembler.reconfigure(input_timeout_s=10.0, max_pending=1)
    assembler.add(ML, sample(ML, 4))
    (release,) = assembler.add(ML, sample(ML, 5))
    assert release.kind is ReleaseKind.EVICTED and "more than 1" in (release.error or "")
    with pytest.raises(ValueError):
        assembler.reconfigure(input_timeout_s=0.0, max_pending=1)
