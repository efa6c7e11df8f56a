"""Fake upstream node module, half installed: its native library is not on the loader path."""

import ctypes

_native = ctypes.CDLL("libsustainml_cpp.so.0")  # raises OSError: cannot open shared object file
