"""Fake upstream ``sustainml_py``, half installed (see ../README.md): the package imports."""
