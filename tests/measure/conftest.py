"""Fixtures for the measurement tests: tiny local models (built once per run) and a real worker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from carbon_node.measure import tiny
from carbon_node.measure.client import WorkerMeasurer

BUILDERS = {
    "text": tiny.build_tiny_text_model,
    "image": tiny.build_tiny_image_model,
    "video": tiny.build_tiny_video_model,
    "multimodal": tiny.build_tiny_multimodal_model,
    "seq2seq": tiny.build_tiny_seq2seq_model,
}

WORKER_READY_TIMEOUT_S = 120.0
"""Generous: the worker imports torch and transformers on a machine shared with other test runs."""


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Absolute directories of the five tiny model kinds, by kind name."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {kind: str(build(root / kind).resolve()) for kind, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def measurer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerMeasurer]:
    """A warmed-up worker measurer without measurement cache, shared by a test module."""
    scratch = tmp_path_factory.mktemp("scratch")
    with pytest.MonkeyPatch.context() as patch:
        # Module fixtures start before the autouse offline fixture: the worker inherits this at spawn.
        patch.setenv("HF_HUB_OFFLINE", "1")
        worker_measurer = WorkerMeasurer(scratch_dir=scratch, measure_cache_ttl_s=0, task_timeout_s=60.0)
        worker_measurer.start()
    with worker_measurer:
        assert worker_measurer.wait_ready(WORKER_READY_TIMEOUT_S), "the measurement worker did not start"
        yield worker_measurer
