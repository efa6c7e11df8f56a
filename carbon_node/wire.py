"""The SustainML wire types (the vocabulary every layer shares), declared for Cyclone DDS exactly as
the upstream IDL lays them out.

Every struct is FINAL (PROTOCOL.md 3.5 item 2): upstream declares them APPENDABLE, but in XCDR1 an
appendable struct carries no DHEADER, so the bytes are identical, and Cyclone then matches Fast DDS
endpoints by type name. Type names are unscoped, enums are 32-bit, field order is the member id order
(PROTOCOL.md 2.3). ``sequence<octet>`` is a sequence of ``byte`` (TK_BYTE in the TypeInformation, as
the IDL and Fast DDS say; ``uint8`` would be TK_UINT8, which a Cyclone peer checking type information
does not match). The tests check these classes against bytes captured from the real upstream stack.

They sit at the bottom of the layers with :mod:`carbon_node.base`: a task's inputs
(:class:`carbon_node.core.TaskInputs`) carry these samples as they were received, the bus reads and
writes them, and the engine decodes them once into the typed task of ``carbon_node.engine.task``.
Importing this module loads ``cyclonedds.idl`` only (no participant, no network).
"""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cyclonedds.idl import IdlEnum, IdlStruct
from cyclonedds.idl.annotations import final, key

if TYPE_CHECKING:  # what the cyclonedds annotations hold, in terms a type checker understands
    from builtins import float as float64
    from builtins import int as byte
    from builtins import int as int32
    from builtins import int as uint32
    from builtins import list as sequence
else:
    from cyclonedds.idl.types import byte, float64, int32, sequence, uint32

__all__ = [
    "WIRE_TYPES",
    "CO2FootprintImpl",
    "CmdNode",
    "CmdTask",
    "ErrorCode",
    "HWResourceImpl",
    "MLModelImpl",
    "NodeControlImpl",
    "NodeStatusImpl",
    "RequestTypeImpl",
    "ResponseTypeImpl",
    "Status",
    "TaskIdImpl",
    "TaskStatus",
    "UserInputImpl",
]


class Status(IdlEnum, typename="Status"):
    """Node status (``NodeStatusImpl.node_status``)."""

    NODE_INACTIVE = 0
    NODE_ERROR = 1
    NODE_IDLE = 2
    NODE_INITIALIZING = 3
    NODE_RUNNING = 4
    NODE_TERMINATING = 5


class TaskStatus(IdlEnum, typename="TaskStatus"):
    """Task status; upstream never changes it from TASK_WAITING."""

    TASK_WAITING = 0
    TASK_ERROR = 1
    TASK_RUNNING = 2
    TASK_SUCCEEDED = 3


class ErrorCode(IdlEnum, typename="ErrorCode"):
    """Error code of status samples and configuration responses."""

    NO_ERROR = 0
    INTERNAL_ERROR = 1


class CmdNode(IdlEnum, typename="CmdNode"):
    """Node command of the control topic (logged only, as upstream)."""

    NO_CMD_NODE = 0
    START_NODE = 1
    STOP_NODE = 2
    RESET_NODE = 3
    TERMINATE_NODE = 4


class CmdTask(IdlEnum, typename="CmdTask"):
    """Task command of the control topic (logged only, as upstream)."""

    NO_CMD_TASK = 0
    STOP_TASK = 1
    RESET_TASK = 2
    PREEMPT_TASK = 3
    TERMINATE_TASK = 4


@dataclass
@final
class TaskIdImpl(IdlStruct, typename="TaskIdImpl"):
    """Task identity: the whole struct is the key of the types that embed it."""

    problem_id: uint32 = 0
    iteration_id: uint32 = 0


@dataclass
@final
class NodeStatusImpl(IdlStruct, typename="NodeStatusImpl"):
    """A node's status sample on ``/sustainml/status``."""

    node_status: Status = Status.NODE_INACTIVE
    task_status: TaskStatus = TaskStatus.TASK_WAITING
    error_code: ErrorCode = ErrorCode.NO_ERROR
    error_description: str = ""
    node_name: str = ""
    key("node_name")
    task_id: TaskIdImpl = field(default_factory=TaskIdImpl)
    key("task_id")


