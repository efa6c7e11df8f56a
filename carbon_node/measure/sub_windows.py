"""The one measured window cut into sub-windows, for its spread: no extra measuring time.

:class:`SubWindowMarks` is told the end of every forward pass (the tracker loop already reads the clock
there) and keeps a mark, ``(time, process CPU time, passes so far)``, at the first pass end after each of
``SUB_WINDOWS - 1`` evenly spaced boundaries, and at the window's end. A sub-window therefore always
starts and ends at a pass end and holds at least one pass; a pass longer than a sub-window swallows the
boundaries it spans (fewer, longer sub-windows). Cost per pass: one comparison.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SUB_WINDOWS", "SubWindow", "SubWindowMarks"]

SUB_WINDOWS = 5
"""Sub-windows a window is cut into (the spread's sample size)."""


@dataclass(frozen=True)
class SubWindow:
    """One slice of the window: wall seconds, process CPU seconds (all threads) and passes in it."""

    duration_s: float
    cpu_s: float
    passes: int


class SubWindowMarks:
    """Marks taken at pass ends (see the module docstring); ``cpu_clock`` is the process's CPU clock."""

    def __init__(
        self, start: float, window_s: float, count: int = SUB_WINDOWS, cpu_clock: Callable[[], float] = time.process_time
    ) -> None:
        self._cpu_clock = cpu_clock
        self._step = window_s / max(count, 1)
        self._next = start + self._step
        self._last_boundary = start + self._step * (max(count, 1) - 1)
        self.marks: list[tuple[float, float, int]] = [(start, cpu_clock(), 0)]

    def pass_done(self, now: float, passes: int) -> None:
        """A pass ended at ``now`` (``passes`` so far): mark it when it crossed the next boundary."""
        if now >= self._next and self._next <= self._last_boundary:
            self.marks.append((now, self._cpu_clock(), passes))
            while self._next <= now:
                self._next += self._step

    def close(self, end: float, passes: int) -> tuple[SubWindow, ...]:
        """The sub-windows, the last one ending at ``end`` with ``passes`` in all."""
        marks = [*self.marks, (end, self._cpu_clock(), passes)]
        return tuple(SubWindow(t1 - t0, c1 - c0, p1 - p0) for (t0, c0, p0), (t1, c1, p1) in itertools.pairwise(marks) if p1 > p0)

    @property
    def cpu_start(self) -> float:
        return self.marks[0][1]
