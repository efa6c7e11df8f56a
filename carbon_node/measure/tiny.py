"""Tiny local models for tests, demos and benchmarks: no hub, a few thousand parameters each.

Each builder writes a Hugging Face model directory (``config.json`` by ``save_pretrained`` and the
pre-processor the loader needs: a tokenizer made with the ``tokenizers`` library, an image processor,
or both) and returns that directory. With ``weights=False`` (the default) no weights are written, so
the loader builds the model from its config with random weights, as upstream does for hub ids; with
``weights=True`` the weights are saved too and the loader loads them.

The models are small enough that a 1 s window runs many forward passes on one CPU core:

========================  ================================  ==========================
builder                   model                             input
========================  ================================  ==========================
build_tiny_text_model     BERT encoder                      text (tokenizer)
build_tiny_image_model    ViT                               one 32x32 image
build_tiny_video_model    VideoMAE                          16 frames of 32x32
build_tiny_multimodal     CLIP (text and vision towers)     text + image (processor)
build_tiny_seq2seq_model  T5 encoder-decoder                text, decoder ids
========================  ================================  ==========================

``build_bare_model`` writes what ``save_pretrained`` of a model alone writes (a config and weights, no
tokenizer or processor) for one of :data:`BARE_ARCHITECTURES`: the loader builds a synthetic input.

``build_tiny_onnx`` writes a tiny valid ONNX graph (``Y = X @ W + B``) for the ONNX path.

torch and transformers are imported inside the builders: importing this module is cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "BARE_ARCHITECTURES",
    "TINY_WORDS",
    "build_bare_model",
    "build_tiny_image_model",
    "build_tiny_multimodal_model",
    "build_tiny_onnx",
    "build_tiny_seq2seq_model",
    "build_tiny_text_model",
    "build_tiny_video_model",
]

TINY_WORDS = (
    *("how", "to", "prepare", "coffee", "tea", "water", "milk", "sugar", "cup", "hot", "cold"),
    *("the", "a", "an", "is", "of", "and", "in", "on", "for", "with"),
    *("model", "energy", "carbon", "power", "window", "pass", "grid", "node", "task"),
)
"""The vocabulary of the tiny tokenizers (plus special tokens); unknown words map to ``[UNK]``."""

_HIDDEN = 32
_IMAGE_SIZE = 32
_PATCH = 16


def _word_tokenizer(specials: list[str], *, unk: str) -> Any:
    """A lower-casing whitespace word-level ``tokenizers.Tokenizer`` over :data:`TINY_WORDS`."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel

    vocab = {token: index for index, token in enumerate([*specials, *TINY_WORDS])}
    tokenizer = Tokenizer(WordLevel(vocab=vocab, unk_token=unk))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return tokenizer


