"""The measurement worker: a long-lived process that loads models and runs tracker windows.

:class:`~carbon_node.measure.client.WorkerMeasurer` starts :func:`worker_main` in a ``spawn``-ed process
and talks to it over a pipe:

- worker -> client, once: ``("ready", Ready)`` after the heavy imports (torch, transformers,
  carbontracker) are done, or ``("unavailable", reason)`` when one of them cannot be imported (installed
  without the ``measure`` extra): the worker then exits, and the client answers every measurement with
  that reason instead of starting a worker per task;
- client -> worker: ``("measure", request_id, MeasureSpec, deadline)``; worker -> client: ``("reply",
  Reply)``. ``deadline`` is the client's ``time.monotonic()`` (one clock for all processes of the host)
  after which nobody waits for the answer: a request still queued then is dropped unanswered. The client
  sends a request at once, also while the worker is still importing;
- client -> worker: ``("stop",)``: the worker exits at once (``os._exit``, no interpreter teardown).

Start-up order: the imports every measurement needs come first; then a task already waiting is
served at once, its own model load and window being the rest of the warm-up; only when nothing waits
does the worker build and run a tiny model (:func:`_prime_model_building`) so that a later first
task loads as fast as the ones after it; at the next idle moment it freezes its heap
(:func:`settle_heap`), so that no later collection walks the imported libraries' objects again. The hub
reachability probe runs while torch is imported.

:class:`MeasureService` does the work for one spec (resolve, load or reuse, window) and can also run in
the calling process. Loaded models stay in a :class:`ModelCache`, bounded by count and parameter bytes,
keyed on the model's identity (:mod:`carbon_node.measure.identity`: a local directory's files, a hub
snapshot's commit), so a model replaced at the same path is loaded anew and its old version dropped.

Errors cross the pipe typed: ``Reply.error_kind`` is ``"rejected"`` (:class:`ModelRejected`) or
``"error"`` (:class:`MeasureError`), and ``Reply.message`` is the user-facing text.

The worker's stdout and stderr (C libraries included) go to ``<scratch_dir>/worker.log`` (the previous
worker's log is kept as ``worker.log.1``), so nothing reaches the node's terminal or journal directly.
One worker owns its scratch directory: at start it removes window directories a killed predecessor left.

Importing this module is cheap: torch, transformers and carbontracker are imported inside the worker.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import structlog

from carbon_node.measure.identity import directory_identity, snapshot_identity
from carbon_node.measure.protocol import MeasureError, Measurement, MeasureSpec, ModelRejected

if TYPE_CHECKING:
    from carbon_node.measure.model_loading import LoadedModel

__all__ = ["EvictedMemory", "MeasureService", "ModelCache", "Ready", "Reply", "WorkerConfig", "unavailable_reason", "worker_main"]

log = structlog.get_logger(__name__)

LOG_NAME = "worker.log"

V = TypeVar("V")


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker needs: its scratch directory and the bounds of its model cache (count, MiB)."""

    scratch_dir: Path
    model_cache_max_models: int = 4
    model_cache_max_mb: float = 2048.0
    hub_probe_timeout_s: float = 2.0
    """Seconds to decide whether the hub is reachable when ``HF_HUB_OFFLINE`` is unset."""
    hub_cache_dir: Path | None = None
    """Where Hugging Face models are cached (``HF_HOME``), unless the environment already sets ``HF_HOME``."""
    torch_threads: int | None = None
    """torch's intra-op thread count in the worker (``torch.set_num_threads``); None keeps torch's default."""
    prime_tdp_table: bool = True
    """Look up carbontracker's TDP-table figure during the warm-up when the RAPL counters are not readable."""


@dataclass(frozen=True)
class Ready:
    """Sent once the worker has imported its libraries."""

    pid: int
    import_s: float
    hub_offline: bool
    cuda_available: bool
    versions: dict[str, str] = field(default_factory=dict)
    hub_cache: str = ""
    """The directory the worker's Hugging Face hub cache is in."""
    torch_threads: int = 0
    """torch's intra-op thread count in the worker."""


