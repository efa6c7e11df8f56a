"""Fake upstream ``sustainml_py`` (test double, see ../README.md)."""
