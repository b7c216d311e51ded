"""The library's random stream (SGLD noise, random initializers).

One ``numpy.random.Generator`` per process, created on first use.  ``seed(n)`` makes runs
repeatable; functions that draw random numbers also take an explicit ``rng=`` argument.
"""
import numpy as np

_generator = None


def seed(value):
    """Reset the library's generator to ``numpy.random.default_rng(value)``."""
    global _generator
    _generator = np.random.default_rng(value)


def generator(rng=None):
    """``rng`` if given (a Generator, or a seed for a new one), else the library's generator."""
    global _generator
    if rng is not None:
        return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if _generator is None:
        _generator = np.random.default_rng()
    return _generator
