"""``carbon-node report``: one self-contained HTML page that compares the models a node has answered for.

The flow: the answers (:func:`carbon_node.report.results.read_answers`, filtered by a
:class:`~carbon_node.report.results.Query`) -> :func:`carbon_node.report.summary.summarize` -> the two
charts as inline SVG (:mod:`carbon_node.report.charts`, matplotlib) -> :func:`render_page`, sections in
this order: the figures per model, the charts, how the figures were obtained, the errors, and what
the page was made from.

The page opens offline: styles are inline, charts are inline SVG with text in the page's own
sans-serif font, and nothing refers to another file or the network (no script at all). Numbers are
written with three significant digits (``f"{value:.3g}"``) and their unit in the column title.
"""

from __future__ import annotations

import html
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from carbon_node.core import version
from carbon_node.report.results import Answer
from carbon_node.report.summary import ModelSummary, Stats, Summary, summarize

__all__ = ["EMPTY_MESSAGE", "number", "render_page", "render_report"]

EMPTY_MESSAGE = "The journal holds no answered tasks"
"""The page's statement when there is nothing to show (followed by the filters, if any)."""

_CSS = """
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; color: #222; margin: 2rem auto;
       max-width: 72rem; padding: 0 1.5rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h3 { font-size: 1.0rem; margin: 1.2rem 0 0.2rem; }
h2 { font-size: 1.2rem; margin-top: 2.2rem; border-bottom: 1px solid #ccc; padding-bottom: 0.2rem; }
p.lead { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #d8d8d8; padding: 0.3rem 0.55rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.model { font-family: "DejaVu Sans Mono", monospace; font-size: 0.82rem; word-break: break-all; max-width: 26rem; }
.range { color: #666; font-size: 0.82rem; }
figure { margin: 1rem 0; }
figcaption { color: #555; font-size: 0.88rem; }
p.empty { font-size: 1.1rem; padding: 1rem; border: 1px dashed #999; background: #fafafa; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2rem 1rem; }
dt { color: #555; }
td.overlap { background: #fff4e5; }
td.apart { color: #2d6a2d; }
span.model { font-family: "DejaVu Sans Mono", monospace; font-size: 0.82rem; }
"""


def number(value: float) -> str:
    """A figure as the page writes it: three significant digits."""
    return f"{value:.3g}"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _stats_cell(stats: Stats | None) -> str:
    if stats is None:
        return '<td class="num">-</td>'
    spread = "" if stats.low == stats.high else f'<br><span class="range">{number(stats.low)} to {number(stats.high)}</span>'
    return f'<td class="num">{number(stats.median)}{spread}</td>'


def _span(stats: Stats | None) -> str:
    """``low to high``, one value when they are equal, ``-`` when there is none."""
    if stats is None:
        return "-"
    return number(stats.low) if stats.low == stats.high else f"{number(stats.low)} to {number(stats.high)}"


def _counts(counter: Counter[str]) -> str:
    return "<br>".join(f"{_e(name)} ({count})" for name, count in counter.most_common())


def _interval_cell(pair: tuple[float, float] | None) -> str:
    return '<td class="num">-</td>' if pair is None else f'<td class="num">{number(pair[0])} to {number(pair[1])}</td>'


def _apart(model: ModelSummary, pairs: Sequence[tuple[str, str]]) -> str:
    """The models ``model`` cannot be told apart from (their carbon intervals overlap), as a cell."""
    others = [b if a == model.model else a for a, b in pairs if model.model in (a, b)]
    if model.carbon_g_interval is None:
        return "<td>no interval</td>"
    if not others:
        return '<td class="apart">distinguishable from every other model</td>'
    names = "<br>".join(_e(other or "(unnamed)") for other in others)
    return f'<td class="overlap">not distinguishable from:<br><span class="model">{names}</span></td>'


