"""Interop with a real Fast DDS peer: our Cyclone node and a Fast DDS 2.9 orchestrator see each other's samples.

``fastdds_peer`` (C++, built here from ``tests/integration/fastdds_peer``) plays the orchestrator and the two
providers: it writes one task's three inputs and prints, as one JSON line, the ``CO2FootprintImpl`` and the
statuses it received from ``CARBON_FOOTPRINT_NODE``. It exits non-zero when no output crosses within its
timeout, which the negative controls below check, so the positive tests cannot pass vacuously.

The peer is built once per session with cmake; the tests skip only when ``fastddsgen``, cmake or the Fast DDS
development packages (``libfastrtps-dev``, ``libfastcdr-dev``) are missing, and fail then under ``.ci/run``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cyclonedds.core import Policy, Qos
from cyclonedds.domain import DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from carbon_node.bus.runtime import NodeRuntime
from carbon_node.core import NO_MODEL, base_extra_data, decode_extra_data, encode_extra_data
from carbon_node.engine.engine import Engine
from carbon_node.measure.protocol import MeasureError, Measurement, MeasureSpec
from carbon_node.service.settings import load_settings
from carbon_node.service.wiring import engine_config
from carbon_node.wire import (
    CO2FootprintImpl,
    HWResourceImpl,
    MLModelImpl,
    NodeStatusImpl,
    Status,
    TaskIdImpl,
    UserInputImpl,
)
from tests.conftest import missing_tool

pytestmark = pytest.mark.interop

PEER_SOURCE_DIR = Path(__file__).parent / "fastdds_peer"
PEER_BUILD_DIR = PEER_SOURCE_DIR / "build"
REPO_ROOT = Path(__file__).resolve().parents[2]

CONFIGURE_TIMEOUT_S = 120.0
BUILD_TIMEOUT_S = 600.0
PEER_TIMEOUT_S = 20.0
"""Budget of one peer run (discovery, three inputs, output). A run usually takes 0.2-1.2 s; one whose inputs
race the node's discovery of the peer takes about 3 s more (Fast DDS resends at its next heartbeat)."""
NO_NODE_PEER_TIMEOUT_S = 3.0
"""Budget of a peer run with nobody on the domain: short, the failure is the timeout itself."""
SILENT_NODE_PEER_TIMEOUT_S = 6.0
"""Budget of a peer run against a node that never answers: long enough for discovery (up to ~1 s seen) to
finish first, so that the run fails for the silence and not for the missing match."""
NODE_START_TIMEOUT_S = 30.0
NODE_STOP_TIMEOUT_S = 20.0

IGNORE_TYPE_INFORMATION_XML = (
    '<CycloneDDS><Domain Id="any"><Compatibility><IgnoreTypeInformation>1.15'
    "</IgnoreTypeInformation></Compatibility></Domain></CycloneDDS>"
)
"""Cyclone matches Fast DDS (vendor 1.15) endpoints by type name (PROTOCOL.md 3.5 item 4)."""
LOOPBACK_DISCOVERY_XML = (
    '<CycloneDDS><Domain Id="any"><Discovery><ParticipantIndex>auto</ParticipantIndex>'
    '<Peers><Peer address="127.0.0.1"/></Peers></Discovery></Domain></CycloneDDS>'
)
"""Unicast discovery on loopback, both ways: multicast does not cross between Cyclone and Fast DDS on ``lo``
here. Cyclone listens on a well-known port (participant index) that the peer's initial-peer announcements
reach, and announces itself to Fast DDS's well-known ports on 127.0.0.1; either alone works, but a Cyclone
participant created before the peer is then found only at Cyclone's next periodic announcement."""

_MISSING_PACKAGE_MARKERS = ('provided by "fastrtps"', 'provided by "fastcdr"', "Could not find fastddsgen")
_FASTDDS_ENV_VARIABLES = (
    "FASTDDS_DEFAULT_PROFILES_FILE",
    "FASTRTPS_DEFAULT_PROFILES_FILE",
    "FASTDDS_ENVIRONMENT_FILE",
    "FASTDDS_BUILTIN_TRANSPORTS",
    "ROS_DISCOVERY_SERVER",
    "ROS_SUPER_CLIENT",
    "ROS2_EASY_MODE",
)


