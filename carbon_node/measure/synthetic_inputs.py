"""Synthetic inputs: a model's input built from its config alone, and the decoder inputs a config asks for.

Measuring costs compute, not meaning: a directory with no pre-processor files (a config and weights
only, as ``save_pretrained`` of a model writes), or whose pre-processor loads nothing usable, gets a
synthetic input built from the config (:func:`synthetic_inputs`): token ids within ``vocab_size`` of
:data:`DUMMY_TEXT_TOKENS` tokens, pixels of the config's image size and channels, video frames,
raw audio or log-mel features; the notes say so (:mod:`carbon_node.measure.model_inputs` decides when).

Encoder-decoder models get decoder inputs, decided from the config (:func:`add_decoder_inputs`),
whichever way their encoder input was made.

This module imports torch: only the worker process imports it.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

__all__ = [
    "AUDIO_SAMPLES",
    "DUMMY_TEXT_TOKENS",
    "InputKind",
    "NoSyntheticInput",
    "add_decoder_inputs",
    "is_text_and_vision",
    "synthetic_inputs",
]

DUMMY_TEXT_TOKENS = 7
"""Length of a synthetic token-id input: :data:`~carbon_node.measure.model_inputs.DUMMY_TEXT` as a BERT
tokenizer encodes it (``[CLS] how to prepare coffee ? [SEP]``), the length the text path runs."""

AUDIO_SAMPLES = 16_000
"""Samples of a synthetic raw-audio input: one second at 16 kHz."""

InputKind = Literal["text", "image", "video", "text+image", "audio"]


class NoSyntheticInput(Exception):
    """No synthetic input can be built; the message names what is missing."""


def is_text_and_vision(config: Any) -> bool:
    """Whether ``config`` has both a text and a vision tower (a joint model such as CLIP)."""
    return getattr(config, "text_config", None) is not None and getattr(config, "vision_config", None) is not None


def _side(value: Any) -> tuple[int, int] | None:
    """(height, width) from a config's ``image_size`` (an int or a pair)."""
    if isinstance(value, int) and value > 0:
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
        return int(value[0]), int(value[1])
    return None


def _token_ids(config: Any, what: str) -> dict[str, Any]:
    vocab_size = getattr(config, "vocab_size", None)
    if not isinstance(vocab_size, int) or vocab_size <= 0:
        raise NoSyntheticInput(f"{what} needs token ids, and the config gives no vocab_size")
    length = DUMMY_TEXT_TOKENS
    max_positions = getattr(config, "max_position_embeddings", None)
    if isinstance(max_positions, int) and max_positions > 0:
        length = min(length, max_positions)
    generator = torch.Generator().manual_seed(0)  # the same ids every time: measurements repeat
    ids = torch.randint(0, vocab_size, (1, length), generator=generator, dtype=torch.long)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _pixels(config: Any, what: str, *, frames: int | None = None) -> torch.Tensor:
    side = _side(getattr(config, "image_size", None))
    if side is None:
        raise NoSyntheticInput(f"{what} needs pixel values, and the config gives no image_size")
    channels = getattr(config, "num_channels", 3)
    channels = channels if isinstance(channels, int) and channels > 0 else 3
    shape = (1, channels, *side) if frames is None else (1, frames, channels, *side)
    return torch.ones(shape, dtype=torch.float32)


def synthetic_inputs(config: Any, main_input: str) -> tuple[InputKind, dict[str, Any], str]:
    """An input built from ``config`` alone for a model whose main input is ``main_input``.

    Returns (kind, tensors, a note describing them). Raises :class:`NoSyntheticInput` naming what is missing.
    """
    if is_text_and_vision(config):
        inputs = _token_ids(config.text_config, "the text tower")
        inputs["pixel_values"] = _pixels(config.vision_config, "the vision tower")
        shape = "x".join(str(n) for n in inputs["pixel_values"].shape[1:])
        return "text+image", inputs, f"{inputs['input_ids'].shape[1]} token ids and a {shape} image"
    if main_input == "input_ids":
        inputs = _token_ids(config, "the model")
        return "text", inputs, f"{inputs['input_ids'].shape[1]} token ids within vocab_size {config.vocab_size}"
    if main_input == "pixel_values":
        frames = getattr(config, "num_frames", None)
        if isinstance(frames, int) and frames > 0:
            pixels = _pixels(config, "the model", frames=frames)
            return "video", {"pixel_values": pixels}, f"{frames} frames of {'x'.join(map(str, pixels.shape[2:]))}"
        pixels = _pixels(config, "the model")
        return "image", {"pixel_values": pixels}, f"a {'x'.join(map(str, pixels.shape[1:]))} image"
    if main_input == "input_values":
        return "audio", {"input_values": torch.zeros(1, AUDIO_SAMPLES)}, f"{AUDIO_SAMPLES} audio samples (1 s at 16 kHz)"
    if main_input == "input_features":
        mel_bins = getattr(config, "num_mel_bins", None)
        positions = getattr(config, "max_source_positions", None)
        if not isinstance(mel_bins, int) or not isinstance(positions, int):
            raise NoSyntheticInput("the model needs audio features, and the config gives no num_mel_bins or max_source_positions")
        # Whisper-style encoders halve the frames with a stride-2 convolution.
        features = torch.zeros(1, mel_bins, 2 * positions)
        return "audio", {"input_features": features}, f"{mel_bins} mel bins x {2 * positions} frames of audio features"
    raise NoSyntheticInput(f"the model's main input {main_input!r} cannot be built from a config")


def add_decoder_inputs(inputs: dict[str, Any], config: Any) -> dict[str, Any]:
    """Encoder-decoder models need decoder ids: the encoder ids (upstream), else one start token."""
    if not getattr(config, "is_encoder_decoder", False) or "decoder_input_ids" in inputs:
        return inputs
    if "input_ids" in inputs:
        return {**inputs, "decoder_input_ids": inputs["input_ids"].clone()}
    start = getattr(config, "decoder_start_token_id", None)
    if start is None:
        start = getattr(config, "pad_token_id", None) or 0
    return {**inputs, "decoder_input_ids": torch.tensor([[int(start)]], dtype=torch.long)}
