"""The measurement worker process: warm up, then answer measure requests from the node over a pipe.

:class:`~carbon_node.measure.client.WorkerMeasurer` starts :func:`worker_main` in a ``spawn``-ed process;
the messages on the pipe are described in :mod:`carbon_node.measure.worker_pipe`, and each request is
served by a :class:`~carbon_node.measure.measure_service.MeasureService`.

Start-up order: the imports every measurement needs come first; then a task already waiting is
served at once, its own model load and window being the rest of the warm-up; only when nothing waits
does the worker build and run a tiny model (:func:`_prime_model_building`) so that a later first
task loads as fast as the ones after it; at the next idle moment it freezes its heap
(:func:`~carbon_node.measure.heap.settle_heap`), so that no later collection walks the imported
libraries' objects again. The hub reachability probe runs while torch is imported.

The worker's stdout and stderr (C libraries included) go to ``<scratch_dir>/worker.log`` (the previous
worker's log is kept as ``worker.log.1``), so nothing reaches the node's terminal or journal directly.
One worker owns its scratch directory: at start it removes window directories a killed predecessor left.

Importing this module is cheap: torch, transformers and carbontracker are imported inside the worker.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

import structlog

from carbon_node.measure.heap import settle_heap
from carbon_node.measure.measure_service import MeasureService
from carbon_node.measure.worker_pipe import Ready, WorkerConfig

__all__ = ["unavailable_reason", "worker_main"]

log = structlog.get_logger(__name__)

LOG_NAME = "worker.log"


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


def _thread_lock_for_progress_bars() -> None:
    """Give tqdm (transformers' and huggingface_hub's progress bars) a thread lock before its first bar.

    By default tqdm creates a multiprocessing lock with its first bar: a named semaphore that this
    process, which ends through ``os._exit``, never releases, so the resource tracker the node shares
    with it warns at the node's exit ("There appear to be 1 leaked semaphore objects"). The worker has
    one process and a few threads: a thread lock serves it as well.
    """
    import threading

    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())


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

    _thread_lock_for_progress_bars()

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
        if message[0] == "configure":  # a reloaded configuration: the model cache's bounds
            _, max_models, max_mb = message
            service.resize_cache(int(max_models), float(max_mb))
            continue
        if message[0] == "measure":
            _, request_id, spec, *rest = message
            if rest and time.monotonic() > rest[0]:
                log.info("worker.request_expired", model=spec.model, request_id=request_id)
                continue  # its task was answered with a timeout meanwhile
            primed = True
            conn.send(("reply", service.reply(request_id, spec)))
