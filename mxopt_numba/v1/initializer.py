"""Initializers of MXNet 1.x: the same classes as :mod:`mxopt_numba.initializer`, with the
1.x registry (``RNNFused`` is 2.x only; 1.x has ``FusedRNN``)."""
from .. import initializer as _init
from ..initializer import *  # noqa: F401,F403

#: registered names MXNet 1.9.1 does not know
_NOT_IN_1X = frozenset({"rnnfused"})

__all__ = [n for n in _init.__all__ if n != "RNNFused"]


def create(*args, **kwargs):
    """As :func:`mxopt_numba.initializer.create`, refusing the names 1.x lacks."""
    if args and isinstance(args[0], str):
        name = args[0].strip()
        key = name.lower()
        if name.startswith("["):
            import json
            try:
                key = str(json.loads(name)[0]).lower()
            except (ValueError, IndexError, TypeError):
                pass
        if key in _NOT_IN_1X:
            raise ValueError("cannot find initializer %r in MXNet 1.x (it is a 2.x name)" % name)
    return _init.create(*args, **kwargs)
