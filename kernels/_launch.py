"""Python side of a kernel launch: storage formats, block tables, thread policy.

A *format* is a zero-length array whose dtype tells a kernel how to read and write one
column of the address table (see ``_common``); kernels specialise on it at compile time.
"""
import inspect
import os
import re

import numpy as np

from . import _background

#: elements per block: large enough to amortise the per-block setup, small enough that
#: one big tensor spreads over every thread.
BLOCK = 1 << 15

#: below this many elements a launch runs on one thread: waking the pool costs more than
#: the work, and on a loaded machine a busy-waiting barrier can stall for milliseconds.
SERIAL_BELOW = 1 << 16

_FORMATS = {}


def _storage_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype == np.float32 or dtype == np.float64:
        return dtype
    if dtype == np.float16:
        return np.dtype(np.uint16)
    if dtype.name == "bfloat16":
        return np.dtype(np.int16)
    return None


def supported(dtype):
    return _storage_dtype(dtype) is not None


def storage_format(dtype):
    """The format array a kernel receives for tensors of ``dtype``."""
    dtype = np.dtype(dtype)
    fmt = _FORMATS.get(dtype)
    if fmt is None:
        storage = _storage_dtype(dtype)
        if storage is None:
            raise TypeError("unsupported dtype %s: expected float16, bfloat16, float32 or float64" % dtype)
        fmt = np.zeros(0, storage)
        _FORMATS[dtype] = fmt
    return fmt


def compute_dtype(dtype):
    """float64 tensors are computed in float64, every other dtype in float32."""
    return np.float64 if np.dtype(dtype) == np.float64 else np.float32


def address(array):
    return array.__array_interface__["data"][0]


def block_table(sizes, block=BLOCK):
    """``(tensor, start, length)`` rows covering every element of every tensor once."""
    sizes = np.asarray(sizes, dtype=np.int64)
    per_tensor = (sizes + (block - 1)) // block
    total = int(per_tensor.sum())
    tensor = np.repeat(np.arange(sizes.size, dtype=np.int64), per_tensor)
    first = np.cumsum(per_tensor) - per_tensor
    start = (np.arange(total, dtype=np.int64) - np.repeat(first, per_tensor)) * block
    length = np.minimum(block, sizes[tensor] - start)
    return np.ascontiguousarray(np.stack([tensor, start, length], axis=1))


_forked_child = False


def _after_fork_in_child():
    # GNU OpenMP (Numba's default threading layer here) aborts a forked child that enters
    # a parallel region its parent had started; the child runs single-threaded twins.
    global _forked_child
    _forked_child = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


_pool_started = False


def _before_first_parallel_launch():
    """Let the OpenMP pool sleep between launches unless the user chose otherwise.

    GNU OpenMP's default is to spin after a parallel region; in a training loop the
    spinning threads take the cores from NumPy's BLAS threads between optimizer steps (and
    the BLAS threads' spinning takes them from the kernels), which made CPU loops several
    times slower than with either pool limited.  The policy is read once, when Numba
    starts its OpenMP runtime at the first parallel launch, which is why it is set here
    and only when neither the user nor an earlier launch has started the runtime.
    """
    global _pool_started
    _pool_started = True
    if "OMP_WAIT_POLICY" in os.environ:
        return
    try:
        from numba.np.ufunc import parallel
    except ImportError:       # pragma: no cover - numba without its parallel backend
        return
    if not getattr(parallel, "_is_initialized", False):
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def run(kernel, n_elements, *args):
    """Call ``kernel(*args)``; small launches (and forked children) use its
    single-threaded twin, and so do large ones while the parallel kernel compiles in a
    helper process (``_background``: same bits, no compile pause in the first steps)."""
    if n_elements < SERIAL_BELOW or _forked_child:
        return kernel.serial(*args)
    if not _pool_started:
        _before_first_parallel_launch()     # before any parallel compile loads the runtime
    if _background.ready(kernel, args):
        return kernel(*args)
    result = kernel.serial(*args)
    _background.flush()
    return result


_COLUMNS = {}
_VIEW_COLUMN = re.compile(r"\bview\(\s*ptrs\s*,\s*\w+\s*,\s*(\d+)\s*,")


def columns_read(kernel):
    """Columns of the address table ``kernel`` reads (at least 3: weight, gradient, master),
    from the ``view(ptrs, t, column, ...)`` calls in its source.  A launch over a table
    with fewer columns would read addresses that are not there, so the launch layer
    refuses it whatever the rule's own checks say."""
    func = getattr(kernel, "py_func", kernel)
    n = _COLUMNS.get(func)
    if n is None:
        try:
            source = inspect.getsource(func)
        except (OSError, TypeError):
            source = ""
        n = max([3] + [int(c) + 1 for c in _VIEW_COLUMN.findall(source)])
        _COLUMNS[func] = n
    return n
