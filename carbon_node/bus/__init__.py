"""The DDS side of the node: wire types, QoS, Cyclone set-up, task assembly, the node runtime, the
upstream-compatible node API and the orchestrator tool.

Importing this package loads Cyclone DDS only, never torch, transformers or carbontracker, so that the
DDS process starts fast. Import the submodules you need (``carbon_node.bus.runtime``, ...).
"""
