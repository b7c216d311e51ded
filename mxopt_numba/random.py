"""The library's random stream (SGLD noise, random initializers).

One ``numpy.random.Generator`` per process, created on first use.  ``seed(n)`` makes runs
repeatable; functions that draw random numbers also take an explicit ``rng=`` argument.
:func:`get_state` / :func:`set_state` capture and restore the stream as plain JSON-able
values, which is how optimizer checkpoints resume SGLD's noise exactly.
"""
import numpy as np

from . import _namespace

__all__ = ["seed", "generator", "get_state", "set_state"]

_generator = None


#: mixed into every seed so that the library's stream never replays a user's own
#: ``default_rng(n)`` data drawn with the same number
_STREAM = 0x6D786F70

#: bit generators a saved state may name (never looked up any wider, so a state file
#: cannot make us construct arbitrary objects)
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


def seed(value):
    """Reset the library's generator (a function of ``value`` alone)."""
    global _generator
    _generator = np.random.default_rng([int(value), _STREAM])


def generator(rng=None):
    """``rng`` if given (a Generator, or a seed for a new one), else the library's generator."""
    global _generator
    if rng is not None:
        return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if _generator is None:
        _generator = np.random.default_rng()
    return _generator


def get_state():
    """The library's stream position as a dict of plain values (numbers, strings, and
    for ``MT19937`` an integer array); :func:`set_state` continues from exactly there."""
    return _plain(generator().bit_generator.state)


def set_state(state):
    """Continue the library's stream from ``state`` (what :func:`get_state` returned).

    The state is checked in full before anything changes: a malformed one raises
    ``ValueError`` and leaves the current stream as it was."""
    global _generator
    _generator = _from_state(state)


def _use(gen):
    global _generator
    _generator = gen


def _from_state(state):
    """A new Generator positioned at ``state``; ``ValueError`` when it is not a valid one."""
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in _BIT_GENERATORS:
        raise ValueError("random state must be a dict naming one of %s as 'bit_generator', got %r"
                         % (", ".join(_BIT_GENERATORS), name if isinstance(state, dict) else state))
    bit_generator = getattr(np.random, name)()
    try:
        bit_generator.state = state
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        raise ValueError("random state for %s is malformed: %s: %s"
                         % (name, type(exc).__name__, exc)) from None
    return np.random.Generator(bit_generator)


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


__dir__ = _namespace.public_dir(__name__)
