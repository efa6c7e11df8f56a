"""A Cyclone DDS orchestrator peer whose types come from the IDL text, not from carbon_node.wire.

Run as a separate process by ``test_idl_peer.py``. It reads ``fastdds_peer/typesImpl.idl`` (the IDL the
Fast DDS peer compiles) and declares each struct as ``idlc -l py`` would: FINAL as the IDL says,
``octet`` as ``types.byte``, ``long``/``unsigned long`` as int32/uint32, ``@key`` members as keys. Its
participant uses Cyclone's defaults for type information: no ``IgnoreTypeInformation`` for Cyclone's
vendor id, so its endpoints match the node's only when the node's TypeInformation is assignable to the
IDL's (a ``uint8`` where the IDL says ``octet`` is not: TK_UINT8 versus TK_BYTE).

It waits for the node's status, writes one task (``extra_data`` bytes on all three inputs), waits for
the output, and prints one JSON line: the status values seen and the output's fields. Exit status 0
when the output arrived, 1 on timeout.

Usage: ``python cyclone_idl_peer.py DOMAIN PROBLEM_ID TIMEOUT_S``
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from cyclonedds.core import Policy, Qos
from cyclonedds.domain import DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

IDL_PATH = Path(__file__).resolve().parent / "fastdds_peer" / "typesImpl.idl"

IDL_TO_PYTHON = {
    "octet": "types.byte",
    "long": "types.int32",
    "unsigned long": "types.uint32",
    "double": "types.float64",
    "boolean": "bool",
    "string": "str",
}
"""IDL (4.2, 7.4.1.4.4) to cyclonedds Python types, as the cyclonedds IDL compiler maps them."""

_ENUM = re.compile(r"enum\s+(\w+)\s*\{([^}]*)\}\s*;")
_STRUCT = re.compile(r"((?:@\w+\s+)*)struct\s+(\w+)\s*\{([^}]*)\}\s*;")
_MEMBER = re.compile(r"((?:@\w+\s+)*)(sequence<\s*[\w ]+?\s*>|unsigned long|[\w]+)\s+(\w+)\s*;")


def python_source(idl: str) -> str:
    """Python declarations of the enums and structs of ``idl`` (the subset the SustainML IDL uses)."""
    idl = re.sub(r"//[^\n]*", "", idl)
    lines = ["from dataclasses import dataclass, field", "from cyclonedds.idl import IdlEnum, IdlStruct, types"]
    lines.append("from cyclonedds.idl.annotations import appendable, final, key")
    enums: dict[str, str] = {}
    for name, body in _ENUM.findall(idl):
        members = [m.strip() for m in body.split(",") if m.strip()]
        enums[name] = members[0]
        lines += [f"class {name}(IdlEnum, typename={name!r}):"] + [f"    {m} = {i}" for i, m in enumerate(members)]
    structs: set[str] = set()
    for struct_annotations, name, body in _STRUCT.findall(idl):
        extensibility = "appendable" if "@appendable" in struct_annotations else "final"
        lines += ["@dataclass", f"@{extensibility}", f"class {name}(IdlStruct, typename={name!r}):"]
        for member_annotations, idl_type, member in _MEMBER.findall(body):
            python_type, default = _python_type(idl_type.strip(), enums, structs)
            lines.append(f"    {member}: {python_type} = {default}")
            if "@key" in member_annotations:
                lines.append(f"    key({member!r})")
        structs.add(name)
    return "\n".join(lines) + "\n"


def _python_type(idl_type: str, enums: dict[str, str], structs: set[str]) -> tuple[str, str]:
    sequence = re.fullmatch(r"sequence<\s*([\w ]+?)\s*>", idl_type)
    if sequence:
        element, _ = _python_type(sequence.group(1), enums, structs)
        return f"types.sequence[{element}]", "field(default_factory=list)"
    if idl_type in enums:
        return idl_type, f"{idl_type}.{enums[idl_type]}"
    if idl_type in structs:
        return idl_type, f"field(default_factory={idl_type})"
    python_type = IDL_TO_PYTHON[idl_type]
    default = {"str": '""', "bool": "False", "types.float64": "0.0"}.get(python_type, "0")
    return python_type, default


def load_idl(path: Path = IDL_PATH) -> dict[str, Any]:
    """The declarations of :func:`python_source`, as a module (dataclasses and cyclonedds need one)."""
    module = ModuleType("sustainml_idl")
    sys.modules[module.__name__] = module
    source = compile(python_source(path.read_text()), str(path), "exec", dont_inherit=True)  # no postponed annotations
    exec(source, module.__dict__)  # our own generated declarations
    return module.__dict__


def main(domain: int, problem_id: int, timeout_s: float) -> int:
    t = load_idl()
    xcdr1 = Policy.DataRepresentation(use_cdrv0_representation=True)
    reliable = Policy.Reliability.Reliable(max_blocking_time=duration(seconds=0.1))
    limits = Policy.ResourceLimits(max_samples=5000, max_instances=500, max_samples_per_instance=1)
    qos = Qos(reliable, Policy.Durability.TransientLocal, Policy.History.KeepLast(depth=1), limits, xcdr1)
    participant = DomainParticipant(domain, qos=Qos(Policy.EntityName("IDL_PEER")))

    def topic(name: str, cls: Any) -> Topic:
        return Topic(participant, name, cls)

    status_reader = DataReader(participant, topic("/sustainml/status", t["NodeStatusImpl"]), qos=qos)
    output_reader = DataReader(participant, topic("/sustainml/carbon_tracker/output", t["CO2FootprintImpl"]), qos=qos)
    writers = {
        name: DataWriter(participant, topic(path, t[name]), qos=qos)
        for name, path in (
            ("MLModelImpl", "/sustainml/ml_model_provider/output"),
            ("HWResourceImpl", "/sustainml/hw_resources/output"),
            ("UserInputImpl", "/sustainml/user_input"),
        )
    }
    deadline = time.monotonic() + timeout_s
    statuses: list[str] = []
    while not statuses and time.monotonic() < deadline:
        statuses += [s.node_status.name for s in status_reader.take(10)]
        time.sleep(0.05)
    task_id = t["TaskIdImpl"](problem_id=problem_id, iteration_id=1)
    extra = json.dumps({"num_outputs": 3}).encode()
    writers["MLModelImpl"].write(t["MLModelImpl"](model="NO_MODEL", extra_data=list(b"{}"), task_id=task_id))
    writers["HWResourceImpl"].write(t["HWResourceImpl"](extra_data=list(b"{}"), task_id=task_id))
    writers["UserInputImpl"].write(t["UserInputImpl"](extra_data=list(extra), task_id=task_id))
    output = None
    while output is None and time.monotonic() < deadline:
        for sample in output_reader.take(10):
            if sample.task_id.problem_id == problem_id:
                output = sample
        statuses += [s.node_status.name for s in status_reader.take(10)]
        time.sleep(0.05)
    result: dict[str, Any] = {"statuses": statuses, "output": None}
    if output is not None:
        result["output"] = {
            "task_id": [output.task_id.problem_id, output.task_id.iteration_id],
            "carbon_footprint": output.carbon_footprint,
            "extra_data": bytes(output.extra_data).decode("utf-8"),
        }
    print(json.dumps(result), flush=True)
    return 0 if output is not None else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
