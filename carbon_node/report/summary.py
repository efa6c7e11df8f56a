"""What the report says, computed from the answers alone (pure functions, no plotting, no HTML).

- :func:`summarize` groups the answers with figures (``tracker``, ``onnx_hw_only``) per model: the
  published carbon and energy per inference (:class:`Stats`: median, min-max, count), the two scalings
  side by side where the answers carry them (``measured_per_inference``: window energy / forward
  passes; ``hw_latency_per_inference``: scaled by the HW latency), and how those figures were
  obtained (power and intensity sources, window, forward passes, cached share).
- Each model's typical interval (:func:`typical_interval`: the median of its answers' lows and highs of
  ``extra_data.uncertainty``), and the pairs of models whose carbon intervals overlap: they cannot be
  told apart (:func:`overlapping`).
- Error answers (``mode`` error) are grouped by message; ``no_model`` answers are counted.

A cached answer reuses an earlier measurement (same ``measured_at``), so a model's ``measurements``
counts distinct measurements while ``answers`` counts every answer.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from carbon_node.report.results import Answer

__all__ = ["ErrorGroup", "ModelSummary", "Stats", "Summary", "overlapping", "summarize", "typical_interval"]


@dataclass(frozen=True)
class Stats:
    """Median, smallest and largest of ``count`` values (in the unit of the values)."""

    median: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Stats | None:
        """The statistics of the values that are not None; None when there are none."""
        present = [value for value in values if value is not None]
        if not present:
            return None
        return cls(statistics.median(present), min(present), max(present), len(present))


def _per_inference(answer: Answer, key: str, unit: str) -> float | None:
    block = answer.extra.get(key)
    value = block.get(unit) if isinstance(block, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class ModelSummary:
    """One model's figures (per inference: gCO2e and kWh) and their provenance."""

    model: str
    answers: int
    measurements: int
    """Distinct measurements behind the tracker answers (cached answers reuse one)."""
    modes: tuple[str, ...]
    carbon_g: Stats
    energy_kwh: Stats
    measured_carbon_g: Stats | None
    measured_energy_kwh: Stats | None
    hw_latency_carbon_g: Stats | None
    hw_latency_energy_kwh: Stats | None
    power_sources: Counter[str]
    intensities: Counter[str]
    """``source zone (g/kWh)`` of each answer, counted."""
    scalings: Counter[str]
    window_s: Stats | None
    forward_passes: Stats | None
    tracker_answers: int
    cached: int
    """Of the ``tracker_answers``, those that reused an earlier measurement."""
    devices: Counter[str]
    first_s: float
    last_s: float
    carbon_g_interval: tuple[float, float] | None = None
    """The typical 95 % interval of the published carbon (gCO2e; :func:`typical_interval`)."""
    energy_kwh_interval: tuple[float, float] | None = None


@dataclass(frozen=True)
class ErrorGroup:
    """Error answers with one message: how many, for which models, first and last (seconds since the epoch)."""

    message: str
    count: int
    models: tuple[str, ...]
    first_s: float
    last_s: float


@dataclass(frozen=True)
class Summary:
    """Everything the report shows about a set of answers."""

    answers: int
    modes: Counter[str]
    models: tuple[ModelSummary, ...]
    errors: tuple[ErrorGroup, ...]
    first_s: float | None
    last_s: float | None
    answered: Sequence[Answer] = field(repr=False)
    """The answers with figures, oldest first (the chart over time)."""
    indistinguishable: tuple[tuple[str, str], ...] = ()
    """Pairs of models (in the order of ``models``) whose carbon intervals overlap."""


def _intensity(answer: Answer) -> str:
    source = answer.grid_ci_source or "unknown source"
    zone = f" {answer.grid_ci_zone}" if answer.grid_ci_zone else ""
    value = f" ({answer.grid_ci_g_per_kwh:g} g/kWh)" if answer.grid_ci_g_per_kwh is not None else ""
    return f"{source}{zone}{value}"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def typical_interval(intervals: Iterable[tuple[float, float] | None]) -> tuple[float, float] | None:
    """The median of the lows and the median of the highs of the intervals present; None when none is."""
    present = [pair for pair in intervals if pair is not None]
    if not present:
        return None
    return statistics.median(low for low, _ in present), statistics.median(high for _, high in present)


