"""Replay identity: a task id is answered from memory only for the very inputs that were answered.

Both buses decide through :func:`decide` whether a complete task is computed or answered again:

- the journal holds an answer to the same task id *and* the same inputs (equal
  :func:`~carbon_node.bus.fingerprint.inputs_fingerprint`): publish that answer again, unchanged
  (``replay``; instant, nothing is measured);
- the same inputs were already answered in this process's lifetime, and the journal has nothing to
  replay (no journal, or the row was pruned): ``skip`` -- the answer already published stands;
- otherwise compute. When the id was answered before for other inputs (the orchestrator restarted
  and numbers its tasks from 1.1 again), or for inputs the journal does not know (a row from before
  fingerprints were kept), the warning ``task_id_reused`` says so; the new answer is published as a
  new sample of the same output instance and replaces the journal row.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import structlog

from carbon_node.core import Journal, TaskInputs, TaskOutput

__all__ = ["Decision", "decide", "record"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Decision:
    """What to do with a complete task: replay ``replay``, ``skip`` it, or (neither) compute it."""

    replay: TaskOutput | None = None
    skip: bool = False


def decide(journal: Journal | None, inputs: TaskInputs, fingerprint: str, answered_before: str | None = None) -> Decision:
    """The decision for complete ``inputs`` with ``fingerprint``.

    ``answered_before`` is the fingerprint of the inputs this process already answered under the same
    task id (the bus's in-memory de-duplication), or None. Never raises.
    """
    stored = None
    if journal is not None:
        try:
            stored = journal.lookup(inputs.task_id)
        except Exception:
            log.exception("journal_lookup_failed", task_id=str(inputs.task_id))
    if stored is not None and stored.inputs_fingerprint == fingerprint:
        return Decision(replay=replace(stored.output, task_id=inputs.task_id))
    if answered_before == fingerprint:
        log.info("repeated_task_ignored", task_id=str(inputs.task_id), reason="same inputs already answered")
        return Decision(skip=True)
    if stored is not None or answered_before is not None:
        log.warning(
            "task_id_reused",
            task_id=str(inputs.task_id),
            reason="the inputs differ from the answered ones"
            if (stored is None or stored.inputs_fingerprint is not None)
            else "the journal does not know which inputs it answered",
            previous_mode=stored.output.mode if stored is not None else None,
            consequence="computed from the new inputs; the new answer replaces the old one",
        )
    return Decision()


def record(journal: Journal | None, output: TaskOutput, fingerprint: str | None) -> None:
    """Keep ``output`` (about to be published) in ``journal`` with its inputs' fingerprint. Never raises."""
    if journal is None:
        return
    try:
        journal.record(output, fingerprint)
    except Exception:
        log.exception("journal_record_failed", task_id=str(output.task_id))
