"""The rule modules of this package, imported on first use.

Importing every rule (and with it every kernel module) costs about 60 ms, more than a
warm first step.  Rules therefore load when they are first named: through the registry
(``create("adam")``), as an attribute (``optimizer.Adam``), or all at once when the
registry or ``__all__`` is read as a whole.  A rule module is named after its registered
name (the lower-cased class name), except for those in ``_MODULE_OF``.
"""
import importlib
import os
import pkgutil

#: registered or class names whose module has another name
_MODULE_OF = {"ccsgd": "sgd", "test": "testrule"}
_NOT_RULES = ("optimizer", "updater")

_modules = None


def rule_modules():
    """Names of the rule modules of this package."""
    global _modules
    if _modules is None:
        found = pkgutil.iter_modules([os.path.dirname(os.path.abspath(__file__))])
        _modules = sorted(m.name for m in found if not m.name.startswith("_") and m.name not in _NOT_RULES)
    return _modules


def load(name=None):
    """Import the rule module that defines ``name`` (a registered name or a class name,
    any case; nothing when no module has that name), or every rule module for None.
    Returns the modules."""
    if name is None:
        wanted = rule_modules()
    else:
        module = _MODULE_OF.get(name.lower(), name.lower())
        wanted = [module] if module in rule_modules() else []
    return [importlib.import_module("%s.%s" % (__package__, m)) for m in wanted]
