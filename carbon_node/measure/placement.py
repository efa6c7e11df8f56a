"""Where a measurement runs: the placement plug point, its null object, and the ``measured_on`` record.

A task that needs a measurement names the selected hardware (``HWResourceImpl.hw_description``). A
:class:`PlacingMeasurer` decides, when the task is routed, where it is measured (:meth:`~PlacingMeasurer.place`:
cheap, never blocks) and then measures it there (:meth:`~PlacingMeasurer.measure_placed`), saying where it
really was measured: the chosen host may fail, and the measurement may move back to the node's own
worker. The engine puts that answer in the output as ``extra_data.measured_on`` (:class:`MeasuredOn`).

:class:`Placement.queue` names the queue the task waits in: measurements in one queue run one after the
other in arrival order, those of different queues at the same time (the dispatcher gives each queue a
lane). :data:`LOCAL_QUEUE` is the node's own measure lane.

:class:`LocalPlacer` is the placement without a pool (a null object): every measurement on the node's
own worker. The pool of measure hosts (``carbon_node.bus.pool_measurer``) implements the same protocol
over DDS. Nothing here knows of DDS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from carbon_node.measure.hardware import NO_MATCH, best_match
from carbon_node.measure.protocol import MeasureError, Measurement, Measurer, MeasureSpec

__all__ = [
    "LOCAL_HOST",
    "LOCAL_QUEUE",
    "LocalPlacer",
    "MeasuredOn",
    "Placement",
    "PlacementFailed",
    "PlacingMeasurer",
    "local_measured_on",
    "no_hardware_reason",
]

LOCAL_HOST = "local"
"""``measured_on.host`` of a measurement made by the node's own worker."""

LOCAL_QUEUE = ""
"""The queue of the node's own measure lane."""


@dataclass(frozen=True)
class MeasuredOn:
    """Where a measurement was made, as published in ``extra_data.measured_on``.

    ``host``: ``"local"`` (the node's own worker) or the measure host's id (``host name:pid:suffix``, as it
    announces itself); ``hardware``: the name of that host's hardware that matched the task's
    ``hw_description`` (else its first name: what the figure was measured on); ``matched``: whether that
    hardware matches the task's ``hw_description`` (:mod:`carbon_node.measure.hardware`); ``reason``: why
    this host, in words (a fallback says what failed).
    """

    host: str
    hardware: str
    matched: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "hardware": self.hardware, "matched": self.matched, "reason": self.reason}


@dataclass(frozen=True)
class Placement:
    """Where a task's measurement is to run, chosen when the task is routed."""

    queue: str
    """The measure queue: :data:`LOCAL_QUEUE` for the node's own lane, else the measure host's id."""
    measured_on: MeasuredOn
    """Where it is meant to be measured, and why."""
    hardware_wanted: str = ""
    """The task's ``hw_description``, for ``measured_on`` if the measurement moves elsewhere."""

    @property
    def local(self) -> bool:
        return self.queue == LOCAL_QUEUE


class PlacementFailed(MeasureError):
    """The chosen host failed and the placer answers with an error rather than measuring elsewhere; the
    message names the host. ``measured_on`` says where it was to be measured."""

    def __init__(self, message: str, measured_on: MeasuredOn) -> None:
        super().__init__(message)
        self.measured_on = measured_on


@runtime_checkable
class PlacingMeasurer(Protocol):
    """A measurer that chooses the host of each measurement (see the module docstring)."""

    def place(self, hardware: str, model: str) -> Placement:
        """Where a measurement of ``model`` for ``hardware`` (a ``hw_description``) runs; cheap, never blocks."""

    def measure_placed(self, spec: MeasureSpec, placement: Placement) -> tuple[Measurement, MeasuredOn]:
        """Measure ``spec`` where ``placement`` says (or where it moved after a failure); raises
        :class:`MeasureError` subclasses as :meth:`Measurer.measure` does."""


def local_measured_on(description: str, hardware: Sequence[str], reason: str) -> MeasuredOn:
    """``measured_on`` of a measurement on the node's own worker, whose host answers to ``hardware``."""
    quality, name = best_match(description, hardware)
    shown = name if name is not None else (hardware[0] if hardware else "")
    return MeasuredOn(LOCAL_HOST, shown, quality > NO_MATCH, reason)


def no_hardware_reason(description: str) -> str | None:
    """Why a task cannot be matched to any host by its ``hw_description`` alone, or None when it can."""
    return None if description.strip() else "the task names no hardware (hw_description is empty)"


class LocalPlacer:
    """Every measurement on ``measurer`` (the node's own worker): the placement without a pool.

    ``hardware`` is what this host answers to (:func:`carbon_node.measure.hardware.host_hardware`), for
    ``measured_on.hardware`` and ``matched``.
    """

    def __init__(self, measurer: Measurer, hardware: Sequence[str] = (), reason: str = "no measure host pool") -> None:
        self.measurer = measurer
        self.hardware = tuple(hardware)
        self.reason = reason

    def place(self, hardware: str, model: str) -> Placement:
        reason = no_hardware_reason(hardware) or self.reason
        return Placement(LOCAL_QUEUE, local_measured_on(hardware, self.hardware, reason), hardware)

    def measure_placed(self, spec: MeasureSpec, placement: Placement) -> tuple[Measurement, MeasuredOn]:
        return self.measurer.measure(spec), placement.measured_on

    def measure(self, spec: MeasureSpec) -> Measurement:
        return self.measurer.measure(spec)
