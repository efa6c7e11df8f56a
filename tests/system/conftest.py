"""Shared pieces of the system tests (marker ``system``): a cached Debian bookworm root filesystem, a
cached wheelhouse for pip inside it, and the checks that the tools and root are there.

Both caches live under ``$CARBON_NODE_TESTS_CACHE`` (default ``/var/cache/carbon-node-tests``), keyed by a
hash of what they contain (suite, package list, mirror; the Python requirements), so that a second run on
the same machine reuses them; from nothing the rootfs takes about 2 minutes (debootstrap, network) and
the wheelhouse half a minute (the host's pip and its configured indexes).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import missing_tool

REPO = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("CARBON_NODE_TESTS_CACHE", "/var/cache/carbon-node-tests"))
DEBIAN_MIRROR = os.environ.get("CARBON_NODE_TESTS_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
ROOTFS_PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv")
"""A booting systemd plus Debian's own Python and its venv module, as the README's systemd install needs."""
TORCH = "torch==2.13.0"
DEBOOTSTRAP_TIMEOUT_S = 900.0
WHEELHOUSE_TIMEOUT_S = 900.0
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def require_root_and(*tools: str) -> None:
    """Skip (or fail under CARBON_NODE_TESTS_REQUIRE_TOOLS=1) without root or one of ``tools``."""
    if os.geteuid() != 0:
        missing_tool("system tests need root (namespaces, systemd-nspawn, dockerd)")
    for tool in tools:
        if shutil.which(tool) is None:
            missing_tool(f"{tool} is not installed (.ci/run installs it)")


def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (concurrent test runs build a cache entry once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def rootfs_key() -> str:
    return _key(SUITE, "minbase", DEBIAN_MIRROR, *ROOTFS_PACKAGES)


def _build_once(target: Path, build: Callable[[Path], str]) -> Path:
    """The cache entry ``target``, built when absent: ``build(partial)`` fills a partial directory (and
    fails the test, removing it, when it cannot) and returns the text of the completion marker; the
    entry is then renamed into place. Concurrent test runs build it once, under a lock."""
    with _locked(target.with_name(target.name + ".lock")):
        if (target / ".carbon-node-complete").exists():
            return target
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        marker = build(partial)
        (partial / ".carbon-node-complete").write_text(marker)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        return target


def _run_or_fail(command: list[str], partial: Path, timeout_s: float, what: str) -> None:
    """Run a build step; on failure remove ``partial`` and fail the test with the step's output."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        pytest.fail(f"{what} failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-3000:]}")


def build_rootfs() -> Path:
    """The cached bookworm minbase rootfs (read it, never write it: copy it first). Built when absent."""

    def build(partial: Path) -> str:
        command = [
            "debootstrap", "--variant=minbase", f"--include={','.join(ROOTFS_PACKAGES)}", SUITE, str(partial), DEBIAN_MIRROR,
        ]  # fmt: skip
        _run_or_fail(command, partial, DEBOOTSTRAP_TIMEOUT_S, "debootstrap")
        # No package lists are kept; apt-get install of what is there is then a no-op offline.
        return " ".join(command) + "\n"

    return _build_once(CACHE_DIR / f"rootfs-{SUITE}-{rootfs_key()}", build)


def node_requirements() -> list[str]:
    """torch (CPU) first, then the project's dependencies with the ``measure`` extra, and the build backend."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    build = project["build-system"]["requires"]
    return [TORCH, *project["project"]["dependencies"], *project["project"]["optional-dependencies"]["measure"], *build, "wheel"]


def build_wheelhouse() -> Path:
    """Wheels of everything the node needs (from the host's pip and its configured indexes), cached."""
    requirements = node_requirements()
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    torch_index = os.environ.get("TORCH_INDEX_URL", "")

    def build(partial: Path) -> str:
        pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(partial)]
        # CPU torch first, from where this machine's install took it (.ci/run: TORCH_INDEX_URL, else pip's
        # configured indexes); the rest then resolves torch to that wheel, never to a CUDA build.
        _run_or_fail(
            [*pip, TORCH, *(["--index-url", torch_index] if torch_index else [])], partial, WHEELHOUSE_TIMEOUT_S, "pip wheel"
        )
        _run_or_fail([*pip, "--find-links", str(partial), *requirements], partial, WHEELHOUSE_TIMEOUT_S, "pip wheel")
        return "\n".join(requirements) + "\n"

    return _build_once(CACHE_DIR / f"wheels-py{python}-{_key(python, torch_index, *requirements)}", build)


def copy_sources(destination: Path) -> Path:
    """What a user's checkout holds for an install: the package, its metadata and the deploy files."""
    destination.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in ("pyproject.toml", "README.md", "carbon_node.py"):
        shutil.copy2(REPO / name, destination / name)
    for name in ("carbon_node", "deploy"):
        shutil.copytree(REPO / name, destination / name, ignore=ignore, dirs_exist_ok=True)
    return destination


def readme_block(section: str) -> list[str]:
    """The command lines of the first ``bash`` block after the README heading ``section``."""
    text = (REPO / "README.md").read_text()
    start = text.index(section)
    block = text[text.index("```bash\n", start) + len("```bash\n") :]
    block = block[: block.index("```")]
    return [line.split("  #")[0].rstrip() for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def bookworm_rootfs() -> Path:
    require_root_and("debootstrap")
    return build_rootfs()


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    return build_wheelhouse()
