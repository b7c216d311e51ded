"""Loading kernels from Numba's disk cache without the full start-up of its compiler.

Before loading a cached function, Numba refreshes its typing and lowering registries:
it imports and registers every implementation it has (and, with SciPy installed, SciPy's
linear algebra, to check for BLAS).  That is about 0.25 s per process, more than the
rest of a warm first step together, and a cached kernel needs none of it: the object
code is linked against Numba's runtime, which is all that has to be initialised.  The
cache class below does just that and falls back to Numba's own loading on any error.
Compiling (a cache miss) goes through Numba's pipeline, which refreshes the registries
itself.
"""
from numba.core import caching


class QuickLoadCache(caching.FunctionCache):
    def load_overload(self, sig, target_context):
        try:
            from numba.core.runtime import nrt
            nrt.rtsys.initialize(target_context)
            with self._guard_against_spurious_io_errors():
                return self._load_overload(sig, target_context)
        except Exception:          # noqa: BLE001 - Numba's own path decides
            return super().load_overload(sig, target_context)


def quick_loading(dispatcher):
    """``dispatcher`` (returned), its disk cache loading through :class:`QuickLoadCache`
    when it is Numba's plain function cache."""
    cache = getattr(dispatcher, "_cache", None)
    if type(cache) is caching.FunctionCache:
        cache.__class__ = QuickLoadCache
    return dispatcher
