"""Model loading for the measurement worker: resolve, check, build, and make a dummy input.

Behaviour follows the upstream node (PROTOCOL.md 7.4 step 4), with fixes:

1. :func:`resolve_model_source` turns ``spec.model`` into a local directory. An absolute path must be an
   existing directory; anything else must look like a Hugging Face id (``name`` or ``owner/name``) and is
   looked up in the local hub cache. Strings that are neither (``..``, shell characters, control
   characters) are refused before any file is touched. An id not in the cache is fetched (config and
   pre-processor files only) when the hub is reachable, bounded by ``spec.load_timeout_s``; offline it
   fails at once.
2. :func:`load_model` reads the config (``trust_remote_code`` only when the spec allows it), takes the
   model class from transformers' ``AutoModel`` mapping, refuses ``unsupported_models`` by class-name
   substring (case-insensitive), estimates the parameter memory on the ``meta`` device and refuses a
   model over ``spec.max_model_mb``; then loads the weights when the directory has them, else builds
   random weights from the config (as upstream) and says so in the notes.
3. F4: the dtype goes to the model (float32 on CPU, float16 only on CUDA); only floating inputs are
   cast, to the model's own dtype. Encoder-decoder models get decoder inputs, decided from the config.

Pre-processors are tried in upstream order (tokenizer, image processor, feature extractor, processor),
except that a config with both a text and a vision tower tries the joint processor first (upstream
picked the tokenizer and then failed the forward pass).

Measuring costs compute, not meaning: a directory with no pre-processor files (a config and weights
only, as ``save_pretrained`` of a model writes), or whose pre-processor loads nothing usable, gets a
synthetic input built from the config (:func:`synthetic_inputs`): token ids within ``vocab_size`` of
:data:`DUMMY_TEXT_TOKENS` tokens, pixels of the config's image size and channels, video frames,
raw audio or log-mel features; the notes say so. Without pre-processor files transformers 5 still
"loads" a tokenizer with an empty vocabulary, which encodes the dummy text as zero tokens (the
forward pass then fails with "cannot reshape tensor of 0 elements"): such a tokenizer is never used.

This module imports torch and transformers: only the worker process imports it.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog
import torch
import transformers

from carbon_node.measure.model_names import check_local_directory, validate_model_string
from carbon_node.measure.netcheck import run_bounded
from carbon_node.measure.protocol import MeasureSpec, ModelRejected

__all__ = [
    "DUMMY_TEXT",
    "LoadedModel",
    "ModelSource",
    "check_allowed",
    "estimate_model_bytes",
    "load_model",
    "resolve_model_source",
    "validate_model_string",
]

log = structlog.get_logger(__name__)

DUMMY_TEXT = "How to prepare coffee?"
"""The dummy text input (upstream's)."""

DUMMY_IMAGE_PX = 224
"""Side of the dummy white RGB image in pixels (the processor resizes it to the model's size)."""

VIDEO_FRAMES = 16
"""Frames of the dummy video input."""

DUMMY_TEXT_TOKENS = 7
"""Length of a synthetic token-id input: :data:`DUMMY_TEXT` as a BERT tokenizer encodes it
(``[CLS] how to prepare coffee ? [SEP]``), the length the text path runs."""

AUDIO_SAMPLES = 16_000
"""Samples of a synthetic raw-audio input: one second at 16 kHz."""

PREPROCESSOR_FILES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "vocab.json",
        "merges.txt",
        "special_tokens_map.json",
        "preprocessor_config.json",
        "processor_config.json",
        "video_preprocessor_config.json",
        "chat_template.json",
    }
)
"""Files whose presence means the directory has a tokenizer or processor to try (also ``*.model``,
``*.tiktoken``: sentencepiece and tiktoken vocabularies)."""

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
"""Files whose presence means the directory holds weights to load."""

HUB_FILE_PATTERNS = ["*.json", "*.txt", "*.model", "*.tiktoken", "*.py"]
"""What is fetched from the hub for a model not in the cache: config and pre-processor files, no weights."""