def _bert_tokenizer() -> Any:
    """A fast tokenizer with BERT's special tokens, wrapping a tiny word-level vocabulary."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    backend = _word_tokenizer(specials, unk="[UNK]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )


def _prepare(directory: Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _save(model_or_config: Any, directory: Path, *, weights: bool) -> None:
    """Save the config, and the weights too when asked (``model_or_config`` is then a model)."""
    if weights:
        model_or_config.save_pretrained(directory)
    else:
        getattr(model_or_config, "config", model_or_config).save_pretrained(directory)


def build_tiny_text_model(directory: Path, *, weights: bool = False) -> Path:
    """A 2-layer BERT encoder (hidden size 32) with a word-level tokenizer; returns ``directory``."""
    from transformers import BertConfig, BertModel

    directory = _prepare(directory)
    tokenizer = _bert_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=_HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    _save(BertModel(config) if weights else config, directory, weights=weights)
    tokenizer.save_pretrained(directory)
    return directory


def _image_processor(cls_name: str) -> Any:
    import transformers

    cls = getattr(transformers, cls_name)
    return cls(size={"height": _IMAGE_SIZE, "width": _IMAGE_SIZE}, do_center_crop=False)


def build_tiny_image_model(directory: Path, *, weights: bool = False) -> Path:
    """A 1-layer ViT on 32x32 images (patch 16) with a ViT image processor; returns ``directory``."""
    from transformers import ViTConfig, ViTModel

    directory = _prepare(directory)
    config = ViTConfig(
        image_size=_IMAGE_SIZE,
        patch_size=_PATCH,
        hidden_size=_HIDDEN,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    _save(ViTModel(config) if weights else config, directory, weights=weights)
    _image_processor("ViTImageProcessor").save_pretrained(directory)
    return directory


def build_tiny_video_model(directory: Path, *, weights: bool = False) -> Path:
    """A 1-layer VideoMAE on 16 frames of 32x32 (tubelet 2, patch 16); returns ``directory``."""
    from transformers import VideoMAEConfig, VideoMAEModel

    directory = _prepare(directory)
    config = VideoMAEConfig(
        image_size=_IMAGE_SIZE,
        patch_size=_PATCH,
        num_frames=16,
        tubelet_size=2,
        hidden_size=_HIDDEN,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    _save(VideoMAEModel(config) if weights else config, directory, weights=weights)
    _image_processor("VideoMAEImageProcessor").save_pretrained(directory)
    return directory


def build_tiny_multimodal_model(directory: Path, *, weights: bool = False) -> Path:
    """A CLIP model (1-layer text and vision towers) with a CLIP processor (tokenizer + image processor)."""
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor

    directory = _prepare(directory)
    tokenizer = _bert_tokenizer()
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": _HIDDEN,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 64,
            "pad_token_id": 0,
            "bos_token_id": 2,
            "eos_token_id": 3,
        },
        vision_config={
            "image_size": _IMAGE_SIZE,
            "patch_size": _PATCH,
            "hidden_size": _HIDDEN,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
        projection_dim=16,
    )
    _save(CLIPModel(config) if weights else config, directory, weights=weights)
    processor = CLIPProcessor(image_processor=_image_processor("CLIPImageProcessor"), tokenizer=tokenizer)
    processor.save_pretrained(directory)
    return directory


def build_tiny_seq2seq_model(directory: Path, *, weights: bool = False) -> Path:
    """A T5 encoder-decoder (1 layer each, d_model 32) with a word-level tokenizer; returns ``directory``."""
    from transformers import PreTrainedTokenizerFast, T5Config, T5Model

    directory = _prepare(directory)
    specials = ["<pad>", "</s>", "<unk>"]
    backend = _word_tokenizer(specials, unk="<unk>")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=64
    )
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=_HIDDEN,
        d_kv=16,
        d_ff=64,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=2,
        pad_token_id=0,
        eos_token_id=1,
    )
    config.decoder_start_token_id = 0  # T5 starts decoding from the pad token
    _save(T5Model(config) if weights else config, directory, weights=weights)
    tokenizer.save_pretrained(directory)
    return directory


BARE_ARCHITECTURES = ("gpt2", "bert", "vit", "videomae", "clip", "t5", "bart", "time_series_transformer")
"""Architectures :func:`build_bare_model` builds; the last one takes time series (``past_values``),
which no config describes enough to synthesise."""


def _bare_model(architecture: str, *, layers: int, hidden: int) -> Any:
    import transformers as tf

    heads = 2
    text: dict[str, Any] = {"vocab_size": 100, "max_position_embeddings": 64}
    vision: dict[str, Any] = {"image_size": _IMAGE_SIZE, "patch_size": _PATCH}
    encoder: dict[str, Any] = {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads}
    encoder["intermediate_size"] = 2 * hidden
    seq2seq: dict[str, Any] = {"d_model": hidden, "encoder_attention_heads": heads, "decoder_attention_heads": heads}
    seq2seq |= {"encoder_ffn_dim": 2 * hidden, "decoder_ffn_dim": 2 * hidden, "encoder_layers": layers, "decoder_layers": layers}
    if architecture == "gpt2":
        gpt2 = tf.GPT2Config(vocab_size=100, n_positions=64, n_embd=hidden, n_layer=layers, n_head=heads)
        gpt2.bos_token_id = gpt2.eos_token_id = 1  # within the tiny vocabulary
        return tf.GPT2Model(gpt2)
    if architecture == "bert":
        return tf.BertModel(tf.BertConfig(**text, **encoder))
    if architecture == "vit":
        return tf.ViTModel(tf.ViTConfig(**vision, **encoder))
    if architecture == "videomae":
        return tf.VideoMAEModel(tf.VideoMAEConfig(**vision, **encoder, num_frames=4, tubelet_size=2))
    if architecture == "clip":
        clip = tf.CLIPConfig(text_config={**text, **encoder}, vision_config={**vision, **encoder}, projection_dim=16)
        return tf.CLIPModel(clip)
    if architecture == "t5":
        t5 = tf.T5Config(vocab_size=100, d_model=hidden, d_kv=16, d_ff=2 * hidden, num_layers=layers, num_heads=heads)
        return tf.T5Model(t5)
    if architecture == "bart":
        return tf.BartModel(tf.BartConfig(**text, **seq2seq))
    if architecture == "time_series_transformer":
        series = tf.TimeSeriesTransformerConfig(prediction_length=4, context_length=4, lags_sequence=[1], **seq2seq)
        return tf.TimeSeriesTransformerModel(series)
    raise ValueError(f"unknown architecture {architecture!r} (one of {', '.join(BARE_ARCHITECTURES)})")


def build_bare_model(directory: Path, architecture: str, *, layers: int = 1, hidden: int = _HIDDEN) -> Path:
    """``save_pretrained`` of a randomly initialised ``architecture`` model: config and weights only."""
    directory = _prepare(directory)
    _bare_model(architecture, layers=layers, hidden=hidden).save_pretrained(directory)
    return directory


def build_tiny_onnx(path: Path) -> Path:
    """A valid single-node ONNX graph ``Y = X @ W + B`` (X: 1x4 float, Y: 1x2) written to ``path``.

    Raises ``ImportError`` when the ``onnx`` package is not installed.
    """
    import onnx
    from onnx import TensorProto, helper

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weight = helper.make_tensor("W", TensorProto.FLOAT, [4, 2], [0.1 * i for i in range(8)])
    bias = helper.make_tensor("B", TensorProto.FLOAT, [2], [0.0, 1.0])
    node = helper.make_node("Gemm", ["X", "W", "B"], ["Y"])
    graph = helper.make_graph(
        [node],
        "tiny_gemm",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 2])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, producer_name="carbon-node", opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
