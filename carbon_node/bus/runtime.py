"""The node runtime on Cyclone DDS: entities, task assembly, dispatch and publication (PROTOCOL.md 4).

Threads and who owns what:

- the *bus thread* waits on a Cyclone waitset (the binding releases the GIL while waiting), takes the
  samples of the three input readers, the control reader and the configuration request reader, feeds
  the :class:`~carbon_node.bus.assembler.Assembler` under the runtime lock, and routes released tasks:
  journal replays and error answers it answers itself (``Lane.INLINE``), complete tasks go to the lane
  the handler chooses. An inline task (no_model, ONNX with a table intensity: a fraction of a
  millisecond, no I/O) is answered on the bus thread too: two thread hand-offs per task cost more
  than the task, and under the GIL a second thread adds no parallelism to pure Python work.
  Whether a task is replayed, left as answered or computed anew (a task id reused with other inputs)
  is decided by :mod:`carbon_node.bus.replay`. No Python code runs on Cyclone's own threads.
- the *measure lane* is one thread running measurement tasks one at a time in arrival order;
- the *fast lane* is a small pool (``fast_workers`` threads) for quick tasks that may still wait (a live
  intensity lookup, a user callback), so they never wait behind a measurement nor hold the bus thread.

Every task that leaves the assembler is *accepted* and answered exactly once: the first output
published for a task id wins and later ones are dropped. Per task the status comes first, then the
``CO2FootprintImpl``: NODE_ERROR if the output asks for it; NODE_IDLE when no other task runs, else
NODE_RUNNING; a task that starts while the status is not RUNNING publishes RUNNING first. That is
upstream's sequence (PROTOCOL.md 4.2, K4: IDLE after every task), sample for sample, bursts included:
an orchestrator cannot tell this node from upstream's by its status samples.

The hot path stays lean (a few hundred microseconds per task on a small CPU, GIL included): status
samples are serialized once, outputs are encoded directly (:func:`~carbon_node.bus.cyclone.encode_output`),
``extra_data`` is encoded once for the check and the write, and the per-task log line is only built
when INFO is enabled.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog
from cyclonedds.core import GuardCondition, InstanceState, ReadCondition, SampleState, ViewState, WaitSet
from cyclonedds.domain import DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from carbon_node.base import log_enabled
from carbon_node.bus.assembler import Assembler, InputKind, Release, ReleaseKind
from carbon_node.bus.config_service import ConfigResponder, ConfigService, describe_responder
from carbon_node.bus.cyclone import (
    NODE_NAME,
    BusError,
    create_participant,
    delete_entity,
    encode_output,
    encode_output_key,
    serialize_for,
    take_samples,
    unregister_serialized,
    write_serialized,
)
from carbon_node.bus.lanes import Job, LanePool
from carbon_node.bus.qos import (
    CONTROL_TOPIC,
    HW_RESOURCES_TOPIC,
    ML_MODEL_TOPIC,
    OUTPUT_TOPIC,
    STATUS_TOPIC,
    USER_INPUT_TOPIC,
    control_reader_qos,
    input_reader_qos,
    output_writer_qos,
    status_writer_qos,
)
from carbon_node.bus.replay import decide, record
from carbon_node.core import (
    CarbonNodeError,
    Journal,
    Lane,
    TaskHandler,
    TaskId,
    TaskInputs,
    TaskOutput,
    error_output,
)
from carbon_node.wire import (
    CO2FootprintImpl,
    HWResourceImpl,
    MLModelImpl,
    NodeControlImpl,
    NodeStatusImpl,
    Status,
    TaskIdImpl,
    UserInputImpl,
)

__all__ = ["NodeRuntime", "RuntimeStats", "check_output", "make_status"]

log = structlog.get_logger(__name__)
_stdlib_log = logging.getLogger(__name__)

_IDLE_WAIT_S = 1.0  # longest waitset wait: bounds how late the bus thread notices expiry and stop
_TAKE_BATCH = 256
_OUTPUTS_KEPT = 256  # outputs stay registered (TRANSIENT_LOCAL history); older ones are unregistered
_THREAD_JOIN_S = 2.0


def make_status(status: Status) -> NodeStatusImpl:
    """A status sample as upstream writes it: only ``node_status`` varies (PROTOCOL.md 4.2)."""
    return NodeStatusImpl(node_status=status, node_name=NODE_NAME, task_id=TaskIdImpl(0, 0))


def check_output(output: TaskOutput) -> str | None:
    """Why ``output`` cannot be published as is (K2: extra_data the orchestrator accepts), or None if it can."""
    return _checked_extra_data(output)[1]


def _checked_extra_data(output: TaskOutput) -> tuple[bytes, str | None]:
    """``output``'s published ``extra_data`` bytes and why it cannot be published (None if it can).

    The bytes are the output's own (:meth:`~carbon_node.core.TaskOutput.extra_data_bytes`, encoded once
    for the check, the journal and the write); the checks read the mapping they were encoded from.
    """
    for name in ("carbon_g", "energy_kwh", "grid_ci_g_per_kwh"):
        value = getattr(output, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            return b"", f"{name} is not a finite number: {value!r}"
    extra = output.extra_data
    if not isinstance(extra, Mapping):
        return b"", "extra_data is not a JSON object"
    try:
        encoded = output.extra_data_bytes()
    except (ValueError, TypeError, RecursionError) as exc:
        return b"", f"extra_data is not UTF-8 JSON: {exc}"
    num_outputs = extra.get("num_outputs")
    if not isinstance(num_outputs, int) or isinstance(num_outputs, bool) or num_outputs < 1:
        return b"", f"extra_data.num_outputs is not an integer >= 1: {num_outputs!r}"
    if not isinstance(extra.get("model_restrains"), (list, tuple)):
        return b"", "extra_data.model_restrains is not a list"
    return encoded, None


def fail_safely(handler: TaskHandler, inputs: TaskInputs, message: str) -> TaskOutput:
    """``handler.fail``, falling back to ``core.error_output`` when even that raises or misbehaves."""
    try:
        output = handler.fail(inputs, message)
        if check_output(output) is None:
            return output
    except Exception:
        log.exception("handler_fail_raised", task_id=str(inputs.task_id))
    return error_output(inputs, message)


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


_COMPLETING_GRACE_S = 6.0
"""Seconds stop() waits for outputs already being recorded and published (a journal commit is bounded by 5 s)."""


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
    ) -> None:
        if fast_workers < 1:
            raise ValueError(f"fast_workers must be >= 1, got {fast_workers}")
        self._handler = handler
        self._domain_id = domain_id
        self._journal = journal
        self._on_output = on_output
        self._fast_workers = fast_workers
        self._responder = config_responder or describe_responder(describe)
        self._clock = clock
        self._heartbeat = heartbeat  # called by the bus thread every wake-up (at least every _IDLE_WAIT_S); must be cheap
        self._assembler = Assembler(input_timeout_s=input_timeout_s, max_pending=max_pending, clock=clock)

        self._lock = threading.RLock()  # assembler, bookkeeping, and status+output publication order
        self._changed = threading.Condition(self._lock)
        self._accepted: dict[TaskId, Job] = {}
        self._running = 0
        self._status: Status | None = None
        self._by_mode: Counter[str] = Counter()
        self._replayed = 0
        self._published_keys: deque[TaskId] = deque()
        self._deferred: dict[TaskId, Release] = {}  # ids released again while their earlier task is in flight
        self._status_bytes: dict[Status, bytes] = {}

        self._accepting = False
        self._started = False
        self._stopped = False
        self._participant: DomainParticipant | None = None
        self._status_writer: DataWriter | None = None
        self._output_writer: DataWriter | None = None
        self._input_readers: list[tuple[InputKind, DataReader[Any]]] = []
        self._control_reader: DataReader[NodeControlImpl] | None = None
        self._config: ConfigService | None = None
        self._conditions: list[ReadCondition] = []
        self._waitset: WaitSet | None = None
        self._guard: GuardCondition | None = None
        self._bus_thread: threading.Thread | None = None
        self._measure_lane: LanePool | None = None
        self._fast_lane: LanePool | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, timeout_s: float = 30.0) -> None:
        """Create the DDS entities, publish NODE_INITIALIZING then NODE_IDLE; return once IDLE is published.

        Raises :class:`BusError` if that does not happen within ``timeout_s`` seconds.
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
        if not done.wait(timeout_s):
            raise BusError(f"node did not reach NODE_IDLE within {timeout_s:g} s")
        if failure:
            self._teardown_entities()
            exc = failure[0]
            raise exc if isinstance(exc, BusError) else BusError(f"node start failed: {exc}") from exc

    def _build(self) -> None:
        participant = create_participant(self._domain_id)
        self._participant = participant
        self._status_writer = DataWriter(participant, Topic(participant, STATUS_TOPIC, NodeStatusImpl), qos=status_writer_qos())
        self._status_bytes = {status: serialize_for(self._status_writer, make_status(status)) for status in Status}
        self._publish_status(Status.NODE_INITIALIZING)
        self._control_reader = DataReader(
            participant, Topic(participant, CONTROL_TOPIC, NodeControlImpl), qos=control_reader_qos()
        )
        inputs: list[tuple[InputKind, str, type[Any]]] = [
            (InputKind.ML_MODEL, ML_MODEL_TOPIC, MLModelImpl),
            (InputKind.HW_RESOURCES, HW_RESOURCES_TOPIC, HWResourceImpl),
            (InputKind.USER_INPUT, USER_INPUT_TOPIC, UserInputImpl),
        ]
        self._waitset = WaitSet(participant)
        self._guard = GuardCondition(participant)
        self._waitset.attach(self._guard)
        any_unread = SampleState.NotRead | ViewState.Any | InstanceState.Any
        for kind, topic_name, data_type in inputs:
            reader: DataReader[Any] = DataReader(participant, Topic(participant, topic_name, data_type), qos=input_reader_qos())
            self._input_readers.append((kind, reader))
        self._output_writer = DataWriter(participant, Topic(participant, OUTPUT_TOPIC, CO2FootprintImpl), qos=output_writer_qos())
        self._config = ConfigService(participant, self._responder)
        self._conditions = [ReadCondition(r, any_unread) for _, r in self._input_readers]
        self._conditions.append(ReadCondition(self._control_reader, any_unread))
        self._conditions.append(self._config.condition)
        for condition in self._conditions:
            self._waitset.attach(condition)
        self._measure_lane = LanePool("measure", 1, self._run_job)
        self._fast_lane = LanePool("fast", self._fast_workers, self._run_job)
        self._accepting = True
        # IDLE first: a task replayed at start-up then publishes RUNNING after it, never before.
        self._publish_status(Status.NODE_IDLE)
        self._bus_thread = threading.Thread(target=self._bus_loop, name="carbon-bus", daemon=True)
        self._bus_thread.start()
        log.info("node_started", domain_id=self._domain_id, node_name=NODE_NAME)

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
        clean = True
        with self._lock:
            self._accepting = False
        if self._guard is not None:
            self._guard.set(True)
        if self._bus_thread is not None:
            self._bus_thread.join(min(_THREAD_JOIN_S, max(0.0, deadline - time.monotonic())) + 0.1)
        unstarted = [
            *(self._measure_lane.drain() if self._measure_lane else []),
            *(self._fast_lane.drain() if self._fast_lane else []),
        ]
        for job in unstarted:
            self._answer_unfinished(job, "node stopping: task not started")
        clean = not unstarted
        with self._changed:
            finished = self._changed.wait_for(lambda: not self._accepted, timeout=max(0.0, deadline - time.monotonic()))
        if not finished:
            clean = False
            abort = getattr(self._handler, "abort", None)
            if callable(abort):
                try:
                    abort()
                except Exception:
                    log.exception("handler_abort_failed")
            with self._lock:
                stuck = list(self._accepted.values())
            for job in stuck:
                self._answer_unfinished(job, "node stopping: task did not finish in time")
            with self._changed:  # a job its lane was already completing: let it publish (bounded)
                self._changed.wait_for(lambda: not self._accepted, timeout=_COMPLETING_GRACE_S)
        for lane in (self._measure_lane, self._fast_lane):
            if lane is not None and not lane.close(max(0.1, min(_THREAD_JOIN_S, deadline - time.monotonic()))):
                clean = False
        self._publish_status(Status.NODE_TERMINATING)
        self._teardown_entities()
        log.info("node_stopped", clean=clean, answered=sum(self._by_mode.values()))
        return clean

    def _teardown_entities(self) -> None:
        participant, self._participant = self._participant, None
        self._status_writer = self._output_writer = self._control_reader = None
        self._input_readers = []
        self._config = None
        self._waitset = self._guard = None
        delete_entity(participant)

    # -- queries ---------------------------------------------------------------------------------

    def pending_count(self) -> int:
        """Incomplete tasks waiting for inputs."""
        with self._lock:
            return self._assembler.pending_count

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every accepted task has been answered; False if that takes longer than ``timeout_s``."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._accepted, timeout=timeout_s)

    def stats(self) -> RuntimeStats:
        """Counters since start."""
        with self._lock:
            return RuntimeStats(
                answered=sum(self._by_mode.values()),
                by_mode=dict(self._by_mode),
                replayed=self._replayed,
                pending=self._assembler.pending_count,
                in_flight=len(self._accepted),
            )

    # -- bus thread ------------------------------------------------------------------------------

    def _bus_loop(self) -> None:
        while self._accepting:
            if self._heartbeat is not None:
                self._heartbeat()
            try:
                self._bus_step()
            except Exception:  # keep serving: one bad sample or callback must not stop the node
                log.exception("bus_step_failed")
                time.sleep(0.05)

    def _bus_step(self) -> None:
        assert self._waitset is not None and self._guard is not None
        with self._lock:
            next_expiry = self._assembler.next_expiry_s()
        wait_s = _IDLE_WAIT_S if next_expiry is None else min(_IDLE_WAIT_S, max(0.0, next_expiry - self._clock()))
        self._waitset.wait(duration(seconds=wait_s))
        if self._guard.read():
            self._guard.set(False)
        if not self._accepting:
            return
        releases: list[Release] = []
        try:
            for kind, reader in self._input_readers:
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
            for side_task in (self._log_control, self._config.poll if self._config is not None else None):
                if side_task is not None:
                    try:
                        side_task()
                    except Exception:
                        log.exception("bus_side_task_failed")
            with self._lock:
                releases.extend(self._assembler.expire())
        finally:
            # A released task is marked answered in the assembler: route it whatever happened above.
            for release in releases:
                self._route(release)

    def _log_control(self) -> None:
        if self._control_reader is None:
            return
        for command in take_samples(self._control_reader, _TAKE_BATCH):
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

    def _route(self, release: Release) -> None:
        """Accept a released task and run it inline or queue it on its lane (journal replays and errors
        are inline).

        A task id released again while its earlier task is still in flight waits for that one's answer.
        """
        inputs = release.inputs
        job: Job
        with self._lock:
            if inputs.task_id in self._accepted:
                if release.fingerprint != self._accepted[inputs.task_id].fingerprint:
                    self._deferred[inputs.task_id] = release
                return
        fingerprint = release.fingerprint
        if release.kind is not ReleaseKind.COMPLETE:
            message = release.error or f"Task {inputs.task_id} incomplete"
            job = Job(inputs, Lane.INLINE, release.released_s, partial(self._fail, inputs, message), fingerprint=fingerprint)
        else:
            decision = decide(self._journal, inputs, fingerprint or "", release.answered_before)
            stored = decision.replay
            if decision.skip:
                return
            if stored is not None:
                job = Job(inputs, Lane.INLINE, release.released_s, lambda: stored, replay=True, fingerprint=fingerprint)
            else:
                try:
                    lane = self._handler.lane(inputs)
                except Exception as exc:
                    message = f"Task routing failed: {_describe(exc)}"
                    job = Job(
                        inputs, Lane.INLINE, release.released_s, partial(self._fail, inputs, message), fingerprint=fingerprint
                    )
                else:
                    job = Job(inputs, lane, release.released_s, lambda: self._handler.handle(inputs), fingerprint=fingerprint)
        with self._lock:
            if inputs.task_id in self._accepted:  # a deferred task routed from a lane raced with the bus thread
                self._deferred[inputs.task_id] = release
                return
            self._accepted[inputs.task_id] = job
        if job.lane is Lane.INLINE:
            self._run_inline(job)
            return
        pool = self._measure_lane if job.lane is Lane.MEASURE else self._fast_lane
        assert pool is not None
        pool.submit(job)

    def _run_inline(self, job: Job) -> None:
        """Answer ``job`` on the calling thread (the bus thread, or a lane completing an earlier task of
        the same id); like a lane, nothing it raises goes further (it is answered either way)."""
        try:
            self._run_job(job)
        except BaseException:
            log.exception("inline_job_crashed", task_id=str(job.inputs.task_id))

    # -- lanes -----------------------------------------------------------------------------------

    def _run_job(self, job: Job) -> None:
        job.started_s = self._clock()
        with self._lock:
            if job.inputs.task_id not in self._accepted:
                return  # answered meanwhile (stop)
            self._running += 1
            if self._status is not Status.NODE_RUNNING:
                self._publish_status(Status.NODE_RUNNING)
        output: TaskOutput | None = None
        extra_bytes: bytes | None = None
        try:
            try:
                output = job.produce()
            except Exception as exc:
                log.warning("task_failed", task_id=str(job.inputs.task_id), error=_describe(exc))
                output = self._fail(job.inputs, _describe(exc))
            extra_bytes, problem = _checked_extra_data(output)
            if problem is not None:
                log.error("invalid_output_replaced", task_id=str(job.inputs.task_id), problem=problem)
                output = self._fail(job.inputs, f"invalid output: {problem}")
                extra_bytes = None
        finally:
            with self._lock:
                self._running -= 1
            if output is None:  # only a BaseException escaped produce(); answer anyway
                output = self._fail(job.inputs, "task interrupted")
                extra_bytes = None
            self._complete(job, output, extra_bytes)

    def _fail(self, inputs: TaskInputs, message: str) -> TaskOutput:
        return fail_safely(self._handler, inputs, message)

    def _answer_unfinished(self, job: Job, message: str) -> None:
        self._complete(job, self._fail(job.inputs, message))

    def _complete(self, job: Job, output: TaskOutput, extra_bytes: bytes | None = None) -> None:
        """Record, publish (status, then output) exactly once, report.

        ``extra_bytes`` is ``output``'s encoded ``extra_data`` when the caller already checked it.
        """
        if output.task_id != job.inputs.task_id:
            output = dataclasses.replace(output, task_id=job.inputs.task_id)
        with self._lock:
            # Claimed once: the lane finishing a job and stop() answering it as unfinished can race here,
            # and the journal must hold the very output that is published.
            if self._accepted.get(job.inputs.task_id) is not job or job.completing:
                log.info("duplicate_output_dropped", task_id=str(job.inputs.task_id))
                return
            job.completing = True
        if not job.replay:
            record(self._journal, output, job.fingerprint)
        now = self._clock()
        started = job.started_s if job.started_s is not None else now
        timings = {**output.timings, "queue_s": max(0.0, started - job.ready_s), "total_s": max(0.0, now - job.ready_s)}
        output = dataclasses.replace(output, timings=timings)
        with self._changed:
            if self._accepted.get(job.inputs.task_id) is not job:
                return
            if output.node_error:
                status = Status.NODE_ERROR
            elif self._running > 0:
                status = Status.NODE_RUNNING
            else:
                status = Status.NODE_IDLE
            self._publish_status(status)
            self._publish_output(output, extra_bytes)
            del self._accepted[job.inputs.task_id]
            self._by_mode[output.mode] += 1
            if job.replay:
                self._replayed += 1
            self._changed.notify_all()
            deferred = self._deferred.pop(job.inputs.task_id, None)
        if log_enabled(_stdlib_log, logging.INFO):
            _log_answer(job, output, timings)
        if self._on_output is not None:
            try:
                self._on_output(output)
            except Exception:
                log.exception("on_output_failed", task_id=str(output.task_id))
        if deferred is not None and self._accepting:
            self._route(deferred)

    # -- writers (called under the lock) ---------------------------------------------------------

    def _publish_status(self, status: Status) -> None:
        writer = self._status_writer
        if writer is None:
            return
        with self._lock:
            try:
                write_serialized(writer, self._status_bytes[status])
                self._status = status
            except Exception:
                log.exception("status_publish_failed", status=status.name)

    def _publish_output(self, output: TaskOutput, extra_bytes: bytes | None = None) -> None:
        writer = self._output_writer
        if writer is None:
            log.error("output_not_published", task_id=str(output.task_id), reason="no output writer")
            return
        task_id = output.task_id
        try:
            data = encode_output(
                float(output.carbon_g),
                float(output.energy_kwh),
                float(output.grid_ci_g_per_kwh),
                output.extra_data_bytes() if extra_bytes is None else extra_bytes,
                task_id.problem_id,
                task_id.iteration_id,
            )
            write_serialized(writer, data)
        except Exception:
            log.exception("output_publish_failed", task_id=str(task_id))
            return
        self._published_keys.append(task_id)
        if len(self._published_keys) > _OUTPUTS_KEPT:
            oldest = self._published_keys.popleft()
            try:
                unregister_serialized(writer, encode_output_key(oldest.problem_id, oldest.iteration_id))
            except Exception:
                log.exception("output_unregister_failed", task_id=str(oldest))


