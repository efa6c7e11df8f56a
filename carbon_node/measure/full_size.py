"""Models at real sizes built offline from transformers' default configurations, with random weights.

transformers' default configurations are the base sizes of their architectures: ``BertConfig()`` is
bert-base (12 layers, hidden 768, 110 M parameters), ``GPT2Config()`` is GPT-2 small (124 M),
``ViTConfig()`` is ViT-Base/16 at 224 px (86 M). Saved with ``save_pretrained`` (config and weights, no
tokenizer or processor), they are measured on a synthetic input built from their config: the compute
of a real model of that size, with no model hub. The benchmark's realistic-size rows and
``carbon-node make-model`` use them; torch and transformers are imported inside the builder.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["FULL_SIZE_MODELS", "build_full_size_model"]

FULL_SIZE_MODELS: dict[str, tuple[str, str]] = {
    "bert-base": ("BertConfig", "BertModel"),
    "gpt2": ("GPT2Config", "GPT2Model"),
    "vit-base": ("ViTConfig", "ViTModel"),
}
"""Name -> (transformers config class, model class) of each real-size model."""


def build_full_size_model(directory: Path, name: str) -> Path:
    """``save_pretrained`` of ``name``'s model built from its default config (random weights); returns
    ``directory``. Raises ValueError for a name not in :data:`FULL_SIZE_MODELS`."""
    if name not in FULL_SIZE_MODELS:
        raise ValueError(f"unknown model {name!r} (one of {', '.join(FULL_SIZE_MODELS)})")
    import transformers

    config_name, model_name = FULL_SIZE_MODELS[name]
    config = getattr(transformers, config_name)()
    model = getattr(transformers, model_name)(config)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    return directory
