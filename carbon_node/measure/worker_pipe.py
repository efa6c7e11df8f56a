"""The pipe between the node and its measurement worker: the worker's configuration and the messages.

:class:`~carbon_node.measure.client.WorkerMeasurer` starts :func:`~carbon_node.measure.worker.worker_main`
in a ``spawn``-ed process with a :class:`WorkerConfig` and talks to it over a pipe:

- worker -> client, once: ``("ready", Ready)`` after the heavy imports (torch, transformers,
  carbontracker) are done, or ``("unavailable", reason)`` when one of them cannot be imported (installed
  without the ``measure`` extra): the worker then exits, and the client answers every measurement with
  that reason instead of starting a worker per task;
- client -> worker: ``("measure", request_id, MeasureSpec, deadline)``; worker -> client: ``("reply",
  Reply)``. ``deadline`` is the client's ``time.monotonic()`` (one clock for all processes of the host)
  after which nobody waits for the answer: a request still queued then is dropped unanswered. The client
  sends a request at once, also while the worker is still importing;
- client -> worker: ``("configure", max_models, max_mb)``: new bounds for the worker's model cache (a
  reloaded configuration), applied between two measurements; no answer;
- client -> worker: ``("stop",)``: the worker exits at once (``os._exit``, no interpreter teardown).

Errors cross the pipe typed: ``Reply.error_kind`` is ``"rejected"``
(:class:`~carbon_node.measure.protocol.ModelRejected`) or ``"error"``
(:class:`~carbon_node.measure.protocol.MeasureError`), and ``Reply.message`` is the user-facing text.

Everything here is plain data that both processes pickle: importing this module is cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from carbon_node.measure.protocol import Measurement

__all__ = ["Ready", "Reply", "WorkerConfig"]


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
