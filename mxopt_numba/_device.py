"""Host or CUDA device: the one place that tells the two kinds of arrays apart.

A *device array* is anything exposing ``__cuda_array_interface__`` (Numba device arrays,
CuPy arrays, PyTorch CUDA tensors) or, under ``NUMBA_ENABLE_CUDASIM=1``, the simulator's
device arrays.  An update call takes host arrays only (the NumPy kernels) or device
arrays only (the CUDA twins); mixing them is an error, never a silent copy.

Everything CUDA is imported lazily: a host-only user never imports ``numba.cuda``, and a
machine without CUDA raises :class:`GPUUnavailableError` only when device arrays show up.
"""
import numpy as np

from ._state_tree import map_state, state_leaves

__all__ = ["GPUUnavailableError", "GPU_UNAVAILABLE", "cuda_module", "simulator", "is_device_array",
           "on_device", "mixed_error", "dtype_of", "address", "as_device_array",
           "create_state", "to_host"]

GPU_UNAVAILABLE = ("GPU support needs numba-cuda and a CUDA device: install the 'gpu' extra "
                   "(pip install 'mxopt-numba[gpu]', plus the CUDA toolkit wheels matching your "
                   "driver, e.g. 'numba-cuda[cu12]'), or set NUMBA_ENABLE_CUDASIM=1 for the simulator")


class GPUUnavailableError(RuntimeError):
    """Device arrays were passed but no usable CUDA target (or simulator) is present."""


_cuda = None


def cuda_module():
    """``numba.cuda`` when a device (or the simulator) is usable, else raise
    :class:`GPUUnavailableError`."""
    global _cuda
    if _cuda is not None:
        return _cuda
    try:
        from numba import cuda
    except ImportError as exc:     # pragma: no cover - numba without its CUDA target
        raise GPUUnavailableError("%s (importing numba.cuda failed: %s)" % (GPU_UNAVAILABLE, exc)) from None
    try:
        available = cuda.is_available()
    except Exception as exc:       # pragma: no cover - broken driver installs
        raise GPUUnavailableError("%s (%s)" % (GPU_UNAVAILABLE, exc)) from None
    if not available:
        raise GPUUnavailableError(GPU_UNAVAILABLE + " (numba.cuda found no CUDA driver or device)")
    _cuda = cuda
    return cuda


def simulator():
    """True when ``numba.cuda`` is the simulator (``NUMBA_ENABLE_CUDASIM=1``)."""
    return "simulator" in getattr(cuda_module().jit, "__module__", "")


# --------------------------------------------------------------------------- telling arrays apart

def is_device_array(x):
    """True for CUDA device arrays (and the simulator's), False for everything else."""
    if x is None or isinstance(x, (np.ndarray, np.generic, int, float)):
        return False
    if getattr(type(x), "__cuda_ndarray__", False) is True:
        return True                # Numba's device arrays and the simulator's: no dict built
    try:
        x.__cuda_array_interface__
        return True
    except (AttributeError, TypeError):
        return False               # e.g. CPU torch tensors, whose property raises


def _grad_data(grad):
    return grad.data if getattr(grad, "stype", None) == "row_sparse" else grad


def on_device(weights, grads, states):
    """True when the call's arrays are device arrays, False when they are host arrays.

    Raises TypeError when one call mixes the two, and :class:`GPUUnavailableError` for
    device arrays without a CUDA target.
    """
    first = None
    for kind, arrays in (("weights", weights), ("grads", [_grad_data(g) for g in grads]),
                         ("states", states)):
        for k, item in enumerate(arrays):
            parts = (enumerate(state_leaves(item)) if kind == "states" else ((None, item),))
            for p, a in parts:
                where = is_device_array(a)
                name = "%s[%d]" % (kind, k) if p is None else "%s[%d] leaf %d" % (kind, k, p)
                if first is None:
                    first = (where, name)
                elif where != first[0]:
                    raise mixed_error(name, a, first[1])
    if first is not None and first[0]:
        cuda_module()
        return True
    return False


def mixed_error(name, x, other="another array of the call"):
    """TypeError for an update call holding both host and device arrays."""
    if is_device_array(x):
        what = "%s is a CUDA device array, %s a host array" % (name, other)
    else:
        what = "%s is a host array (%s), %s a CUDA device array" % (name, type(x).__name__, other)
    return TypeError("%s: one update call takes host (NumPy) arrays only or CUDA device arrays "
                     "only (weights, gradients and states alike); move them to one side first" % what)


# --------------------------------------------------------------------------- device array facts

def _interface(x):
    try:
        return x.__cuda_array_interface__
    except (AttributeError, TypeError):
        return None


def dtype_of(x):
    """NumPy dtype of a host or device array (bfloat16 included)."""
    dtype = getattr(x, "dtype", None)
    if isinstance(dtype, np.dtype):
        return dtype
    if str(dtype) == "torch.bfloat16":
        import ml_dtypes
        return np.dtype(ml_dtypes.bfloat16)
    desc = _interface(x)
    if desc is not None:
        return np.dtype(desc["typestr"])
    return np.dtype(dtype)


def address(x):
    """Data address of a device array (simulator: of the host memory standing in for it)."""
    desc = _interface(x)
    if desc is not None:
        return int(desc["data"][0] or 0)
    return int(x.__array_interface__["data"][0])    # simulator arrays wrap a NumPy array


def is_c_contiguous(x):
    desc = _interface(x)
    if desc is None:
        return bool(x.is_c_contiguous())
    strides = desc.get("strides")
    if strides is None:
        return True
    expected = np.dtype(desc["typestr"]).itemsize
    for n, s in zip(reversed(desc["shape"]), reversed(strides)):
        if n > 1 and s != expected:
            return False
        expected *= n
    return True


def is_read_only(x):
    desc = _interface(x)
    if desc is None:
        return not x.flags.writeable
    return bool(desc["data"][1])


def as_device_array(x):
    """A Numba device array over the same memory (no copy): the common view every kernel
    launch and optimizer helper uses (``shape``, ``size``, ``ndim``, NumPy ``dtype``)."""
    cuda = cuda_module()
    if getattr(type(x), "__cuda_ndarray__", False) is True and isinstance(getattr(x, "dtype", None), np.dtype):
        return x
    view = cuda.as_cuda_array(x)
    dtype = dtype_of(x)
    if view.dtype != dtype:
        view = view.view(dtype)
    return view


def to_host(x):
    """A NumPy copy of a device array (for tests and state creation)."""
    return as_device_array(x).copy_to_host()


def create_state(optimizer, index, weight):
    """The optimizer state of a device weight, on the same device.

    The state is made by the optimizer's own ``create_state_multi_precision`` on a host
    copy of the weight (states such as DCASGD's previous weight start from its values),
    then each array is copied to the device once; nothing of it stays on the host.
    The arrays land on the current CUDA device (Numba's current context), which must be
    the weight's.
    """
    cuda = cuda_module()
    state = optimizer.create_state_multi_precision(index, to_host(weight))
    return map_state(state, lambda a: cuda.to_device(np.ascontiguousarray(a)))
