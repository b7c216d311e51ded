"""mxopt_numba: MXNet's optimization API (optimizers, lr schedulers, initializers,
Updater, Trainer) on NumPy arrays, with the update rules compiled by Numba.

    import mxopt_numba as mxo
    opt = mxo.optimizer.create("sgd", learning_rate=0.1, momentum=0.9)
    updater = mxo.optimizer.get_updater(opt)
    updater(0, grad, weight)          # weight is updated in place
"""
import importlib as _importlib

from . import lr_scheduler, optimizer, random, sparse

__version__ = "0.1.0"

# Heavier parts load on first use.
_LAZY = {
    "initializer": ("initializer", None),
    "init": ("initializer", None),
    "Trainer": ("trainer", "Trainer"),
    "Parameter": ("parameter", "Parameter"),
    "distributed": ("distributed", None),
    "ndarray": ("ndarray", None),
    "nd": ("ndarray", None),
    "v1": ("v1", None),
    "utils": ("utils", None),
    # needs PyTorch; imported only when asked for
    "torch": ("torch", None),
}

__all__ = ["lr_scheduler", "optimizer", "random", "sparse"] + sorted(_LAZY)


def __getattr__(name):
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError("module 'mxopt_numba' has no attribute %r" % name) from None
    module = _importlib.import_module("%s.%s" % (__name__, module_name))
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__():
    # submodules imported along the way (trainer, kernels, ...) are not part of the listing
    return sorted(set(__all__) | {n for n in globals() if n.startswith("__") and n.endswith("__")})