def overlapping(models: Sequence[ModelSummary]) -> tuple[tuple[str, str], ...]:
    """Pairs of models whose typical carbon intervals overlap (neither lies wholly above the other)."""
    pairs = []
    for i, first in enumerate(models):
        for second in models[i + 1 :]:
            a, b = first.carbon_g_interval, second.carbon_g_interval
            if a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]:
                pairs.append((first.model, second.model))
    return tuple(pairs)


def _model_summary(model: str, answers: Sequence[Answer]) -> ModelSummary:
    tracker = [answer for answer in answers if answer.mode == "tracker"]
    measured_at = {str(answer.extra.get("measured_at")) for answer in tracker}
    return ModelSummary(
        model=model,
        answers=len(answers),
        measurements=len(measured_at),
        modes=tuple(sorted({answer.mode for answer in answers})),
        carbon_g=Stats.of(answer.carbon_g for answer in answers) or Stats(0.0, 0.0, 0.0, 0),
        energy_kwh=Stats.of(answer.energy_kwh for answer in answers) or Stats(0.0, 0.0, 0.0, 0),
        measured_carbon_g=Stats.of(_per_inference(a, "measured_per_inference", "carbon_g") for a in answers),
        measured_energy_kwh=Stats.of(_per_inference(a, "measured_per_inference", "energy_kwh") for a in answers),
        hw_latency_carbon_g=Stats.of(_per_inference(a, "hw_latency_per_inference", "carbon_g") for a in answers),
        hw_latency_energy_kwh=Stats.of(_per_inference(a, "hw_latency_per_inference", "energy_kwh") for a in answers),
        power_sources=Counter(answer.power_source or "unknown" for answer in answers),
        intensities=Counter(_intensity(answer) for answer in answers),
        scalings=Counter(answer.scaling or "unknown" for answer in answers),
        window_s=Stats.of(_number(answer.extra.get("window_s")) for answer in tracker),
        forward_passes=Stats.of(_number(answer.extra.get("forward_passes")) for answer in tracker),
        tracker_answers=len(tracker),
        cached=sum(1 for answer in tracker if answer.cached),
        devices=Counter(str(answer.extra["device"]) for answer in tracker if answer.extra.get("device")),
        first_s=min(answer.answered_at_s for answer in answers),
        last_s=max(answer.answered_at_s for answer in answers),
        carbon_g_interval=typical_interval(answer.carbon_g_interval for answer in answers),
        energy_kwh_interval=typical_interval(answer.energy_kwh_interval for answer in answers),
    )


def summarize(answers: Sequence[Answer]) -> Summary:
    """The report's content for ``answers`` (any order). Models are ordered by median carbon per inference."""
    with_figures = sorted((answer for answer in answers if answer.has_figures), key=lambda answer: answer.answered_at_s)
    by_model: dict[str, list[Answer]] = {}
    for answer in with_figures:
        by_model.setdefault(answer.model, []).append(answer)
    models = sorted(
        (_model_summary(model, group) for model, group in by_model.items()), key=lambda s: (s.carbon_g.median, s.model)
    )
    by_message: dict[str, list[Answer]] = {}
    for answer in answers:
        if answer.mode == "error" or answer.node_error:
            by_message.setdefault(answer.error or "(no message)", []).append(answer)
    errors = sorted(
        (
            ErrorGroup(
                message=message,
                count=len(group),
                models=tuple(sorted({answer.model for answer in group})),
                first_s=min(answer.answered_at_s for answer in group),
                last_s=max(answer.answered_at_s for answer in group),
            )
            for message, group in by_message.items()
        ),
        key=lambda group: (-group.count, group.message),
    )
    times = [answer.answered_at_s for answer in answers]
    return Summary(
        answers=len(answers),
        modes=Counter(answer.mode or "unknown" for answer in answers),
        models=tuple(models),
        errors=tuple(errors),
        first_s=min(times) if times else None,
        last_s=max(times) if times else None,
        answered=with_figures,
        indistinguishable=overlapping(models),
    )
