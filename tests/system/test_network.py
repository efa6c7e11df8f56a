"""Discovery across a real link: two network namespaces joined by a veth pair, the node in one with its
default Cyclone configuration (no loopback-only ``CYCLONEDDS_URI``), ``carbon-node send-task`` in the
other. With multicast on the link, SPDP multicast discovery works; with multicast off, the README's
unicast peer list works, and without it nothing is found (negative control, bounded).

Addresses come from 198.18.0.0/15 (RFC 2544, benchmark testing) and exist only inside the namespaces
this test creates; nothing is configured on the host's own interfaces.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.system.conftest import REPO, require_root_and

pytestmark = [pytest.mark.system, pytest.mark.timeout(600)]

NODE_ADDRESS = "198.18.0.1"
PEER_ADDRESS = "198.18.0.2"
TASK_TIMEOUT_S = 60.0
NEGATIVE_TIMEOUT_S = 10.0
"""How long the negative control waits for an answer that must not come."""
NODE_STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Link:
    node_ns: str
    peer_ns: str
    node_dev: str
    peer_dev: str


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr}"


@pytest.fixture
def link() -> Iterator[Link]:
    require_root_and("ip")
    tag = f"{os.getpid() % 100000}"
    link = Link(f"cn-node-{tag}", f"cn-peer-{tag}", f"cnn{tag}", f"cnp{tag}")
    ip("netns", "add", link.node_ns)
    try:
        ip("netns", "add", link.peer_ns)
        ip(
            "link",
            "add",
            link.node_dev,
            "netns",
            link.node_ns,
            "type",
            "veth",
            "peer",
            "name",
            link.peer_dev,
            "netns",
            link.peer_ns,
        )
        for ns, dev, address in ((link.node_ns, link.node_dev, NODE_ADDRESS), (link.peer_ns, link.peer_dev, PEER_ADDRESS)):
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", f"{address}/24", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up", "multicast", "on")
            ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", dev)  # what a default route gives a real host
        yield link
    finally:
        for ns in (link.peer_ns, link.node_ns):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=30)


def clean_env(tmp_path: Path, domain: int, cyclone_uri: str | None) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("CARBON_NODE_", "SUSTAINML_", "CYCLONEDDS_"))}
    environ.update(
        {
            "SUSTAINML_DOMAIN_ID": str(domain),
            "CARBON_NODE_STATE_DIR": str(tmp_path / "state"),
            "CARBON_NODE_CACHE_DIR": str(tmp_path / "cache"),
        }
    )
    if cyclone_uri is not None:
        environ["CYCLONEDDS_URI"] = cyclone_uri
    return environ


@contextlib.contextmanager
def node_in(ns: str, tmp_path: Path, domain: int, cyclone_uri: str | None = None) -> Iterator[subprocess.Popen[str]]:
    """``carbon-node run`` inside ``ns``; SIGTERM (then SIGKILL, by pid) when done."""
    log = (tmp_path / f"node-{time.monotonic_ns()}.log").open("w")
    node = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "carbon_node", "run", "--log-format", "json", "--bus", "cyclone"],
        env=clean_env(tmp_path, domain, cyclone_uri),
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
    )
    try:
        yield node
    finally:
        node.send_signal(signal.SIGTERM)  # `ip netns exec` execs the command: this is the node's pid
        try:
            assert node.wait(NODE_STOP_TIMEOUT_S) == 0
        except (subprocess.TimeoutExpired, AssertionError):
            node.kill()
            node.wait(NODE_STOP_TIMEOUT_S)
            raise
        finally:
            log.close()


def send_task_from(
    ns: str, tmp_path: Path, domain: int, timeout_s: float, cyclone_uri: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = ["ip", "netns", "exec", ns, sys.executable, "-m", "carbon_node", "send-task", "--model", "NO_MODEL",
               "--timeout-s", str(timeout_s)]  # fmt: skip
    return subprocess.run(
        command, env=clean_env(tmp_path, domain, cyclone_uri), capture_output=True, text=True, timeout=timeout_s + 60
    )


def readme_peer_list(peer_address: str) -> str:
    """The README's troubleshooting ``CYCLONEDDS_URI`` with the other side's address filled in."""
    readme = (REPO / "README.md").read_text()
    match = re.search(r"export CYCLONEDDS_URI=('[^'\n]+')", readme[readme.index("## Troubleshooting") :])
    assert match, "README troubleshooting has no CYCLONEDDS_URI peer list"
    template = shlex.split(match.group(1))[0]
    assert "PEER_ADDRESS" in template
    return template.replace("PEER_ADDRESS", peer_address)


def assert_answered_across(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^mode\s+no_model$", done.stdout, re.MULTILINE), done.stdout
    statuses = re.search(r"^statuses\s+(.*)$", done.stdout, re.MULTILINE)
    assert statuses and "NODE_IDLE" in statuses.group(1), done.stdout  # the node's status crossed the link too


def test_multicast_discovery_across_a_veth_link_with_the_default_configuration(
    link: Link, tmp_path: Path, dds_domain: int
) -> None:
    with node_in(link.node_ns, tmp_path, dds_domain):
        started = time.monotonic()
        done = send_task_from(link.peer_ns, tmp_path, dds_domain, TASK_TIMEOUT_S)
        print(f"multicast across the link: answered after {time.monotonic() - started:.2f} s")
        assert_answered_across(done)


def test_without_multicast_the_readme_peer_list_works_and_nothing_is_found_without_it(
    link: Link, tmp_path: Path, dds_domain: int
) -> None:
    ip("-n", link.node_ns, "link", "set", "dev", link.node_dev, "multicast", "off")
    ip("-n", link.peer_ns, "link", "set", "dev", link.peer_dev, "multicast", "off")

    with node_in(link.node_ns, tmp_path, dds_domain):  # negative control: default configuration
        done = send_task_from(link.peer_ns, tmp_path, dds_domain, NEGATIVE_TIMEOUT_S)
        assert done.returncode != 0 and "mode" not in done.stdout, done.stdout + done.stderr
        assert "no carbon node seen on domain" in done.stderr, done.stderr  # a discovery failure, not another error
        assert done.returncode == 3

    node_uri, peer_uri = readme_peer_list(PEER_ADDRESS), readme_peer_list(NODE_ADDRESS)
    with node_in(link.node_ns, tmp_path, dds_domain, node_uri):
        started = time.monotonic()
        done = send_task_from(link.peer_ns, tmp_path, dds_domain, TASK_TIMEOUT_S, peer_uri)
        print(f"unicast peer list, multicast off: answered after {time.monotonic() - started:.2f} s")
        assert_answered_across(done)
