"""Model inputs: a model without a usable tokenizer or processor runs on a synthetic input built from its config
(issue 9, item 3); one with a usable tokenizer still uses it."""

from __future__ import annotations

from pathlib import Path

import pytest

from carbon_node.measure import tiny
from carbon_node.measure.model_inputs import has_preprocessor_files
from carbon_node.measure.protocol import ModelRejected
from carbon_node.measure.synthetic_inputs import DUMMY_TEXT_TOKENS
from tests.measure.loading import load


@pytest.mark.parametrize(
    ("architecture", "model_class", "input_kind", "input_names"),
    [
        ("gpt2", "GPT2Model", "text", {"input_ids", "attention_mask"}),
        ("bert", "BertModel", "text", {"input_ids", "attention_mask"}),
        ("vit", "ViTModel", "image", {"pixel_values"}),
        ("videomae", "VideoMAEModel", "video", {"pixel_values"}),
        ("clip", "CLIPModel", "text+image", {"input_ids", "attention_mask", "pixel_values"}),
        ("t5", "T5Model", "text", {"input_ids", "attention_mask", "decoder_input_ids"}),
        ("bart", "BartModel", "text", {"input_ids", "attention_mask", "decoder_input_ids"}),
    ],
)
def test_a_model_saved_without_pre_processor_runs_on_a_synthetic_input_and_says_so(
    tmp_path: Path, architecture: str, model_class: str, input_kind: str, input_names: set[str]
) -> None:
    directory = tiny.build_bare_model(tmp_path / architecture, architecture)
    assert not has_preprocessor_files(directory)
    loaded = load(str(directory))
    assert (loaded.model_class, loaded.input_kind) == (model_class, input_kind)
    assert set(loaded.inputs) == input_names
    assert any(note.startswith("synthetic input built from the config") for note in loaded.notes), loaded.notes


@pytest.mark.parametrize("architecture", ["gpt2", "bert", "t5"])
def test_synthetic_token_ids_are_within_the_vocabulary_and_as_long_as_the_dummy_text(tmp_path: Path, architecture: str) -> None:
    loaded = load(str(tiny.build_bare_model(tmp_path / architecture, architecture)))
    ids = loaded.inputs["input_ids"]
    assert ids.shape == (1, DUMMY_TEXT_TOKENS)
    assert int(ids.min()) >= 0 and int(ids.max()) < 100  # the bare models' vocab_size
    assert len(load(tiny_text_dir(tmp_path)).inputs["input_ids"][0]) == DUMMY_TEXT_TOKENS


def tiny_text_dir(tmp_path: Path) -> str:
    return str(tiny.build_tiny_text_model(tmp_path / "with-tokenizer"))


def test_synthetic_pixels_and_frames_follow_the_config(tmp_path: Path) -> None:
    image = load(str(tiny.build_bare_model(tmp_path / "vit", "vit")))
    assert tuple(image.inputs["pixel_values"].shape) == (1, 3, 32, 32)
    video = load(str(tiny.build_bare_model(tmp_path / "videomae", "videomae")))
    assert tuple(video.inputs["pixel_values"].shape) == (1, 4, 3, 32, 32)


def test_a_model_whose_input_cannot_be_synthesised_is_refused_in_one_line_naming_what_is_missing(tmp_path: Path) -> None:
    directory = tiny.build_bare_model(tmp_path / "series", "time_series_transformer")
    with pytest.raises(ModelRejected) as raised:
        load(str(directory))
    message = str(raised.value)
    assert "\n" not in message
    assert "no tokenizer or processor files" in message
    assert "'past_values'" in message


def test_a_model_with_its_tokenizer_still_uses_it(tiny_models: dict[str, str]) -> None:
    loaded = load(tiny_models["text"])
    assert not any("synthetic" in note for note in loaded.notes)


def test_a_tokenizer_that_encodes_the_dummy_text_as_nothing_is_replaced_by_synthetic_ids(tmp_path: Path) -> None:
    # A special-tokens file alone makes transformers "load" a tokenizer with an empty vocabulary.
    directory = tiny.build_bare_model(tmp_path / "gpt2", "gpt2")
    (directory / "special_tokens_map.json").write_text('{"eos_token": "<|endoftext|>"}')
    loaded = load(str(directory))
    assert loaded.inputs["input_ids"].shape == (1, DUMMY_TEXT_TOKENS)
    assert any("encoded the dummy text input as an empty tensor" in note for note in loaded.notes), loaded.notes
