"""No input costs more than its size: every step is linear and what one task may carry is bounded."""

from __future__ import annotations

import json
import time
from typing import Any

from carbon_node.core import MAX_EXTRA_DATA_BYTES, MAX_LIST_ITEMS, MAX_TEXT_CHARS, base_extra_data, cut_text, error_output
from carbon_node.engine import Engine
from carbon_node.engine.config import EngineConfig
from carbon_node.testing import FakeMeasurer, make_inputs


def published(engine: Engine, **inputs: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(engine.handle(make_inputs(**inputs)).extra_data_bytes())
    return data


def names(count: int) -> list[str]:
    return [f"m{i:05d}" for i in range(count)]  # about 7 bytes each in JSON, as in the issue


def test_merging_model_restrains_takes_time_linear_in_the_list() -> None:
    def seconds(count: int) -> float:
        extra = {"model_restrains": names(count)}
        started = time.perf_counter()
        base_extra_data("gpt2", extra)
        return time.perf_counter() - started

    seconds(1000)  # warm up
    small, large = min(seconds(10_000) for _ in range(3)), min(seconds(100_000) for _ in range(3))
    # Linear: about 10x. The quadratic de-duplication took about 100x (46-58 s for 100,000 names).
    assert large / small < 30, (small, large)


def test_a_long_model_restrains_is_cut_to_its_first_entries_with_a_warning() -> None:
    data = published(Engine(EngineConfig(), FakeMeasurer()), model="NO_MODEL", user_extra={"model_restrains": names(100_000)})
    assert len(json.dumps({"model_restrains": names(100_000)})) < MAX_EXTRA_DATA_BYTES  # decoded, then cut
    assert data["model_restrains"] == ["NO_MODEL", *names(MAX_LIST_ITEMS - 1)]
    assert any(f"{100_000 - MAX_LIST_ITEMS + 1} entries beyond the first {MAX_LIST_ITEMS}" in w for w in data["warnings"])


def test_duplicates_are_still_removed_keeping_the_first_occurrence() -> None:
    assert base_extra_data("a", {"model_restrains": ["b", "a", "b", 1, 1.0, None, None]})["model_restrains"] == [
        "a",
        "b",
        1,
        None,
    ]


def test_megabyte_texts_are_cut_and_the_output_stays_small() -> None:
    engine = Engine(EngineConfig(), FakeMeasurer())
    big = "x" * 1_000_000
    for inputs in (
        {"model": big},
        {"model": "m", "model_path": big + ".onnx", "latency": 1.0, "power": 1.0},
        {"model": "NO_MODEL", "region": big, "continent": big},
        {"model": "NO_MODEL", "user_extra": {"model_restrains": [big, "kept"]}},
    ):
        raw = engine.handle(make_inputs(**inputs)).extra_data_bytes()  # type: ignore[arg-type]
        assert len(raw) < 4 * MAX_TEXT_CHARS + 4096, (list(inputs), len(raw))
        assert json.loads(raw)["warnings"], list(inputs)


def test_a_cut_path_keeps_its_suffix() -> None:
    path = "/" + "d" * 10_000 + "/model.onnx"
    assert cut_text(path).endswith("/model.onnx") and len(cut_text(path)) == MAX_TEXT_CHARS
    assert cut_text("short") == "short"


def test_extra_data_over_the_size_limit_is_ignored_with_a_warning() -> None:
    huge = json.dumps({"num_outputs": 3, "pad": "x" * MAX_EXTRA_DATA_BYTES})
    data = published(Engine(EngineConfig(), FakeMeasurer()), model="NO_MODEL", user_extra=huge)
    assert data["num_outputs"] == 1
    assert any("over the limit" in w for w in data["warnings"])


def test_deep_nesting_is_invalid_json_not_a_crash() -> None:
    deep = b'{"num_outputs": 2, "a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    data = published(Engine(EngineConfig(), FakeMeasurer()), model="NO_MODEL", user_extra=deep)
    assert data["mode"] == "no_model" and any("not valid JSON" in w for w in data["warnings"])


def test_an_error_output_names_the_cuts_too() -> None:
    data = error_output(make_inputs(model="y" * 10_000), "failed").extra_data
    assert len(data["model_restrains"][0]) == MAX_TEXT_CHARS
    assert any("cut" in w for w in data["warnings"])