_LOGGED_TEXT_CHARS = 200
"""Longest input text (a model name) written to a log line; a peer may send megabytes."""


def _log_answer(job: Job, output: TaskOutput, timings: Mapping[str, float]) -> None:
    """The one info line per answered task."""
    ml = job.inputs.ml_model
    log.info(
        "task_answered",
        task_id=str(output.task_id),
        mode=output.mode,
        lane=job.lane.value,
        replay=job.replay,
        model=_shorten(ml.model) if ml is not None else None,
        carbon_g=output.carbon_g,
        energy_kwh=output.energy_kwh,
        grid_ci_g_per_kwh=output.grid_ci_g_per_kwh,
        grid_ci_source=output.extra_data.get("grid_ci_source"),
        power_source=output.extra_data.get("power_source"),
        cached=output.extra_data.get("cached"),
        error=output.extra_data.get("error"),
        **{name: round(value, 6) for name, value in timings.items()},
    )


def _shorten(text: str) -> str:
    return text if len(text) <= _LOGGED_TEXT_CHARS else f"{text[:_LOGGED_TEXT_CHARS]}... ({len(text)} chars)"


def _describe(exc: BaseException) -> str:
    """An exception as the text of an error output: our own errors as is, others with their type."""
    if isinstance(exc, CarbonNodeError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
