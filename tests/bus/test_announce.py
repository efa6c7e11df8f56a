"""The announcement topic: its IDL, its bytes, and who is live on a real loopback domain."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cyclonedds.domain import DomainParticipant

from carbon_node.bus.announce import (
    LEASE_S,
    AnnouncementBoard,
    Announcer,
    CarbonNodeAnnouncementImpl,
)

IDL = Path(__file__).resolve().parents[2] / "carbon_node" / "bus" / "idl" / "carbon_node.idl"
WAIT_S = 10.0


def _until(check: object, timeout_s: float = WAIT_S) -> float:
    """Seconds until ``check()`` is true; fails after ``timeout_s``."""
    started = time.monotonic()
    while not check():  # type: ignore[operator]
        assert time.monotonic() - started < timeout_s, "condition not reached"
        time.sleep(0.02)
    return time.monotonic() - started


def test_the_python_type_follows_the_idl_member_by_member() -> None:
    body = re.search(r"struct CarbonNodeAnnouncementImpl\s*\{(.*?)\};", IDL.read_text(), re.DOTALL)
    assert body is not None
    members = re.findall(r"^\s*(@key\s+)?([\w<>]+)\s+(\w+);", body.group(1), re.MULTILINE)
    idl_types = {"string": str, "double": float, "boolean": bool, "sequence<string>": list}
    fields = CarbonNodeAnnouncementImpl.__dataclass_fields__
    assert [name for _, _, name in members] == list(fields)
    assert [name for k, _, name in members if k] == ["node_id"]
    sample = CarbonNodeAnnouncementImpl()
    for _, idl_type, name in members:
        assert isinstance(getattr(sample, name), idl_types[idl_type]), name
    assert "@final" in IDL.read_text()


def test_an_announcement_travels_as_xcdr1_plain_cdr() -> None:
    data = CarbonNodeAnnouncementImpl(node_id="h:1:abc", hardware=["NVIDIA H100"]).serialize()
    assert data[:4] == b"\x00\x01\x00\x00"  # CDR_LE: XCDR1, as the SustainML types (PROTOCOL.md 2.1)
    assert CarbonNodeAnnouncementImpl.deserialize(data).hardware == ["NVIDIA H100"]


def test_a_board_sees_announcements_their_changes_and_a_clean_goodbye(dds_domain: int) -> None:
    participant = DomainParticipant(dds_domain)
    board = AnnouncementBoard(participant)
    peer = DomainParticipant(dds_domain)
    host = Announcer(peer, role="measure_host", state="idle", hardware=["NVIDIA H100"], power_sources=["nvml"])
    node = Announcer(peer, role="node", state="standby", started_at_s=host.sample.started_at_s + 1)
    _until(lambda: len(board.live()) == 2)
    assert [a.node_id for a in board.live()] == [host.node_id, node.node_id]  # oldest first
    assert board.live("measure_host")[0].hardware == ["NVIDIA H100"]
    node.update(state="active", detail={"bus": "cyclone"})
    _until(lambda: board.live("node")[0].state == "active")
    assert board.live("node")[0].details() == {"bus": "cyclone"}
    host.close()
    assert _until(lambda: not board.live("measure_host")) < LEASE_S  # unregistered: gone before the lease
    node.close()


_ANNOUNCE_AND_WAIT = """
import sys, time
from cyclonedds.domain import DomainParticipant
from carbon_node.bus.announce import Announcer
announcer = Announcer(DomainParticipant(int(sys.argv[1])), role="node", state="active")  # kept: a collected writer is deleted
print("announced", flush=True)
time.sleep(600)
"""


def test_a_killed_process_is_gone_for_everyone_within_the_lease(dds_domain: int) -> None:
    board = AnnouncementBoard(DomainParticipant(dds_domain))
    child = subprocess.Popen([sys.executable, "-c", _ANNOUNCE_AND_WAIT, str(dds_domain)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "announced"
        _until(lambda: len(board.live("node")) == 1)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        gone_s = _until(lambda: not board.live("node"))
        assert gone_s < LEASE_S + 1.0, gone_s
    finally:
        if child.poll() is None:
            child.kill()


@pytest.mark.parametrize("text", ["", "[1]", "not json"])
def test_a_detail_that_is_not_a_json_object_reads_as_empty(text: str) -> None:
    assert CarbonNodeAnnouncementImpl(detail=text).details() == {}
