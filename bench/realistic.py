"""The benchmark's realistic-size phase: bert-base, gpt2 and vit-base at their real sizes, built offline.

The models come from transformers' default configurations (:mod:`carbon_node.measure.full_size`, random
weights, saved once per benchmark run). The text models get MiniLM's tokenizer files (token ids below
either vocabulary) so that the upstream design, which tokenizes a dummy sentence, can run them too;
vit-base has no tokenizer: carbon-node feeds it a synthetic image, the upstream design cannot run it.

Per model, on a node already warmed up by one tiny task, with simulated power and the measurement cache
off: the first-seen round trip from the orchestrator's side, the forward passes in the window (carbon-node
reports them; the baseline does not), the per-inference energy's coefficient of variation over 5 more
windows, and the measurement worker's resident memory after the model (the baseline has no worker).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from table import Row

from carbon_node.wire import Status

__all__ = ["REALISTIC", "REALISTIC_ROWS", "phase_realistic"]

REALISTIC = ("bert-base", "gpt2", "vit-base")
CV_WINDOWS = 5
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _key(name: str) -> str:
    return name.replace("-", "_")


REALISTIC_ROWS = [
    row
    for name in REALISTIC
    for row in (
        Row(f"rtt_first_{_key(name)}_s", f"Round trip, {name} (real size), first seen, 1 s window, simulated power (s)"),
        Row(f"passes_{_key(name)}", f"Forward passes per 1 s window, {name}", better=""),
        Row(f"cv_{_key(name)}", f"Per-inference energy, coefficient of variation over {CV_WINDOWS} windows, {name}"),
        Row(f"worker_rss_{_key(name)}_mb", f"Worker RSS after {name} (MiB)"),
    )
]


def model_dir(work: Path, name: str, tokenizer_dir: Path) -> Path:
    """``name`` saved under ``work`` (built on first use), with MiniLM's tokenizer for the text models."""
    from carbon_node.measure.full_size import build_full_size_model

    directory = work / f"full-{name}"
    if not (directory / "config.json").exists():
        build_full_size_model(directory, name)
        if name != "vit-base":
            for file in TOKENIZER_FILES:
                shutil.copy(tokenizer_dir / file, directory / file)
    return directory


def phase_realistic(
    bench: Any,
    kind: str,
    *,
    tokenizer_dir: Path,
    worker_rss_mb: Callable[[int], float],
    per_inference_kwh: Callable[[Any], float],
    cv: Callable[[list[float]], float],
) -> None:
    """One round of the phase for ``kind`` (see the module docstring): a fresh node, every model first seen."""
    directories = {name: model_dir(bench.work, name, tokenizer_dir) for name in REALISTIC}
    extra = {
        "CARBON_NODE_MEASURE_CACHE_TTL_S": "0",
        "CARBON_NODE_TASK_TIMEOUT_S": "150",
        "CARBON_NODE_MODEL_CACHE_MAX_MB": "4096",
    }
    with bench.node(kind, **extra) as node:
        bench.client.wait_status(Status.NODE_IDLE, node.spawned_s, 60)
        bench.client.wait_matched(10)
        bench.round_trip(bench.tiny())  # the worker has imported its stack and measured once
        for name, directory in directories.items():
            key = _key(name)
            first_s, answer = bench.round_trip(str(directory), timeout_s=180.0)
            measured = answer is not None and answer.extra_data.get("mode") == "tracker"
            bench.record(f"rtt_first_{key}_s", kind, first_s if measured else float("nan"))
            passes = answer.extra_data.get("forward_passes") if measured else None
            bench.record(f"passes_{key}", kind, float(passes) if isinstance(passes, int) else float("nan"))
            runs = [bench.round_trip(str(directory), timeout_s=180.0)[1] for _ in range(CV_WINDOWS)] if measured else []
            values = [per_inference_kwh(a) for a in runs if a is not None and a.extra_data.get("mode") == "tracker"]
            bench.record(f"cv_{key}", kind, cv(values) if len(values) == CV_WINDOWS else float("nan"))
            # The baseline has no worker: a child it forks lives for one task only.
            rss = worker_rss_mb(node.process.pid) if kind == "carbon-node" else float("nan")
            bench.record(f"worker_rss_{key}_mb", kind, rss)
