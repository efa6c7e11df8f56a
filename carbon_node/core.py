"""The node's core vocabulary, shared by the bus and the engine.

A task travels as :class:`TaskInputs` (the three decoded input samples, joined by task id) and
leaves as :class:`TaskOutput` (the typed form of one ``CO2FootprintImpl``). The bus never looks
inside a task beyond its id; the engine never sees DDS. Both meet through :class:`TaskHandler`.

:func:`error_output` is the one place where a failure becomes a published result (PROTOCOL.md K1-K3):
zeros, ``mode: "error"``, an ``error`` message and an ``extra_data`` that the orchestrator accepts.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from carbon_node.base import CarbonNodeError, version
from carbon_node.wire import HWResourceImpl, MLModelImpl, TaskIdImpl, UserInputImpl

__all__ = [
    "LATENCY_UNIT_S",
    "MAX_EXTRA_DATA_BYTES",
    "MAX_LIST_ITEMS",
    "MAX_TEXT_CHARS",
    "Answered",
    "CarbonNodeError",
    "Journal",
    "Lane",
    "LatencyUnit",
    "TaskHandler",
    "TaskId",
    "TaskInputs",
    "TaskOutput",
    "base_extra_data",
    "coerce_num_outputs",
    "cut_text",
    "decode_extra_data",
    "encode_extra_data",
    "error_output",
    "extra_data_cuts",
    "make_inputs",
    "version",
]

NO_MODEL = "NO_MODEL"

LatencyUnit = Literal["h", "s", "ms"]
"""Units ``HWResource.latency`` comes in: hours (upstream's assumption), seconds or milliseconds."""

LATENCY_UNIT_S: Mapping[str, float] = {"h": 3600.0, "s": 1.0, "ms": 0.001}
"""Seconds in one unit of ``HWResource.latency``, per configured unit."""

# What one task may carry. A peer may send anything; these keep every step linear and every output
# small. What is cut is said in the output's ``extra_data.warnings``.
MAX_TEXT_CHARS = 4096
"""Longest text kept from an input (model name, model path, location, a ``model_restrains`` entry):
PATH_MAX on Linux; a hub id is at most 96 characters. Longer texts are cut in the middle
(:func:`cut_text`, so that a path keeps its suffix); entries of ``model_restrains`` longer than this are
left out."""
MAX_LIST_ITEMS = 1000
"""Most entries kept from a list in an input's ``extra_data`` (``model_restrains``, ``unsupported_models``)."""
MAX_EXTRA_DATA_BYTES = 1 << 20
"""Largest ``extra_data`` (bytes) that is decoded; a larger one is ignored as if empty. Nesting deeper
than Python's recursion limit (about 1000 levels) makes it invalid JSON, also ignored."""


@dataclass(frozen=True, order=True)
class TaskId:
    """SustainML task identity. ``{0, 0}`` is invalid on the wire (upstream rejects it)."""

    problem_id: int
    iteration_id: int

    @property
    def is_valid(self) -> bool:
        return not (self.problem_id == 0 and self.iteration_id == 0)

    def __str__(self) -> str:
        return f"{self.problem_id}.{self.iteration_id}"


class Lane(enum.Enum):
    """Where a task runs: measurements one at a time, everything else without waiting.

    ``INLINE`` is for work that never blocks and takes a fraction of a millisecond (no I/O beyond a
    ``stat``): the bus thread answers it as it arrives, without two thread hand-offs per task. ``FAST``
    is a small thread pool, for quick work that may still wait (a live intensity lookup, a callback).
    """

    INLINE = "inline"
    FAST = "fast"
    MEASURE = "measure"


@dataclass(frozen=True)
class TaskInputs:
    """The three inputs of one task, as decoded from the wire (any may be missing on failure paths)."""

    task_id: TaskId
    ml_model: MLModelImpl | None = None
    user_input: UserInputImpl | None = None
    hw: HWResourceImpl | None = None

    @property
    def missing(self) -> list[str]:
        """Names of the inputs not yet received, in PROTOCOL.md topic order."""
        names = (("ml_model", self.ml_model), ("hw_resources", self.hw), ("user_input", self.user_input))
        return [name for name, value in names if value is None]

    @property
    def complete(self) -> bool:
        return self.ml_model is not None and self.hw is not None and self.user_input is not None


@dataclass(frozen=True)
class TaskOutput:
    """One ``CO2FootprintImpl`` in typed form.

    ``carbon_g`` is grams CO2e, ``energy_kwh`` kWh, ``grid_ci_g_per_kwh`` gCO2e/kWh, ``extra_data`` the
    JSON object published as UTF-8 bytes. ``node_error`` asks the runtime to publish NODE_ERROR
    instead of NODE_IDLE after this task (upstream's callback contract). An output is not changed once
    made, ``extra_data`` included: its bytes are encoded once (:meth:`extra_data_bytes`).
    """

    task_id: TaskId
    carbon_g: float
    energy_kwh: float
    grid_ci_g_per_kwh: float
    extra_data: Mapping[str, Any] = field(default_factory=dict)
    node_error: bool = False
    timings: Mapping[str, float] = field(default_factory=dict, compare=False)
    """Seconds spent per stage (``load_s``, ``measure_s``, ...), for logs and metrics; not published."""
    _extra_bytes: bytes | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def mode(self) -> str:
        return str(self.extra_data.get("mode", ""))

    @classmethod
    def published(
        cls, task_id: TaskId, carbon_g: float, energy_kwh: float, grid_ci_g_per_kwh: float, extra_bytes: bytes
    ) -> TaskOutput:
        """An output as some node published it (a standby reads the active node's): its ``extra_data`` is
        decoded for reading, and its bytes are kept as they were published."""
        extra, _ = decode_extra_data(extra_bytes)
        output = cls(task_id, carbon_g, energy_kwh, grid_ci_g_per_kwh, extra)
        object.__setattr__(output, "_extra_bytes", bytes(extra_bytes))
        return output

    def extra_data_bytes(self) -> bytes:
        """``extra_data`` as published (:func:`encode_extra_data`), encoded on the first call only: the
        runtime checks, journals and publishes the same bytes."""
        encoded = self._extra_bytes
        if encoded is None:
            encoded = encode_extra_data(self.extra_data)
            object.__setattr__(self, "_extra_bytes", encoded)  # a cache, not state: frozen for users
        return encoded


class TaskHandler(Protocol):
    """What the bus runtime calls for each task. Implementations must not raise from ``fail``.

    A handler may also have ``measure_queue(inputs) -> str``: the queue a task it put on ``Lane.MEASURE``
    waits in (the measure host chosen for it, ``""`` for the node's own lane; cheap, called right after
    ``lane``). Measurements of different queues run at the same time, each queue in arrival order.
    """

    def lane(self, inputs: TaskInputs) -> Lane:
        """Which lane the complete task runs on (cheap, must not block)."""

    def handle(self, inputs: TaskInputs) -> TaskOutput:
        """Compute the output of a complete task. May raise; the runtime turns it into an error output."""

    def fail(self, inputs: TaskInputs, message: str) -> TaskOutput:
        """The error output for a task that cannot be computed (incomplete, evicted, crashed)."""


@dataclass(frozen=True)
class Answered:
    """A journal row: the output published for a task and the fingerprint of the inputs it answered."""

    output: TaskOutput
    inputs_fingerprint: str | None
    """``carbon_node.bus.fingerprint.inputs_fingerprint`` of the answered inputs; None when unknown (a row
    from before fingerprints were kept): such a row is never replayed."""


class Journal(Protocol):
    """Where answered tasks are kept, so that replayed inputs are answered again identically."""

    def lookup(self, task_id: TaskId) -> Answered | None:
        """What was published for ``task_id`` earlier (maybe by a previous process), or None."""

    def record(self, output: TaskOutput, inputs_fingerprint: str | None = None) -> None:
        """Persist an output that is about to be published, with its inputs' fingerprint. Must not raise."""


def decode_extra_data(raw: bytes | Sequence[int] | None) -> tuple[dict[str, Any], str | None]:
    """Decode an ``extra_data`` octet sequence as a UTF-8 JSON object (F1).

    Returns the object (empty when absent or unusable) and a problem description, or None when the
    bytes were empty or a valid object. Never raises.
    """
    if not raw:
        return {}, None
    if len(raw) > MAX_EXTRA_DATA_BYTES:
        return {}, f"extra_data is {len(raw)} bytes, over the limit of {MAX_EXTRA_DATA_BYTES}: ignored"
    try:
        data = bytes(raw)
    except (TypeError, ValueError):
        return {}, "extra_data is not a byte sequence"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return {}, f"extra_data is not valid UTF-8 ({exc.reason} at byte {exc.start})"
    if not text.strip():
        return {}, None
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        return {}, f"extra_data is not valid JSON ({exc})"
    if not isinstance(value, dict):
        return {}, f"extra_data is JSON {type(value).__name__}, expected an object"
    return value, None


def _json_safe(value: Any) -> Any:
    """Replace non-finite floats (not valid JSON) by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    """What ``json.dumps`` writes for a value it has no encoding for: a mapping as an object, else its text."""
    return dict(value) if isinstance(value, Mapping) else str(value)


def encode_extra_data(extra: Mapping[str, Any]) -> bytes:
    """Encode ``extra_data`` as upstream does (``json.dumps`` default ASCII escaping), always valid JSON.

    Non-finite floats become ``null`` and keys that JSON cannot hold become their text; the walk that
    does so (:func:`_json_safe`) runs only when ``json.dumps`` refuses the value as it is, which the
    engine's own outputs never make it do.
    """
    try:
        text = json.dumps(extra, allow_nan=False, default=_json_default)
    except (ValueError, TypeError):
        text = json.dumps(_json_safe(extra), allow_nan=False, default=_json_default)
    return text.encode("utf-8")


def coerce_num_outputs(value: Any) -> int:
    """F1: the orchestrator needs an integer >= 1; anything else becomes 1 (or the nearest valid int)."""
    if isinstance(value, bool):
        return 1
    if isinstance(value, int):
        return max(1, min(value, 2**31 - 1))
    if isinstance(value, float) and math.isfinite(value):
        return max(1, min(int(value), 2**31 - 1))
    if isinstance(value, str):
        try:
            return coerce_num_outputs(int(value.strip()))
        except ValueError:
            return 1
    return 1


def cut_text(text: str) -> str:
    """``text`` when it has at most :data:`MAX_TEXT_CHARS` characters, else its beginning and its end
    joined by ``...`` (:data:`MAX_TEXT_CHARS` characters in all)."""
    if len(text) <= MAX_TEXT_CHARS:
        return text
    head = MAX_TEXT_CHARS // 2
    return f"{text[:head]}...{text[len(text) - (MAX_TEXT_CHARS - head - 3) :]}"


def _user_restrains(user_extra: Mapping[str, Any]) -> list[Any]:
    """The user's ``model_restrains`` as a list of JSON scalars (anything else left out)."""
    user_list = user_extra.get("model_restrains")
    if isinstance(user_list, (list, tuple)):
        return [item for item in user_list if isinstance(item, (str, int, float, bool)) or item is None]
    if isinstance(user_list, str) and user_list:
        return [user_list]
    return []


def _merge_restrains(model_name: str, user_extra: Mapping[str, Any]) -> tuple[list[Any], int, int]:
    """The merged ``model_restrains`` (bounded), the entries left out as too long, and those over the count."""
    merged: list[Any] = [cut_text(model_name)]
    seen: set[Any] = {merged[0]}
    too_long = over = 0
    for item in _user_restrains(user_extra):
        if isinstance(item, str) and len(item) > MAX_TEXT_CHARS:
            too_long += 1
        elif item in seen:  # a set: linear in the list, where `item in merged` was quadratic
            continue
        elif len(merged) >= MAX_LIST_ITEMS:
            over += 1
        else:
            seen.add(item)
            merged.append(item)
    return merged, too_long, over


def base_extra_data(model_name: str, user_extra: Mapping[str, Any]) -> dict[str, Any]:
    """The upstream keys of the output ``extra_data`` (PROTOCOL.md 7.4 step 1, with F1).

    ``num_outputs`` comes from the user's ``extra_data`` coerced to an int >= 1; ``model_restrains`` is
    the current model first, then the user's list, de-duplicated keeping the first occurrence, at most
    :data:`MAX_LIST_ITEMS` entries of at most :data:`MAX_TEXT_CHARS` characters (see
    :func:`extra_data_cuts`). Linear in the size of the list.
    """
    num_outputs = 1
    if "num_outputs" in user_extra and user_extra["num_outputs"] != "":
        num_outputs = coerce_num_outputs(user_extra["num_outputs"])
    merged, _, _ = _merge_restrains(model_name, user_extra)
    return {"num_outputs": num_outputs, "model_restrains": merged}


def extra_data_cuts(model_name: str, user_extra: Mapping[str, Any]) -> list[str]:
    """What :func:`base_extra_data` cuts from these inputs, as warnings for the output (empty: nothing)."""
    _, too_long, over = _merge_restrains(model_name, user_extra)
    cuts: list[str] = []
    if len(model_name) > MAX_TEXT_CHARS:
        cuts.append(f"model name is {len(model_name)} characters: cut to {MAX_TEXT_CHARS} in model_restrains")
    if too_long:
        cuts.append(f"UserInput model_restrains: {too_long} entries longer than {MAX_TEXT_CHARS} characters left out")
    if over:
        cuts.append(f"UserInput model_restrains: {over} entries beyond the first {MAX_LIST_ITEMS} left out")
    return cuts


def error_output(inputs: TaskInputs, message: str, **extra: Any) -> TaskOutput:
    """The published result of a task that failed: zeros, ``mode: "error"`` and ``error`` text."""
    model_name = inputs.ml_model.model if inputs.ml_model is not None else ""
    user_extra: dict[str, Any] = {}
    if inputs.user_input is not None:
        user_extra, _ = decode_extra_data(inputs.user_input.extra_data)
    data = base_extra_data(model_name, user_extra)
    cuts = extra_data_cuts(model_name, user_extra)
    if cuts:
        data["warnings"] = cuts
    data.update(extra)
    data["mode"] = "error"
    data["error"] = message
    return TaskOutput(inputs.task_id, 0.0, 0.0, 0.0, data)


def _extra_octets(value: Mapping[str, Any] | str | bytes | None) -> list[int]:
    """``extra_data`` octets: a mapping as JSON, a string as UTF-8, bytes as they are."""
    if value is None:
        return []
    if isinstance(value, bytes):
        return list(value)
    if isinstance(value, str):
        return list(value.encode("utf-8"))
    return list(json.dumps(dict(value)).encode("utf-8"))


def make_inputs(
    model: str = "tiny-model",
    model_path: str = "",
    latency: float = 0.0,
    power: float = 0.0,
    user_extra: Mapping[str, Any] | str | bytes | None = None,
    ml_extra: Mapping[str, Any] | str | bytes | None = None,
    region: str = "",
    continent: str = "",
    task_id: tuple[int, int] = (1, 1),
    hw_description: str = "",
) -> TaskInputs:
    """Complete task inputs from plain values (``carbon-node estimate``, tests): ``latency`` in the
    configured unit, ``power`` in W, ``hw_description`` the selected hardware's name.

    ``user_extra``/``ml_extra`` are the ``extra_data`` of the UserInput and MLModel samples (a mapping
    is JSON-encoded; str or bytes are sent as they are, to test invalid data).
    """
    wire_id = TaskIdImpl(problem_id=task_id[0], iteration_id=task_id[1])
    return TaskInputs(
        task_id=TaskId(*task_id),
        ml_model=MLModelImpl(model=model, model_path=model_path, extra_data=_extra_octets(ml_extra), task_id=wire_id),
        user_input=UserInputImpl(
            geo_location_region=region, geo_location_continent=continent, extra_data=_extra_octets(user_extra), task_id=wire_id
        ),
        hw=HWResourceImpl(hw_description=hw_description, power_consumption=power, latency=latency, task_id=wire_id),
    )
