"""What a measurement worker imports before its warm-up: nothing of the node's DDS or settings side.

The worker is a ``spawn``-ed process: it re-imports the program's entry module (the ``carbon-node``
console script imports :mod:`carbon_node.__main__`), then the worker module. Each import of the DDS
types or the settings there delays the worker's torch import, i.e. the first answered task.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

HEAVY_FOR_A_WORKER = ("cyclonedds", "pydantic", "pydantic_settings", "carbon_node.core", "carbon_node.cli", "torch")

ROOT = Path(__file__).resolve().parents[2]


def imported_after(*modules: str) -> set[str]:
    """Modules present in a fresh interpreter after importing ``modules``."""
    code = f"import sys\nfor m in {list(modules)!r}: __import__(m)\nprint('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60).stdout
    return set(out.split())


def test_the_worker_module_does_not_import_the_dds_types_or_settings() -> None:
    loaded = imported_after("carbon_node.measure.worker")
    assert loaded.isdisjoint(HEAVY_FOR_A_WORKER), sorted(loaded & set(HEAVY_FOR_A_WORKER))


def test_the_console_script_entry_module_imports_the_command_line_only_when_it_runs() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["carbon-node"].partition(":")
    loaded = imported_after(module)
    assert loaded.isdisjoint(HEAVY_FOR_A_WORKER), sorted(loaded & set(HEAVY_FOR_A_WORKER))
    entry = getattr(__import__(module, fromlist=[function]), function)
    assert callable(entry)


def test_the_upstream_style_script_imports_the_command_line_only_when_run_as_main() -> None:
    code = (
        "import runpy, sys\n"
        f"runpy.run_path({str(ROOT / 'carbon_node.py')!r}, run_name='__mp_main__')\n"
        "print('\\n'.join(sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60, cwd=ROOT).stdout
    assert set(out.split()).isdisjoint(HEAVY_FOR_A_WORKER)