@dataclass(frozen=True)
class Reply:
    """The answer to one measure request: a Measurement, or an error kind and message."""

    request_id: int
    measurement: Measurement | None = None
    error_kind: Literal["rejected", "error"] | None = None
    message: str = ""
    cached_models: int = 0
    cached_mb: float = 0.0


class ModelCache(Generic[V]):
    """Least-recently-used cache bounded by entry count and by total size in bytes.

    An entry larger than ``max_bytes`` on its own is not kept. ``on_evict`` is called with each
    value that leaves the cache; ``after_evict`` once the evicted values are no longer referenced by
    the cache (to return their memory: a collector pass frees nothing while a reference is held).
    """

    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        on_evict: Callable[[V], None] | None = None,
        after_evict: Callable[[], None] | None = None,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._on_evict = on_evict
        self._after_evict = after_evict
        self._entries: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self._entries.values())

    def keys(self) -> list[Hashable]:
        """Keys from least to most recently used."""
        return list(self._entries)

    def get(self, key: Hashable) -> V | None:
        """The value for ``key`` (now the most recently used), or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def make_room(self, size_bytes: int) -> None:
        """Evict least-recently-used entries until one more entry of ``size_bytes`` fits both bounds.

        Called before a model is loaded (with its estimated size), so that the new model and the ones
        it replaces are never in memory together.
        """
        evicted = False
        while self._entries and (len(self._entries) + 1 > self.max_entries or self.total_bytes + size_bytes > self.max_bytes):
            self._evict_oldest()
            evicted = True
        if evicted and self._after_evict is not None:
            self._after_evict()

    def put(self, key: Hashable, value: V, size_bytes: int) -> bool:
        """Keep ``value``, evicting least-recently-used entries to stay within both bounds.

        Returns False (and keeps nothing) when the value alone exceeds a bound.
        """
        self.discard(key)
        if self.max_entries <= 0 or size_bytes > self.max_bytes:
            return False
        self.make_room(size_bytes)
        self._entries[key] = (value, size_bytes)
        return True

    def discard(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._evicted(entry[0])

    def clear(self) -> None:
        while self._entries:
            self._evict_oldest()

    def _evict_oldest(self) -> None:
        _, (old, _) = self._entries.popitem(last=False)
        self._evicted(old)

    def _evicted(self, value: V) -> None:
        if self._on_evict is not None:
            self._on_evict(value)


class EvictedMemory:
    """Returns the memory of evicted models, paying for a collector pass only when one is needed.

    A model the cache drops is usually freed at once by reference counting; a full ``gc.collect()`` in
    a process holding torch and transformers walks about half a million objects (0.2-0.3 s on this
    machine type, more on a loaded one) and would free nothing then. So each evicted model is watched
    through a weak reference, and only one that outlives the eviction (it sits in a reference cycle)
    costs a collection: of the whole heap, including what :func:`settle_heap` froze (unfreeze, collect,
    freeze again), since the model may have been frozen with it. GPU memory goes back through torch's
    cache whenever a model was evicted on a host with CUDA.
    """

    def __init__(self) -> None:
        self._watched: list[weakref.ref[Any] | None] = []
        self.collections = 0
        """Collector passes run because an evicted model outlived its eviction."""

    def watch(self, loaded: LoadedModel) -> None:
        """Called with each model as it leaves the cache."""
        try:
            self._watched.append(weakref.ref(loaded.model))
        except TypeError:  # not weak-referenceable: assume the worst
            self._watched.append(None)

    def free(self) -> None:
        """Called once the cache holds none of the evicted models any more."""
        alive = any(ref is None or ref() is not None for ref in self._watched)
        self._watched.clear()
        if alive:
            frozen = gc.get_freeze_count() > 0
            if frozen:
                gc.unfreeze()
            gc.collect()
            if frozen:
                gc.freeze()
            self.collections += 1
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()


def settle_heap() -> None:
    """Collect once, then freeze every object alive (``gc.freeze``): the modules torch, transformers and
    carbontracker imported are never garbage, and later collections, automatic or for an evicted model,
    no longer walk them (a full pass drops from about 0.2 s to milliseconds). Run when the worker is idle."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    log.info("worker.heap_settled", frozen_objects=gc.get_freeze_count(), seconds=round(time.perf_counter() - started, 3))


