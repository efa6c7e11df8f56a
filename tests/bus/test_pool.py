"""The measurement pool on a real loopback DDS domain: a node's PoolMeasurer and measure hosts (in this
process, or in a child process to SIGKILL). Every wait is bounded."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from cyclonedds.pub import DataWriter
from cyclonedds.topic import Topic

from carbon_node.bus.announce import LEASE_S, Announcer
from carbon_node.bus.cyclone import create_participant, delete_entity, serialize_for, write_serialized
from carbon_node.bus.pool_client import PoolClient
from carbon_node.bus.pool_endpoints import PoolEndpoints
from carbon_node.bus.pool_measurer import PoolMeasurer
from carbon_node.bus.pool_types import (
    REPLY_TOPIC,
    REQUEST_TOPIC,
    CarbonNodeMeasureReplyImpl,
    CarbonNodeMeasureRequestImpl,
    measurement_to_json,
    pool_qos,
)
from carbon_node.measure.placement import LOCAL_HOST, LOCAL_QUEUE, PlacementFailed
from carbon_node.measure.protocol import MeasureSpec, ModelRejected
from carbon_node.testing import make_measurement
from tests.bus.pool_helpers import TEMPLATE, WAIT_S, ChildHost, SlowMeasurer, start_host, until
from tests.bus.test_pool_types import _every_field

SPEC = MeasureSpec(model="/srv/models/bert", window_s=2.0, unsupported_models=("gpt",), sim_cpu_tdp_w=50.0)
LOCAL = make_measurement(energy_kwh=5e-5)


@pytest.fixture
def client(dds_domain: int) -> Iterator[PoolClient]:
    pool_client = PoolClient(dds_domain)
    yield pool_client
    pool_client.close()


def pool_with(client: PoolClient, **options: object) -> tuple[PoolMeasurer, SlowMeasurer]:
    local = SlowMeasurer(result=LOCAL)
    pool = PoolMeasurer(local, hardware=["AMD EPYC 7B13"], **options)  # type: ignore[arg-type]
    pool.connect(client)
    return pool, local


def test_a_task_for_a_hosts_hardware_is_measured_there_with_every_field_of_its_measurement(
    dds_domain: int, client: PoolClient
) -> None:
    measured = _every_field()
    host_measurer = SlowMeasurer(result=measured)
    host = start_host(dds_domain, "NVIDIA H100", measurer=host_measurer)
    try:
        pool, local = pool_with(client)
        until(lambda: client.hosts())
        placement = pool.place("NVIDIA H100 80GB HBM3", SPEC.model)
        assert placement.queue == host.host_id
        measurement, measured_on = pool.measure_placed(SPEC, placement)
        assert measurement == replace(measured, model=SPEC.model)  # the host's Measurement, field for field
        assert measured_on.as_dict() == {
            "host": host.host_id,
            "hardware": "NVIDIA H100",
            "matched": True,
            "reason": f"measure host {host.host_id} has hardware 'NVIDIA H100', matching hw_description 'NVIDIA H100 80GB HBM3'",
        }
        assert local.calls == []
        # The host measures with its own settings: only the model, the window and the unsupported models travel.
        assert host_measurer.calls == [replace(TEMPLATE, model=SPEC.model, window_s=2.0, unsupported_models=("gpt",))]
        assert pool.stats()["pool_remote_measurements"] == 1
    finally:
        host.stop(WAIT_S)


def test_a_task_for_hardware_no_host_has_is_measured_locally_saying_so(dds_domain: int, client: PoolClient) -> None:
    host = start_host(dds_domain, "NVIDIA H100")
    try:
        pool, local = pool_with(client)
        until(lambda: client.hosts())
        placement = pool.place("AMD EPYC 7B13", SPEC.model)
        assert placement.queue == LOCAL_QUEUE
        measurement, measured_on = pool.measure_placed(SPEC, placement)
        assert measurement == replace(LOCAL, model=SPEC.model) and len(local.calls) == 1
        assert measured_on.host == LOCAL_HOST and measured_on.hardware == "AMD EPYC 7B13" and measured_on.matched
        assert measured_on.reason.startswith("no live measure host has hardware matching 'AMD EPYC 7B13'")
    finally:
        host.stop(WAIT_S)


def test_a_model_the_host_cannot_load_is_measured_locally_with_the_hosts_reason(dds_domain: int, client: PoolClient) -> None:
    absent = ModelRejected("model directory '/srv/models/bert' does not exist")
    host = start_host(dds_domain, "NVIDIA H100", measurer=SlowMeasurer(error=absent))
    try:
        pool, local = pool_with(client)
        until(lambda: client.hosts())
        measurement, measured_on = pool.measure_placed(SPEC, pool.place("NVIDIA H100", SPEC.model))
        assert len(local.calls) == 1 and measurement.energy_kwh == LOCAL.energy_kwh
        assert measured_on.host == LOCAL_HOST and not measured_on.matched
        why = "model directory '/srv/models/bert' does not exist"
        assert measured_on.reason == f"measure host {host.host_id} could not measure it: {why}: measured locally"
        assert host.stats()["rejected"] == 1
    finally:
        host.stop(WAIT_S)


def test_with_pool_fallback_error_a_failing_host_answers_an_error_naming_it(dds_domain: int, client: PoolClient) -> None:
    host = start_host(dds_domain, "NVIDIA H100", measurer=SlowMeasurer(error=ModelRejected("no such model")))
    try:
        pool, local = pool_with(client, fallback="error")
        until(lambda: client.hosts())
        with pytest.raises(PlacementFailed, match=f"measure host {host.host_id} could not measure it: no such model") as failed:
            pool.measure_placed(SPEC, pool.place("NVIDIA H100", SPEC.model))
        assert failed.value.measured_on.host == host.host_id
        assert local.calls == [] and pool.stats()["pool_errors"] == 1
    finally:
        host.stop(WAIT_S)


def test_a_host_killed_mid_window_costs_at_most_the_lease_then_a_host_restarted_is_used_again(
    dds_domain: int, client: PoolClient
) -> None:
    child = ChildHost(dds_domain, "NVIDIA H100", delay_s=30.0)
    try:
        pool, local = pool_with(client)
        until(lambda: client.hosts())
        placement = pool.place("NVIDIA H100", SPEC.model)
        assert placement.queue == child.host_id
        answers: list[object] = []
        worker = threading.Thread(target=lambda: answers.append(pool.measure_placed(SPEC, placement)))
        worker.start()
        until(lambda: client.in_flight() == 1)
        time.sleep(0.3)  # the child is in its window
        child.kill()
        killed = time.monotonic()
        worker.join(WAIT_S)
        answered_s = time.monotonic() - killed
        assert answers, "the task was not answered"
        measurement, measured_on = answers[0]  # type: ignore[misc]
        assert measurement.energy_kwh == LOCAL.energy_kwh and len(local.calls) == 1
        assert measured_on.host == LOCAL_HOST
        assert measured_on.reason.startswith(f"measure host {child.host_id} went away during the measurement (liveliness lost")
        assert answered_s < LEASE_S + 1.5, answered_s
        assert not client.hosts()
    finally:
        child.kill()
    again = ChildHost(dds_domain, "NVIDIA H100", delay_s=0.0, energy_kwh=7e-4)
    try:
        until(lambda: client.hosts())
        placement = pool.place("NVIDIA H100", SPEC.model)
        assert placement.queue == again.host_id
        measurement, measured_on = pool.measure_placed(SPEC, placement)
        assert measurement.energy_kwh == 7e-4 and measured_on.host == again.host_id
    finally:
        again.kill()


def test_a_reply_after_the_node_gave_up_is_dropped_and_the_silent_host_is_left_out_for_a_while(
    dds_domain: int, client: PoolClient
) -> None:
    host = start_host(dds_domain, "NVIDIA H100", measurer=SlowMeasurer(delay_s=1.0))
    try:
        pool, local = pool_with(client, task_timeout_s=lambda: 0.2, reply_grace_s=0.1, avoid_s=60.0)
        until(lambda: client.hosts())
        started = time.monotonic()
        _measurement, measured_on = pool.measure_placed(SPEC, pool.place("NVIDIA H100", SPEC.model))
        assert time.monotonic() - started < 1.0  # 0.3 s of waiting, then the local measurement
        assert measured_on.host == LOCAL_HOST and len(local.calls) == 1
        assert measured_on.reason == (
            f"measure host {host.host_id} did not answer within 0.3 s (left out for 60 s): measured locally"
        )
        until(lambda: client.late_replies == 1)  # the host's reply came, for nobody
        later = pool.place("NVIDIA H100", SPEC.model)
        assert later.queue == LOCAL_QUEUE and "did not answer in time" in later.measured_on.reason
    finally:
        host.stop(WAIT_S)


def test_windows_never_overlap_on_one_host_and_a_request_given_up_is_dropped_from_its_queue(
    dds_domain: int, client: PoolClient
) -> None:
    host_measurer = SlowMeasurer(delay_s=0.5)
    host = start_host(dds_domain, "NVIDIA H100", measurer=host_measurer)
    try:
        patient, _ = pool_with(client)
        impatient, _ = pool_with(client, task_timeout_s=lambda: 0.2, reply_grace_s=0.0)
        until(lambda: client.hosts())
        threads = [
            threading.Thread(target=pool.measure_placed, args=(replace(SPEC, model=f"m{i}"), pool.place("NVIDIA H100", "m")))
            for i, pool in enumerate((patient, patient, impatient))
        ]
        for thread in threads:
            thread.start()
            time.sleep(0.05)
        for thread in threads:
            thread.join(WAIT_S)
        until(lambda: host.stats()["queued"] == 0 and host.stats()["running"] == 0)
        assert host_measurer.most_at_once == 1
        assert host.stats()["measured"] == 2 and host.stats()["dropped"] == 1  # m2's node gave up while it queued
        assert [spec.model for spec in host_measurer.calls] == ["m0", "m1"]
    finally:
        host.stop(WAIT_S)


def test_a_host_that_stops_answers_its_queue_at_once_and_unregisters(dds_domain: int, client: PoolClient) -> None:
    host = start_host(dds_domain, "NVIDIA H100", measurer=SlowMeasurer(delay_s=1.0))
    pool, _local = pool_with(client)
    until(lambda: client.hosts())
    results: list[object] = []
    threads = [
        threading.Thread(
            target=lambda i=i: results.append(pool.measure_placed(replace(SPEC, model=f"m{i}"), pool.place("H100", "m")))
        )
        for i in range(2)
    ]
    for thread in threads:
        thread.start()
    until(lambda: host.stats()["queued"] == 1)
    assert host.stop(WAIT_S)
    for thread in threads:
        thread.join(WAIT_S)
    reasons = sorted(on.reason for _, on in results)  # type: ignore[attr-defined]
    assert reasons[0].startswith("measure host") and "measure host is stopping: measured locally" in reasons[0]
    until(lambda: not client.hosts(), timeout_s=1.0)  # unregistered: gone before any lease


def test_hostile_requests_get_error_replies_and_the_host_goes_on_serving(dds_domain: int) -> None:
    host_measurer = SlowMeasurer()
    host = start_host(dds_domain, "NVIDIA H100", measurer=host_measurer)
    peer = PoolEndpoints(
        dds_domain, "HOSTILE", (REPLY_TOPIC, CarbonNodeMeasureReplyImpl), (REQUEST_TOPIC, CarbonNodeMeasureRequestImpl)
    )
    try:
        until(lambda: peer.writer.get_matched_subscriptions())
        bad = {
            "nan": CarbonNodeMeasureRequestImpl("x/1", host.host_id, "x", "m", math.nan, [], 10.0),
            "empty": CarbonNodeMeasureRequestImpl("x/2", host.host_id, "x", "  ", 1.0, [], 10.0),
            "huge": CarbonNodeMeasureRequestImpl("x/3", host.host_id, "x", "m" * 10_000, 1.0, [], 10.0),
            "many": CarbonNodeMeasureRequestImpl("x/4", host.host_id, "x", "m", 1.0, ["a"] * 5000, 10.0),
            "timeout": CarbonNodeMeasureRequestImpl("x/5", host.host_id, "x", "m", 1.0, [], -1.0),
        }
        for request in bad.values():
            peer.writer.write(request)
        peer.writer.write(CarbonNodeMeasureRequestImpl("x/6", "someone-else", "x", "m", 1.0, [], 10.0))  # not for this host
        garbage = serialize_for(peer.writer, CarbonNodeMeasureRequestImpl("x/7", host.host_id, "x", "MODEL", 1.0, [], 10.0))
        write_serialized(peer.writer, garbage.replace(b"MODEL", b"\xff\xfe\xfd\xfc\xfb"))  # not UTF-8: undecodable
        peer.writer.write(CarbonNodeMeasureRequestImpl("x/8", host.host_id, "x", "/srv/good", 1.0, [], 10.0))
        replies: dict[str, CarbonNodeMeasureReplyImpl] = {}

        def collect() -> bool:
            replies.update({r.sample.request_id: r.sample for r in peer.take() if r.sample is not None})
            return "x/8" in replies and len(replies) >= 6

        until(collect)
        assert {replies[f"x/{i}"].status for i in range(1, 6)} == {"error"}
        assert replies["x/1"].message.startswith("invalid request: window_s is nan")
        assert replies["x/8"].status == "measured"
        assert "x/6" not in replies and "x/7" not in replies
        assert [spec.model for spec in host_measurer.calls] == ["/srv/good"]
    finally:
        peer.close()
        host.stop(WAIT_S)


def test_a_rogue_hosts_invalid_measurement_never_reaches_a_task(dds_domain: int, client: PoolClient) -> None:
    """A 'host' that answers with something that is not a Measurement: the node measures locally, saying why."""
    participant = create_participant(dds_domain, "ROGUE")
    try:
        rogue = Announcer(participant, role="measure_host", state="idle", hardware=["Rogue Accelerator"])
        requests = PoolEndpoints(
            dds_domain, "ROGUE_IO", (REQUEST_TOPIC, CarbonNodeMeasureRequestImpl), (REPLY_TOPIC, CarbonNodeMeasureReplyImpl)
        )
        stray = DataWriter(participant, Topic(participant, REPLY_TOPIC, CarbonNodeMeasureReplyImpl), qos=pool_qos())
        for request_id in (f"{client.node_id}/999", "another-node:1:abc/1"):  # one never asked; one to another node
            stray.write(CarbonNodeMeasureReplyImpl(request_id, rogue.node_id, "measured", "", measurement_to_json(LOCAL), 0.0))
        stop = threading.Event()

        def answer_badly() -> None:
            while not stop.is_set():
                for received in requests.take():
                    if received.sample is not None and received.alive:
                        reply = CarbonNodeMeasureReplyImpl(
                            received.sample.request_id, rogue.node_id, "measured", "", '{"energy_kwh": "lots"}', 0.0
                        )
                        requests.writer.write(reply)
                time.sleep(0.02)

        answerer = threading.Thread(target=answer_badly, daemon=True)
        answerer.start()
        pool, local = pool_with(client)
        until(lambda: client.hosts())
        _measurement, measured_on = pool.measure_placed(SPEC, pool.place("Rogue Accelerator", SPEC.model))
        assert measured_on.host == LOCAL_HOST and len(local.calls) == 1
        assert measured_on.reason.startswith(
            f"measure host {rogue.node_id} sent an invalid measurement (measurement: model is missing)"
        )
        until(lambda: client.late_replies >= 1)  # the stray reply to this node, for a request it never made
        time.sleep(0.3)
        assert client.late_replies == 1  # the reply to another node is none of this node's business
        stop.set()
        answerer.join(WAIT_S)
        requests.close()
    finally:
        delete_entity(participant)
