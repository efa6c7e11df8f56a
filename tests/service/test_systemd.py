"""The sd_notify protocol, spoken to a real unix datagram socket as systemd would listen on it."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from carbon_node.service.systemd import Notifier


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(2.0)
    yield sock, path
    sock.close()


def receive(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_ready_sends_ready_and_status_in_one_datagram(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    assert Notifier({"NOTIFY_SOCKET": path}).ready(status="idle on DDS domain 3")
    assert receive(sock) == "READY=1\nSTATUS=idle on DDS domain 3"


def test_stopping_and_watchdog_messages(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    notifier.stopping()
    notifier.watchdog()
    assert [receive(sock), receive(sock)] == ["STOPPING=1", "WATCHDOG=1"]


def test_abstract_socket_names_start_with_at() -> None:
    name = f"carbon-node-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(2.0)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).status("measuring")
        assert receive(sock) == "STATUS=measuring"


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready()


def test_a_missing_socket_is_reported_not_raised(tmp_path: Path) -> None:
    assert not Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}).watchdog()


@pytest.mark.parametrize(
    ("environ", "interval_s"),
    [
        ({"WATCHDOG_USEC": "20000000"}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1234"}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "999"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec_for_this_pid(environ: dict[str, str], interval_s: float | None) -> None:
    assert Notifier(environ, pid=1234).watchdog_interval_s == interval_s