class MeasureService:
    """Measures specs: resolves and loads models (kept in a :class:`ModelCache`) and runs tracker windows."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.evicted = EvictedMemory()
        self.models: ModelCache[LoadedModel] = ModelCache(
            config.model_cache_max_models,
            int(config.model_cache_max_mb * 2**20),
            on_evict=self.evicted.watch,
            after_evict=self.evicted.free,
        )

    def measure(self, spec: MeasureSpec) -> Measurement:
        """Measure ``spec``; raises :class:`ModelRejected` or :class:`MeasureError` with a user-facing message."""
        import torch

        from carbon_node.measure.model_checks import check_allowed
        from carbon_node.measure.model_loading import load_model
        from carbon_node.measure.model_sources import resolve_model_source
        from carbon_node.measure.power import plan_power
        from carbon_node.measure.tracker import run_window

        load_started = time.perf_counter()
        source = resolve_model_source(spec.model, timeout_s=spec.load_timeout_s, allowed_dirs=spec.model_dirs)
        identity = snapshot_identity(source.directory) if source.from_hub else directory_identity(source.directory)
        key = (str(source.directory), identity, spec.device, spec.trust_remote_code)
        self._drop_other_versions(key)
        loaded = self.models.get(key)
        notes: list[str] = []
        if loaded is not None:
            check_allowed(spec, loaded.model_class, loaded.param_bytes)
            load_s = 0.0
        else:
            try:
                loaded = load_model(spec, source, make_room=self.models.make_room)
            except BaseException:
                # A refused or failed load leaves a large half-built model behind. Only then: a full
                # collection in a process holding torch and transformers takes 0.2-0.8 s, which a
                # successful load (nothing left behind) must not pay on every first-seen model.
                gc.collect()
                raise
            load_s = time.perf_counter() - load_started
            if not self.models.put(key, loaded, loaded.param_bytes):
                notes.append("model too large for the worker's model cache: it is not kept")
        if self.config.torch_threads is not None and torch.get_num_threads() != self.config.torch_threads:
            torch.set_num_threads(self.config.torch_threads)
        uses_cuda = loaded.device.startswith("cuda")
        plan = plan_power(sim_cpu_tdp_w=spec.sim_cpu_tdp_w, sim_cpu_util=spec.sim_cpu_util, uses_cuda=uses_cuda)
        with torch.inference_mode():
            result = run_window(
                loaded.forward,
                window_s=spec.window_s,
                scratch_dir=self.config.scratch_dir,
                plan=plan,
                synchronize=torch.cuda.synchronize if uses_cuda else None,
            )
        return Measurement(
            model=spec.model,
            model_class=loaded.model_class,
            device=loaded.device,
            dtype=loaded.dtype,
            energy_kwh=result.energy_kwh,
            window_s=result.window_s,
            forward_passes=result.forward_passes,
            power_source=plan.source,
            cpu_power_source=plan.cpu_source,
            gpu_power_source=plan.gpu_source,
            components=result.components,
            pue=result.pue,
            carbontracker_version=result.carbontracker_version,
            measured_at=result.measured_at,
            load_s=load_s,
            measure_s=result.measure_s,
            notes=(*loaded.notes, *plan.notes, *notes, *result.notes),
            model_identity=identity,
            energy_figure=result.energy_figure,
            carbontracker_energy_kwh=result.carbontracker_energy_kwh,
            counter_energy_kwh=result.counter_energy_kwh,
            torch_threads=torch.get_num_threads(),
        )

    def _drop_other_versions(self, key: tuple[str, str | None, str, bool]) -> None:
        """Evict entries of the same directory and options whose identity differs: they are stale."""
        directory, identity, *options = key
        for other in self.models.keys():  # noqa: SIM118 - a list copy: entries are discarded while looping
            if isinstance(other, tuple) and other[0] == directory and list(other[2:]) == options and other[1] != identity:
                log.info("worker.model_changed", directory=directory, old=other[1], new=identity)
                self.models.discard(other)

    def reply(self, request_id: int, spec: MeasureSpec) -> Reply:
        """:meth:`measure` with every failure turned into a typed :class:`Reply` (never raises)."""
        measurement: Measurement | None = None
        kind: Literal["rejected", "error"] | None = None
        message = ""
        try:
            measurement = self.measure(spec)
        except ModelRejected as exc:
            kind, message = "rejected", str(exc)
        except MeasureError as exc:
            kind, message = "error", str(exc)
        except SystemExit as exc:  # carbontracker calls sys.exit(70) when it finds no component
            kind, message = "error", f"carbontracker stopped the measurement (exit code {exc.code}): no usable power source"
        except Exception as exc:  # anything else is reported, the worker lives on
            kind, message = "error", f"measuring {spec.model!r} failed: {type(exc).__name__}: {exc}"
        if kind is not None:
            log.warning("worker.measure_failed", model=spec.model, kind=kind, error=message)
        return Reply(
            request_id,
            measurement,
            kind,
            message,
            cached_models=len(self.models),
            cached_mb=self.models.total_bytes / 2**20,
        )


def _redirect_output(scratch_dir: Path) -> None:
    """Send this process's stdout and stderr (file descriptors 1 and 2) to ``worker.log``."""
    scratch_dir.mkdir(parents=True, exist_ok=True)
    path = scratch_dir / LOG_NAME
    if path.exists():
        path.replace(scratch_dir / f"{LOG_NAME}.1")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115