InputKind = Literal["text", "image", "video", "text+image", "audio"]


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are: a local directory, and whether it came from the hub cache."""

    model: str
    directory: Path
    from_hub: bool


@dataclass
class LoadedModel:
    """A model ready to run: the module (eval mode, on its device), one dummy input, and facts."""

    model: Any
    inputs: dict[str, Any]
    model_class: str
    input_kind: InputKind
    device: str
    dtype: str
    param_bytes: int
    notes: list[str] = field(default_factory=list)

    def forward(self) -> None:
        """One forward pass on the dummy input (call inside ``torch.inference_mode()``)."""
        self.model(**self.inputs)


def _hub_offline() -> bool:
    """Whether hub access is off: ``HF_HUB_OFFLINE`` now, or as huggingface_hub read it at import."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return flag or bool(constants.HF_HUB_OFFLINE)


def resolve_model_source(model: str, *, timeout_s: float, allowed_dirs: Sequence[str] = ()) -> ModelSource:
    """The local directory of ``model`` (see the module docstring); raises :class:`ModelRejected`.

    With ``allowed_dirs``, a local directory must be inside one of them (symbolic links resolved).
    """
    validate_model_string(model)
    if model.startswith("/"):
        return ModelSource(model, check_local_directory(model, allowed_dirs), from_hub=False)

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return ModelSource(model, Path(snapshot_download(model, local_files_only=True)), from_hub=True)
    except LocalEntryNotFoundError:
        pass
    except Exception as exc:  # a broken cache entry is reported, not raised raw
        raise ModelRejected(f"model {model!r}: the local hub cache entry is unusable ({exc})") from exc
    if _hub_offline():
        raise ModelRejected(f"model {model!r} is not available locally and the hub is offline")

    def fetch() -> str:
        return str(snapshot_download(model, allow_patterns=HUB_FILE_PATTERNS, etag_timeout=timeout_s))

    try:
        directory = run_bounded(fetch, timeout_s, f"hub lookup of {model}")
    except RepositoryNotFoundError as exc:
        raise ModelRejected(f"model {model!r} is not available locally and the hub does not know it") from exc
    except Exception as exc:  # timeout, DNS, refused connection, proxy: the hub cannot be used
        reason = _first_line(exc)
        raise ModelRejected(f"model {model!r} is not available locally and the hub is unreachable ({reason})") from exc
    return ModelSource(model, Path(directory), from_hub=True)


