"""The legacy topic-based configuration service (PROTOCOL.md 5.2), served on Cyclone.

Requests arrive on ``sustainml/request``; the carbon node handles those with ``node_id == 1`` and writes
one response on ``sustainml/response`` with ``node_id`` and ``transaction_id`` copied. The only command
understood is ``{"command": "describe"}`` (effective settings and version as JSON); anything else gets
upstream's answer (K6): ``{"error": "Unsupported configuration request: <configuration>"}``, success
false, ``INTERNAL_ERROR``.

The current upstream service is a Fast DDS RPC (``CarbonFootprintService_Request``/``_Reply``). Cyclone
cannot send the related-sample-identity that Fast DDS requesters need, so this node deliberately does
not create those endpoints (PROTOCOL.md 3.5 item 8): the orchestrator then fails its request cleanly in
about 3 s instead of blocking for 5 minutes. Serving the RPC needs the upstream ``sustainml_py``
bindings (see :mod:`carbon_node.bus.upstream`).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from cyclonedds.core import InstanceState, ReadCondition, SampleState, ViewState
from cyclonedds.domain import DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic

from carbon_node.bus.cyclone import take_samples
from carbon_node.bus.qos import REQUEST_TOPIC, RESPONSE_TOPIC, config_qos
from carbon_node.wire import ErrorCode, RequestTypeImpl, ResponseTypeImpl

__all__ = ["CARBON_NODE_ID", "ConfigResponder", "ConfigService", "describe_responder", "unsupported_response"]

log = structlog.get_logger(__name__)

CARBON_NODE_ID = 1
"""``ID_CARBON_FOOTPRINT`` of the SustainML node id enum."""

_RESPONSES_KEPT = 64  # responses are keyed by transaction: unregister old ones so the writer stays bounded

ConfigResponder = Callable[[RequestTypeImpl], ResponseTypeImpl]
"""Turns one request addressed to the carbon node into its response."""


def unsupported_response(request: RequestTypeImpl) -> ResponseTypeImpl:
    """Upstream's answer to every configuration request (K6)."""
    message = f"Unsupported configuration request: {request.configuration}"
    return ResponseTypeImpl(
        node_id=request.node_id,
        transaction_id=request.transaction_id,
        success=False,
        err_code=ErrorCode.INTERNAL_ERROR,
        configuration=json.dumps({"error": message}),
    )


def describe_responder(describe: Callable[[], Mapping[str, Any]] | None) -> ConfigResponder:
    """A responder answering ``{"command": "describe"}`` with ``describe()`` as JSON, else as upstream."""

    def respond(request: RequestTypeImpl) -> ResponseTypeImpl:
        try:
            command = json.loads(request.configuration)
        except (json.JSONDecodeError, RecursionError):
            command = None
        if describe is None or not isinstance(command, dict) or command.get("command") != "describe":
            return unsupported_response(request)
        return ResponseTypeImpl(
            node_id=request.node_id,
            transaction_id=request.transaction_id,
            success=True,
            err_code=ErrorCode.NO_ERROR,
            configuration=json.dumps(dict(describe()), default=str, sort_keys=True),
        )

    return respond


class ConfigService:
    """Request reader and response writer on ``participant``; :meth:`poll` answers what has arrived."""

    def __init__(self, participant: DomainParticipant, responder: ConfigResponder) -> None:
        self._responder = responder
        request_topic = Topic(participant, REQUEST_TOPIC, RequestTypeImpl)
        response_topic = Topic(participant, RESPONSE_TOPIC, ResponseTypeImpl)
        self.reader: DataReader[RequestTypeImpl] = DataReader(participant, request_topic, qos=config_qos())
        self._writer: DataWriter = DataWriter(participant, response_topic, qos=config_qos())
        self.condition = ReadCondition(self.reader, SampleState.NotRead | ViewState.Any | InstanceState.Any)
        self._sent: deque[ResponseTypeImpl] = deque()

    def poll(self) -> int:
        """Answer every pending request addressed to the carbon node; return how many were answered."""
        answered = 0
        for request in take_samples(self.reader, 64):
            if not isinstance(request, RequestTypeImpl):  # dispose/unregister notification
                continue
            if request.node_id != CARBON_NODE_ID:
                continue
            try:
                response = self._responder(request)
            except Exception as exc:  # a user service callback must not stop the bus thread
                log.error("config_callback_failed", error=f"{type(exc).__name__}: {exc}")
                response = unsupported_response(request)
            response.node_id = request.node_id
            response.transaction_id = request.transaction_id
            self._writer.write(response)
            self._sent.append(response)
            if len(self._sent) > _RESPONSES_KEPT:
                self._writer.unregister_instance(self._sent.popleft())
            log.info(
                "config_request",
                transaction_id=request.transaction_id,
                configuration=request.configuration[:200],
                success=response.success,
            )
            answered += 1
        return answered
