"""The DDS side of the node: QoS, Cyclone set-up, task assembly, the node runtime, the upstream bindings,
carbon-node's own topics, the upstream-compatible node API and the orchestrator tool (the SustainML
types themselves are :mod:`carbon_node.wire`).

Importing this package loads Cyclone DDS only, never torch, transformers or carbontracker, so that the
DDS process starts fast. Import the submodules you need (``carbon_node.bus.runtime``, ...).
"""
