"""The library's random stream (SGLD noise, random initializers).

One ``numpy.random.Generator`` per process, created on first use.  ``seed(n)`` makes runs
repeatable; functions that draw random numbers also take an explicit ``rng=`` argument.
"""
import numpy as np

from . import _namespace

__all__ = ["seed", "generator"]

_generator = None


#: mixed into every seed so that the library's stream never replays a user's own
#: ``default_rng(n)`` data drawn with the same number
_STREAM = 0x6D786F70


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


__dir__ = _namespace.public_dir(__name__)
