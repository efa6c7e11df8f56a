"""The standby rule and what a standby holds, on announcements given by hand (no DDS)."""

from __future__ import annotations

import dataclasses
from typing import Any

from carbon_node.bus.announce import CarbonNodeAnnouncementImpl
from carbon_node.bus.assembler import Release, ReleaseKind
from carbon_node.bus.standby import OUTPUT_RACE_S, Standby, active_node
from carbon_node.core import TaskId, TaskOutput
from carbon_node.testing import make_inputs


def announcement(node_id: str, started_at_s: float, **fields: Any) -> CarbonNodeAnnouncementImpl:
    return CarbonNodeAnnouncementImpl(node_id=node_id, started_at_s=started_at_s, role=fields.pop("role", "node"), **fields)


class Board:
    def __init__(self) -> None:
        self.nodes: list[CarbonNodeAnnouncementImpl] = []

    def live(self, role: str | None = None) -> list[CarbonNodeAnnouncementImpl]:
        return [n for n in self.nodes if role is None or n.role == role]


class FakeAnnouncer:
    def __init__(self, sample: CarbonNodeAnnouncementImpl) -> None:
        self.sample = sample
        self.states: list[str] = []

    @property
    def node_id(self) -> str:
        return self.sample.node_id

    def update(self, *, state: str | None = None, detail: Any = None) -> None:
        if state is not None:
            self.states.append(state)
            self.sample = dataclasses.replace(self.sample, state=state)


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


class Journal:
    def __init__(self) -> None:
        self.rows: list[tuple[TaskId, str | None]] = []

    def lookup(self, task_id: TaskId) -> None:
        return None

    def record(self, output: TaskOutput, inputs_fingerprint: str | None = None) -> None:
        self.rows.append((output.task_id, inputs_fingerprint))


def standby(node_id: str, started_at_s: float, board: Board, **options: Any) -> tuple[Standby, Clock]:
    clock = Clock()
    me = FakeAnnouncer(announcement(node_id, started_at_s))
    return Standby(me, board, clock=clock, grace_s=0.3, **options), clock  # type: ignore[arg-type]


def release(problem: int) -> Release:
    inputs = make_inputs(model="NO_MODEL", task_id=(problem, 1))
    return Release(ReleaseKind.COMPLETE, inputs, 0.0, 0.0, fingerprint=f"fp{problem}")


def output(problem: int) -> TaskOutput:
    return TaskOutput(TaskId(problem, 1), 0.0, 0.0, 0.0, {"num_outputs": 1, "model_restrains": [], "mode": "no_model"})


def test_the_earliest_started_live_node_that_takes_part_is_active() -> None:
    nodes = [announcement("b", 20.0), announcement("a", 10.0), announcement("c", 5.0, standby_enabled=False)]
    assert active_node(nodes).node_id == "a"  # type: ignore[union-attr]
    assert active_node([announcement("y", 10.0), announcement("x", 10.0)]).node_id == "x"  # a tie: the smaller id
    assert active_node([announcement("h", 1.0, role="measure_host")]) is None


def test_a_node_decides_only_after_the_grace_and_stands_by_for_an_older_one() -> None:
    board = Board()
    board.nodes = [announcement("old", 10.0, state="active")]
    node, clock = standby("new", 20.0, board)
    assert node.update() is None and node.role == "starting" and node.holding
    clock.now_s += 0.3
    assert node.update() == "standby"
    assert node.view().active_node_id == "old"


def test_a_node_alone_is_active_and_a_younger_one_never_takes_over_from_it() -> None:
    board = Board()
    node, clock = standby("first", 10.0, board)
    clock.now_s += 1.0
    assert node.update() == "active" and not node.holding
    board.nodes = [node.announcer.sample, announcement("later", 30.0)]
    assert node.update() is None and node.role == "active"


def test_the_standby_takes_over_when_the_active_node_is_gone_and_answers_what_it_held() -> None:
    board = Board()
    board.nodes = [announcement("old", 10.0)]
    node, clock = standby("new", 20.0, board)
    clock.now_s += 1.0
    node.update()
    node.hold(release(1))
    node.hold(release(2))
    node.observe(output(1))  # the active node answered 1
    board.nodes = []  # its lease ended
    assert node.update() == "active"
    assert [r.inputs.task_id for r in node.take_held()] == [TaskId(2, 1)]


def test_an_output_seen_before_its_inputs_completed_here_answers_the_task_and_is_journaled() -> None:
    journal, board = Journal(), Board()
    node, clock = standby("new", 20.0, board, journal=journal)
    node.observe(output(5))
    node.hold(release(5))
    assert node.take_held() == []
    assert journal.rows == [(TaskId(5, 1), "fp5")]
    node.observe(output(6))
    clock.now_s += OUTPUT_RACE_S + 1  # too long ago to be this task's answer (an id reused since)
    node.hold(release(6))
    assert [r.inputs.task_id for r in node.take_held()] == [TaskId(6, 1)]


def test_with_standby_off_a_node_is_always_active() -> None:
    board = Board()
    board.nodes = [announcement("old", 1.0)]
    node, _ = standby("new", 20.0, board, enabled=False)
    assert node.update() == "active"
