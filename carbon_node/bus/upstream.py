"""Choosing the bus: Cyclone DDS (:class:`~carbon_node.bus.runtime.NodeRuntime`) or the upstream bindings.

When the upstream ``sustainml_py`` package (Fast DDS through SWIG) is importable, the same
:class:`~carbon_node.core.TaskHandler` can run on it: :class:`UpstreamRuntime` registers a task
callback that converts the upstream accessor objects to the wire dataclasses, runs the handler (journal
replay, measurements serialised per measure queue, exceptions turned into error outputs, output checked) and writes
the result back through the upstream accessors. Upstream then owns the DDS side: status samples,
assembly (without timeouts), the RPC configuration service (``describe`` answered as on Cyclone).

Which bus runs (:func:`choose_bus`): ``auto`` uses the bindings only when the module the node needs
(``sustainml_py.nodes.CarbonFootprintNode``) imports, with the native libraries it loads
(:func:`probe_upstream`); bindings that are installed but do not import (their C++ libraries not on the
service's loader path, say) make ``auto`` fall back to Cyclone DDS, with a warning naming the import
error. ``sustainml``, asked for explicitly, fails instead, with the import error and the fix.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import structlog

from carbon_node.bus.checks import check_output, fail_safely
from carbon_node.bus.config_service import describe_responder
from carbon_node.bus.cyclone import BusError
from carbon_node.bus.fingerprint import inputs_fingerprint
from carbon_node.bus.lanes import measure_queue
from carbon_node.bus.replay import decide, record
from carbon_node.bus.runtime import NodeRuntime, RuntimeStats
from carbon_node.bus.standby import StandbyOptions, StandbyView
from carbon_node.core import Journal, Lane, TaskHandler, TaskId, TaskInputs, TaskOutput, error_output
from carbon_node.wire import HWResourceImpl, MLModelImpl, RequestTypeImpl, Status, TaskIdImpl, UserInputImpl

if TYPE_CHECKING:
    from carbon_node.bus.presence import Presence

__all__ = [
    "Bus",
    "BusChoice",
    "BusFactory",
    "BusKind",
    "UpstreamProbe",
    "UpstreamRuntime",
    "choose_bus",
    "make_bus",
    "probe_upstream",
    "resolve_bus_kind",
    "upstream_available",
    "wire_from_accessors",
]

log = structlog.get_logger(__name__)

BusKind = Literal["auto", "cyclone", "sustainml"]
UPSTREAM_MODULE = "sustainml_py.nodes.CarbonFootprintNode"


_HEARTBEAT_POLL_S = 1.0
"""Seconds between two liveness checks of upstream's spin thread."""


class Bus(Protocol):
    """What the service needs from a bus: start, stop, and counters."""

    def start(self, timeout_s: float = ..., meanwhile: Callable[[], None] | None = ...) -> None: ...

    def stop(self, timeout_s: float = ...) -> bool: ...

    def wait_idle(self, timeout_s: float) -> bool: ...

    def pending_count(self) -> int: ...

    def stats(self) -> RuntimeStats: ...


LOADER_PATH_FIX = (
    "if their native libraries (libsustainml_cpp, Fast DDS) are installed, put their directory on the service's "
    "loader path (Environment=LD_LIBRARY_PATH=... in the systemd unit: a shell profile does not reach it; or "
    "ldconfig), or run with --bus cyclone"
)
"""What to do when the bindings are installed but do not import."""


@dataclass(frozen=True)
class UpstreamProbe:
    """Whether the upstream bindings are installed and whether the node's module imports."""

    installed: bool
    error: str | None = None
    """Why the node's module does not import (its native libraries, most often), or None."""

    @property
    def usable(self) -> bool:
        return self.installed and self.error is None


def probe_upstream() -> UpstreamProbe:
    """Import the module the upstream bus uses (and through it the native libraries it loads)."""
    try:
        installed = importlib.util.find_spec("sustainml_py") is not None
    except (ImportError, ValueError):
        installed = False
    if not installed:
        return UpstreamProbe(False)
    try:
        importlib.import_module(UPSTREAM_MODULE)
    except Exception as exc:  # ImportError, or OSError from a native library that is not on the loader path
        return UpstreamProbe(True, f"{type(exc).__name__}: {exc}")
    return UpstreamProbe(True)


def upstream_available() -> bool:
    """Whether the upstream bindings can run the node here (:func:`probe_upstream`)."""
    return probe_upstream().usable


