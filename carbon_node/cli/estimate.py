"""``carbon-node estimate``: one task through the same :class:`Engine`, without DDS.

The command builds the task inputs from its flags, runs them through the engine (with a real
measurement worker only when the model is to be measured), writes progress on stderr and the
result on ``out``: a readable table (value, unit, where it comes from) or one JSON object.
Exit status: 0 for a computed footprint (``tracker``, ``onnx_hw_only``), 1 otherwise.

Unlike the node, ``estimate`` takes a model directory relative to the current directory (it is made
absolute here; on the bus a peer's relative path means nothing, so the node keeps refusing it), and it
checks the model string before it starts a worker.
"""

from __future__ import annotations

import json
import sys
import tempfile
import textwrap
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from carbon_node.cli.model_arg import model_argument
from carbon_node.core import NO_MODEL, TaskOutput, make_inputs
from carbon_node.engine.engine import Engine
from carbon_node.engine.paths import Mode, failed
from carbon_node.measure.model_names import check_local_directory, validate_model_string
from carbon_node.measure.protocol import Measurement, MeasureSpec, ModelRejected
from carbon_node.service.settings import Settings, SettingsError
from carbon_node.service.wiring import engine_config, worker_measurer

__all__ = ["check_model_argument", "format_output", "run_estimate"]

TABLE_WIDTH = 100
"""Characters a table line may take; longer texts (errors, notes, warnings) wrap under their label."""

TEXT_ROWS = frozenset({"error", "note", "warning"})
"""Rows whose value is a sentence: wrapped under their label, outside the value column."""

SCALING_LABELS = {
    "hw_latency": "per inference: window energy x HW latency / window",
    "measured": "per inference: window energy / forward passes",
}
"""What the doubles carry, by ``extra_data["scaling"]`` (``none`` depends on the mode: see :func:`_scope`)."""


def check_model_argument(model: str, allowed_dirs: Sequence[str] = ()) -> str:
    """The model as the worker expects it: a directory that exists here becomes absolute
    (:func:`~carbon_node.cli.model_arg.model_argument`, the rule ``send-task`` follows too).

    Raises :class:`SettingsError` (exit status 2, before any worker starts) for a model string the
    worker would refuse, a local directory that does not exist, or one outside ``allowed_dirs``.
    """
    if model == NO_MODEL:
        return model
    model = model_argument(model).model
    try:
        validate_model_string(model)
        if model.startswith("/"):
            check_local_directory(model, allowed_dirs)
    except ModelRejected as exc:
        raise SettingsError(str(exc)) from None
    return model


CLOSE_TIMEOUT_S = 10.0
"""Seconds the measurement worker gets to exit when the command ends."""


class _Progress:
    """A measurer that reports on stderr around the real one."""

    def __init__(self, measurer: Any, task_timeout_s: float, err: TextIO) -> None:
        self._measurer = measurer
        self._task_timeout_s = task_timeout_s
        self._err = err

    def measure(self, spec: MeasureSpec) -> Measurement:
        say = self._err
        wait_ready = getattr(self._measurer, "wait_ready", None)
        if callable(wait_ready):
            waited = time.monotonic()
            if wait_ready(self._task_timeout_s):
                print(f"measurement worker ready ({time.monotonic() - waited:.1f} s)", file=say, flush=True)
            elif getattr(self._measurer, "unavailable", None):
                return self._measurer.measure(spec)  # raises with the reason (a missing library)
        print(
            f"loading model {spec.model} (device {spec.device}), then a {spec.window_s:g} s window of forward passes "
            f"(at most {self._task_timeout_s:g} s)...",
            file=say,
            flush=True,
        )
        started = time.monotonic()
        result: Measurement = self._measurer.measure(spec)
        cached = ", from the measurement cache" if result.cached else ""
        print(
            f"measured {result.forward_passes} passes in {result.window_s:.2f} s "
            f"(load {result.load_s:.2f} s, tracker {result.measure_s:.2f} s, total {time.monotonic() - started:.2f} s{cached})",
            file=say,
            flush=True,
        )
        return result

    def abort(self) -> None:
        abort = getattr(self._measurer, "abort", None)
        if callable(abort):
            abort()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else str(value)


def _cross_check(x: Mapping[str, Any]) -> str:
    """The RAPL counter cross-check of a tracker output, in words."""
    if x.get("counter_energy_kwh") is None:
        return "no RAPL counter cross-check"
    return f"carbontracker {_fmt(x.get('carbontracker_energy_kwh'))} kWh, RAPL counters {_fmt(x.get('counter_energy_kwh'))} kWh"


