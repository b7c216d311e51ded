"""Optimizers (MXNet's ``mxnet.optimizer``): the base class, the registry, the Updater
and every registered update rule (one module each, imported when first named: see
``_rules``)."""
from .. import _namespace
from . import _rules
from .optimizer import DefaultValue, Optimizer, create, register
from .updater import Updater, get_updater

_BASE = ["Optimizer", "Updater", "create", "get_updater", "register", "DefaultValue"]


def _public(modules):
    return [name for module in modules for name in getattr(module, "__all__", ())]


def __getattr__(name):
    if name == "__all__":
        value = _BASE + _public(_rules.load())
    else:
        value = None
        for module in _rules.load(name) if not name.startswith("_") else ():
            if name in getattr(module, "__all__", ()):
                value = getattr(module, name)
            elif module.__name__ == "%s.%s" % (__name__, name):
                value = module                 # the rule module itself, e.g. ``optimizer.adam``
        if value is None:
            raise AttributeError("module %r has no attribute %r" % (__name__, name))
    globals()[name] = value
    return value


_public_dir = _namespace.public_dir(__name__)


def __dir__():
    __getattr__("__all__")
    return _public_dir()