@dataclass(frozen=True)
class BusChoice:
    """The bus a ``bus`` setting selects here, and why."""

    kind: str
    """``cyclone`` or ``sustainml`` (an unknown setting is kept as it is: :func:`make_bus` refuses it)."""
    reason: str
    fallback_error: str | None = None
    """Set when ``auto`` fell back to Cyclone DDS from installed bindings that do not import."""


def choose_bus(setting: str) -> BusChoice:
    """The bus ``setting`` (``auto``, ``cyclone``, ``sustainml``) selects on this host (see the module docstring)."""
    if setting != "auto":
        return BusChoice(setting, f"bus {setting!r} is set")
    probe = probe_upstream()
    if probe.usable:
        return BusChoice("sustainml", "bus auto: the upstream sustainml_py bindings import")
    if probe.installed:
        return BusChoice(
            "cyclone",
            f"bus auto: sustainml_py is installed but {UPSTREAM_MODULE} does not import ({probe.error}): Cyclone DDS instead",
            probe.error,
        )
    return BusChoice("cyclone", "bus auto: the upstream sustainml_py bindings are not installed")


class BusFactory(Protocol):
    """Builds a bus around a handler; takes :class:`~carbon_node.bus.runtime.NodeRuntime`'s arguments."""

    def __call__(
        self,
        handler: TaskHandler,
        *,
        domain_id: int,
        input_timeout_s: float = ...,
        max_pending: int = ...,
        journal: Journal | None = ...,
        describe: Callable[[], Mapping[str, Any]] | None = ...,
        on_output: Callable[[TaskOutput], None] | None = ...,
        fast_workers: int = ...,
        heartbeat: Callable[[], None] | None = ...,
        standby: StandbyOptions | None = ...,
        on_role: Callable[[StandbyView], None] | None = ...,
    ) -> Bus: ...


def _upstream_factory(
    handler: TaskHandler,
    *,
    domain_id: int,
    input_timeout_s: float = 900.0,
    max_pending: int = 500,
    journal: Journal | None = None,
    describe: Callable[[], Mapping[str, Any]] | None = None,
    on_output: Callable[[TaskOutput], None] | None = None,
    fast_workers: int = 2,
    heartbeat: Callable[[], None] | None = None,
    standby: StandbyOptions | None = None,
    on_role: Callable[[StandbyView], None] | None = None,
) -> Bus:
    # The upstream library reads SUSTAINML_DOMAIN_ID itself (when its node is built): hand it the domain
    # the settings resolved (flag, file or environment). It has no input timeout or pending bound.
    os.environ["SUSTAINML_DOMAIN_ID"] = str(domain_id)
    log.info("upstream_bus_options_ignored", input_timeout_s=input_timeout_s, max_pending=max_pending)
    return UpstreamRuntime(
        handler,
        journal=journal,
        describe=describe,
        on_output=on_output,
        heartbeat=heartbeat,
        standby=standby,
        on_role=on_role,
        domain_id=domain_id,
    )


def resolve_bus_kind(kind: str) -> str:
    """The bus ``kind`` names: ``auto`` is ``sustainml`` when the upstream bindings import, else ``cyclone``."""
    return choose_bus(kind).kind


def make_bus(kind: str = "auto") -> BusFactory:
    """The bus factory for ``kind``: ``cyclone``, ``sustainml`` (upstream bindings), or ``auto`` (upstream if importable).

    Raises :class:`BusError` for an unknown kind or ``sustainml`` without the bindings.
    """
    kind = resolve_bus_kind(kind)
    if kind == "sustainml":
        probe = probe_upstream()
        if not probe.installed:
            raise BusError("bus 'sustainml' needs the upstream sustainml_py bindings, which are not installed")
        if probe.error is not None:
            raise BusError(f"bus 'sustainml': {UPSTREAM_MODULE} does not import ({probe.error}); {LOADER_PATH_FIX}")
        return _upstream_factory
    if kind == "cyclone":
        return NodeRuntime
    raise BusError(f"unknown bus {kind!r}: expected auto, cyclone or sustainml")


def _write_co2(co2: Any, node_status: Any, output: TaskOutput) -> None:
    """Fill upstream's output and status accessors from ``output``."""
    co2.carbon_footprint(float(output.carbon_g))
    co2.energy_consumption(float(output.energy_kwh))
    co2.carbon_intensity(float(output.grid_ci_g_per_kwh))
    co2.extra_data(output.extra_data_bytes())
    if output.node_error:
        node_status.node_status(Status.NODE_ERROR.value)


def _read(accessor: Any, name: str) -> Any:
    method = getattr(accessor, name, None)
    return method() if callable(method) else None


