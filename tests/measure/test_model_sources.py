"""Model sources: an absolute directory or a hub id resolved to a local directory, or refused."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from carbon_node.measure.model_sources import resolve_model_source
from carbon_node.measure.protocol import ModelRejected


def test_an_unknown_hub_id_fails_fast_when_offline() -> None:
    started = time.monotonic()
    with pytest.raises(ModelRejected, match="'nobody/no-such-model' is not available locally and the hub is offline"):
        resolve_model_source("nobody/no-such-model", timeout_s=10.0)
    assert time.monotonic() - started < 10.0


def test_a_missing_absolute_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelRejected, match="does not exist"):
        resolve_model_source(str(tmp_path / "absent"), timeout_s=1.0)


def test_with_model_dirs_a_local_model_outside_them_is_refused(tmp_path: Path) -> None:
    allowed, outside = tmp_path / "models", tmp_path / "elsewhere"
    (allowed / "m").mkdir(parents=True)
    (outside / "m").mkdir(parents=True)
    (allowed / "link").symlink_to(outside / "m")
    assert resolve_model_source(str(allowed / "m"), timeout_s=1.0, allowed_dirs=(str(allowed),)).directory == allowed / "m"
    for sneaky in (outside / "m", allowed / "link"):
        with pytest.raises(ModelRejected, match="outside the allowed model directories"):
            resolve_model_source(str(sneaky), timeout_s=1.0, allowed_dirs=(str(allowed),))
    # Without the setting any absolute directory is accepted (upstream behaviour).
    assert resolve_model_source(str(outside / "m"), timeout_s=1.0).directory == outside / "m"
