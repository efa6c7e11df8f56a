"""Model strings: Hugging Face ids and absolute paths are accepted, anything else is refused before any file is touched."""

from __future__ import annotations

import pytest

from carbon_node.measure.model_names import validate_model_string
from carbon_node.measure.protocol import ModelRejected


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
