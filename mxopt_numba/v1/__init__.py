"""MXNet 1.x semantics (the last released line, 1.9.1) on the same kernels.

    import mxopt_numba.v1 as mx1
    opt = mx1.optimizer.create("sgd", momentum=0.9)     # 1.x defaults: lr 0.01, lazy_update=True
    updater = mx1.optimizer.get_updater(opt)
    updater(0, grad, weight)

The names, constructor arguments, defaults, update formulas and state layouts are
MXNet 1.9.1's (see ``mxopt_numba.v1.optimizer``); the library's documented fixes (no
clipping for ``clip_gradient=0``, no tensor cap per launch, unmodified gradients, ...)
apply here too.  ``mxopt_numba.optimizer`` stays the 2.x API.
"""
import importlib as _importlib

from .. import random, sparse
from . import lr_scheduler, optimizer

_LAZY = {"initializer": "initializer", "init": "initializer"}

__all__ = ["initializer", "lr_scheduler", "optimizer", "random", "sparse"]


def __getattr__(name):
    try:
        module = _importlib.import_module("%s.%s" % (__name__, _LAZY[name]))
    except KeyError:
        raise AttributeError("module 'mxopt_numba.v1' has no attribute %r" % name) from None
    globals()[name] = module
    return module