def _rows(output: TaskOutput) -> list[tuple[str, str, str, str]]:
    """(quantity, value, unit, source) rows of the readable table."""
    x = output.extra_data
    rows = [("mode", output.mode, "", "")]
    if output.mode == Mode.ERROR or output.mode == Mode.NO_MODEL:
        rows.append(("error", str(x.get("error", "")), "", ""))
        return rows
    zone = " ".join(_fmt(v) for v in (x.get("grid_ci_zone"), x.get("grid_ci_year")) if v is not None)
    components = ",".join(x.get("components") or [])
    rows += [
        ("carbon footprint", _fmt(output.carbon_g), "gCO2e", _scope(output.mode, str(x.get("scaling")))),
        ("energy consumption", _fmt(output.energy_kwh), "kWh", f"power: {x.get('power_source')} {components}".strip()),
        ("carbon intensity", _fmt(output.grid_ci_g_per_kwh), "gCO2e/kWh", f"{x.get('grid_ci_source')} {zone}".strip()),
    ]
    match = x.get("grid_ci_match") or {}
    if match.get("text"):
        rows.append(("place", str(match.get("matched")), "", f"{match.get('how')} match of {match.get('text')!r}"))
    if x.get("grid_ci_g_per_kwh") != output.grid_ci_g_per_kwh:
        rows.append(("grid intensity", _fmt(x.get("grid_ci_g_per_kwh")), "gCO2e/kWh", "carbon = energy x this intensity"))
    for key, label in (("measured_per_inference", "measured / pass"), ("hw_latency_per_inference", "hw-latency scaled")):
        per = x.get(key)
        if per:
            rows.append((label, _fmt(per["energy_kwh"]), "kWh", f"{_fmt(per['carbon_g'])} gCO2e ({key})"))
    if x.get("scaling_note"):
        rows.append(("note", str(x["scaling_note"]), "", ""))
    rows.append(("HW latency", _fmt(x.get("latency_s")), "s", f"input unit: {x.get('latency_unit')}"))
    rows.append(("HW power", _fmt(x.get("power_w")), "W", "HW provider"))
    if output.mode == Mode.TRACKER:
        rows += [
            ("window", _fmt(x.get("window_s")), "s", f"{x.get('forward_passes')} forward passes"),
            ("model", str(x.get("model_class")), "", f"{x.get('device')} {x.get('dtype')}, {x.get('torch_threads')} threads"),
            ("energy figure", str(x.get("energy_figure")), "", _cross_check(x)),
            ("carbontracker", str(x.get("carbontracker_version")), "", f"PUE {_fmt(x.get('pue'))}, at {x.get('measured_at')}"),
        ]
    for warning in x.get("warnings", []):
        rows.append(("warning", str(warning), "", ""))
    return rows


def _scope(mode: str, scaling: str) -> str:
    """What the output doubles cover, for the table."""
    if scaling in SCALING_LABELS:
        return SCALING_LABELS[scaling]
    if mode == Mode.ONNX_HW_ONLY:
        return "per inference: HW power x HW latency"
    return "whole window, not per inference (HW latency is 0)"


def format_output(output: TaskOutput, as_json: bool) -> str:
    """The result as one JSON object, or as an aligned table of value, unit and source."""
    if as_json:
        return json.dumps(
            {
                "carbon_footprint": output.carbon_g,
                "energy_consumption": output.energy_kwh,
                "carbon_intensity": output.grid_ci_g_per_kwh,
                "extra_data": json.loads(output.extra_data_bytes()),
                "timings": dict(output.timings),
            },
            sort_keys=False,
        )
    rows = _rows(output)
    # Texts (an error, a note, a warning) have no unit: they wrap under their label instead of widening
    # the value column for every row.
    values = [row for row in rows if row[0] not in TEXT_ROWS]
    widths = [max(len(row[0]) for row in rows), *(max(len(row[i]) for row in values) for i in (1, 2))]
    lines: list[str] = []
    for q, v, u, source in rows:
        if q in TEXT_ROWS:
            text, indent = " ".join(part for part in (v, source) if part), widths[0] + 2
            lines.append(textwrap.fill(text, TABLE_WIDTH, initial_indent=f"{q:<{widths[0]}}  ", subsequent_indent=" " * indent))
        else:
            start = f"{q:<{widths[0]}}  {v:>{widths[1]}}  {u:<{widths[2]}}  "
            line = textwrap.fill(start + source, TABLE_WIDTH, subsequent_indent=" " * len(start))
            lines.append(line.rstrip())
    return "\n".join(lines)


def run_estimate(
    settings: Settings,
    model: str,
    latency: float,
    power: float,
    region: str,
    model_path: str,
    as_json: bool,
    out: TextIO,
    err: TextIO | None = None,
) -> int:
    """Estimate one model's footprint; ``latency`` in ``settings.latency_unit``, ``power`` in W.

    Starts a measurement worker only for the tracker path and always stops it before returning.
    Returns the exit status (0: answered, ``no_model`` included; 1: ``error``).
    """
    err = err if err is not None else sys.stderr
    inputs = make_inputs(model=model, model_path=model_path, latency=latency, power=power, region=region)
    config = engine_config(settings)
    engine = Engine(config, measurer=_Unused())
    measurer: Any = None
    with tempfile.TemporaryDirectory(prefix="carbon-node-estimate-") as scratch:
        try:
            if engine.route(inputs)[1].mode is Mode.TRACKER:
                measurer = _start_worker(settings, Path(scratch), err)
                engine = Engine(config, _Progress(measurer, settings.task_timeout_s, err), intensity=engine.intensity)
            output = engine.handle(inputs)
        except Exception as exc:  # reported as the node would publish it
            output = engine.fail(inputs, failed(f"{type(exc).__name__}: {exc}"))
        finally:
            if measurer is not None:
                measurer.close(CLOSE_TIMEOUT_S)
    print(format_output(output, as_json), file=out, flush=True)
    return 1 if output.mode == Mode.ERROR else 0


def _start_worker(settings: Settings, scratch_dir: Path, err: TextIO) -> Any:
    """A started measurement worker (imported here: torch lives behind this import)."""
    print("starting the measurement worker...", file=err, flush=True)
    measurer = worker_measurer(settings, scratch_dir)
    start = getattr(measurer, "start", None)
    if callable(start):
        start()
    return measurer


class _Unused:
    """The measurer of an engine that only chooses paths: it is never asked to measure."""

    def measure(self, spec: MeasureSpec) -> Measurement:
        raise AssertionError("no measurement expected on this path")
