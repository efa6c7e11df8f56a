"""Fake upstream ``sustainml_py.nodes``."""