def _remove_stale_windows(scratch_dir: Path) -> None:
    """Remove window log directories (``ct-*``) that a killed predecessor could not clean up."""
    import shutil

    for path in scratch_dir.glob("ct-*"):
        shutil.rmtree(path, ignore_errors=True)


def _prime_model_building() -> None:
    """Build and run a tiny in-memory BERT once: the first model a process builds pays about 1.5 s of
    one-time initialisation (transformers' lazy modules, torch's first kernels) whatever its architecture;
    paid here, during the warm-up, the first task's model loads as fast as later ones."""
    import torch
    import transformers

    started = time.perf_counter()
    try:
        config = transformers.BertConfig(
            vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        )
        with torch.inference_mode():
            transformers.BertModel(config).eval()(input_ids=torch.ones(1, 4, dtype=torch.long))
        log.info("worker.primed", seconds=round(time.perf_counter() - started, 3))
    except Exception as exc:  # only an optimisation: a failure here must not stop the worker
        log.warning("worker.prime_failed", error=f"{type(exc).__name__}: {exc}")


def _prime_tdp_table() -> None:
    """carbontracker's TDP-table figure for this CPU, computed once (its ``cpuinfo`` lookup runs a fresh
    interpreter, about 1.3 s): started in a thread at the warm-up, it overlaps the imports instead of
    delaying the first window on the ``tdp_table`` path."""
    from carbon_node.measure.power import tdp_table_watts

    try:
        tdp_table_watts()
    except Exception as exc:  # only an optimisation: the window computes it again and reports a failure
        log.warning("worker.tdp_table_prime_failed", error=f"{type(exc).__name__}: {exc}")


def _warm_up(config: WorkerConfig) -> Ready:
    """Import the heavy libraries every measurement needs and describe the worker.

    The hub probe (up to ``hub_probe_timeout_s`` when ``HF_HUB_OFFLINE`` is unset) runs in a thread
    while torch is imported: it must only be done before huggingface_hub is imported.
    """
    import importlib.metadata
    import threading

    from carbon_node.measure.netcheck import ensure_offline_flag
    from carbon_node.measure.power import rapl_readable

    started = time.perf_counter()
    if config.prime_tdp_table and not rapl_readable():
        threading.Thread(target=_prime_tdp_table, name="prime-tdp-table", daemon=True).start()
    offline: list[bool] = []
    probe = threading.Thread(
        target=lambda: offline.append(ensure_offline_flag(config.hub_probe_timeout_s)), name="hub-probe", daemon=True
    )
    probe.start()
    import torch

    if config.torch_threads is not None:
        torch.set_num_threads(config.torch_threads)

    probe.join()
    from huggingface_hub import constants as hub_constants

    import carbon_node.measure.model_loading
    import carbon_node.measure.power
    import carbon_node.measure.tracker  # noqa: F401 - imported for the warm-up

    versions = {name: importlib.metadata.version(name) for name in ("torch", "transformers", "carbontracker")}
    return Ready(
        os.getpid(),
        time.perf_counter() - started,
        bool(offline and offline[0]),
        torch.cuda.is_available(),
        versions,
        hub_cache=str(hub_constants.HF_HUB_CACHE),
        torch_threads=torch.get_num_threads(),
    )