@dataclass
@final
class NodeControlImpl(IdlStruct, typename="NodeControlImpl"):
    """A command on ``/sustainml/control``."""

    cmd_node: CmdNode = CmdNode.NO_CMD_NODE
    cmd_task: CmdTask = CmdTask.NO_CMD_TASK
    target_node: str = ""
    source_node: str = ""
    key("source_node")
    task_id: TaskIdImpl = field(default_factory=TaskIdImpl)
    key("task_id")


@dataclass
@final
class UserInputImpl(IdlStruct, typename="UserInputImpl"):
    """The user's problem statement, written by the orchestrator."""

    modality: str = ""
    problem_short_description: str = ""
    problem_definition: str = ""
    inputs: sequence[str] = field(default_factory=list)
    outputs: sequence[str] = field(default_factory=list)
    minimum_samples: uint32 = 0
    maximum_samples: uint32 = 0
    optimize_carbon_footprint_manual: bool = False
    previous_iteration: int32 = 0
    optimize_carbon_footprint_auto: bool = False
    desired_carbon_footprint: float64 = 0.0
    geo_location_continent: str = ""
    geo_location_region: str = ""
    extra_data: sequence[byte] = field(default_factory=list)
    task_id: TaskIdImpl = field(default_factory=TaskIdImpl)
    key("task_id")


@dataclass
@final
class MLModelImpl(IdlStruct, typename="MLModelImpl"):
    """The model chosen by the ML model provider."""

    model_path: str = ""
    model: str = ""
    raw_model: sequence[byte] = field(default_factory=list)
    model_properties_path: str = ""
    model_properties: str = ""
    input_batch: sequence[str] = field(default_factory=list)
    target_latency: float64 = 0.0
    extra_data: sequence[byte] = field(default_factory=list)
    task_id: TaskIdImpl = field(default_factory=TaskIdImpl)
    key("task_id")


@dataclass
@final
class HWResourceImpl(IdlStruct, typename="HWResourceImpl"):
    """The hardware provider's estimate: power in W, latency in the producer's unit."""

    hw_description: str = ""
    power_consumption: float64 = 0.0
    latency: float64 = 0.0
    memory_footprint_of_ml_model: float64 = 0.0
    max_hw_memory_footprint: float64 = 0.0
    extra_data: sequence[byte] = field(default_factory=list)
    task_id: TaskIdImpl = field(default_factory=TaskIdImpl)
    key("task_id")


@dataclass
@final
class CO2FootprintImpl(IdlStruct, typename="CO2FootprintImpl"):
    """The node's output: grams CO2e, kWh and gCO2e/kWh, plus JSON ``extra_data``."""

    carbon_footprint: float64 = 0.0
    energy_consumption: float64 = 0.0
    carbon_intensity: float64 = 0.0
    extra_data: sequence[byte] = field(default_factory=list)
    task_id: TaskIdImpl = field(default_factory=TaskIdImpl)
    key("task_id")


@dataclass
@final
class RequestTypeImpl(IdlStruct, typename="RequestTypeImpl"):
    """Legacy configuration request on ``sustainml/request`` (PROTOCOL.md 5.2)."""

    node_id: int32 = 0
    key("node_id")
    transaction_id: int32 = 0
    key("transaction_id")
    configuration: str = ""


@dataclass
@final
class ResponseTypeImpl(IdlStruct, typename="ResponseTypeImpl"):
    """Legacy configuration response on ``sustainml/response`` (PROTOCOL.md 5.2)."""

    node_id: int32 = 0
    key("node_id")
    transaction_id: int32 = 0
    key("transaction_id")
    success: bool = False
    err_code: ErrorCode = ErrorCode.NO_ERROR
    configuration: str = ""


WIRE_TYPES: dict[str, type[IdlStruct]] = {
    cls.__name__: cls
    for cls in (
        TaskIdImpl,
        NodeStatusImpl,
        NodeControlImpl,
        UserInputImpl,
        MLModelImpl,
        HWResourceImpl,
        CO2FootprintImpl,
        RequestTypeImpl,
        ResponseTypeImpl,
    )
}
"""Wire struct classes by their registered (unscoped) type name."""
