"""Emotions over time in videos, images and frames: `vemo.predict(source)` returns a pandas DataFrame.

This package is itself callable, so `vemo.predict(...)` works however it was imported: Python binds
`vemo.predict` to this subpackage as soon as any of its modules is imported, which would hide a
function of the same name defined in `vemo/__init__.py`. The call goes to `vemo.predict.api.predict`
(see its docstring for the arguments and columns). Importing this package loads neither torch nor pandas.
"""

from __future__ import annotations

import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from vemo.predict.api import predict

        return predict(*args, **kwargs)


def __getattr__(name: str):
    if name == "predict":  # `from vemo.predict import predict`
        from vemo.predict.api import predict

        return predict
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


sys.modules[__name__].__class__ = _CallablePackage
