"""Fixtures shared by the tests that start real ``carbon-node run`` processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.test_daemon import EXIT_TIMEOUT_S, children


@pytest.fixture
def node_cleanup() -> Iterator[list[subprocess.Popen[str]]]:
    """Kill (by pid) whatever node or worker a failed test leaves behind."""
    started: list[subprocess.Popen[str]] = []
    leftovers: list[int] = []
    yield started
    for node in started:
        leftovers.extend(children(node.pid))
        if node.poll() is None:
            node.kill()
            node.wait(EXIT_TIMEOUT_S)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT built locally (no hub), shared by a module's tests."""
    from carbon_node.measure.tiny import build_tiny_text_model

    return build_tiny_text_model(tmp_path_factory.mktemp("models") / "tiny-bert")