def _figures_table(models: Sequence[ModelSummary], unit: str, title: str, pairs: Sequence[tuple[str, str]] = ()) -> str:
    """One quantity (``carbon_g`` or ``energy_kwh``) per model: as published with its typical 95 % interval,
    and both scalings; for carbon, the models it cannot be told apart from."""
    rows = []
    carbon = unit == "carbon_g"
    for model in models:
        rows.append(
            "<tr>"
            f'<td class="model">{_e(model.model or "(unnamed)")}</td>'
            f"<td>{_e(', '.join(model.modes))}</td>"
            f'<td class="num">{model.answers}</td>'
            f'<td class="num">{model.measurements}</td>'
            f"{_stats_cell(getattr(model, unit))}"
            f"{_interval_cell(getattr(model, unit + '_interval'))}"
            f"{_stats_cell(getattr(model, 'measured_' + unit))}"
            f"{_stats_cell(getattr(model, 'hw_latency_' + unit))}"
            f"{_apart(model, pairs) if carbon else ''}"
            "</tr>"
        )
    return (
        f"<h3>{title}</h3><table><thead><tr><th>model</th><th>mode</th><th>answers</th><th>measurements</th>"
        "<th>as published</th><th>95 % interval (typical)</th><th>measured scaling</th><th>HW-latency scaling</th>"
        + ("<th>ranking</th>" if carbon else "")
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _ranking(summary: Summary) -> str:
    """Which models the intervals let one rank, and which not."""
    if not summary.indistinguishable:
        return "<p>Every pair of models with an interval is distinguishable: their 95 % intervals do not overlap.</p>"
    items = "".join(
        f'<li><span class="model">{_e(a or "(unnamed)")}</span> and <span class="model">{_e(b or "(unnamed)")}</span>: '
        "not distinguishable (their carbon intervals overlap)</li>"
        for a, b in summary.indistinguishable
    )
    return f"<ul>{items}</ul>"


def _provenance_table(models: Sequence[ModelSummary]) -> str:
    rows = []
    for model in models:
        window = _span(model.window_s)
        passes = _span(model.forward_passes)
        cached = f"{model.cached} of {model.tracker_answers}" if model.tracker_answers else "-"
        rows.append(
            "<tr>"
            f'<td class="model">{_e(model.model or "(unnamed)")}</td>'
            f"<td>{_counts(model.power_sources)}</td>"
            f"<td>{_counts(model.intensities)}</td>"
            f'<td class="num">{window}</td><td class="num">{passes}</td><td class="num">{cached}</td>'
            f"<td>{_counts(model.scalings)}</td><td>{_counts(model.devices) or '-'}</td>"
            "</tr>"
        )
    return (
        "<table><thead><tr><th>model</th><th>power source (answers)</th><th>grid intensity: source, zone, "
        "gCO2e/kWh (answers)</th><th>window, s</th><th>forward passes per window</th><th>cached answers</th>"
        "<th>scaling published</th><th>device</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _errors_table(summary: Summary) -> str:
    if not summary.errors:
        return "<p>No answer was an error.</p>"
    rows = "".join(
        f'<tr><td>{_e(group.message)}</td><td class="num">{group.count}</td>'
        f'<td class="model">{"<br>".join(_e(model or "(unnamed)") for model in group.models)}</td>'
        f"<td>{_time(group.first_s)}</td><td>{_time(group.last_s)}</td></tr>"
        for group in summary.errors
    )
    return (
        "<table><thead><tr><th>message</th><th>answers</th><th>models</th><th>first</th><th>last</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def render_page(summary: Summary, *, source: str, filters: str = "", generated_s: float | None = None) -> str:
    """The HTML page for ``summary``; ``source`` names the journal, ``filters`` describes the query used."""
    generated = _time(time.time() if generated_s is None else generated_s)
    head = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>carbon-node report</title><style>{_CSS}</style></head><body>"
        "<h1>Carbon footprint per inference, by model</h1>"
        f'<p class="lead">carbon-node {_e(version())} report of {_e(source)}{_e(filters)}, generated {generated}.</p>'
    )
    parts = [head]
    if summary.answers == 0:
        parts.append(f'<p class="empty">{EMPTY_MESSAGE}{_e(filters)}.</p>')
        parts.append("</body></html>\n")
        return "".join(parts)
    from carbon_node.report.charts import models_chart, time_chart

    modes = ", ".join(f"{count} {_e(mode)}" for mode, count in summary.modes.most_common())
    assert summary.first_s is not None and summary.last_s is not None
    parts.append(
        f"<p>{summary.answers} answers ({modes}) from {_time(summary.first_s)} to {_time(summary.last_s)}; "
        f"{len(summary.models)} model(s) with figures.</p>"
    )
    if summary.models:
        parts.append(
            "<h2>Per model</h2><p>Per inference, over the answers with figures (tracker and onnx_hw_only): median, and "
            "min to max under it. The measured scaling divides the window's energy by the forward passes in it; the "
            "HW-latency scaling is the energy over the HW provider's latency (upstream's figure, and the only one "
            "on the ONNX path). <i>measurements</i> counts distinct measurements: a cached answer reuses one.</p>"
        )
        parts.append(
            "<p>The <i>95 % interval</i> bounds the published figure (<code>extra_data.uncertainty</code>: the power "
            "source's error, the window's spread and, for carbon, the grid intensity's); the typical one of a model is "
            "the median of its answers' lows and highs. Two models whose carbon intervals overlap are <strong>not "
            "distinguishable</strong>: their order may be the other way round.</p>"
        )
        parts.append(_figures_table(summary.models, "carbon_g", "Carbon, gCO2e per inference", summary.indistinguishable))
        parts.append(_figures_table(summary.models, "energy_kwh", "Energy, kWh per inference"))
        parts.append(
            f"<figure>{models_chart(summary.models)}<figcaption>Models compared: median per inference (dot) and min to "
            "max (bar) for each scaling; the published median (square) with its typical 95 % interval as an error bar."
            "</figcaption></figure>"
        )
        parts.append("<h3>Which models can be told apart</h3>")
        parts.append(_ranking(summary))
        parts.append(
            f"<figure>{time_chart(summary.answered, summary.models)}<figcaption>Every answer with figures: the "
            "carbon per inference it published. Hollow markers are cached answers (the measurement of an earlier "
            "answer reused).</figcaption></figure>"
        )
        parts.append("<h2>How the figures were obtained</h2>")
        parts.append(_provenance_table(summary.models))
    else:
        parts.append("<p>No answer has figures (no tracker or onnx_hw_only answer).</p>")
    parts.append("<h2>Errors</h2>")
    parts.append(_errors_table(summary))
    no_model = summary.modes.get("no_model", 0)
    if no_model:
        parts.append(f"<p>{no_model} no_model answer(s): the provider found no model; nothing to estimate.</p>")
    parts.append("</body></html>\n")
    return "".join(parts)


def render_report(answers: Sequence[Answer], output: Path, *, source: str, filters: str = "") -> Summary:
    """Write the report of ``answers`` to ``output`` (UTF-8 HTML); returns what it summarized."""
    summary = summarize(answers)
    page = render_page(summary, source=source, filters=filters)
    Path(output).write_text(page, encoding="utf-8")
    return summary
