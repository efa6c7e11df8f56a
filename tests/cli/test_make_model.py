"""``carbon-node make-model``: a model directory to try the node offline, weights included."""

from __future__ import annotations

from pathlib import Path

import pytest

from carbon_node.measure.full_size import FULL_SIZE_MODELS
from tests.cli.test_cli import carbon_node

pytest.importorskip("transformers")


def test_make_model_writes_a_tiny_model_with_weights_and_its_tokenizer(tmp_path: Path) -> None:
    done = carbon_node("make-model", "models/tiny-bert", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = {path.name for path in (tmp_path / "models" / "tiny-bert").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= written
    assert f"carbon-node estimate {tmp_path / 'models' / 'tiny-bert'}" in done.stdout
    assert done.stderr == ""  # no progress bars


def test_make_model_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    done = carbon_node("make-model", str(tmp_path / "taken"))
    assert done.returncode == 2
    assert "is not an empty directory" in done.stderr
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(("name", "millions"), [("bert-base", 109.5), ("gpt2", 124.4), ("vit-base", 86.4)])
def test_the_real_size_models_have_their_published_parameter_counts(name: str, millions: float) -> None:
    import torch
    import transformers

    config_name, model_name = FULL_SIZE_MODELS[name]
    with torch.device("meta"):
        model = getattr(transformers, model_name)(getattr(transformers, config_name)())
    count = sum(p.numel() for p in model.parameters())
    assert count / 1e6 == pytest.approx(millions, rel=0.01)
