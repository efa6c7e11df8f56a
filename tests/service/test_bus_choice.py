"""``bus auto`` with the upstream bindings half installed: Cyclone DDS, a warning, and doctor agrees with run."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from carbon_node.bus.cyclone import BusError
from carbon_node.bus.send_task import send_task
from carbon_node.bus.upstream import choose_bus, make_bus, probe_upstream
from tests.service.test_daemon import EXIT_TIMEOUT_S

HALF = Path(__file__).resolve().parents[1] / "fake_sustainml_half"
MISSING_LIBRARY = "libsustainml_cpp.so.0: cannot open shared object file"


@pytest.fixture
def half_installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(HALF))
    importlib.invalidate_caches()
    yield
    for name in [m for m in sys.modules if m.startswith("sustainml_py")]:
        del sys.modules[name]


def test_the_probe_imports_the_node_module_and_names_its_error(half_installed: None) -> None:
    probe = probe_upstream()
    assert probe.installed and not probe.usable
    assert probe.error is not None and MISSING_LIBRARY in probe.error


def test_auto_falls_back_to_cyclone_and_says_why(half_installed: None) -> None:
    choice = choose_bus("auto")
    assert choice.kind == "cyclone"
    assert choice.fallback_error is not None and MISSING_LIBRARY in choice.fallback_error


def test_asking_for_the_upstream_bus_explicitly_fails_with_the_error_and_the_fix(half_installed: None) -> None:
    with pytest.raises(BusError) as caught:
        make_bus("sustainml")
    assert MISSING_LIBRARY in str(caught.value) and "LD_LIBRARY_PATH" in str(caught.value)


def _env(tmp_path: Path, domain: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARBON_NODE_", "SUSTAINML_"))}
    env.update({"PYTHONPATH": os.pathsep.join([str(HALF), env.get("PYTHONPATH", "")]), "SUSTAINML_DOMAIN_ID": str(domain)})
    env.update({"CARBON_NODE_STATE_DIR": str(tmp_path / "state"), "CARBON_NODE_CACHE_DIR": str(tmp_path / "cache")})
    return env


def test_run_with_half_installed_bindings_answers_on_cyclone_and_doctor_agrees(tmp_path: Path, dds_domain: int) -> None:
    env = _env(tmp_path, dds_domain)
    doctor = subprocess.run(
        [sys.executable, "-m", "carbon_node", "doctor", "--quick", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    check = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "sustainml_py")
    assert check["status"] == "warn" and check["detail"].startswith("run uses cyclone:") and MISSING_LIBRARY in check["detail"]
    node = subprocess.Popen(
        [sys.executable, "-m", "carbon_node", "run", "--log-format", "json"],
        env=env, stdout=subprocess.DEVNULL, stderr=(tmp_path / "node.log").open("w"), text=True,
    )  # fmt: skip
    try:
        result = send_task(model="NO_MODEL", domain_id=dds_domain, timeout_s=60.0)
        assert result.extra_data["mode"] == "no_model"
    finally:
        node.send_signal(signal.SIGTERM)
        assert node.wait(EXIT_TIMEOUT_S) == 0
    records = [json.loads(line) for line in (tmp_path / "node.log").read_text().splitlines() if line.startswith("{")]
    fallback = next(r for r in records if r["event"] == "bus.auto_fallback")
    assert MISSING_LIBRARY in fallback["error"] and "LD_LIBRARY_PATH" in fallback["hint"]
    assert next(r for r in records if r["event"] == "node.idle")["bus"] == "cyclone"


def test_run_with_the_upstream_bus_asked_for_fails_naming_the_import_error(tmp_path: Path, dds_domain: int) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "carbon_node", "run", "--bus", "sustainml", "--log-format", "json"],
        env=_env(tmp_path, dds_domain), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    failed = next(json.loads(line) for line in done.stderr.splitlines() if '"node.start_failed"' in line)
    assert MISSING_LIBRARY in failed["error"] and "LD_LIBRARY_PATH" in failed["error"]
