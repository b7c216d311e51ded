"""Optimizer states as trees: an array, ``None``, or a tuple/list of states.

Shared by the launch layer, the Updater, the device helpers and distributed training, so
that one definition says what a state's arrays and structure are.
"""
import numpy as np

__all__ = ["state_leaves", "map_state", "signature", "describe"]


def state_leaves(state):
    """The arrays of a (nested tuple/list) state in order, ``None`` entries dropped."""
    if state is None:
        return ()
    if isinstance(state, (tuple, list)):
        out = ()
        for s in state:
            out += state_leaves(s)
        return out
    return (state,)


def map_state(state, fn):
    """``state`` with ``fn`` applied to every array (same nesting, ``None`` kept)."""
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return type(state)(map_state(s, fn) for s in state)
    return fn(state)


def signature(state, dtype_of):
    """The structure of a state: nesting, ``None`` entries and leaf dtypes (not sizes)."""
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return tuple(signature(s, dtype_of) for s in state)
    if not hasattr(state, "dtype"):
        return type(state).__name__
    try:
        return np.dtype(dtype_of(state)).str
    except TypeError:
        return type(state).__name__


def describe(sig):
    """A signature in words, for error messages."""
    if sig is None:
        return "None"
    if isinstance(sig, tuple):
        return "(%s%s)" % (", ".join(describe(s) for s in sig), "," if len(sig) == 1 else "")
    try:
        return np.dtype(sig).name
    except TypeError:
        return sig


