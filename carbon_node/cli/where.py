"""``carbon-node where PLACE``: the grid intensity the node would use for a place text, and why.

It asks the node's own intensity chain (the same :func:`~carbon_node.engine.intensity.default_intensity_source`
the daemon and ``estimate`` build from the settings: ``SUSTAINML_GRID_CI`` first, then the place
resolver, the live providers when enabled, the world average) and prints the zone, the figure, its
source, dataset and year, and how the text matched; ``--json`` prints the ``grid_ci_*`` keys a task's
``extra_data`` would carry. Exit status 0 when the text was understood (or a configured intensity
answers), 1 when it was not (the fallback is still printed).
"""

from __future__ import annotations

import json
import textwrap
from typing import Any, TextIO

from carbon_node.engine.intensity import Intensity, default_intensity_source
from carbon_node.engine.task import Location
from carbon_node.service.settings import Settings
from carbon_node.service.wiring import engine_config

__all__ = ["intensity_keys", "run_where"]

WIDTH = 100


def intensity_keys(answer: Intensity) -> dict[str, Any]:
    """The ``grid_ci_*`` keys of an answer, as a task's ``extra_data`` carries them, and its warnings."""
    return {
        "grid_ci_g_per_kwh": answer.g_per_kwh,
        "grid_ci_source": answer.source,
        "grid_ci_zone": answer.zone or None,
        "grid_ci_zone_kind": answer.kind or None,
        "grid_ci_year": answer.year,
        "grid_ci_dataset": answer.dataset or None,
        "grid_ci_match": answer.match.as_dict() if answer.match is not None else None,
        "warnings": list(answer.warnings),
    }


def understood(answer: Intensity) -> bool:
    """Whether the place text was read (or a configured intensity makes it irrelevant)."""
    return answer.match is not None and answer.match.how not in ("world", "live")


def format_where(answer: Intensity) -> str:
    """The answer as aligned label/value lines; warnings wrapped under their label."""
    match = answer.match
    rows = [
        ("text", repr(match.text) if match is not None else "''"),
        ("zone", f"{answer.zone or '-'} ({answer.kind or 'unknown kind'})"),
        ("intensity", f"{answer.g_per_kwh:.6g} gCO2e/kWh"),
        ("source", answer.source),
        ("dataset", answer.dataset or "-"),
        ("year", str(answer.year) if answer.year is not None else "not stated in the data"),
        ("matched", f"{match.matched} (how: {match.how})" if match is not None else "-"),
        *(("warning", warning) for warning in answer.warnings),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(
        textwrap.fill(value, WIDTH, initial_indent=f"{label:<{width}}  ", subsequent_indent=" " * (width + 2))
        for label, value in rows
    )


def run_where(settings: Settings, text: str, continent: str, as_json: bool, out: TextIO) -> int:
    """Resolve ``text`` (and ``continent``) as the node would; print the answer; the exit status."""
    config = engine_config(settings)
    chain = default_intensity_source(
        config.grid_ci_g_per_kwh,
        live_intensity=config.live_intensity,
        live_intensity_timeout_s=config.live_intensity_timeout_s,
        electricitymaps_api_key=config.electricitymaps_api_key,
    )
    answer = chain.lookup(Location(region=text.strip(), continent=continent.strip()))
    if as_json:
        print(json.dumps(intensity_keys(answer), ensure_ascii=False), file=out, flush=True)
    else:
        print(format_where(answer), file=out, flush=True)
    return 0 if understood(answer) else 1
