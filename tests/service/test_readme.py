"""The README stays true: its first commands, its configuration table, its benchmark table."""

from __future__ import annotations

import re
from pathlib import Path

from carbon_node.cli.commands import config_reference

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def test_configuration_table_matches_the_settings_model() -> None:
    match = re.search(r"<!-- config table:[^\n]*-->\n(.*?)\n<!-- end config table -->", README, re.DOTALL)
    assert match, "config table markers missing"
    assert match.group(1).strip() == config_reference(), "regenerate with: carbon-node config reference"


def test_the_first_commands_install_and_run_then_test() -> None:
    blocks = re.findall(r"```bash\n(.*?)```", README, re.DOTALL)
    install, tests = blocks[0].strip(), blocks[1].strip()
    assert install.startswith("pip install torch==2.13.0")
    assert install.index("torch==2.13.0") < install.index("pip install -e '.[measure]'")
    assert install.endswith("carbon-node demo && carbon-node run")
    assert tests == "bash .ci/run"


def test_ci_script_runs_the_test_suite_after_lint_and_types() -> None:
    script = (REPO / ".ci" / "run").read_text()
    assert "set -euo pipefail" in script
    positions = [script.index(word) for word in ("pip install torch==2.13.0", "-m ruff check", "-m mypy", "-m pytest")]
    assert positions == sorted(positions)


def test_ci_installs_only_into_the_projects_own_virtual_environment() -> None:
    script = (REPO / ".ci" / "run").read_text()
    assert "lint-imports" in script  # the layer contracts of pyproject.toml
    python_set = script.index("PYTHON=$PWD/.venv/bin/python")
    installs = [i for i in range(len(script)) if script.startswith("pip install", i)]
    assert installs and all(i > python_set for i in installs)
    assert all(script[script.rfind("\n", 0, i) :].lstrip().startswith('"$PYTHON" -m pip') for i in installs)
    assert "sys.prefix == sys.base_prefix" not in script  # no "use the interpreter on PATH when allowed" branch


def test_benchmarks_section_gives_the_command_and_a_measured_table() -> None:
    section = README[README.index("## Benchmarks") :]
    assert "python bench/run.py" in section
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| Metric | carbon-node | upstream design")
    first_seen = next(row for row in rows if row.startswith("| Round trip, first-seen tiny model"))
    assert float(first_seen.split("|")[2]) > 0  # a measured number, not a placeholder


def test_every_subcommand_is_documented() -> None:
    for command in ("run", "send-task", "estimate", "where", "doctor", "health", "config show", "demo"):
        assert f"carbon-node {command}" in README, command


def test_the_benchmark_runs_from_the_readme_install() -> None:
    """Every third-party module bench/ imports comes with ``pip install '.[bench]'``, as the README says."""
    import ast
    import sys
    import tomllib

    section = README[README.index("## Benchmarks") :]
    assert "pip install -e '.[bench]'" in section
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert "carbon-node[measure]" in extras["bench"]
    declared = {
        requirement.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip().lower().replace("-", "_")
        for requirement in (*project["dependencies"], *extras["measure"], *extras["bench"])
    }
    local = {path.stem for path in (REPO / "bench").glob("*.py")} | {"carbon_node"}
    imported: set[str] = set()
    for path in (REPO / "bench").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = {name for name in imported if name not in sys.stdlib_module_names and name not in local}
    assert third_party - declared == set()
