"""Two nodes on one domain: one answers, the other stands by and takes over (real Cyclone runtimes, loopback).

A process that dies is the system test's (``tests/system/test_standby.py``, two network namespaces,
SIGKILL); here the active node stops gracefully or its announcement ends, in one process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from carbon_node.bus.orchestrator import Orchestrator
from carbon_node.bus.runtime import NodeRuntime
from carbon_node.bus.standby import StandbyOptions, StandbyView
from carbon_node.core import TaskId
from carbon_node.wire import Status
from tests.integration.test_bus_runtime import WAIT_S, MemoryJournal, ScriptedHandler, task


@pytest.fixture
def orchestrator(dds_domain: int) -> Iterator[Orchestrator]:
    with Orchestrator(dds_domain) as orch:
        yield orch


@pytest.fixture
def nodes(dds_domain: int) -> Iterator[Callable[..., tuple[NodeRuntime, ScriptedHandler, list[StandbyView]]]]:
    started: list[NodeRuntime] = []

    def start(**options: Any) -> tuple[NodeRuntime, ScriptedHandler, list[StandbyView]]:
        handler, roles = ScriptedHandler(), []
        standby = StandbyOptions(**options.pop("standby", {}))
        runtime = NodeRuntime(handler, domain_id=dds_domain, standby=standby, on_role=roles.append, **options)
        runtime.start(WAIT_S)
        started.append(runtime)
        return runtime, handler, roles

    yield start
    for runtime in started:
        runtime.stop(WAIT_S)


def _until(check: Callable[[], bool], timeout_s: float = WAIT_S) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout_s, "condition not reached"
        time.sleep(0.02)
    return time.monotonic() - started


def test_the_first_node_is_active_and_a_later_one_stands_by_and_answers_nothing(
    orchestrator: Orchestrator, nodes: Callable[..., Any]
) -> None:
    _first, first_handler, first_roles = nodes()
    second, second_handler, second_roles = nodes()
    assert [v.role for v in first_roles] == ["active"]
    assert [v.role for v in second_roles] == ["standby"]
    assert second_roles[0].active_node_id == first_roles[0].node_id
    for problem in range(1, 21):
        task(orchestrator, problem, "inline")
    orchestrator.wait_outputs(20, WAIT_S)
    time.sleep(0.5)
    assert orchestrator.output_count() == 20  # one answer each: the standby published nothing
    assert len(first_handler.handled) == 20 and second_handler.handled == []
    _until(lambda: second.standby_view() is not None and second.standby_view().held == 0)  # type: ignore[union-attr]
    view = second.standby_view()
    assert view is not None and view.role == "standby" and any(first_roles[0].node_id in o for o in view.others)


def test_a_standby_publishes_no_status(orchestrator: Orchestrator, nodes: Callable[..., Any]) -> None:
    nodes()
    orchestrator.wait_status(Status.NODE_IDLE, WAIT_S)
    seen = len(orchestrator.statuses())
    nodes()
    time.sleep(1.0)
    assert len(orchestrator.statuses()) == seen


def test_the_standby_takes_over_when_the_active_node_stops_and_answers_what_it_held(
    orchestrator: Orchestrator, nodes: Callable[..., Any]
) -> None:
    journal = MemoryJournal()
    first, first_handler, _ = nodes()
    _second, second_handler, second_roles = nodes(journal=journal)
    first_handler.slow_release.clear()
    answered = task(orchestrator, 1, "inline")
    orchestrator.wait_output(answered, WAIT_S)
    _until(lambda: answered in journal.outputs)  # the standby kept the active node's answer, with its inputs
    assert journal.fingerprints[answered] is not None
    before = len(orchestrator.statuses())
    first.stop(WAIT_S)  # unannounced once it has answered everything: the standby takes over at once
    took_over_s = _until(lambda: [v.role for v in second_roles][-1:] == ["active"])
    print(f"graceful stop to takeover: {took_over_s:.3f} s")
    orchestrator.wait_status(Status.NODE_IDLE, WAIT_S, after=before)
    later = task(orchestrator, 2, "inline")
    orchestrator.wait_output(later, WAIT_S)
    assert second_handler.handled == [later]  # the answered task was not answered again


def test_with_standby_off_every_node_answers_as_upstream_does(orchestrator: Orchestrator, nodes: Callable[..., Any]) -> None:
    _, first_handler, first_roles = nodes(standby={"enabled": False})
    _, second_handler, second_roles = nodes(standby={"enabled": False})
    assert first_roles[0].role == second_roles[0].role == "active"
    task_id = task(orchestrator, 1, "inline")
    _until(lambda: first_handler.handled == second_handler.handled == [task_id])


def test_a_task_whose_output_the_standby_never_saw_is_answered_after_the_takeover(
    orchestrator: Orchestrator, nodes: Callable[..., Any]
) -> None:
    first, first_handler, _ = nodes()
    _second, second_handler, second_roles = nodes()
    slow = task(orchestrator, 7, "slow")
    assert first_handler.slow_started.wait(WAIT_S)
    # The active node "dies" without answering: its announcement ends (as a lease would), its task hangs.
    first._standby.announcer.close()  # type: ignore[union-attr]
    _until(lambda: [v.role for v in second_roles][-1:] == ["active"])
    first_handler.slow_release.set()
    orchestrator.wait_output(slow, WAIT_S)
    _until(lambda: slow in second_handler.handled)
    assert TaskId(7, 1) in second_handler.handled
