"""The ONNX file check: one stat per path, reused for a second by the tasks that name the same path."""

from __future__ import annotations

from pathlib import Path

from carbon_node.engine.paths import FILE_CHECK_TTL_S, _is_file


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_path_check_is_reused_within_its_ttl_and_made_again_after(tmp_path: Path) -> None:
    clock = Clock()
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    assert _is_file(str(model), clock) is True
    model.unlink()
    clock.now += FILE_CHECK_TTL_S / 2
    assert _is_file(str(model), clock) is True  # the burst's answer, one stat
    clock.now += FILE_CHECK_TTL_S
    assert _is_file(str(model), clock) is False


def test_a_directory_or_an_invalid_path_is_not_a_file(tmp_path: Path) -> None:
    assert _is_file(str(tmp_path), Clock()) is False
    assert _is_file("bad\0path.onnx", Clock()) is False
