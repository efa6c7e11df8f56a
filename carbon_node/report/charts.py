"""The report's two charts, drawn with matplotlib as SVG text to inline in the page.

- :func:`models_chart`: the models on one axis, carbon (gCO2e) and energy (kWh) per inference in two
  panels; for each model the median of each scaling (measured: window / forward passes; HW latency)
  as a dot with its min-max range as a bar, and the published figure's median as a square with its
  typical 95 % interval (``extra_data.uncertainty``) as an error bar. The axis is logarithmic when the
  values span two decades or more.
- :func:`time_chart`: the published carbon per inference of every answer with figures over the time it
  was answered, one colour per model; hollow markers are cached answers.

matplotlib is imported here only, and only ``carbon-node report`` imports this module: the node never
loads it. Figures are built with ``matplotlib.figure.Figure`` and the SVG canvas (no pyplot, no global
state, no display). Text stays text in the SVG (``svg.fonttype: none``), so the page needs no font files
and its numbers can be searched; ids are prefixed per chart, so two charts in one page cannot clash.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from carbon_node.report.results import Answer
from carbon_node.report.summary import ModelSummary, Stats

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["INTERVAL", "PALETTE", "label", "models_chart", "time_chart"]

PALETTE = ("#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#8C6D1F", "#5D3A9B", "#E69F00", "#0072B2")
"""Colours of the models over time: Okabe-Ito (distinguishable with colour-vision deficiencies), those of
the two scalings (blue, orange) last so that a model and a scaling rarely share one."""

_SERIES = (
    ("measured", "measured: window energy / forward passes", "#0072B2", "o"),
    ("hw_latency", "HW latency: energy over the HW latency", "#E69F00", "D"),
)

INTERVAL = ("published", "as published: median, bar: its 95 % interval", "#882255", "s")
"""The published figure with its uncertainty interval (Tol's wine: no model's or scaling's colour)."""

MAX_VECTOR_POINTS = 2000
"""Above this many answers the markers over time are one inline PNG inside the SVG (axes and text stay
vector): 100 000 answers as SVG markers would be about 6 MB of page."""

RASTER_DPI = 150
"""Resolution of the markers drawn as an image (they are sharp on most screens at this density)."""

LOG_SPAN = 100.0
"""Largest / smallest value from which an axis is logarithmic (two decades)."""

_STYLE: dict[Any, Any] = {  # matplotlib types its keys as literals
    "svg.fonttype": "none",
    "svg.hashsalt": "carbon-node",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 10.0,
    "axes.titlesize": 12.0,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
}


def label(model: str, width: int = 36) -> str:
    """A model's short name for an axis: a path keeps its last two parts, then the end is kept."""
    parts = [part for part in model.split("/") if part]
    text = "/".join(parts[-2:]) if model.startswith("/") and len(parts) > 2 else model
    text = text or "(unnamed)"
    text = text if len(text) <= width else "..." + text[-(width - 3) :]
    return text.replace("$", r"\$")  # matplotlib reads $...$ as mathematics


def _tick_text(value: float, _position: object) -> str:
    # Each tick with its own exponent (no shared "1e-6" offset in a corner): the unit is in the label.
    return f"{value:.3g}"


def _log_wanted(values: Sequence[float]) -> bool:
    positive = [value for value in values if value > 0]
    return len(positive) >= 2 and max(positive) / min(positive) >= LOG_SPAN


def _svg(figure: Figure, prefix: str) -> str:
    """The figure as an ``<svg>`` element: no XML prolog, no metadata, ids prefixed with ``prefix``."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", dpi=RASTER_DPI, metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    text = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', text)
    text = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", text)
    text = re.sub(r'href="#([^"]+)"', rf'href="#{prefix}-\1"', text)
    # Scale with the page: the viewBox keeps the proportions.
    text = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 width="100%" height="auto"', text, count=1)
    return text


def _series(model: ModelSummary, key: str, unit: str) -> Stats | None:
    return getattr(model, f"{key}_{unit}")


def models_chart(models: Sequence[ModelSummary]) -> str:
    """Carbon and energy per inference per model, both scalings, as an SVG element."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    with matplotlib.rc_context(_STYLE):
        height = 1.9 + 0.75 * len(models)
        figure = Figure(figsize=(11.0, height), layout="constrained")
        axes = figure.subplots(1, 2, sharey=True)
        names = [label(model.model) for model in models]
        panels = (
            ("carbon_g", "Carbon per inference", "gCO$_2$e per inference"),
            ("energy_kwh", "Energy per inference", "kWh per inference"),
        )
        for ax, (unit, title, xlabel) in zip(axes, panels, strict=True):
            values: list[float] = []
            _, legend, colour, marker = INTERVAL
            boxed = [(i, getattr(model, unit).median, getattr(model, f"{unit}_interval")) for i, model in enumerate(models)]
            boxed = [(i, median, pair) for i, median, pair in boxed if pair is not None]
            if boxed:
                ax.errorbar(
                    [median for _, median, _ in boxed],
                    [i for i, _, _ in boxed],
                    xerr=[
                        [max(median - pair[0], 0.0) for _, median, pair in boxed],
                        [max(pair[1] - median, 0.0) for _, median, pair in boxed],
                    ],
                    fmt=marker,
                    color=colour,
                    markersize=7,
                    capsize=5,
                    elinewidth=2.2,
                    label=legend,
                )
                values += [pair[0] for _, _, pair in boxed] + [pair[1] for _, _, pair in boxed]
            for offset, (key, legend, colour, marker) in zip((-0.25, 0.25), _SERIES, strict=True):
                rows = [(i, _series(model, key, unit)) for i, model in enumerate(models)]
                present = [(i, stats) for i, stats in rows if stats is not None]
                if not present:
                    continue
                y = [i + offset for i, _ in present]
                medians = [stats.median for _, stats in present]
                low = [stats.median - stats.low for _, stats in present]
                high = [stats.high - stats.median for _, stats in present]
                ax.errorbar(
                    medians, y, xerr=[low, high], fmt=marker, color=colour, markersize=7, capsize=4, elinewidth=1.6, label=legend
                )
                values += [stats.low for _, stats in present] + [stats.high for _, stats in present]
            if _log_wanted(values):
                ax.set_xscale("log")
                xlabel += " (log scale)"
            else:
                ax.xaxis.set_major_formatter(FuncFormatter(_tick_text))
            ax.set_title(title, loc="left")
            ax.set_xlabel(xlabel)
            ax.set_yticks(range(len(models)), names)
            ax.set_ylim(len(models) - 0.5, -0.5)
            ax.grid(axis="y", visible=False)
        handles, legends = axes[0].get_legend_handles_labels()
        if not handles:
            handles, legends = axes[1].get_legend_handles_labels()
        figure.legend(
            handles,
            legends,
            loc="outside lower center",
            ncols=3,
            frameon=False,
            title="median; bar: min to max, or 95 % interval",
        )
        return _svg(figure, "models")


def time_chart(answers: Sequence[Answer], models: Sequence[ModelSummary]) -> str:
    """Published carbon per inference of each answer over time, one colour per model, as an SVG element."""
    import matplotlib
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(11.0, 4.2), layout="constrained")
        ax = figure.subplots()
        values: list[float] = []
        rasterized = sum(1 for answer in answers if answer.carbon_g is not None) > MAX_VECTOR_POINTS
        for index, model in enumerate(models):
            colour = PALETTE[index % len(PALETTE)]
            group = [answer for answer in answers if answer.model == model.model and answer.carbon_g is not None]
            for cached, face in ((False, colour), (True, "white")):
                chosen = [answer for answer in group if bool(answer.cached) is cached]
                if not chosen:
                    continue
                times = date2num([datetime.fromtimestamp(answer.answered_at_s, UTC) for answer in chosen])
                carbon = [float(answer.carbon_g or 0.0) for answer in chosen]
                values += carbon
                ax.plot(
                    times,
                    carbon,
                    linestyle="none",
                    marker="o",
                    markersize=3 if rasterized else 7,  # many answers: small, translucent dots show density
                    alpha=0.35 if rasterized else 1.0,
                    markeredgewidth=1.0 if rasterized else 1.6,
                    color=colour,
                    markerfacecolor=face,
                    rasterized=rasterized,
                    label=label(model.model) + (" (cached)" if cached else ""),
                )
        locator = AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        ylabel = "gCO$_2$e per inference (as published)"
        if _log_wanted(values):
            ax.set_yscale("log")
            ylabel += ", log scale"
        else:
            ax.yaxis.set_major_formatter(FuncFormatter(_tick_text))
        ax.set_title("Carbon per inference over time", loc="left")
        ax.set_xlabel("answered at (UTC)")
        ax.set_ylabel(ylabel)
        figure.legend(loc="outside right upper", frameon=False, title="model")
        return _svg(figure, "time")
