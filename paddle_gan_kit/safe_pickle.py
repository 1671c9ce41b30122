"""Unpickling without running code: only numpy arrays, plain Python values and what the caller
names may appear in the pickle; any other global is refused before it is looked up.

Pickles are how earlier snapshots and Paddle's ``.pdparams`` weights were stored, and a pickle
can call any function while it loads. Files from elsewhere (a shared run, downloaded weights)
are read through :func:`loads`.
"""
from __future__ import annotations

import io
import pickle

import numpy as np

_NUMPY = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("builtins", "set"), ("builtins", "frozenset"), ("collections", "OrderedDict"),
}


class Refused(Exception):
    """The pickle names a global that is not allowed; ``str()`` is "module.name"."""


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, extra: dict):
        super().__init__(file)
        self.extra = extra

    def find_class(self, module, name):
        if (module, name) in self.extra:
            return self.extra[(module, name)]
        if (module, name) in _NUMPY:
            # numpy 2 pickles name numpy._core, numpy 1 numpy.core: either loads with either
            if module.startswith("numpy._core") and int(np.__version__.split(".")[0]) < 2:
                module = "numpy.core" + module[len("numpy._core"):]
            return super().find_class(module, name)
        raise Refused(f"{module}.{name}")


def loads(data: bytes, extra: dict | None = None):
    """The object pickled in ``data``; ``extra`` maps further allowed (module, name) pairs to
    what stands in for them. Raises :class:`Refused` for any other global."""
    return _Unpickler(io.BytesIO(data), extra or {}).load()