# --- the peer -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerRun:
    """One run of ``fastdds_peer``: exit status, its JSON report (None when it printed none) and stderr."""

    returncode: int
    report: dict[str, Any] | None
    stderr: str

    @property
    def extra_data(self) -> dict[str, Any]:
        """The output's ``extra_data`` as the peer received it, decoded as JSON."""
        assert self.report is not None and self.report["output"] is not None, self.stderr
        value, problem = decode_extra_data(self.report["output"]["extra_data"].encode("utf-8"))
        assert problem is None, problem
        return value


def _build_peer() -> Path:
    """Configure and build the peer (incremental), under a lock so that concurrent sessions do not collide."""
    if shutil.which("cmake") is None:
        missing_tool("cmake is not installed (needed to build the Fast DDS interop peer)")
    if shutil.which("fastddsgen") is None:
        missing_tool("fastddsgen is not installed (Debian package fastddsgen)")
    PEER_BUILD_DIR.mkdir(exist_ok=True)
    with open(PEER_BUILD_DIR / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        configure = subprocess.run(
            ["cmake", "-S", str(PEER_SOURCE_DIR), "-B", str(PEER_BUILD_DIR)],
            capture_output=True,
            text=True,
            timeout=CONFIGURE_TIMEOUT_S,
            check=False,
        )
        if configure.returncode != 0:
            output = configure.stdout + configure.stderr
            if any(marker in output for marker in _MISSING_PACKAGE_MARKERS):
                missing_tool("Fast DDS development packages are missing (libfastrtps-dev, libfastcdr-dev)")
            pytest.fail(f"cmake configure of the Fast DDS peer failed:\n{output}")
        build = subprocess.run(
            ["cmake", "--build", str(PEER_BUILD_DIR), "--parallel", "2"],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
        if build.returncode != 0:
            pytest.fail(f"building the Fast DDS peer failed:\n{build.stdout}{build.stderr}")
    return PEER_BUILD_DIR / "fastdds_peer"


@pytest.fixture(scope="session")
def fastdds_peer() -> Path:
    """The built ``fastdds_peer`` executable."""
    return _build_peer()


def run_peer(
    peer: Path, domain_id: int, timeout_s: float = PEER_TIMEOUT_S, *extra_args: str, node: NodeProcess | None = None
) -> PeerRun:
    """Run the peer on ``domain_id`` until it exits (it bounds itself by ``timeout_s``).

    With ``node``, the test fails at once (with the node's log) if that node process exits meanwhile.
    """
    env = {name: value for name, value in os.environ.items() if name not in _FASTDDS_ENV_VARIABLES}
    process = subprocess.Popen(
        [str(peer), "--domain", str(domain_id), "--timeout-s", str(timeout_s), *extra_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    # The peer's own deadline comes first; the extra time only catches a hung process.
    deadline = time.monotonic() + timeout_s + 15.0
    try:
        while process.poll() is None:
            if node is not None and node.process.poll() is not None:
                pytest.fail(f"the node process exited with status {node.process.returncode}:\n{node.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"fastdds_peer did not exit within {timeout_s + 15.0:g} s")
            time.sleep(0.05)
        stdout, stderr = process.communicate(timeout=5.0)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=5.0)
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    report = json.loads(lines[-1]) if lines else None
    return PeerRun(process.returncode, report, stderr)


# --- a plain Cyclone stand-in for the node ------------------------------------------------------------------


class CycloneStandIn:
    """A minimal carbon node made only of ``carbon_node.wire`` and cyclonedds.

    It proves the wire contract independently of the node runtime: entity name CARBON_FOOTPRINT_NODE, XCDR1,
    the upstream QoS, INITIALIZING then IDLE at start, RUNNING/IDLE around each task and one NO_MODEL
    output per task. With ``answer=False`` it matches every endpoint but never answers (the typical
    interop failure, used as a negative control).
    """

    POLL_S = 0.005

    def __init__(self, domain_id: int, *, answer: bool = True) -> None:
        self._answer = answer
        xcdr1 = Policy.DataRepresentation(use_cdrv0_representation=True)
        reliable = Policy.Reliability.Reliable(max_blocking_time=duration(milliseconds=100))
        keep_last_1 = Policy.History.KeepLast(depth=1)
        task_qos = Qos(
            reliable,
            Policy.Durability.TransientLocal,
            keep_last_1,
            Policy.ResourceLimits(max_samples=5000, max_instances=500, max_samples_per_instance=1),
            xcdr1,
        )
        self.participant = DomainParticipant(domain_id, qos=Qos(Policy.EntityName("CARBON_FOOTPRINT_NODE")))
        dp = self.participant

        def reader(name: str, data_type: type[Any]) -> DataReader[Any]:
            return DataReader(dp, Topic(dp, name, data_type), qos=task_qos)

        self._ml = reader("/sustainml/ml_model_provider/output", MLModelImpl)
        self._hw = reader("/sustainml/hw_resources/output", HWResourceImpl)
        self._user = reader("/sustainml/user_input", UserInputImpl)
        self._status = DataWriter(
            dp,
            Topic(dp, "/sustainml/status", NodeStatusImpl),
            qos=Qos(reliable, Policy.Durability.TransientLocal, keep_last_1, xcdr1),
        )
        self._output = DataWriter(dp, Topic(dp, "/sustainml/carbon_tracker/output", CO2FootprintImpl), qos=task_qos)
        self._pending: dict[tuple[int, int], dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="cyclone-stand-in", daemon=True)
        self.publish_status(Status.NODE_INITIALIZING)
        self.publish_status(Status.NODE_IDLE)
        self._thread.start()

    def publish_status(self, status: Status) -> None:
        self._status.write(NodeStatusImpl(node_status=status, node_name="CARBON_FOOTPRINT_NODE"))

    def _serve(self) -> None:
        while not self._stop.wait(self.POLL_S):
            for name, reader in (("ml_model", self._ml), ("hw", self._hw), ("user_input", self._user)):
                for sample in reader.take(N=100):
                    if isinstance(sample, (MLModelImpl, HWResourceImpl, UserInputImpl)):  # skips dispose notices
                        key = (sample.task_id.problem_id, sample.task_id.iteration_id)
                        self._pending.setdefault(key, {})[name] = sample
            for key, inputs in list(self._pending.items()):
                if len(inputs) == 3 and self._answer:
                    del self._pending[key]
                    self._answer_task(key, inputs)

    def _answer_task(self, key: tuple[int, int], inputs: dict[str, Any]) -> None:
        self.publish_status(Status.NODE_RUNNING)
        user_extra, _ = decode_extra_data(inputs["user_input"].extra_data)
        extra = base_extra_data(inputs["ml_model"].model, user_extra)
        extra.update(mode="no_model", error=f"No model selected ({NO_MODEL}). Carbon footprint not computed.")
        self.publish_status(Status.NODE_IDLE)
        self._output.write(
            CO2FootprintImpl(
                extra_data=list(encode_extra_data(extra)), task_id=TaskIdImpl(problem_id=key[0], iteration_id=key[1])
            )
        )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        self.participant.__del__()  # the binding deletes entities only from __del__; this is its explicit path


@pytest.fixture
def interop_discovery(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cyclone on loopback (conftest) with unicast discovery, for this process and children: what a user's
    CYCLONEDDS_URI would add. The node must add the Fast DDS compatibility setting itself."""
    fragments = [os.environ.get("CYCLONEDDS_URI", ""), LOOPBACK_DISCOVERY_XML]
    monkeypatch.setenv("CYCLONEDDS_URI", ",".join(fragment for fragment in fragments if fragment))


@pytest.fixture
def interop_cyclone(interop_discovery: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """For the plain Cyclone stand-in (not the node): discovery plus the Fast DDS compatibility setting."""
    monkeypatch.setenv("CYCLONEDDS_URI", f"{os.environ['CYCLONEDDS_URI']},{IGNORE_TYPE_INFORMATION_XML}")


@pytest.fixture
def stand_in(interop_cyclone: None, dds_domain: int) -> Iterator[CycloneStandIn]:
    node = CycloneStandIn(dds_domain)
    yield node
    node.close()


@pytest.fixture
def silent_stand_in(interop_cyclone: None, dds_domain: int) -> Iterator[CycloneStandIn]:
    node = CycloneStandIn(dds_domain, answer=False)
    yield node
    node.close()


# --- the peer against the plain Cyclone stand-in ------------------------------------------------------------


def test_the_peer_fails_when_no_node_is_on_the_domain(fastdds_peer: Path, dds_domain: int) -> None:
    run = run_peer(fastdds_peer, dds_domain, NO_NODE_PEER_TIMEOUT_S)
    assert run.returncode == 3, run.stderr
    assert run.report is not None and run.report["output"] is None


def test_the_peer_fails_when_the_node_matches_but_never_answers(
    fastdds_peer: Path, silent_stand_in: CycloneStandIn, dds_domain: int
) -> None:
    run = run_peer(fastdds_peer, dds_domain, SILENT_NODE_PEER_TIMEOUT_S)
    assert run.returncode == 4, run.stderr
    assert run.report is not None and run.report["matched"]["inputs"] is True
    assert run.report["output"] is None


def test_a_cyclone_stand_in_answers_the_fastdds_peer_in_both_directions(
    fastdds_peer: Path, stand_in: CycloneStandIn, dds_domain: int
) -> None:
    run = run_peer(fastdds_peer, dds_domain, PEER_TIMEOUT_S, "--problem-id", "7", "--iteration-id", "2")
    assert run.returncode == 0, run.stderr
    assert run.report is not None
    assert run.report["output"]["task_id"] == {"problem_id": 7, "iteration_id": 2}
    assert run.extra_data["mode"] == "no_model"
    assert run.extra_data["model_restrains"] == [NO_MODEL]
    assert "NODE_IDLE" in run.report["statuses"]


def test_the_peer_writes_xcdr1_as_upstream_fastdds_does(fastdds_peer: Path, stand_in: CycloneStandIn, dds_domain: int) -> None:
    run = run_peer(fastdds_peer, dds_domain)
    assert run.returncode == 0, run.stderr
    assert run.report is not None
    assert run.report["input_encapsulation"] == "00 01 00 00"  # CDR_LE: XCDR1, no DHEADER


# --- the peer against the real node --------------------------------------------------------------------------


class _NoMeasurer:
    """The NO_MODEL path never measures; a call here is a bug, reported as the measurement error it would be."""

    def measure(self, spec: MeasureSpec) -> Measurement:
        raise MeasureError(f"unexpected measurement of {spec!r} in a NO_MODEL interop test")


@pytest.fixture
def node_runtime(interop_discovery: None, dds_domain: int) -> Iterator[NodeRuntime]:
    """The node's runtime and engine in this process (everything but the CLI and the measurement worker)."""
    engine = Engine(engine_config(load_settings(environ={}).settings), _NoMeasurer())
    runtime = NodeRuntime(engine, domain_id=dds_domain)
    runtime.start(timeout_s=NODE_START_TIMEOUT_S)
    yield runtime
    runtime.stop(timeout_s=NODE_STOP_TIMEOUT_S)


@dataclass(frozen=True)
class NodeProcess:
    """A running ``carbon-node run`` and the file its output goes to (a file: a full pipe would block it)."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture
def node_process(interop_discovery: None, dds_domain: int, tmp_path: Path) -> Iterator[NodeProcess]:
    """``python -m carbon_node run`` as upstream deploys it: the domain comes from SUSTAINML_DOMAIN_ID alone."""
    env = {
        **os.environ,
        "CARBON_NODE_STATE_DIR": str(tmp_path / "state"),
        "CARBON_NODE_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": str(REPO_ROOT),
    }
    log_path = tmp_path / "node.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "carbon_node", "run", "--log-format", "json"],
            cwd=tmp_path,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        yield NodeProcess(process, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=NODE_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5.0)


def test_the_fastdds_peer_inputs_reach_the_node_runtime_and_its_output_and_status_reach_the_peer(
    fastdds_peer: Path, node_runtime: NodeRuntime, dds_domain: int
) -> None:
    run = run_peer(fastdds_peer, dds_domain, PEER_TIMEOUT_S, "--problem-id", "11", "--iteration-id", "1")
    assert run.returncode == 0, run.stderr
    assert run.report is not None
    assert run.report["output"]["task_id"] == {"problem_id": 11, "iteration_id": 1}
    print(f"Fast DDS peer -> node runtime: {run.report['timings']}")
    assert run.extra_data["mode"] == "no_model"
    assert run.extra_data["num_outputs"] == 1
    assert run.extra_data["model_restrains"][0] == NO_MODEL
    assert "NODE_IDLE" in run.report["statuses"]


def test_the_carbon_node_process_answers_a_task_from_the_fastdds_peer(
    fastdds_peer: Path, node_process: NodeProcess, dds_domain: int
) -> None:
    run = run_peer(fastdds_peer, dds_domain, PEER_TIMEOUT_S, "--problem-id", "12", "--iteration-id", "3", node=node_process)
    assert run.returncode == 0, f"{run.stderr}\nnode log:\n{node_process.log()}"
    assert run.report is not None
    assert run.report["output"]["task_id"] == {"problem_id": 12, "iteration_id": 3}
    print(f"Fast DDS peer -> carbon-node process: {run.report['timings']}")
    assert run.extra_data["mode"] == "no_model"
    assert "NODE_IDLE" in run.report["statuses"]