def unavailable_reason(exc: ImportError) -> str:
    """Why this installation cannot measure, from the import that failed (as ``doctor`` says it)."""
    name = (exc.name or "").split(".")[0] or "a measurement library"
    what = f"{name} is not installed" if isinstance(exc, ModuleNotFoundError) else f"{name} cannot be imported ({exc})"
    return f"measurement unavailable: {what} (install carbon-node[measure])"


PROCESS_NAME = b"carbon-measure"
"""The worker's name in ``ps``/``top`` and ``/proc/<pid>/comm`` (Linux; at most 15 bytes)."""


def _name_process() -> None:
    """Name this process :data:`PROCESS_NAME` (Linux ``prctl(PR_SET_NAME)``); elsewhere nothing happens."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(15, ctypes.c_char_p(PROCESS_NAME), 0, 0, 0)  # 15: PR_SET_NAME
    except (OSError, AttributeError):
        pass


PARENT_CHECK_S = 0.5
"""How often the worker checks that the node that started it still runs."""


def _exit_with_parent(parent_pid: int) -> None:
    """End this process when the node that started it is gone (killed with SIGKILL, or by a second
    signal): the pipe only reports it between measurements, and a window may last minutes."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_S)
        os._exit(0)

    import threading

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def worker_main(conn: Connection, config: WorkerConfig, parent_pid: int | None = None) -> None:
    """The worker process: warm up, then answer measure requests until ``stop`` or the pipe closes (or
    the process ``parent_pid`` ends)."""
    import faulthandler

    _name_process()
    if parent_pid is not None:
        _exit_with_parent(parent_pid)

    # The node decides when the worker ends (it finishes or aborts the running window first): Ctrl-C in
    # a terminal reaches the whole process group, and a service manager may signal every process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if config.hub_cache_dir is not None and "HF_HOME" not in os.environ:
        os.environ["HF_HOME"] = str(config.hub_cache_dir)  # before huggingface_hub is imported
    _redirect_output(config.scratch_dir)
    faulthandler.enable()  # a segfault leaves its Python traceback in worker.log
    # structlog's own defaults, printing to worker.log: a forked worker inherits the node's stdlib set-up.
    structlog.reset_defaults()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    _remove_stale_windows(config.scratch_dir)
    service = MeasureService(config)
    try:
        ready = _warm_up(config)
    except ImportError as exc:
        conn.send(("unavailable", unavailable_reason(exc)))
        return
    conn.send(("ready", ready))
    primed = False  # a model has been built in this process (by the warm-up or a task)
    settled = False  # the heap has been frozen (settle_heap)
    while True:
        try:
            if not (primed and settled) and not conn.poll():  # nothing waits: prepare for the next task now
                if not primed:
                    _prime_model_building()
                    primed = True
                else:
                    settle_heap()
                    settled = True
                continue
            message = conn.recv()
        except (EOFError, OSError):
            return  # the client is gone
        if not isinstance(message, tuple) or not message:
            continue
        if message[0] == "stop":
            # Nothing is left to save, and the interpreter's teardown of torch takes a fraction of a
            # second that the node's stop would wait for: flush what was written and leave at once.
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        if message[0] == "measure":
            _, request_id, spec, *rest = message
            if rest and time.monotonic() > rest[0]:
                log.info("worker.request_expired", model=spec.model, request_id=request_id)
                continue  # its task was answered with a timeout meanwhile
            primed = True
            conn.send(("reply", service.reply(request_id, spec)))
