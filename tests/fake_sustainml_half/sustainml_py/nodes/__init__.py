"""Fake upstream ``sustainml_py.nodes``, half installed: the package imports."""
