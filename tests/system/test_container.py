"""The image built and run: ``docker build`` on a local Debian base (no registry is reachable here), the
node in a container answering the host, the demo, ``docker stop``, and the HEALTHCHECK following the
node's heartbeat (healthy, then unhealthy when the node is wedged with SIGSTOP).

Debian's ``dockerd`` is started for the session when none runs (no bridge, no iptables: every container
and build uses the host network). The base image is a ``docker import`` of the systemd test's cached
bookworm rootfs (python3, python3-venv); pip reads a wheelhouse served on loopback during the build.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from carbon_node.bus.orchestrator import Orchestrator
from carbon_node.wire import Status
from tests.conftest import LOOPBACK_CYCLONE_XML
from tests.system.conftest import REPO, copy_sources, require_root_and, rootfs_key
from tests.system.test_systemd import send_task

pytestmark = [pytest.mark.system, pytest.mark.timeout(1500)]

DOCKERD_START_TIMEOUT_S = 60.0
IMPORT_TIMEOUT_S = 300.0
BUILD_TIMEOUT_S = 900.0
IDLE_TIMEOUT_S = 60.0
DEMO_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 45
"""``docker stop -t``: the compose file's stop_grace_period, above the node's 30 s shutdown bound."""
HEALTH_TIMEOUT_S = 90.0
IMAGE = "carbon-node-test:latest"


def docker(*args: str, timeout_s: float = 120.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout_s)
    if check and done.returncode != 0:
        pytest.fail(f"docker {' '.join(args[:3])} ... exited {done.returncode}: {done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done


def docker_answers() -> bool:
    with contextlib.suppress(subprocess.TimeoutExpired):
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    return False


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A running Docker daemon: the one already there, or Debian's dockerd started for this session."""
    require_root_and("docker", "dockerd")
    if docker_answers():
        yield
        return
    log = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
    daemon = subprocess.Popen(["dockerd", "--bridge=none", "--iptables=false"], stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + DOCKERD_START_TIMEOUT_S
        while not docker_answers():
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dockerd did not start within {DOCKERD_START_TIMEOUT_S:g} s: {log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield
    finally:
        daemon.terminate()
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(30)


@pytest.fixture(scope="session")
def base_image(dockerd: None, bookworm_rootfs: Path) -> str:
    """The cached rootfs as an image (imported once per rootfs)."""
    tag = f"carbon-node-test-base:{rootfs_key()}"
    if docker("image", "inspect", tag, check=False).returncode != 0:
        tar = subprocess.Popen(["tar", "-C", str(bookworm_rootfs), "-c", "."], stdout=subprocess.PIPE)
        command = ["docker", "import", "-", tag]
        done = subprocess.run(command, stdin=tar.stdout, capture_output=True, text=True, timeout=IMPORT_TIMEOUT_S)
        tar.wait(60)
        assert done.returncode == 0 and tar.returncode == 0, done.stderr
    return tag


def free_port(preferred: int) -> int:
    """``preferred`` when it is free on 127.0.0.1, else any free port."""
    for candidate in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise OSError("no free port on 127.0.0.1")


@contextlib.contextmanager
def served(directory: Path) -> Iterator[str]:
    """``directory`` over HTTP on 127.0.0.1 (pip's --find-links reads its index page).

    The port is derived from the directory's name when free: the URL is a build argument, and an
    unchanged one lets the next build reuse its cached torch layer.
    """
    port = free_port(20000 + int(hashlib.sha256(directory.name.encode()).hexdigest(), 16) % 10000)
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline and server.poll() is None, "the wheelhouse server did not start"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        server.wait(30)


@pytest.fixture(scope="session")
def image(base_image: str, wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``docker build`` of the repository's Dockerfile on the local base, pip offline on the wheelhouse."""
    context = copy_sources(tmp_path_factory.mktemp("context"))
    shutil.copy2(REPO / "Dockerfile", context / "Dockerfile")
    with served(wheelhouse) as url:
        started = time.monotonic()
        done = docker(
            "build", "--network", "host", "-t", IMAGE,
            "--build-arg", f"PYTHON_IMAGE={base_image}",
            "--build-arg", "PIP_NO_INDEX=1",
            "--build-arg", f"PIP_FIND_LINKS={url}",
            str(context),
            timeout_s=BUILD_TIMEOUT_S,
        )  # fmt: skip
    size_mb = int(docker("image", "inspect", "-f", "{{.Size}}", IMAGE).stdout) / 1e6
    print(f"docker build: {time.monotonic() - started:.0f} s; image {size_mb:.0f} MB (base {base_image})")
    assert "Successfully tagged" in done.stdout
    return IMAGE


def inspect(container: str, template: str) -> str:
    return docker("inspect", "-f", template, container).stdout.strip()


@pytest.fixture
def node_container(image: str, dds_domain: int) -> Iterator[str]:
    name = f"carbon-node-test-{os.getpid()}"
    docker("rm", "-f", "-v", name, check=False)
    try:
        yield name
    finally:
        docker("rm", "-f", "-v", name, check=False)


def wait_health(container: str, wanted: str, timeout_s: float) -> float:
    started = time.monotonic()
    while (state := inspect(container, "{{.State.Health.Status}}")) != wanted:
        assert time.monotonic() - started < timeout_s, (
            f"health {state!r}, not {wanted!r} after {timeout_s:g} s: {inspect(container, '{{json .State.Health}}')}"
        )
        time.sleep(0.5)
    return time.monotonic() - started


def test_the_node_container_answers_the_host_turns_unhealthy_when_wedged_and_stops_cleanly(
    node_container: str, dds_domain: int
) -> None:
    with Orchestrator(dds_domain) as orchestrator:
        started = time.monotonic()
        docker(
            "run", "-d", "--name", node_container, "--network", "host",
            "-e", f"SUSTAINML_DOMAIN_ID={dds_domain}", "-e", f"CYCLONEDDS_URI={LOOPBACK_CYCLONE_XML}", "-e", "HF_HUB_OFFLINE=1",
            # the image's HEALTHCHECK command, checked more often than its 10 s so that the test is short
            "--health-interval", "2s", "--health-retries", "2", "--health-start-period", "5s",
            IMAGE,
        )  # fmt: skip
        idle = orchestrator.wait_status(Status.NODE_IDLE, IDLE_TIMEOUT_S)
        print(f"docker run to NODE_IDLE seen on the host: {time.monotonic() - started:.2f} s")

        result = send_task(dds_domain, "--model", "NO_MODEL")
        assert result["extra_data"]["mode"] == "no_model", result
        print(f"healthy after {wait_health(node_container, 'healthy', HEALTH_TIMEOUT_S):.1f} s")
        assert "healthy: heartbeat" in inspect(node_container, "{{(index .State.Health.Log 0).Output}}")

        pid = int(inspect(node_container, "{{.State.Pid}}"))
        os.kill(pid, signal.SIGSTOP)  # wedged: the node (PID 1 inside) no longer runs at all
        try:
            print(f"SIGSTOP to unhealthy: {wait_health(node_container, 'unhealthy', HEALTH_TIMEOUT_S):.1f} s")
            assert "unhealthy: heartbeat" in inspect(node_container, "{{json .State.Health.Log}}")
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_health(node_container, "healthy", HEALTH_TIMEOUT_S)

        stop_started = time.monotonic()
        docker("stop", "-t", str(STOP_TIMEOUT_S), node_container, timeout_s=STOP_TIMEOUT_S + 30)
        stop_s = time.monotonic() - stop_started
        print(f"docker stop (idle node): {stop_s:.2f} s")
        assert inspect(node_container, "{{.State.ExitCode}}") == "0"  # SIGTERM handled, not killed (137)
        assert stop_s < STOP_TIMEOUT_S
        orchestrator.wait_status(Status.NODE_TERMINATING, 10.0, after=idle + 1)
    logs = docker("logs", node_container).stderr
    assert any(json.loads(line).get("event") == "node.stopped" for line in logs.splitlines() if line.startswith("{"))


def test_the_demo_passes_in_the_container(image: str) -> None:
    started = time.monotonic()
    done = docker("run", "--rm", "--network", "host", image, "demo", timeout_s=DEMO_TIMEOUT_S, check=False)
    print(f"docker run ... demo: {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