def pick_device(requested: str) -> torch.device:
    """``auto`` is CUDA when available, else CPU; ``cuda`` without CUDA is refused."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelRejected("device 'cuda' was requested but CUDA is not available in the worker")
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def model_dtype(device: torch.device) -> torch.dtype:
    """F4: float16 only on CUDA; float32 on CPU (half precision is slow or unsupported there)."""
    return torch.float16 if device.type == "cuda" else torch.float32


def _load_config(source: ModelSource, spec: MeasureSpec) -> Any:
    config_path = source.directory / "config.json"
    if not config_path.is_file():
        raise ModelRejected(f"model {spec.model!r} has no config.json")
    try:
        return transformers.AutoConfig.from_pretrained(
            source.directory, trust_remote_code=spec.trust_remote_code, local_files_only=True
        )
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise ModelRejected(f"model {spec.model!r} needs its own code (trust_remote_code), which is not allowed") from exc
        raise ModelRejected(f"model {spec.model!r}: config.json is not usable ({_first_line(exc)})") from exc
    except (OSError, KeyError, TypeError) as exc:
        raise ModelRejected(f"model {spec.model!r}: config.json is not usable ({_first_line(exc)})") from exc


def _model_class(config: Any, spec: MeasureSpec) -> Any:
    """The transformers model class for ``config`` (``AutoModel`` mapping), checked against the spec."""
    try:
        cls: Any = transformers.AutoModel._model_mapping.get(type(config), None)
    except Exception:  # the lazy mapping imports modules; any failure means unsupported
        cls = None
    if cls is None:
        auto_map = getattr(config, "auto_map", None) or {}
        if spec.trust_remote_code and "AutoModel" in auto_map:
            cls = transformers.AutoModel  # resolved through the remote code
        else:
            raise ModelRejected(f"model {spec.model!r}: transformers has no model class for {type(config).__name__}")
    check_supported(spec, cls.__name__)
    return cls


def check_supported(spec: MeasureSpec, class_name: str) -> None:
    """Refuse a model class whose name contains an ``unsupported_models`` entry (case-insensitive)."""
    for unsupported in spec.unsupported_models:
        if unsupported and unsupported.lower() in class_name.lower():
            raise ModelRejected(f"model {spec.model!r}: models that use '{unsupported}' are not supported ({class_name})")


def check_size(spec: MeasureSpec, param_bytes: int) -> None:
    """Refuse a model whose parameters and buffers need more than ``spec.max_model_mb`` MiB."""
    need_mib = param_bytes / 2**20
    if need_mib > spec.max_model_mb:
        raise ModelRejected(
            f"model {spec.model!r} is too large: it needs {need_mib:.2f} MiB, "
            f"over the {spec.max_model_mb:g} MiB limit (max_model_mb)"
        )


def check_allowed(spec: MeasureSpec, class_name: str, param_bytes: int) -> None:
    """Both checks, for a model already loaded under another spec."""
    check_supported(spec, class_name)
    check_size(spec, param_bytes)


def _build(cls: Any, config: Any, spec: MeasureSpec) -> Any:
    if cls is transformers.AutoModel:
        return transformers.AutoModel.from_config(config, trust_remote_code=spec.trust_remote_code)
    return cls(config)


def estimate_model_bytes(cls: Any, config: Any, spec: MeasureSpec, dtype: torch.dtype) -> int:
    """Bytes of parameters and buffers of the model in ``dtype``, built on the ``meta`` device (no memory)."""
    try:
        with torch.device("meta"):
            skeleton = _build(cls, config, spec)
    except Exception as exc:  # a config that cannot build is a rejected model
        raise ModelRejected(f"model {spec.model!r} cannot be built from its config ({_first_line(exc)})") from exc
    itemsize = torch.empty((), dtype=dtype).element_size()
    tensors = [*skeleton.parameters(), *skeleton.buffers()]
    return sum(t.numel() * (itemsize if t.is_floating_point() else t.element_size()) for t in tensors)


def _has_weights(directory: Path) -> bool:
    return any((directory / name).is_file() for name in WEIGHT_FILES)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _load_preprocessor(source: ModelSource, config: Any, spec: MeasureSpec) -> tuple[str, Any]:
    """The first pre-processor that loads, as (label, object); see the module docstring for the order."""
    candidates: list[tuple[str, Any, dict[str, Any]]] = [
        ("tokenizer", transformers.AutoTokenizer, {}),
        ("image", transformers.AutoImageProcessor, {}),
        ("feature_extractor", transformers.AutoFeatureExtractor, {}),
        ("processor", transformers.AutoProcessor, {}),
    ]
    if _is_text_and_vision(config):
        candidates.insert(0, candidates.pop())
    errors: list[str] = []
    for label, auto, extra in candidates:
        try:
            loaded = auto.from_pretrained(
                source.directory, trust_remote_code=spec.trust_remote_code, local_files_only=True, **extra
            )
        except Exception as exc:  # try the next kind, as upstream does
            errors.append(f"{label}: {_first_line(exc)}")
            continue
        return label, loaded
    raise ModelRejected(f"model {spec.model!r}: no tokenizer or processor could be loaded ({'; '.join(errors)[:500]})")


def _is_text_and_vision(config: Any) -> bool:
    return getattr(config, "text_config", None) is not None and getattr(config, "vision_config", None) is not None


def _dummy_image() -> Any:
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.full((DUMMY_IMAGE_PX, DUMMY_IMAGE_PX, 3), 255, dtype=np.uint8))


def make_dummy_inputs(label: str, preprocessor: Any, config: Any) -> tuple[InputKind, dict[str, Any]]:
    """The dummy input for the pre-processor kind: text, a white image, 16 white frames, or text + image."""
    class_name = type(preprocessor).__name__.lower()
    if label == "processor" and _is_text_and_vision(config):
        encoded = preprocessor(text=DUMMY_TEXT, images=_dummy_image(), return_tensors="pt", padding=True)
        return "text+image", dict(encoded)
    if label in ("image", "feature_extractor") or "image" in class_name or "video" in class_name:
        if "video" in class_name:
            return "video", dict(preprocessor([_dummy_image()] * VIDEO_FRAMES, return_tensors="pt"))
        return "image", dict(preprocessor(_dummy_image(), return_tensors="pt"))
    tokenizer = getattr(preprocessor, "tokenizer", preprocessor)
    if getattr(tokenizer, "pad_token", None) is None:
        # Upstream's fallback: models without a pad token pad with EOS (or GPT-2's end-of-text).
        if getattr(tokenizer, "eos_token", None) is None:
            tokenizer.eos_token = "<|endoftext|>"
        tokenizer.pad_token = tokenizer.eos_token
    return "text", dict(tokenizer(DUMMY_TEXT, return_tensors="pt", padding=True, truncation=True))


def has_preprocessor_files(directory: Path) -> bool:
    """Whether ``directory`` holds any tokenizer or processor file (see :data:`PREPROCESSOR_FILES`)."""
    try:
        names = [entry.name for entry in os.scandir(directory) if entry.is_file()]
    except OSError:
        return False
    return any(name in PREPROCESSOR_FILES or name.endswith((".model", ".tiktoken")) for name in names)


def _usable(inputs: Mapping[str, Any]) -> bool:
    """An encoded input is usable when it has at least one tensor and no empty one."""
    tensors = [value for value in inputs.values() if isinstance(value, torch.Tensor)]
    return bool(tensors) and all(t.numel() > 0 for t in tensors)


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
        raise _NoSynthetic(f"{what} needs token ids, and the config gives no vocab_size")
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
        raise _NoSynthetic(f"{what} needs pixel values, and the config gives no image_size")
    channels = getattr(config, "num_channels", 3)
    channels = channels if isinstance(channels, int) and channels > 0 else 3
    shape = (1, channels, *side) if frames is None else (1, frames, channels, *side)
    return torch.ones(shape, dtype=torch.float32)


class _NoSynthetic(Exception):
    """No synthetic input can be built; the message names what is missing."""


def synthetic_inputs(config: Any, main_input: str) -> tuple[InputKind, dict[str, Any], str]:
    """An input built from ``config`` alone for a model whose main input is ``main_input``.

    Returns (kind, tensors, a note describing them). Raises ``_NoSynthetic`` naming what is missing.
    """
    if _is_text_and_vision(config):
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
            raise _NoSynthetic("the model needs audio features, and the config gives no num_mel_bins or max_source_positions")
        # Whisper-style encoders halve the frames with a stride-2 convolution.
        features = torch.zeros(1, mel_bins, 2 * positions)
        return "audio", {"input_features": features}, f"{mel_bins} mel bins x {2 * positions} frames of audio features"
    raise _NoSynthetic(f"the model's main input {main_input!r} cannot be built from a config")


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


def fit_inputs(model: Any, inputs: Mapping[str, Any], device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Keep the inputs the model's forward accepts; move tensors to ``device``; cast floats to ``dtype`` only.

    Integer tensors (ids, masks) keep their dtype (F4: never cast inputs to a dtype the model does not use).
    """
    params = inspect.signature(model.forward).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    fitted: dict[str, Any] = {}
    for name, value in inputs.items():
        if not takes_any and name not in params:
            continue
        if isinstance(value, torch.Tensor):
            value = value.to(device=device, dtype=dtype) if value.is_floating_point() else value.to(device)
        fitted[name] = value
    return fitted


