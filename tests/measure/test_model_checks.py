"""Model checks: every way a model is refused by its config, its class or its size."""

from __future__ import annotations

from pathlib import Path

import pytest

from carbon_node.measure.protocol import ModelRejected
from tests.measure.loading import load


def test_an_unsupported_class_is_refused_by_case_insensitive_substring(tiny_models: dict[str, str]) -> None:
    with pytest.raises(ModelRejected, match=r"models that use 'BERT' are not supported \(BertModel\)"):
        load(tiny_models["text"], unsupported_models=("gpt2", "BERT"))


def test_a_corrupt_config_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "bert", "hidden_size": ', encoding="utf-8")
    with pytest.raises(ModelRejected, match=r"config\.json is not usable"):
        load(str(tmp_path))


def test_a_directory_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelRejected, match=r"has no config\.json"):
        load(str(tmp_path))


def test_a_model_over_the_size_limit_is_refused_with_its_size(tiny_models: dict[str, str]) -> None:
    with pytest.raises(ModelRejected, match=r"too large: it needs 0\.08 MiB, over the 0\.01 MiB limit"):
        load(tiny_models["text"], max_model_mb=0.01)


def test_remote_code_is_refused_unless_allowed(tmp_path: Path) -> None:
    config = '{"model_type": "mything", "auto_map": {"AutoConfig": "configuration_mything.MyConfig"}}'
    (tmp_path / "config.json").write_text(config, encoding="utf-8")
    with pytest.raises(ModelRejected, match="trust_remote_code"):
        load(str(tmp_path))
