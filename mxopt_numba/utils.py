"""Utilities around training steps.

``clip_global_norm(arrays, max_norm)`` rescales a set of arrays (usually the gradients of
a whole model) so that their joint L2 norm is at most ``max_norm``, as gluon's
``gluon.utils.clip_global_norm`` does, with two launches over all arrays at once: one
reduction (per-array sums of squares in float64) and, when needed, one scaling pass.
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np

from . import _namespace
from .kernels import _background
from .kernels import _launch as launch
from .kernels import norms as _norm_kernels
from .optimizer import _plan

__all__ = ["clip_global_norm", "wait_for_compilation"]

#: added to the norm before dividing (gluon's guard against a zero norm)
_EPS = 1e-8


def clip_global_norm(arrays: Sequence[np.ndarray], max_norm: float, check_isfinite: bool = True) -> float:
    """Scale ``arrays`` in place so that their global L2 norm is at most ``max_norm``.

    Parameters
    ----------
    arrays : sequence of numpy.ndarray
        C-contiguous float16, bfloat16, float32 or float64 arrays (mixed dtypes are fine;
        0-size arrays add nothing).
    max_norm : float
        The largest global norm allowed; a positive finite number.
    check_isfinite : bool
        Warn (``UserWarning``) when the global norm is NaN or infinite.

    Returns
    -------
    float
        The global norm before clipping: ``sqrt(sum over arrays of sum(x**2))``, with the
        squares added in float64.

    Notes
    -----
    With ``norm > max_norm`` every element is multiplied by
    ``scale = max_norm / (norm + 1e-8)``; the product is taken in float64 for float64
    arrays and in float32 for the others, then rounded once to the array's dtype.
    Otherwise the arrays are left untouched.  A NaN or infinite norm leaves them
    untouched too (there is no meaningful scale).
    """
    if isinstance(arrays, np.ndarray) or not isinstance(arrays, (list, tuple)):
        raise TypeError("arrays must be a list or tuple of numpy arrays, got %s" % type(arrays).__name__)
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float, np.integer, np.floating)) \
            or not math.isfinite(max_norm) or max_norm <= 0:
        raise ValueError("max_norm must be a positive finite number, got %r" % (max_norm,))
    groups = _groups(arrays)
    total = 0.0
    for dtype, members in groups:
        blocks, ptrs, n_elements, fmt, ct, n = _table(members, dtype)
        # each array is the 'weight' and the 'gradient' of the table (grad_scale 1)
        sums = launch.run(_norm_kernels.multi_sum_sq_cpu, n_elements, blocks, ptrs, np.zeros(n, ct),
                          np.zeros(n, ct), np.zeros((n, 1), ct), fmt, fmt, None, fmt, ct(1.0))
        total += float(np.sum(sums[:, 1]))
    norm = math.sqrt(total)
    if not math.isfinite(norm):
        if check_isfinite:
            warnings.warn("the global norm of the arrays is %r: clip_global_norm left them unchanged" % norm,
                          UserWarning, stacklevel=2)
        return norm
    if norm > max_norm:
        scale = float(max_norm) / (norm + _EPS)
        for dtype, members in groups:
            blocks, ptrs, n_elements, fmt, ct, n = _table(members, dtype)
            launch.run(_norm_kernels.multi_scale_cpu, n_elements, blocks, ptrs, np.full(n, scale, ct),
                       np.zeros(n, ct), np.zeros((n, 1), ct), fmt, fmt, None, fmt)
    return norm


def wait_for_compilation(timeout: float | None = None) -> bool:
    """Block until the kernels being compiled in the background are ready.

    With an empty kernel cache, a launch does not wait for its multi-threaded kernel to
    compile: it runs the single-threaded twin (identical results) while a helper
    process compiles it into the disk cache, and later launches load it and switch.  Call this before timing steps, or to
    have every compile finished at a known point.  Returns False if ``timeout`` seconds
    passed first.  (``MXOPT_NUMBA_BACKGROUND_COMPILE=0`` compiles on the calling thread
    instead.)
    """
    return _background.wait(timeout)


def _groups(arrays):
    """``[(dtype, [arrays of that dtype])]`` in order of first appearance; non-empty arrays only."""
    by_dtype = {}
    for k, a in enumerate(arrays):
        if not isinstance(a, np.ndarray):
            raise TypeError("arrays[%d] must be a numpy array, got %s" % (k, type(a).__name__))
        if not launch.supported(a.dtype):
            raise TypeError("arrays[%d] has dtype %s; expected float16, bfloat16, float32 or float64"
                            % (k, a.dtype))
        if not a.flags.c_contiguous:
            raise ValueError("arrays[%d] must be C-contiguous (got strides %s)" % (k, a.strides))
        if not a.flags.writeable:
            raise ValueError("arrays[%d] is read-only; clip_global_norm scales in place" % k)
        if a.size:
            by_dtype.setdefault(a.dtype, []).append(a)
    # scaled in place and in parallel: an array listed twice (or two views of one buffer)
    # would be scaled twice, racing with itself
    _plan.check_disjoint(_plan.HOST, list(arrays), ["arrays[%d]" % k for k in range(len(arrays))],
                         "each array is scaled once, in parallel with the others; pass every "
                         "buffer once")
    return list(by_dtype.items())


def _table(members, dtype):
    """The kernels' address table: columns weight, gradient, master, all the array itself."""
    ptrs = np.array([[launch.address(a)] * 3 for a in members], dtype=np.int64).reshape(len(members), 3)
    sizes = [a.size for a in members]
    return (launch.block_table(sizes), ptrs, int(sum(sizes)), launch.storage_format(dtype),
            launch.compute_dtype(dtype), len(members))


__dir__ = _namespace.public_dir(__name__)