def _dummy_or_synthetic(
    spec: MeasureSpec,
    cls: Any,
    config: Any,
    preprocessor: tuple[str, Any] | None,
    problem: str,
    notes: list[str],
) -> tuple[InputKind, dict[str, Any]]:
    """The pre-processor's dummy input when it gives a usable one, else a synthetic input (noted)."""
    if preprocessor is not None:
        label, loaded = preprocessor
        with_what = type(loaded).__name__
        try:
            kind, raw_inputs = make_dummy_inputs(label, loaded, config)
        except Exception as exc:
            problem = f"could not make a dummy input with {with_what}: {_first_line(exc)}"
        else:
            if _usable(raw_inputs):
                return kind, raw_inputs
            problem = f"{with_what} encoded the dummy {kind} input as an empty tensor"
    main_input = getattr(cls, "main_input_name", None) or "input_ids"
    try:
        kind, raw_inputs, described = synthetic_inputs(config, str(main_input))
    except _NoSynthetic as exc:
        raise ModelRejected(f"model {spec.model!r}: no input can be built: {problem}, and {exc}") from None
    notes.append(f"synthetic input built from the config ({described}): {problem}")
    return kind, raw_inputs


def load_model(spec: MeasureSpec, source: ModelSource, *, make_room: Callable[[int], None] | None = None) -> LoadedModel:
    """Load ``source`` for ``spec`` and prove it with one forward pass; raises :class:`ModelRejected`.

    ``make_room`` is called with the estimated size in bytes once the model is accepted, before its
    weights are loaded (the worker's model cache evicts what the new model replaces).
    """
    device = pick_device(spec.device)
    dtype = model_dtype(device)
    config = _load_config(source, spec)
    cls = _model_class(config, spec)
    param_bytes = estimate_model_bytes(cls, config, spec, dtype)
    check_size(spec, param_bytes)
    if make_room is not None:
        make_room(param_bytes)

    notes: list[str] = []
    preprocessor: tuple[str, Any] | None = None
    preprocessor_problem = "no tokenizer or processor files in the model directory"
    if has_preprocessor_files(source.directory):
        try:
            preprocessor = _load_preprocessor(source, config, spec)
        except ModelRejected as exc:
            preprocessor_problem = str(exc).removeprefix(f"model {spec.model!r}: ")
    try:
        if _has_weights(source.directory):
            model = cls.from_pretrained(
                source.directory, dtype=dtype, local_files_only=True, trust_remote_code=spec.trust_remote_code
            )
            notes.append("weights loaded from the model directory")
        else:
            model = _build(cls, config, spec).to(dtype=dtype)
            notes.append("no weights available locally: random weights built from the config (same compute cost)")
    except ModelRejected:
        raise
    except Exception as exc:  # construction failures are the model's problem, reported as such
        raise ModelRejected(f"model {spec.model!r} could not be built: {_first_line(exc)}") from exc
    model = model.to(device).eval()

    kind, raw_inputs = _dummy_or_synthetic(spec, cls, config, preprocessor, preprocessor_problem, notes)
    inputs = fit_inputs(model, add_decoder_inputs(raw_inputs, config), device, dtype)
    loaded = LoadedModel(model, inputs, cls.__name__, kind, str(device), str(dtype).removeprefix("torch."), param_bytes, notes)
    try:
        with torch.inference_mode():
            loaded.forward()
    except Exception as exc:
        raise ModelRejected(f"model {spec.model!r}: the forward pass on a dummy {kind} input failed: {_first_line(exc)}") from exc
    log.debug("model.loaded", model=spec.model, cls=cls.__name__, kind=kind, device=str(device), param_bytes=param_bytes)
    return loaded
