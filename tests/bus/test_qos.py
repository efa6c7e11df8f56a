"""Every endpoint carries the QoS of PROTOCOL.md 3.1/3.2/5.2 and XCDR1."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cyclonedds.core import Policy, Qos
from cyclonedds.util import duration

from carbon_node.bus import qos

XCDR1 = Policy.DataRepresentation(use_cdrv0_representation=True)
RELIABLE = Policy.Reliability.Reliable(max_blocking_time=duration(milliseconds=100))
TASK_LIMITS = Policy.ResourceLimits(max_samples=5000, max_instances=500, max_samples_per_instance=1)


@pytest.mark.parametrize(
    ("make", "reliability", "durability", "limits"),
    [
        (qos.control_reader_qos, Policy.Reliability.BestEffort, Policy.Durability.Volatile, None),
        (qos.status_writer_qos, RELIABLE, Policy.Durability.TransientLocal, None),
        (qos.input_reader_qos, RELIABLE, Policy.Durability.TransientLocal, TASK_LIMITS),
        (qos.output_writer_qos, RELIABLE, Policy.Durability.TransientLocal, TASK_LIMITS),
        (qos.config_qos, RELIABLE, Policy.Durability.TransientLocal, None),
        (qos.orchestrator_input_writer_qos, RELIABLE, Policy.Durability.TransientLocal, TASK_LIMITS),
        (qos.orchestrator_output_reader_qos, RELIABLE, Policy.Durability.TransientLocal, TASK_LIMITS),
        (qos.orchestrator_status_reader_qos, RELIABLE, Policy.Durability.TransientLocal, TASK_LIMITS),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_endpoint_qos_matches_the_protocol(
    make: Callable[[], Qos], reliability: object, durability: object, limits: object
) -> None:
    policies = make()
    assert policies[Policy.Reliability] == reliability
    assert policies[Policy.Durability] == durability
    assert policies[Policy.History] == Policy.History.KeepLast(depth=1)
    assert policies[Policy.DataRepresentation] == XCDR1
    assert policies[Policy.ResourceLimits] == limits


def test_topic_names_are_the_upstream_ones() -> None:
    assert (qos.CONTROL_TOPIC, qos.STATUS_TOPIC, qos.USER_INPUT_TOPIC, qos.OUTPUT_TOPIC) == (
        "/sustainml/control",
        "/sustainml/status",
        "/sustainml/user_input",
        "/sustainml/carbon_tracker/output",
    )
    assert (qos.ML_MODEL_TOPIC, qos.HW_RESOURCES_TOPIC) == (
        "/sustainml/ml_model_provider/output",
        "/sustainml/hw_resources/output",
    )
    assert (qos.REQUEST_TOPIC, qos.RESPONSE_TOPIC) == ("sustainml/request", "sustainml/response")
