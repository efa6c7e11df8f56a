"""Topic names and QoS of the SustainML carbon node and of its orchestrator peer (PROTOCOL.md 1.2, 3.1, 3.2, 5.2).

Every reader and writer uses XCDR1 (PROTOCOL.md 3.5 item 3): Fast DDS readers do not match XCDR2
writers. Resource limits follow upstream: 500 task instances with one sample each on the task topics,
Fast DDS's default ``max_samples`` (5000) elsewhere.
"""

from __future__ import annotations

from cyclonedds.core import Policy, Qos
from cyclonedds.util import duration

__all__ = [
    "CONTROL_TOPIC",
    "HW_RESOURCES_TOPIC",
    "ML_MODEL_TOPIC",
    "OUTPUT_TOPIC",
    "REQUEST_TOPIC",
    "RESPONSE_TOPIC",
    "STATUS_TOPIC",
    "TASK_MAX_INSTANCES",
    "USER_INPUT_TOPIC",
    "config_qos",
    "control_reader_qos",
    "input_reader_qos",
    "orchestrator_input_writer_qos",
    "orchestrator_output_reader_qos",
    "orchestrator_status_reader_qos",
    "output_writer_qos",
    "standby_output_reader_qos",
    "status_writer_qos",
]

CONTROL_TOPIC = "/sustainml/control"
STATUS_TOPIC = "/sustainml/status"
ML_MODEL_TOPIC = "/sustainml/ml_model_provider/output"
HW_RESOURCES_TOPIC = "/sustainml/hw_resources/output"
USER_INPUT_TOPIC = "/sustainml/user_input"
OUTPUT_TOPIC = "/sustainml/carbon_tracker/output"
REQUEST_TOPIC = "sustainml/request"
"""Legacy configuration request topic (no leading slash, as upstream up to v0.2.0)."""
RESPONSE_TOPIC = "sustainml/response"

TASK_MAX_INSTANCES = 500
"""Task instances kept per task topic (upstream ``max_instances``)."""

_FASTDDS_DEFAULT_MAX_SAMPLES = 5000
_WRITER_MAX_BLOCKING_S = 0.1  # Fast DDS's default; a KEEP_LAST writer only blocks at its resource limits

_XCDR1 = Policy.DataRepresentation(use_cdrv0_representation=True)
_KEEP_LAST_1 = Policy.History.KeepLast(depth=1)
_RELIABLE = Policy.Reliability.Reliable(max_blocking_time=duration(seconds=_WRITER_MAX_BLOCKING_S))
_TASK_LIMITS = Policy.ResourceLimits(
    max_samples=_FASTDDS_DEFAULT_MAX_SAMPLES, max_instances=TASK_MAX_INSTANCES, max_samples_per_instance=1
)


def control_reader_qos() -> Qos:
    """Node's reader of ``/sustainml/control``: BEST_EFFORT, VOLATILE, KEEP_LAST 1."""
    return Qos(Policy.Reliability.BestEffort, Policy.Durability.Volatile, _KEEP_LAST_1, _XCDR1)


def status_writer_qos() -> Qos:
    """Node's writer of ``/sustainml/status``: RELIABLE, TRANSIENT_LOCAL, KEEP_LAST 1."""
    return Qos(_RELIABLE, Policy.Durability.TransientLocal, _KEEP_LAST_1, _XCDR1)


def input_reader_qos() -> Qos:
    """Node's readers of the three task inputs: RELIABLE, TRANSIENT_LOCAL, KEEP_LAST 1, 500 x 1 samples."""
    return Qos(_RELIABLE, Policy.Durability.TransientLocal, _KEEP_LAST_1, _TASK_LIMITS, _XCDR1)


def output_writer_qos() -> Qos:
    """Node's writer of ``/sustainml/carbon_tracker/output``: same as the input readers."""
    return input_reader_qos()


def standby_output_reader_qos() -> Qos:
    """A standby's reader of the active node's outputs: RELIABLE, TRANSIENT_LOCAL, KEEP_LAST 1, no instance
    limit (a full reliable reader would hold up the active node's writer)."""
    return Qos(_RELIABLE, Policy.Durability.TransientLocal, _KEEP_LAST_1, _XCDR1)


def config_qos() -> Qos:
    """Both ends of the legacy ``sustainml/request``/``sustainml/response`` topics: RELIABLE, TRANSIENT_LOCAL, KEEP_LAST 1."""
    return Qos(_RELIABLE, Policy.Durability.TransientLocal, _KEEP_LAST_1, _XCDR1)


def orchestrator_input_writer_qos() -> Qos:
    """Orchestrator's (and the provider nodes') writers of the task inputs: RELIABLE, TRANSIENT_LOCAL, 500 x 1."""
    return input_reader_qos()


def orchestrator_output_reader_qos() -> Qos:
    """Orchestrator's reader of the carbon output: RELIABLE, TRANSIENT_LOCAL, KEEP_LAST 1, 500 x 1."""
    return input_reader_qos()


def orchestrator_status_reader_qos() -> Qos:
    """Orchestrator's reader of ``/sustainml/status`` (upstream filters it by node name; we filter on receipt)."""
    return input_reader_qos()
