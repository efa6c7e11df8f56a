"""The node runtime on Cyclone DDS: starts a node, serves it from the bus thread, stops it (PROTOCOL.md 4).

:class:`NodeRuntime` composes the parts, each in its own module:

- :class:`~carbon_node.bus.entities.BusEntities`: the participant and every reader, writer and
  condition on it, created and deleted together;
- :class:`~carbon_node.bus.assembler.Assembler`: joins the three inputs of a task, times them out;
- :class:`~carbon_node.bus.dispatch.Dispatcher`: accepts every released task, runs it on its lane and
  answers it exactly once;
- :class:`~carbon_node.bus.publication.Publication`: the only writer of status and output samples, in
  upstream's status sequence;
- :mod:`carbon_node.bus.checks`: whether an output can be published, and the error output that
  replaces it.

Threads and who owns what:

- the *bus thread* (this module) waits on the entities' waitset (the binding releases the GIL while
  waiting), takes the samples of the three input readers and the control reader, answers the
  configuration requests, feeds the assembler under the runtime lock, and hands released tasks to the
  dispatcher: journal replays and error answers are answered on the bus thread itself
  (``Lane.INLINE``), complete tasks go to the lane the handler chooses. An inline task (no_model, ONNX
  with a table intensity: a fraction of a millisecond, no I/O) is answered on the bus thread too: two
  thread hand-offs per task cost more than the task, and under the GIL a second thread adds no
  parallelism to pure Python work. Whether a task is replayed, left as answered or computed anew (a
  task id reused with other inputs) is decided by :mod:`carbon_node.bus.replay`. No Python code runs
  on Cyclone's own threads.
- the *measure lane* (``carbon-measure-0``) is one thread running measurement tasks one at a time in
  arrival order;
- the *fast lane* (``carbon-fast-<i>``) is a small pool (``fast_workers`` threads) for quick tasks that
  may still wait (a live intensity lookup, a user callback), so they never wait behind a measurement
  nor hold the bus thread;
- ``start`` builds the entities on a thread of its own (``carbon-bus-start``), so that a hung
  participant creation cannot hang the caller beyond its timeout.

With ``standby`` options the node takes part in the one-active rule of :mod:`carbon_node.bus.standby`:
it announces itself, decides after a short grace whether it is active, and while it stands by the bus
thread holds released tasks instead of dispatching them, reads the output topic, publishes nothing,
and takes over (status, then every held task) once the rule makes it active.

One lock, the runtime's (reentrant), guards the assembler, the dispatcher's bookkeeping and the order
of status and output samples; the dispatcher's condition on it wakes ``wait_idle`` and ``stop``.

Every task that leaves the assembler is *accepted* and answered exactly once: the first output
published for a task id wins and later ones are dropped. Per task the status comes first, then the
``CO2FootprintImpl``: NODE_ERROR if the output asks for it; NODE_IDLE when no other task runs, else
NODE_RUNNING; a task that starts while the status is not RUNNING publishes RUNNING first. That is
upstream's sequence (PROTOCOL.md 4.2, K4: IDLE after every task), sample for sample, bursts included:
an orchestrator cannot tell this node from upstream's by its status samples.

The hot path stays lean (a few hundred microseconds per task on a small CPU, GIL included): status
samples are serialized once, outputs are encoded directly (:func:`~carbon_node.bus.cyclone.encode_output`),
``extra_data`` is encoded once for the check and the write, the per-task log line is only built when
INFO is enabled, and the parts share the one lock and add no thread hand-off: a task costs a few
method calls between them, nothing more.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from cyclonedds.core import InstanceState

from carbon_node.bus.assembler import Assembler, Release
from carbon_node.bus.checks import check_output, fail_safely
from carbon_node.bus.config_service import ConfigResponder, describe_responder
from carbon_node.bus.cyclone import NODE_NAME, BusError, take_samples
from carbon_node.bus.dispatch import Dispatcher
from carbon_node.bus.entities import BusEntities
from carbon_node.bus.lanes import THREAD_JOIN_S
from carbon_node.bus.publication import Publication, make_status
from carbon_node.bus.standby import Standby, StandbyOptions, StandbyView
from carbon_node.core import Journal, TaskHandler, TaskId, TaskOutput
from carbon_node.wire import CO2FootprintImpl, NodeControlImpl, Status

__all__ = ["NodeRuntime", "RuntimeStats", "check_output", "fail_safely", "make_status"]

log = structlog.get_logger(__name__)

_IDLE_WAIT_S = 1.0  # longest waitset wait: bounds how late the bus thread notices expiry and stop
_TAKE_BATCH = 256


@dataclass(frozen=True)
class RuntimeStats:
    """Counters since start, for metrics and tests."""

    answered: int
    """Outputs published."""
    by_mode: Mapping[str, int]
    """Outputs published per ``extra_data.mode``."""
    replayed: int
    """Outputs answered from the journal without recomputing."""
    pending: int
    """Incomplete tasks waiting for inputs."""
    in_flight: int
    """Accepted tasks not yet answered (queued or running)."""


class NodeRuntime:
    """A SustainML carbon node on Cyclone DDS running ``handler`` for every task."""

    def __init__(
        self,
        handler: TaskHandler,
        *,
        domain_id: int,
        input_timeout_s: float = 900.0,
        max_pending: int = 500,
        journal: Journal | None = None,
        describe: Callable[[], Mapping[str, Any]] | None = None,
        on_output: Callable[[TaskOutput], None] | None = None,
        fast_workers: int = 2,
        config_responder: ConfigResponder | None = None,
        clock: Callable[[], float] = time.monotonic,
        heartbeat: Callable[[], None] | None = None,
        standby: StandbyOptions | None = None,
        on_role: Callable[[StandbyView], None] | None = None,
    ) -> None:
        if fast_workers < 1:
            raise ValueError(f"fast_workers must be >= 1, got {fast_workers}")
        self._handler = handler
        self._domain_id = domain_id
        self._responder = config_responder or describe_responder(describe)
        self._clock = clock
        self._heartbeat = heartbeat  # called by the bus thread every wake-up (at least every _IDLE_WAIT_S); must be cheap
        self._assembler = Assembler(input_timeout_s=input_timeout_s, max_pending=max_pending, clock=clock)

        self._lock = threading.RLock()  # assembler, bookkeeping, and status+output publication order
        self._publication = Publication(self._lock)
        self._dispatch = Dispatcher(
            handler, self._publication, self._lock, journal=journal, on_output=on_output, fast_workers=fast_workers, clock=clock
        )

        self._journal = journal
        self._standby_options = standby
        self._standby: Standby | None = None
        self._on_role = on_role  # told each role this node takes (outside the lock)
        self._activations = 0  # times this node became active: INITIALIZING goes out the first time only

        self._started = False
        self._stopped = False
        self._entities: BusEntities | None = None
        self._bus_thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, timeout_s: float = 30.0, meanwhile: Callable[[], None] | None = None) -> None:
        """Create the DDS entities, publish NODE_INITIALIZING then NODE_IDLE; return once IDLE is published.

        ``meanwhile`` runs on the calling thread while the entities are built on another (and a standby
        node listens for the others): start-up work that the bus does not wait for. Raises
        :class:`BusError` if IDLE is not published within ``timeout_s`` seconds.
        """
        if self._started:
            raise BusError("node runtime already started")
        self._started = True
        failure: list[BaseException] = []
        done = threading.Event()

        def build() -> None:
            try:
                self._build()
            except BaseException as exc:  # reported to the caller below
                failure.append(exc)
            finally:
                done.set()

        builder = threading.Thread(target=build, name="carbon-bus-start", daemon=True)
        builder.start()
        if meanwhile is not None:
            try:
                meanwhile()
            except BaseException:
                done.wait(timeout_s)  # let the build end before the caller tears it down
                raise
        if not done.wait(timeout_s):
            raise BusError(f"node did not reach NODE_IDLE within {timeout_s:g} s")
        if failure:
            self._teardown_entities()
            exc = failure[0]
            raise exc if isinstance(exc, BusError) else BusError(f"node start failed: {exc}") from exc

    def _build(self) -> None:
        entities = self._entities = BusEntities(self._domain_id)
        assert entities.status_writer is not None
        self._publication.attach_status(entities.status_writer)
        if self._standby_options is None:
            self._publication.publish_status(Status.NODE_INITIALIZING)
        entities.open_tasks(self._responder)
        assert entities.output_writer is not None
        self._publication.attach_output(entities.output_writer)
        self._dispatch.open()
        if self._standby_options is None:
            self._activations = 1
            # IDLE first: a task replayed at start-up then publishes RUNNING after it, never before.
            self._publication.publish_status(Status.NODE_IDLE)
        else:
            self._open_standby(entities, self._standby_options)
        self._bus_thread = threading.Thread(target=self._bus_loop, name="carbon-bus", daemon=True)
        self._bus_thread.start()
        role = self._standby.role if self._standby is not None else None
        log.info("node_started", domain_id=self._domain_id, node_name=NODE_NAME, **({"role": role} if role else {}))

    def _open_standby(self, entities: BusEntities, options: StandbyOptions) -> None:
        """Announce this node, listen for the grace, decide; an active node publishes INITIALIZING, IDLE."""
        from carbon_node.bus.announce import AnnouncementBoard, Announcer

        participant = entities.participant
        assert participant is not None
        state = "starting" if options.enabled else "active"
        announcer = Announcer(
            participant, role="node", node_id=options.node_id, state=state, standby_enabled=options.enabled, detail=options.detail
        )
        board = AnnouncementBoard(participant)
        entities.watch(board.condition)
        standby = self._standby = Standby(
            announcer, board, journal=self._journal, clock=self._clock, grace_s=options.grace_s, enabled=options.enabled
        )
        if options.enabled:
            entities.open_output_watch()
            time.sleep(standby.decide_in_s())  # the announcements and outputs already on the domain arrive
        self._standby_step(standby)

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop accepting tasks, let running ones finish, answer the rest with errors, publish NODE_TERMINATING.

        Running tasks get ``timeout_s`` seconds; then ``handler.abort()`` is called if the handler has
        one, and every accepted task still unanswered (queued or stuck) is answered with
        ``handler.fail``. Tasks still waiting for inputs are left unanswered, so that a restarted node
        completes them from the TRANSIENT_LOCAL replay. Returns True when no task had to be cut short.
        """
        if not self._started or self._stopped:
            return True
        self._stopped = True
        deadline = time.monotonic() + timeout_s
        self._dispatch.stop_accepting()
        if self._entities is not None:
            self._entities.wake()
        if self._bus_thread is not None:
            self._bus_thread.join(min(THREAD_JOIN_S, max(0.0, deadline - time.monotonic())) + 0.1)
        clean = self._dispatch.drain(deadline)
        standby = self._standby
        if standby is None or not standby.holding:  # a standby has published nothing, nor does it now
            self._publication.publish_status(Status.NODE_TERMINATING)
        if standby is not None:
            # Only now: a standby takes over once this announcement is gone, after every answer went out.
            standby.announcer.close()
        self._teardown_entities()
        log.info("node_stopped", clean=clean, answered=sum(self._dispatch.by_mode.values()))
        return clean

    def _teardown_entities(self) -> None:
        self._publication.detach()
        if self._entities is not None:
            self._entities.close()

    # -- queries ---------------------------------------------------------------------------------

    def reconfigure(self, *, input_timeout_s: float, max_pending: int) -> None:
        """New assembly bounds (a reloaded configuration); the bus thread recomputes its next expiry."""
        with self._lock:
            self._assembler.reconfigure(input_timeout_s=input_timeout_s, max_pending=max_pending)
        if self._entities is not None:
            self._entities.wake()

    def standby_view(self) -> StandbyView | None:
        """This node's role and the others it sees (None: it does not take part, as upstream nodes)."""
        standby = self._standby
        if standby is None:
            return None
        with self._lock:
            return standby.view()

    def pending_count(self) -> int:
        """Incomplete tasks waiting for inputs."""
        with self._lock:
            return self._assembler.pending_count

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every accepted task has been answered; False if that takes longer than ``timeout_s``."""
        return self._dispatch.wait_idle(timeout_s)

    def stats(self) -> RuntimeStats:
        """Counters since start."""
        dispatch = self._dispatch
        with self._lock:
            return RuntimeStats(
                answered=sum(dispatch.by_mode.values()),
                by_mode=dict(dispatch.by_mode),
                replayed=dispatch.replayed,
                pending=self._assembler.pending_count,
                in_flight=dispatch.in_flight,
            )

    # -- bus thread ------------------------------------------------------------------------------

    def _bus_loop(self) -> None:
        while self._dispatch.accepting:
            if self._heartbeat is not None:
                self._heartbeat()
            try:
                self._bus_step()
            except Exception:  # keep serving: one bad sample or callback must not stop the node
                log.exception("bus_step_failed")
                time.sleep(0.05)

    def _bus_step(self) -> None:
        entities = self._entities
        assert entities is not None
        with self._lock:
            next_expiry = self._assembler.next_expiry_s()
        wait_s = _IDLE_WAIT_S if next_expiry is None else min(_IDLE_WAIT_S, max(0.0, next_expiry - self._clock()))
        entities.wait(wait_s)
        if not self._dispatch.accepting:
            return
        standby = self._standby
        if standby is not None:
            self._standby_step(standby)
        releases: list[Release] = []
        try:
            for kind, reader in entities.input_readers:
                try:
                    samples = take_samples(reader, _TAKE_BATCH)
                except Exception:
                    log.exception("input_take_failed", topic=reader.topic.name)
                    continue
                for sample in samples:
                    if sample.sample_info.instance_state != InstanceState.Alive:
                        continue  # samples of instances no longer alive, as upstream
                    with self._lock:
                        releases.extend(self._assembler.add(kind, sample))
            config = entities.config
            for side_task in (self._log_control, config.poll if config is not None else None):
                if side_task is not None:
                    try:
                        side_task()
                    except Exception:
                        log.exception("bus_side_task_failed")
            with self._lock:
                releases.extend(self._assembler.expire())
        finally:
            # A released task is marked answered in the assembler: route it (or hold it, standing by)
            # whatever happened above.
            for release in releases:
                if standby is not None and standby.holding:
                    with self._lock:
                        standby.hold(release)
                else:
                    self._dispatch.route(release)

    # -- standing by -----------------------------------------------------------------------------

    def _standby_step(self, standby: Standby) -> None:
        """Read what the active node answered, apply the rule, act on a new role."""
        entities = self._entities
        assert entities is not None
        with self._lock:
            if entities.output_reader is not None:
                self._observe_outputs(entities.output_reader, standby)
            role = standby.update() if standby.role == "starting" or standby.board.condition.triggered else None
            view = standby.view() if role is not None else None
        if role == "active":
            self._take_over(standby)
        elif role == "standby":
            entities.open_output_watch()
        if view is not None and self._on_role is not None:
            try:
                self._on_role(view)
            except Exception:
                log.exception("on_role_failed")

    def _observe_outputs(self, reader: Any, standby: Standby) -> None:
        """Hand every output sample the active node published to ``standby``. Under the lock."""
        while True:
            samples = take_samples(reader, _TAKE_BATCH)
            for sample in samples:
                if isinstance(sample, CO2FootprintImpl):
                    task_id = TaskId(sample.task_id.problem_id, sample.task_id.iteration_id)
                    extra = bytes(sample.extra_data)
                    output = TaskOutput.published(
                        task_id, sample.carbon_footprint, sample.energy_consumption, sample.carbon_intensity, extra
                    )
                    standby.observe(output)
            if len(samples) < _TAKE_BATCH:
                return

    def _take_over(self, standby: Standby) -> None:
        """Become the active node: stop reading outputs, publish the status, answer every held task once."""
        entities = self._entities
        if entities is not None:
            entities.close_output_watch()
        if self._activations == 0:
            self._publication.publish_status(Status.NODE_INITIALIZING)
        self._activations += 1
        self._publication.publish_status(Status.NODE_IDLE)
        with self._lock:
            held = standby.take_held()
        if held:
            log.info("standby.answering_held", tasks=len(held))
        for release in held:
            self._dispatch.route(release)

    def _log_control(self) -> None:
        reader = self._entities.control_reader if self._entities is not None else None
        if reader is None:
            return
        for command in take_samples(reader, _TAKE_BATCH):
            if not isinstance(command, NodeControlImpl):
                continue
            log.info(
                "control_command_ignored",
                cmd_node=command.cmd_node.name,
                cmd_task=command.cmd_task.name,
                target_node=command.target_node,
                source_node=command.source_node,
                task_id=f"{command.task_id.problem_id}.{command.task_id.iteration_id}",
            )
