"""Model loading: every input kind, F4 dtypes, weights, and every way a model is refused."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch

from carbon_node.measure import tiny
from carbon_node.measure.models import (
    DUMMY_TEXT_TOKENS,
    LoadedModel,
    has_preprocessor_files,
    load_model,
    resolve_model_source,
    validate_model_string,
)
from carbon_node.measure.protocol import MeasureSpec, ModelRejected


def load(model: str, **spec_fields: Any) -> LoadedModel:
    """Resolve and load ``model`` as the worker does."""
    spec = MeasureSpec(model=model, window_s=0.3, **spec_fields)
    return load_model(spec, resolve_model_source(model, timeout_s=spec.load_timeout_s))


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


def test_an_unknown_hub_id_fails_fast_when_offline() -> None:
    started = time.monotonic()
    with pytest.raises(ModelRejected, match="'nobody/no-such-model' is not available locally and the hub is offline"):
        resolve_model_source("nobody/no-such-model", timeout_s=10.0)
    assert time.monotonic() - started < 10.0


def test_a_missing_absolute_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelRejected, match="does not exist"):
        resolve_model_source(str(tmp_path / "absent"), timeout_s=1.0)


@pytest.mark.parametrize(
    "model",
    ["", "../etc", "/tmp/../etc", "a;rm -rf /", "$(reboot)", "x/y/z", "owner/name with space", "/models/x|y", "bad\nname"],
)
def test_implausible_model_strings_are_refused_before_touching_files(model: str) -> None:
    with pytest.raises(ModelRejected):
        validate_model_string(model)


@pytest.mark.parametrize("model", ["bert-base-uncased", "google/vit-base-patch16-224", "org_1/model.v2-small", "/srv/models/x"])
def test_hub_ids_and_absolute_paths_are_accepted_as_strings(model: str) -> None:
    validate_model_string(model)


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


# Models without a tokenizer or processor: synthetic inputs from the config (issue 9, item 3)


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
