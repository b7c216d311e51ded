"""Optimizers (MXNet's ``mxnet.optimizer``): the base class, the registry, the Updater
and every registered update rule (one module each, all imported here)."""
import importlib as _importlib
import pkgutil as _pkgutil

from .. import _namespace
from .optimizer import DefaultValue, Optimizer, create, register
from .updater import Updater, get_updater

__all__ = ["Optimizer", "Updater", "create", "get_updater", "register", "DefaultValue"]


def _import_rules():
    """Import every optimizer module of this package and re-export its public names."""
    for info in sorted(_pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name in ("optimizer", "updater"):
            continue
        module = _importlib.import_module("%s.%s" % (__name__, info.name))
        for name in getattr(module, "__all__", ()):
            globals()[name] = getattr(module, name)
            __all__.append(name)


_import_rules()

__dir__ = _namespace.public_dir(__name__)
