"""``carbon-node doctor``: probes against fixture /sys trees, and the command's report and exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from carbon_node.service.dirs import directory_problem
from carbon_node.service.doctor import network_interfaces, probe_rapl, run_checks
from carbon_node.service.settings import load_settings


def make_zone(sys_root: Path, name: str, *, readable: bool) -> None:
    zone = sys_root / "class" / "powercap" / name
    zone.mkdir(parents=True)
    counter = zone / "energy_uj"
    counter.write_text("123456\n")
    counter.chmod(0o644 if readable else 0o000)


def test_rapl_absent_is_a_warning_naming_the_directory(tmp_path: Path) -> None:
    status, detail, zones = probe_rapl(tmp_path)
    assert (status, zones) == ("warn", [])
    assert "no RAPL counters" in detail


def test_readable_rapl_zones_are_listed(tmp_path: Path) -> None:
    make_zone(tmp_path, "intel-rapl:0", readable=True)
    assert probe_rapl(tmp_path)[::2] == ("ok", ["intel-rapl:0"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_rapl_says_why_and_how_to_fix_it(tmp_path: Path) -> None:
    make_zone(tmp_path, "intel-rapl:0", readable=False)
    status, detail, _ = probe_rapl(tmp_path)
    assert status == "warn"
    assert "root-only since Linux 5.10" in detail and "udev" in detail


def test_interfaces_report_up_and_multicast_flags(tmp_path: Path) -> None:
    for name, flags in (("eth0", "0x1003"), ("lo", "0x9"), ("wlan0", "0x1002")):
        (tmp_path / "class" / "net" / name).mkdir(parents=True)
        (tmp_path / "class" / "net" / name / "flags").write_text(flags + "\n")
    assert network_interfaces(tmp_path) == [
        {"name": "eth0", "up": True, "multicast": True},
        {"name": "lo", "up": True, "multicast": False},
        {"name": "wlan0", "up": False, "multicast": True},
    ]


def test_a_directory_under_a_file_is_not_usable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    problem = directory_problem(blocker / "state")
    assert problem is not None and "is not a directory" in problem


def test_the_node_cannot_run_when_the_state_dir_is_not_writable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    settings = load_settings({"state_dir": str(tmp_path / "file" / "state"), "cache_dir": str(tmp_path / "cache")}).settings
    report = run_checks(settings, quick=True, sys_root=tmp_path)
    assert not report.can_run
    assert [c.name for c in report.checks if c.status == "fail"] == ["state_dir"]


def test_requiring_the_upstream_bus_without_sustainml_py_fails(tmp_path: Path) -> None:
    pytest.importorskip("cyclonedds")
    if __import__("importlib.util").util.find_spec("sustainml_py") is not None:
        pytest.skip("sustainml_py is installed here")
    settings = load_settings({"bus": "sustainml", "state_dir": str(tmp_path / "s"), "cache_dir": str(tmp_path / "c")}).settings
    report = run_checks(settings, quick=True, sys_root=tmp_path)
    assert [c.name for c in report.checks if c.status == "fail"] == ["sustainml_py"]


def test_a_fixed_grid_intensity_is_reported_as_the_source(tmp_path: Path) -> None:
    settings = load_settings(
        {"grid_ci_g_per_kwh": 250, "state_dir": str(tmp_path / "s"), "cache_dir": str(tmp_path / "c")}
    ).settings
    check = next(c for c in run_checks(settings, quick=True, sys_root=tmp_path).checks if c.section == "intensity")
    assert "250.0 gCO2e/kWh from SUSTAINML_GRID_CI" in check.detail


def test_doctor_command_reports_json_and_exits_0_on_a_usable_host(tmp_path: Path) -> None:
    env = {**os.environ, "CARBON_NODE_STATE_DIR": str(tmp_path / "state"), "CARBON_NODE_CACHE_DIR": str(tmp_path / "cache")}
    env["CARBON_NODE_SIM_CPU_TDP_W"] = "10"
    done = subprocess.run(
        [sys.executable, "-m", "carbon_node", "doctor", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    names = {f"{c['section']}/{c['name']}" for c in report["checks"]}
    expected = {
        *("power/rapl", "power/nvml", "power/carbontracker", "power/window_source", "power/simulated"),
        *("intensity/source", "dds/domain", "dds/interfaces", "upstream/sustainml_py"),
        *("dirs/state_dir", "dirs/cache_dir", "node/cyclonedds"),
    }
    assert expected <= names
    assert report["can_run"] is True
    assert "CarbonTracker:" not in done.stdout


def test_doctor_command_exits_1_when_the_node_cannot_run(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    env = {**os.environ, "CARBON_NODE_STATE_DIR": str(tmp_path / "file" / "x"), "CARBON_NODE_CACHE_DIR": str(tmp_path / "c")}
    done = subprocess.run(
        [sys.executable, "-m", "carbon_node", "doctor", "--quick"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "[fail] dirs/state_dir" in done.stdout


def test_doctor_prints_only_its_report_and_says_in_the_power_check_when_the_cpu_is_not_in_the_table(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBON_NODE_SIM")}
    env.update({"CARBON_NODE_STATE_DIR": str(tmp_path / "state"), "CARBON_NODE_CACHE_DIR": str(tmp_path / "cache")})
    done = subprocess.run([sys.executable, "-m", "carbon_node", "doctor"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "No matching TDP" not in done.stderr + done.stdout  # carbontracker's own warning line
    assert all(line.startswith("[") or line.startswith("the node") for line in done.stdout.splitlines()), done.stdout
    from carbon_node.measure.power import tdp_table_match, tdp_table_watts

    window = next(line for line in done.stdout.splitlines() if "power/window_source" in line)
    if tdp_table_match() is None:
        name, tdp_w = tdp_table_watts()
        assert f"no entry for {name!r}" in window and f"{tdp_w / 2:.4g} W drawn" in window
    else:
        assert "no entry" not in window
