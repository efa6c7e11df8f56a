"""Run ``carbon-node estimate`` against a fake RAPL package in this mount namespace (root, under ``unshare -m``).

    unshare --mount --propagation private python -m tests.measure.rapl_scenario SCENARIO WORKDIR -- ESTIMATE_ARGS...

``/sys/class/powercap`` is replaced by a tmpfs holding one ``intel-rapl:0`` package (``name`` package-0,
``energy_uj``, ``max_energy_range_uj``); where the kernel has no powercap directory, ``/sys/class`` itself
is replaced by a tmpfs that bind-mounts every original class back, plus the new ``powercap``. Nothing
outside this process's mount namespace changes. Scenarios:

- ``steady``: the counter advances at exactly 25 W and does not wrap in the window;
- ``wrap``: the same, with ``max_energy_range_uj`` one second's worth: it wraps inside every window;
- ``missing``: the package has no ``energy_uj``;
- ``denied``: ``energy_uj`` has mode 000 and the estimate runs without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH
  (``setpriv``), so root cannot read it either.

Writes ``WORKDIR/result.json``: the estimate's exit status, stdout and stderr, and the writer's wrap count.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.measure.rapl_fixture import CounterWriter, make_package

POWERCAP = Path("/sys/class/powercap")
WATTS = 25.0
REAL_RANGE_UJ = 262_143_328_850
WRAP_RANGE_UJ = int(WATTS * 1e6)  # one second at 25 W
ESTIMATE_TIMEOUT_S = 240.0


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True, timeout=30)


def replace_powercap(workdir: Path) -> None:
    """An empty tmpfs at /sys/class/powercap, in this mount namespace only."""
    if POWERCAP.is_dir():
        _mount("-t", "tmpfs", "-o", "mode=0755", "powercap", str(POWERCAP))
        return
    saved = workdir / "sys-class"
    saved.mkdir()
    _mount("--bind", "/sys/class", str(saved))
    _mount("-t", "tmpfs", "-o", "mode=0755", "sysclass", "/sys/class")
    for entry in sorted(saved.iterdir()):
        target = Path("/sys/class") / entry.name
        target.mkdir()
        _mount("--bind", str(entry), str(target))
    POWERCAP.mkdir()
    _mount("-t", "tmpfs", "-o", "mode=0755", "powercap", str(POWERCAP))


def main(argv: list[str]) -> int:
    scenario, workdir_arg, separator, *estimate_args = argv
    assert separator == "--", "usage: SCENARIO WORKDIR -- ESTIMATE_ARGS..."
    workdir = Path(workdir_arg)
    replace_powercap(workdir)
    max_range = WRAP_RANGE_UJ if scenario == "wrap" else REAL_RANGE_UJ
    zone = make_package(POWERCAP, max_energy_range_uj=max_range)
    command = [sys.executable, "-m", "carbon_node", "estimate", *estimate_args]
    writer: CounterWriter | None = None
    if scenario in ("steady", "wrap"):
        writer = CounterWriter(zone, WATTS, max_range, start_uj=max_range // 2, nice=-10)
        writer.start()
    elif scenario == "missing":
        (zone / "energy_uj").unlink()
    elif scenario == "denied":
        (zone / "energy_uj").chmod(0)
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all", *command]
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=ESTIMATE_TIMEOUT_S)
    finally:
        if writer is not None:
            writer.stop()
    result = {
        "returncode": done.returncode,
        "stdout": done.stdout,
        "stderr": done.stderr,
        "wraps": writer.wraps if writer is not None else 0,
    }
    (workdir / "result.json").write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
