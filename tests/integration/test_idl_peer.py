"""The node matches a Cyclone peer that declares the types from the upstream IDL and checks type information.

Cyclone matches Cyclone endpoints by their TypeInformation (only eProsima's are matched by name, see
:mod:`carbon_node.bus.cyclone`): a ``sequence<octet>`` the node declared as ``uint8`` (TK_UINT8) is not
assignable to the IDL's ``octet`` (TK_BYTE), and such a peer then got nothing from the node.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from carbon_node import wire as wire_types
from carbon_node.bus.runtime import NodeRuntime
from carbon_node.engine.config import EngineConfig
from carbon_node.engine.engine import Engine
from carbon_node.testing import FakeMeasurer

from ..conftest import LOOPBACK_CYCLONE_XML
from .cyclone_idl_peer import load_idl

PEER = Path(__file__).resolve().parent / "cyclone_idl_peer.py"
WAIT_S = 20.0  # generous: discovery and one task on a loaded 2-core machine


@pytest.fixture
def node(dds_domain: int) -> Iterator[NodeRuntime]:
    runtime = NodeRuntime(Engine(EngineConfig(grid_ci_g_per_kwh=100.0), FakeMeasurer()), domain_id=dds_domain)
    runtime.start(WAIT_S)
    yield runtime
    runtime.stop(WAIT_S)


def run_peer(domain: int, problem_id: int) -> subprocess.CompletedProcess[str]:
    # Only the loopback configuration: nothing that relaxes Cyclone's type checks.
    env = {**os.environ, "CYCLONEDDS_URI": LOOPBACK_CYCLONE_XML}
    command = [sys.executable, str(PEER), str(domain), str(problem_id), str(WAIT_S)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=WAIT_S + 30.0, check=False)


def test_a_peer_with_the_upstream_idl_types_gets_status_and_output_from_inputs_it_wrote(
    dds_domain: int, node: NodeRuntime
) -> None:
    peer = run_peer(dds_domain, 41)
    assert peer.returncode == 0, peer.stdout + peer.stderr
    result = json.loads(peer.stdout.strip().splitlines()[-1])
    assert "NODE_IDLE" in result["statuses"]
    output = result["output"]
    assert output["task_id"] == [41, 1]
    extra = json.loads(output["extra_data"])
    assert extra["mode"] == "no_model"
    assert extra["num_outputs"] == 3  # the node decoded the peer's octets


@pytest.mark.parametrize(
    "name", ["TaskIdImpl", "NodeStatusImpl", "UserInputImpl", "MLModelImpl", "HWResourceImpl", "CO2FootprintImpl"]
)
def test_the_type_information_of_each_wire_class_is_the_one_of_the_idl(name: str) -> None:
    idl_types = load_idl()
    ours = getattr(wire_types, name)
    assert ours.__idl__.get_type_info() == idl_types[name].__idl__.get_type_info()