def wire_from_accessors(accessor: Any, wire_type: type[Any]) -> Any:
    """A wire dataclass filled from an upstream accessor object (``obj.field()`` per field)."""
    values: dict[str, Any] = {}
    for spec in dataclasses.fields(wire_type):
        raw = _read(accessor, spec.name)
        if raw is None:
            continue
        if spec.name == "task_id":
            values["task_id"] = TaskIdImpl(int(_read(raw, "problem_id") or 0), int(_read(raw, "iteration_id") or 0))
        elif spec.name in ("extra_data", "raw_model"):
            values[spec.name] = [int(v) & 0xFF for v in raw]
        elif spec.name in ("inputs", "outputs", "input_batch"):
            values[spec.name] = [str(v) for v in raw]
        else:
            values[spec.name] = raw
    return wire_type(**values)


class UpstreamRuntime:
    """``handler`` served by the upstream ``sustainml_py`` CarbonFootprintNode (Fast DDS)."""

    def __init__(
        self,
        handler: TaskHandler,
        *,
        journal: Journal | None = None,
        describe: Callable[[], Mapping[str, Any]] | None = None,
        on_output: Callable[[TaskOutput], None] | None = None,
        heartbeat: Callable[[], None] | None = None,
        standby: StandbyOptions | None = None,
        on_role: Callable[[StandbyView], None] | None = None,
        domain_id: int | None = None,
    ) -> None:
        self._handler = handler
        self._heartbeat = heartbeat
        self._standby_options = standby
        self._on_role = on_role
        self._domain_id = domain_id
        self._presence: Presence | None = None
        self._node_lock = threading.Lock()
        self._module: Any = None
        self._journal = journal
        self._on_output = on_output
        self._responder = describe_responder(describe)
        # Upstream runs 2 callbacks at once; measurements of one queue (the node's own worker, a measure host) must not overlap.
        self._measure_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._in_flight = 0
        self._by_mode: dict[str, int] = {}
        self._replayed = 0
        self._node: Any = None
        self._node_class: Any = None
        self._spin_thread: threading.Thread | None = None

    def start(self, timeout_s: float = 30.0, meanwhile: Callable[[], None] | None = None) -> None:
        """Create the upstream node and spin it on a thread; with ``standby`` options, once the standby
        rule makes this node active (:mod:`carbon_node.bus.presence`). ``meanwhile`` runs first."""
        if meanwhile is not None:
            meanwhile()
        try:
            module = importlib.import_module(UPSTREAM_MODULE)
        except ImportError as exc:
            raise BusError(f"upstream bindings not importable ({UPSTREAM_MODULE}): {exc}") from exc
        self._module = module
        if self._standby_options is None:
            self._start_node()
            return
        from carbon_node.bus.presence import Presence

        domain_id = self._domain_id if self._domain_id is not None else int(os.environ.get("SUSTAINML_DOMAIN_ID", "0"))
        self._presence = Presence(
            domain_id, self._standby_options, on_active=self._start_node, on_role=self._on_role, heartbeat=self._heartbeat
        )
        self._presence.start()

    def standby_view(self) -> StandbyView | None:
        """This node's role among the carbon nodes of its domain (None without standby options)."""
        return self._presence.view() if self._presence is not None else None

    def _start_node(self) -> None:
        """Create the upstream node (it publishes its status) and spin it on a thread; once."""
        with self._node_lock:
            if self._node is not None:
                return
            self._node_class = self._module.CarbonFootprintNode
            self._node = self._node_class(callback=self._task_callback, service_callback=self._service_callback)
            self._spin_thread = threading.Thread(target=self._node.spin, name="carbon-upstream-spin", daemon=True)
            self._spin_thread.start()
        if self._heartbeat is not None:
            threading.Thread(target=self._beat_while_spinning, name="carbon-upstream-heartbeat", daemon=True).start()
        log.info("node_started", bus="sustainml")

    def _beat_while_spinning(self) -> None:
        """Upstream's spin loop is native code we cannot hook: the heartbeat says that it still runs."""
        spin, beat = self._spin_thread, self._heartbeat
        while spin is not None and beat is not None and spin.is_alive():
            beat()
            spin.join(_HEARTBEAT_POLL_S)

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Terminate the upstream node (process-wide, as upstream) and wait for running tasks."""
        presence, self._presence = self._presence, None
        if presence is not None:
            presence.stop_following()  # no takeover from here on
        with self._node_lock:
            started = self._node_class is not None
        if not started:
            if presence is not None:
                presence.close()
            return True
        idle = self.wait_idle(timeout_s)
        self._node_class.terminate()
        if self._spin_thread is not None:
            self._spin_thread.join(max(0.1, timeout_s))
            idle = idle and not self._spin_thread.is_alive()
        self._node = self._node_class = None
        if presence is not None:
            presence.close()  # unannounced once everything is answered: a standby takes over now
        return idle

    def wait_idle(self, timeout_s: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._in_flight == 0, timeout=timeout_s)

    def pending_count(self) -> int:
        return 0  # upstream keeps its pending inputs inside the C++ library

    def stats(self) -> RuntimeStats:
        with self._lock:
            return RuntimeStats(
                answered=sum(self._by_mode.values()),
                by_mode=dict(self._by_mode),
                replayed=self._replayed,
                pending=0,
                in_flight=self._in_flight,
            )

    # -- callbacks (upstream dispatcher threads) -------------------------------------------------

    def _task_callback(self, ml_model: Any, user_input: Any, hw: Any, node_status: Any, co2: Any) -> None:
        started = time.monotonic()
        with self._lock:
            self._in_flight += 1
        inputs = TaskInputs(task_id=TaskId(0, 0))
        written = False
        try:
            ml = wire_from_accessors(ml_model, MLModelImpl)
            inputs = TaskInputs(task_id=TaskId(ml.task_id.problem_id, ml.task_id.iteration_id), ml_model=ml)
            inputs = dataclasses.replace(
                inputs,
                user_input=wire_from_accessors(user_input, UserInputImpl),
                hw=wire_from_accessors(hw, HWResourceImpl),
            )
            output, replay = self._compute(inputs)
            _write_co2(co2, node_status, output)
            written = True
            total_s = time.monotonic() - started
            output = dataclasses.replace(output, timings={**output.timings, "queue_s": 0.0, "total_s": total_s})
            with self._lock:
                self._by_mode[output.mode] = self._by_mode.get(output.mode, 0) + 1
                self._replayed += int(replay)
            log.info(
                "task_answered",
                bus="sustainml",
                task_id=str(inputs.task_id),
                mode=output.mode,
                replay=replay,
                total_s=round(total_s, 6),
            )
            if self._on_output is not None:
                try:
                    self._on_output(output)
                except Exception:
                    log.exception("on_output_failed", task_id=str(inputs.task_id))
        except Exception as exc:  # an exception escaping here would kill upstream's worker thread
            log.exception("upstream_callback_failed", task_id=str(inputs.task_id))
            if not written:
                # Upstream publishes ``co2`` whatever happens: never let it go out with empty extra_data.
                try:
                    _write_co2(co2, node_status, error_output(inputs, f"internal error: {type(exc).__name__}: {exc}"))
                except Exception:
                    log.exception("upstream_error_output_failed", task_id=str(inputs.task_id))
        finally:
            with self._changed:
                self._in_flight -= 1
                self._changed.notify_all()

    def _compute(self, inputs: TaskInputs) -> tuple[TaskOutput, bool]:
        # Upstream calls back for every complete set of inputs, a reused task id included: the journal decides.
        fingerprint = inputs_fingerprint(inputs)
        stored = decide(self._journal, inputs, fingerprint).replay
        if stored is not None:
            return stored, True
        seen = self._presence.answered(inputs.task_id) if self._presence is not None else None
        if seen is not None:  # answered by the node this one took over from: the same output again
            record(self._journal, seen, fingerprint)
            return seen, True
        try:
            if self._handler.lane(inputs) is Lane.MEASURE:
                queue = measure_queue(self._handler, inputs)
                with self._lock:
                    measure_lock = self._measure_locks.setdefault(queue, threading.Lock())
                with measure_lock:
                    output = self._handler.handle(inputs)
            else:
                output = self._handler.handle(inputs)
        except Exception as exc:
            output = self._fail(inputs, f"{type(exc).__name__}: {exc}")
        problem = check_output(output)
        if problem is not None:
            output = self._fail(inputs, f"invalid output: {problem}")
        output = dataclasses.replace(output, task_id=inputs.task_id)
        record(self._journal, output, fingerprint)
        return output, False

    def _fail(self, inputs: TaskInputs, message: str) -> TaskOutput:
        return fail_safely(self._handler, inputs, message)

    def _service_callback(self, req: Any, res: Any) -> None:
        request = RequestTypeImpl(
            node_id=int(_read(req, "node_id") or 0),
            transaction_id=int(_read(req, "transaction_id") or 0),
            configuration=str(_read(req, "configuration") or ""),
        )
        response = self._responder(request)
        res.node_id(request.node_id)
        res.transaction_id(request.transaction_id)
        res.configuration(response.configuration)
        res.success(response.success)
        res.err_code(response.err_code.value)
