"""The unit under a real systemd: Debian bookworm booted with ``systemd-nspawn``, the node installed with
the README's own commands (pip pointed at a local wheelhouse), and the node driven from the host.

nspawn shares the host's network (no ``--private-network``): the unit's environment file keeps DDS on
loopback, and the host talks to the node with ``carbon-node send-task`` and an :class:`Orchestrator`.
One boot serves every test of this module, in order.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from carbon_node.bus.orchestrator import Orchestrator
from carbon_node.wire import Status
from tests.conftest import LOOPBACK_CYCLONE_XML, next_domain
from tests.system.conftest import CLEAN_PATH, copy_sources, readme_block, require_root_and

pytestmark = [pytest.mark.system, pytest.mark.timeout(1500)]

BOOT_TIMEOUT_S = 60.0
INSTALL_TIMEOUT_S = 600.0
SYSTEMCTL_TIMEOUT_S = 90.0
TASK_TIMEOUT_S = 120.0
RESTART_TIMEOUT_S = 60.0
STOP_LIMIT_S = 45.0
"""The unit's TimeoutStopSec: an idle node must stop well within it."""
SRC_IN_GUEST = "/root/carbon-node"
MODELS_IN_GUEST = "/srv/models"


@dataclass
class Guest:
    """A booted bookworm: run commands in it, read its files, and the host-side view of its node."""

    root: Path
    nspawn: subprocess.Popen[str]
    leader: int
    domain: int
    orchestrator: Orchestrator
    timings: dict[str, float] = field(default_factory=dict)

    def sh(self, script: str, *, timeout_s: float = SYSTEMCTL_TIMEOUT_S, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``script`` with ``sh -c`` inside the guest (all its namespaces), with a clean environment."""
        done = subprocess.run(
            ["nsenter", "--target", str(self.leader), "--all", "--", "/bin/sh", "-c", script],
            env={"PATH": CLEAN_PATH, "HOME": "/root", "LANG": "C.UTF-8"},
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if check and done.returncode != 0:
            output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            pytest.fail(f"in the guest: {script!r} exited {done.returncode}\n{output}\n{self.journal()}")
        return done

    def journal(self) -> str:
        done = subprocess.run(
            ["nsenter", "--target", str(self.leader), "--all", "--", "journalctl", "-u", "carbon-node", "--no-pager", "-n", "60"],
            env={"PATH": CLEAN_PATH},
            capture_output=True,
            text=True,
            timeout=30,
        )
        return "journal of carbon-node:\n" + done.stdout[-6000:]

    def prop(self, name: str) -> str:
        return self.sh(f"systemctl show -P {name} carbon-node").stdout.strip()


def send_task(domain: int, *args: str, timeout_s: float = TASK_TIMEOUT_S) -> dict:
    """``carbon-node send-task ... --json`` from the host, on loopback."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("CARBON_NODE_", "SUSTAINML_"))}
    environ["CYCLONEDDS_URI"] = LOOPBACK_CYCLONE_XML
    done = subprocess.run(
        [sys.executable, "-m", "carbon_node", "send-task", "--json", "--domain-id", str(domain),
         "--timeout-s", str(timeout_s), *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout_s + 30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict = json.loads(done.stdout)
    return result


def wait_for_leader(nspawn: subprocess.Popen[str], timeout_s: float) -> int:
    """The pid (host view) of the guest's systemd: the child of systemd-nspawn."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if nspawn.poll() is not None:
            pytest.fail(f"systemd-nspawn exited {nspawn.returncode}")
        for child in Path(f"/proc/{nspawn.pid}/task/{nspawn.pid}/children").read_text().split():
            try:
                if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                    return int(child)
            except OSError:
                pass  # gone meanwhile (nspawn's intermediate child)
        time.sleep(0.2)
    pytest.fail(f"the guest's systemd did not start within {timeout_s:g} s")


def shut_down(nspawn: subprocess.Popen[str], leader: int | None) -> None:
    """Power the guest off at once (its units were tested already), bounded; then kill systemd-nspawn by pid."""
    started = time.monotonic()
    if nspawn.poll() is None and leader is not None:
        command = ["nsenter", "--target", str(leader), "--all", "--", "systemctl", "poweroff", "--force"]
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(command, env={"PATH": CLEAN_PATH}, capture_output=True, timeout=30)
        with contextlib.suppress(subprocess.TimeoutExpired):
            nspawn.wait(30)
    if nspawn.poll() is None:
        nspawn.kill()
        nspawn.wait(30)
    print(f"guest powered off in {time.monotonic() - started:.1f} s")


@pytest.fixture(scope="module")
def guest(bookworm_rootfs: Path, wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    require_root_and("systemd-nspawn", "nsenter")
    from carbon_node.measure.tiny import build_tiny_text_model

    work = tmp_path_factory.mktemp("systemd")
    root = work / "root"
    subprocess.run(["cp", "-a", "--reflink=auto", str(bookworm_rootfs), str(root)], check=True, timeout=300)
    copy_sources(root / SRC_IN_GUEST.lstrip("/"))
    build_tiny_text_model(root / MODELS_IN_GUEST.lstrip("/") / "tiny-bert")
    domain = next_domain()
    nspawn = subprocess.Popen(
        ["systemd-nspawn", "--quiet", "-D", str(root), "-b", "--register=no", "--keep-unit", "--console=pipe",
         f"--bind-ro={wheelhouse}:/wheelhouse"],
        stdin=subprocess.DEVNULL,
        stdout=(work / "console.log").open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    leader: int | None = None
    mp = pytest.MonkeyPatch()
    try:
        leader = wait_for_leader(nspawn, BOOT_TIMEOUT_S)
        mp.setenv("CYCLONEDDS_URI", LOOPBACK_CYCLONE_XML)  # the host side of the test stays on loopback
        with Orchestrator(domain) as orchestrator:
            g = Guest(root, nspawn, leader, domain, orchestrator)
            deadline = time.monotonic() + BOOT_TIMEOUT_S
            while True:  # the guest's systemd may not answer yet on its private socket
                done = g.sh("systemctl is-system-running --wait", timeout_s=BOOT_TIMEOUT_S, check=False)
                state = done.stdout.strip()
                if state in ("running", "degraded") or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            failed = g.sh("systemctl --failed", check=False).stdout
            assert state in ("running", "degraded"), f"guest systemd is {state!r}: {done.stderr} {failed}"
            yield g
    finally:
        mp.undo()
        shut_down(nspawn, leader)
        started = time.monotonic()
        shutil.rmtree(work, ignore_errors=True)
        print(f"guest root removed in {time.monotonic() - started:.1f} s")


@pytest.fixture(scope="module")
def installed(guest: Guest) -> Guest:
    """The README's systemd section, run line by line as root in the guest (pip reads a local wheelhouse)."""
    # The operator's optional environment file: this test's DDS domain, loopback, no model hub.
    guest.sh(
        "mkdir -p /etc/carbon-node && printf '%s\\n' "
        f"'SUSTAINML_DOMAIN_ID={guest.domain}' 'CYCLONEDDS_URI={LOOPBACK_CYCLONE_XML}' 'HF_HUB_OFFLINE=1' "
        "> /etc/carbon-node/carbon-node.env"
    )
    lines = [line for line in readme_block("### systemd") if not line.endswith(" -f")]  # `journalctl -f` follows forever
    assert any("enable --now carbon-node" in line for line in lines), lines
    for line in lines:
        started = time.monotonic()
        script = f"set -e; cd {SRC_IN_GUEST}; export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheelhouse; {line}"
        guest.sh(script, timeout_s=INSTALL_TIMEOUT_S)
        guest.timings[line] = time.monotonic() - started
    for line, seconds in guest.timings.items():
        print(f"guest: {seconds:6.1f} s  {line}")
    return guest


def test_the_readme_install_starts_the_unit_active_after_ready(installed: Guest) -> None:
    assert installed.prop("ActiveState") == "active"
    assert installed.prop("SubState") == "running"
    # Type=notify: active only after READY=1, which the node sends once NODE_IDLE is published.
    assert installed.prop("StatusText") == f"idle on DDS domain {installed.domain}"
    installed.orchestrator.wait_status(Status.NODE_IDLE, 10.0)
    assert installed.prop("NRestarts") == "0"
    journal = installed.journal()
    assert "cannot read configuration file" not in journal and "216/GROUP" not in journal
    health = installed.sh("carbon-node health --state-dir /var/lib/carbon-node")  # as the README says
    assert health.stdout.startswith("healthy: heartbeat"), health.stdout


def test_the_hardening_directives_are_in_force(installed: Guest) -> None:
    pid = installed.prop("MainPID")
    status = installed.sh(f"cat /proc/{pid}/status").stdout
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.MULTILINE), status
    assert re.search(r"^CapEff:\s+0+$", status, re.MULTILINE) and re.search(r"^CapBnd:\s+0+$", status, re.MULTILINE)
    assert re.search(r"^Seccomp:\s+2$", status, re.MULTILINE)  # SystemCallFilter= is a seccomp filter
    uid = int(re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert uid >= 61184, f"DynamicUser= should give a uid in 61184-65519, got {uid}"
    # ProtectSystem=strict: /usr is read-only for the service; StateDirectory= is writable.
    mountinfo = installed.sh(f"cat /proc/{pid}/mountinfo").stdout.splitlines()
    mounts = {fields[4]: fields[5].split(",") for fields in map(str.split, mountinfo)}
    assert "ro" in mounts["/"], mounts  # ProtectSystem=strict
    state_dir = installed.sh(f"tr '\\0' '\\n' < /proc/{pid}/environ | sed -n 's/^STATE_DIRECTORY=//p'").stdout.strip()
    assert state_dir == "/var/lib/carbon-node", state_dir
    real = installed.sh(f"readlink -f {state_dir}").stdout.strip()  # DynamicUser=: /var/lib/private/carbon-node
    covering = max((point for point in mounts if real == point or real.startswith(point.rstrip("/") + "/")), key=len)
    assert "rw" in mounts[covering], (real, covering, mounts[covering])


def test_a_send_task_from_the_host_is_answered(installed: Guest) -> None:
    result = send_task(installed.domain, "--model", "NO_MODEL")
    assert result["extra_data"]["mode"] == "no_model", result


def test_a_tracker_task_from_the_host_is_measured_and_the_journal_survives_a_sigkill(installed: Guest) -> None:
    task = ["--model", f"{MODELS_IN_GUEST}/tiny-bert", "--latency", "0.01", "--power", "10", "--task-id", "9100.1"]
    first = send_task(installed.domain, *task)
    assert first["extra_data"]["mode"] not in ("error", "no_model"), first
    assert first["energy_kwh"] > 0
    print(f"tracker task through the unit: {first['round_trip_s']:.2f} s round trip, mode {first['extra_data']['mode']}")

    old_pid = installed.prop("MainPID")
    installed.sh("systemctl kill --kill-whom=main -s KILL carbon-node")
    killed = time.monotonic()
    deadline = killed + RESTART_TIMEOUT_S
    while not (installed.prop("NRestarts") == "1" and installed.prop("ActiveState") == "active"):
        assert time.monotonic() < deadline, f"not restarted within {RESTART_TIMEOUT_S:g} s\n{installed.journal()}"
        time.sleep(0.5)
    assert installed.prop("MainPID") != old_pid
    print(f"SIGKILL to active again: {time.monotonic() - killed:.1f} s (RestartSec=5)")

    again = send_task(installed.domain, *task)  # the same task id: answered from the journal, not re-measured
    fields = ("energy_kwh", "carbon_g", "extra_data")
    assert [again[name] for name in fields] == [first[name] for name in fields]


def test_systemctl_reload_applies_the_changed_file_in_the_same_process(installed: Guest) -> None:
    onnx = ["--model", "unet", "--model-path", "/srv/none.onnx", "--latency", "1", "--power", "10"]
    pid = installed.prop("MainPID")
    toml = "/etc/carbon-node/carbon-node.toml"
    installed.sh(f"mkdir -p /etc/carbon-node && printf '[carbon_node]\\ngrid_ci_g_per_kwh = 123.0\\n' > {toml}")
    installed.sh("systemctl reload carbon-node")
    deadline = time.monotonic() + 30.0
    while "reload.done" not in installed.journal():
        assert time.monotonic() < deadline, installed.journal()
        time.sleep(0.5)
    result = send_task(installed.domain, *onnx)
    assert result["grid_ci_g_per_kwh"] == 123.0, result
    assert installed.prop("MainPID") == pid and installed.prop("ActiveState") == "active"
    installed.sh(f"rm {toml} && systemctl reload carbon-node")


def test_systemctl_stop_exits_0_and_the_bus_sees_node_terminating(installed: Guest) -> None:
    before = len(installed.orchestrator.statuses())
    started = time.monotonic()
    done = installed.sh("systemctl stop carbon-node", timeout_s=STOP_LIMIT_S + 30)
    stop_s = time.monotonic() - started
    print(f"systemctl stop (idle node): {stop_s:.2f} s")
    assert done.returncode == 0
    assert stop_s < STOP_LIMIT_S
    installed.orchestrator.wait_status(Status.NODE_TERMINATING, 10.0, after=before)
    assert installed.prop("ActiveState") == "inactive"
    assert installed.prop("ExecMainStatus") == "0"  # a clean exit, not a kill
    assert "Deactivated successfully" in installed.journal()

    started = time.monotonic()
    installed.sh("systemctl start carbon-node")
    print(f"systemctl start to active (READY=1): {time.monotonic() - started:.2f} s")
    assert installed.prop("ActiveState") == "active"


def test_the_powercap_drop_in_adds_the_group_once_it_exists(installed: Guest) -> None:
    # The README's RAPL steps that apply in a container (no udev here): the group, the drop-in, a restart.
    steps = [line for line in readme_block("**Energy counters without root.**") if "udev" not in line]
    assert any(line.startswith("groupadd") for line in steps) and any("powercap.conf" in line for line in steps), steps
    for line in steps:
        installed.sh(f"set -e; cd {SRC_IN_GUEST}; {line}")
    assert installed.prop("ActiveState") == "active"
    gid = installed.sh("getent group powercap | cut -d: -f3").stdout.strip()
    groups = installed.sh(f"grep '^Groups:' /proc/{installed.prop('MainPID')}/status").stdout.split()[1:]
    assert gid in groups, (gid, groups)
