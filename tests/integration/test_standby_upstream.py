"""The standby rule with the node on the upstream bindings (the fake ``sustainml_py``): the upstream node
exists only once this node is active, and a task the old node answered is answered with its very output."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from types import ModuleType

from carbon_node.bus.orchestrator import Orchestrator
from carbon_node.bus.runtime import NodeRuntime
from carbon_node.bus.standby import StandbyOptions, StandbyView
from carbon_node.bus.upstream import UpstreamRuntime
from carbon_node.core import TaskId
from tests.bus.test_upstream import EchoHandler, accessor_task
from tests.bus.test_upstream import fake_upstream as fake_upstream  # the fixture
from tests.integration.test_bus_runtime import WAIT_S, ScriptedHandler, task


def _until(check: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_an_upstream_standby_creates_its_node_only_when_it_takes_over(fake_upstream: ModuleType, dds_domain: int) -> None:
    node_class = fake_upstream.CarbonFootprintNode
    node_class.instances.clear()
    active = NodeRuntime(ScriptedHandler(), domain_id=dds_domain, standby=StandbyOptions())
    active.start(WAIT_S)
    roles: list[StandbyView] = []
    upstream = UpstreamRuntime(EchoHandler(), standby=StandbyOptions(), on_role=roles.append, domain_id=dds_domain)
    try:
        with Orchestrator(dds_domain) as orchestrator:
            upstream.start(WAIT_S)
            assert [v.role for v in roles] == ["standby"] and node_class.instances == []  # nothing published
            answered = task(orchestrator, 5, "inline")
            published = orchestrator.wait_output(answered, WAIT_S)
            _until(lambda: upstream._presence is not None and upstream._presence.answered(answered) is not None)
            active.stop(WAIT_S)
            _until(lambda: [v.role for v in roles][-1:] == ["active"])
            assert len(node_class.instances) == 1
            # The orchestrator's held inputs reach the new upstream node: the answered task comes back as it was.
            ml, user, hw = accessor_task(fake_upstream, "inline")
            ml.task_id(fake_upstream.task_id(5, 1))
            _, co2 = node_class.instances[0].deliver(ml, user, hw)
            assert bytes(co2.extra_data()) == bytes(published.extra_data)
            assert json.loads(bytes(co2.extra_data()))["mode"] == "no_model"
            assert TaskId(5, 1) == answered
    finally:
        upstream.stop(WAIT_S)
        active.stop(WAIT_S)
