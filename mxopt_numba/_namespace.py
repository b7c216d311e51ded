"""``dir()`` of a public module lists what it exports, not the modules it imports.

A module ends with ``__dir__ = public_dir(__name__)``; its names stay reachable as
attributes, but tab completion and ``dir()`` show ``__all__`` (and the dunders) only.
"""
import sys


def public_dir(module_name):
    def __dir__():
        namespace = vars(sys.modules[module_name])
        dunders = {name for name in namespace if name.startswith("__") and name.endswith("__")}
        return sorted(set(namespace.get("__all__", ())) | dunders)
    return __dir__
