"""Model loading: every input kind, F4 dtypes, and weights loaded or built."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from carbon_node.measure import tiny
from tests.measure.loading import load


@pytest.mark.parametrize(
    ("kind", "model_class", "input_kind", "input_names"),
    [
        ("text", "BertModel", "text", {"input_ids", "attention_mask"}),
        ("image", "ViTModel", "image", {"pixel_values"}),
        ("video", "VideoMAEModel", "video", {"pixel_values"}),
        ("multimodal", "CLIPModel", "text+image", {"input_ids", "attention_mask", "pixel_values"}),
        ("seq2seq", "T5Model", "text", {"input_ids", "attention_mask", "decoder_input_ids"}),
    ],
)
def test_each_model_kind_loads_with_its_dummy_input(
    tiny_models: dict[str, str], kind: str, model_class: str, input_kind: str, input_names: set[str]
) -> None:
    loaded = load(tiny_models[kind])
    assert (loaded.model_class, loaded.input_kind) == (model_class, input_kind)
    assert set(loaded.inputs) == input_names


def test_video_input_has_sixteen_frames(tiny_models: dict[str, str]) -> None:
    loaded = load(tiny_models["video"])
    assert loaded.inputs["pixel_values"].shape[1] == 16


def test_cpu_models_run_in_float32_and_image_inputs_stay_float32(tiny_models: dict[str, str]) -> None:
    loaded = load(tiny_models["image"])
    assert loaded.dtype == "float32"
    assert loaded.inputs["pixel_values"].dtype == torch.float32


def test_integer_inputs_keep_their_integer_dtype(tiny_models: dict[str, str]) -> None:
    loaded = load(tiny_models["text"])
    assert loaded.inputs["input_ids"].dtype == torch.int64


def test_a_directory_without_weights_gets_random_weights_and_says_so(tiny_models: dict[str, str]) -> None:
    loaded = load(tiny_models["text"])
    assert any("random weights" in note for note in loaded.notes)


def test_saved_weights_are_loaded_instead_of_random_ones(tmp_path: Path) -> None:
    directory = tiny.build_tiny_text_model(tmp_path / "with-weights", weights=True)
    from transformers import BertModel

    saved = BertModel.from_pretrained(directory).embeddings.word_embeddings.weight
    loaded = load(str(directory))
    assert any("weights loaded" in note for note in loaded.notes)
    assert torch.equal(loaded.model.embeddings.word_embeddings.weight, saved)
