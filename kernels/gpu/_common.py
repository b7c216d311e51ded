"""Shared pieces of the CUDA twins: kernel decorators, device addressing, reductions.

Addressing.  A GPU twin takes exactly the arguments of its CPU kernel (``blocks``, the
int64 table of data addresses ``ptrs``, ``lrs``, ``wds``, ``coefs``, the storage formats,
the rule's scalars), with the tables as device arrays and the addresses those of device
memory.  ``view(ptrs, t, column, start, length, fmt)`` turns one cell into something a
kernel indexes with ``load``/``store``:

* on a GPU, a typed pointer (``inttoptr`` of the address, the ``_address_as_pointer``
  intrinsic of ``kernels/_common.py``), so one launch reaches any number of separately
  allocated tensors; ``load``, ``store`` and ``store_weight`` are the very overloads the
  CPU kernels use (float16 through the hardware half conversions, bfloat16 through the
  integer bit functions), ``master_view`` a twin of the CPU one returning pointers;
* under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), where device arrays are host
  NumPy arrays and kernels run as Python, a NumPy view of the same memory; ``load`` and
  ``store`` then call the integer conversion functions of ``kernels/_common.py``.

Loops.  CUDA block ``blockIdx.x`` takes the table blocks ``blockIdx.x, blockIdx.x +
gridDim.x, ...`` (grid-stride over blocks); its threads stride over the elements of a
block (``threadIdx.x, threadIdx.x + blockDim.x, ...``), so neighbouring threads touch
neighbouring elements.  Any grid covers any table.

Simulated scalars.  Under the simulator a kernel is plain Python and the scalar rules it
calls are Numba CPU functions, which box float32 results as Python floats; the simulated
kernel gets wrappers that turn every result back into the compiled type, so float32 math
stays float32 and simulated twins match the CPU kernels bit for bit.

Hardware numerics.  NVVM contracts multiply-adds into FMAs, so on a GPU the twins agree
with the CPU kernels to a few ulps rather than bit for bit.

Nothing compiles at import: kernels compile for their argument types on first launch.
"""
import ctypes
import types as types_module

import numpy as np
from numba import cuda, float64, njit, typeof
from numba.core import types
from numba.core.registry import CPUDispatcher
from numba.extending import overload
from numba.np import numpy_support

from .._common import (_address_as_pointer, bf16_bits_stochastic, bf16bits_to_f32, f16_bits_stochastic,
                       f16bits_to_f32_soft, f32_to_bf16bits, f32_to_f16bits_soft, is_compensation_format,
                       is_rounding_table)

#: kernels run as Python on host memory (``NUMBA_ENABLE_CUDASIM=1``)
SIMULATOR = "simulator" in getattr(cuda.jit, "__module__", "")

#: the largest thread block a reduction kernel accepts (its shared scratch is this long)
MAX_THREADS = 1024


# --------------------------------------------------------------------------- decorators

class _SimRule:
    """A Numba CPU function called from simulated kernel code, returning NumPy scalars of
    its compiled return type (Numba boxes float32 as a Python float, which the next call
    would type as float64)."""

    def __init__(self, dispatcher):
        self.dispatcher = dispatcher
        self.converters = {}

    def __call__(self, *args):
        result = self.dispatcher(*args)
        key = tuple(map(type, args))
        convert = self.converters.get(key)
        if convert is None:
            signature = tuple(typeof(a) for a in args)
            compiled = self.dispatcher.overloads.get(signature)
            if compiled is None:
                raise TypeError("%s was not compiled for %s" % (self.dispatcher.py_func.__name__, signature))
            convert = _converter(compiled.signature.return_type)
            self.converters[key] = convert
        return convert(result)


def _converter(ty):
    if isinstance(ty, types.BaseTuple):
        parts = [_converter(t) for t in ty.types]
        return lambda values: tuple(c(v) for c, v in zip(parts, values))
    if isinstance(ty, (types.Float, types.Integer, types.Boolean)):
        return numpy_support.as_dtype(ty).type
    return lambda value: value


class _SimDevice:
    """A device function under the simulator: kernels call it as plain Python inside their
    own namespace (see ``_simulated``)."""

    def __init__(self, func):
        self.func = func

    def __call__(self, *args):
        raise RuntimeError("%s is a device function: call it from a GPU kernel" % self.func.__name__)


def _simulated(func):
    """``func`` for the simulator: one namespace for the kernel and the device functions it
    calls, where every Numba CPU function is wrapped by ``_SimRule``.

    The simulator swaps ``cuda`` for its per-launch fake module in the kernel's globals
    once per launch; device functions sharing that namespace see the same fake module
    without swapping it again per call (per-call swaps race between simulated threads in
    Numba's built-in simulator).
    """
    namespace = {}
    for value in func.__globals__.values():
        if isinstance(value, _SimDevice):
            namespace.update(value.func.__globals__)
    namespace.update(func.__globals__)
    for name, value in list(namespace.items()):
        if isinstance(value, CPUDispatcher):
            namespace[name] = _SimRule(value)
        elif isinstance(value, _SimDevice):
            namespace[name] = types_module.FunctionType(value.func.__code__, namespace, value.func.__name__,
                                                        value.func.__defaults__, value.func.__closure__)
    twin = types_module.FunctionType(func.__code__, namespace, func.__name__, func.__defaults__,
                                     func.__closure__)
    twin.__qualname__ = func.__qualname__
    twin.__module__ = func.__module__
    return twin


def gpu_device(func):
    """Decorator of device functions called by the twins (``cuda.jit(device=True)`` on a
    GPU; under the simulator, code run inside the calling kernel's namespace)."""
    return _SimDevice(func) if SIMULATOR else cuda.jit(device=True)(func)


class _NoneArguments:
    """Launch extension: a ``None`` argument (``master_fmt`` without multi-precision)
    travels as a null pointer.  Numba types it ``none``, which a compiled kernel receives
    as one opaque pointer, but the CUDA launcher has no case for it and would refuse."""

    def prepare_args(self, ty, val, stream=0, retr=None):
        if val is None and ty is not None and type(ty).__name__ == "NoneType":
            return types.uintp, 0      # pointer-sized zero (the launchers pack integers)
        return ty, val


_NONE_ARGUMENTS = _NoneArguments()


class GPUKernel:
    """A CUDA kernel built on first use: ``kernel[grid, threads](*args)``.

    ``py_func`` is the Python source; ``dispatcher`` the ``cuda.jit`` object once built
    (its ``signatures`` list what it compiled for).
    """

    def __init__(self, func):
        self.py_func = func
        self.__name__ = func.__name__
        self.__qualname__ = func.__qualname__
        self.__module__ = func.__module__
        self.__doc__ = func.__doc__
        self._dispatcher = None

    @property
    def dispatcher(self):
        if self._dispatcher is None:
            if SIMULATOR:
                self._dispatcher = cuda.jit(_simulated(self.py_func))
            else:
                self._dispatcher = cuda.jit(self.py_func, extensions=[_NONE_ARGUMENTS])
        return self._dispatcher

    def __getitem__(self, config):
        return self.dispatcher[config]

    def __repr__(self):
        return "<GPU kernel %s.%s>" % (self.__module__, self.__name__)


def gpu_kernel(func):
    """Decorator of every CUDA twin (lazy ``cuda.jit``; see ``GPUKernel``)."""
    return GPUKernel(func)


class GPUReduction:
    """A per-tensor reduction twin: ``partials`` writes one row per table block (the sums
    of that block), ``tensor_sums_gpu`` adds each tensor's rows in block order.

    ``run(grid, threads, args)`` launches both on the common kernel arguments ``args`` and
    returns the float64 device array ``sums[tensor, k]``, like the CPU reduction kernels
    return theirs.  ``partials`` takes the common arguments plus a last ``out`` array.
    """

    def __init__(self, partials, width=2):
        self.partials = partials
        self.width = width
        self.__name__ = partials.__name__
        self.__module__ = partials.__module__
        self.__doc__ = partials.__doc__

    def run(self, grid, threads, args, partials=None, sums=None, stream=0):
        blocks, ptrs = args[0], args[1]
        n_blocks, n_tensors = blocks.shape[0], ptrs.shape[0]
        if threads > MAX_THREADS:
            raise ValueError("a reduction runs at most %d threads per block, got %d" % (MAX_THREADS, threads))
        if partials is None:
            partials = cuda.device_array((max(n_blocks, 1), self.width), dtype=np.float64, stream=stream)
        if sums is None:
            sums = cuda.device_array((n_tensors, self.width), dtype=np.float64, stream=stream)
        if n_tensors == 0:
            return sums
        if n_blocks:
            self.partials[grid, threads, stream](*args, partials)
        tensor_sums_gpu[min(grid, n_tensors), threads, stream](blocks, partials, sums)
        return sums

    def __repr__(self):
        return "<GPU reduction %s.%s>" % (self.__module__, self.__name__)


def gpu_reduction(func):
    """Decorator of a reduction twin's per-block kernel (see ``GPUReduction``)."""
    return GPUReduction(GPUKernel(func))


# --------------------------------------------------------------------------- addressing

if SIMULATOR:
    def view(ptrs, tensor, column, start, length, proto):
        """NumPy view of ``length`` elements at ``ptrs[tensor, column]`` + ``start``."""
        dtype = proto.dtype
        n = int(length)
        if n <= 0:
            return np.empty(0, dtype)
        address = int(ptrs[tensor, column]) + int(start) * dtype.itemsize
        return np.frombuffer((ctypes.c_char * (n * dtype.itemsize)).from_address(address), dtype=dtype)

    def load(arr, i):
        """Element ``i`` in the compute type (float16/bfloat16 bits -> float32); a weight
        read through ``master_view`` may be a tuple (see ``kernels/_common.py``)."""
        if isinstance(arr, tuple):
            if len(arr) == 2:
                return np.float32(load(arr[0], i) + load(arr[1], i))
            return load(arr[0], i)
        dtype = arr.dtype
        if dtype == np.uint16:
            return np.float32(f16bits_to_f32_soft(arr[i]))
        if dtype == np.int16:
            return np.float32(bf16bits_to_f32(arr[i]))
        return arr[i]

    def store(arr, i, value):
        """Write ``value`` to element ``i``, rounded to nearest even in the storage format."""
        dtype = arr.dtype
        if dtype == np.uint16:
            arr[i] = f32_to_f16bits_soft(np.float32(value))
        elif dtype == np.int16:
            arr[i] = f32_to_bf16bits(np.float32(value))
        elif dtype == np.float32:
            arr[i] = np.float32(value)
        else:
            arr[i] = np.float64(value)

    def master_view(ptrs, tensor, start, length, w_fmt, master_fmt):
        """The weight as the rule reads it (see ``kernels/_common.py``): the weight, the
        float32 master copy, (weight, compensation) or (weight, rounding key)."""
        if master_fmt is None:
            return view(ptrs, tensor, 0, start, length, w_fmt)
        if master_fmt.dtype in (np.uint16, np.int16):
            return view(ptrs, tensor, 0, start, length, w_fmt), view(ptrs, tensor, 2, start, length, master_fmt)
        if master_fmt.dtype == np.uint32:
            return ((view(ptrs, tensor, 0, start, length, w_fmt), np.uint64(start) + np.uint64(master_fmt[tensor, 4]))
                    + tuple(np.uint64(x) for x in master_fmt[tensor, :4]))
        return view(ptrs, tensor, 2, start, length, master_fmt)

    def store_weight(w, w32, i, value, master_fmt):
        """A new weight, as the CPU overload of ``kernels/_common.py`` writes it."""
        if master_fmt is None:
            store(w, i, value)
        elif master_fmt.dtype in (np.uint16, np.int16):
            v = np.float32(value)
            store(w, i, v)
            hi = load(w, i)
            store(w32[1], i, np.float32(v - hi) if abs(hi) < np.inf else np.float32(0.0))
        elif master_fmt.dtype == np.uint32:
            from ..counter_rng import rounding_bits
            rnd = rounding_bits(w32[1] + np.uint64(i), w32[2], w32[3], w32[4], w32[5])
            if w.dtype == np.int16:
                w[i] = bf16_bits_stochastic(np.float32(value), rnd)
            elif w.dtype == np.uint16:
                w[i] = f16_bits_stochastic(np.float32(value), rnd)
            else:
                store(w, i, value)
        else:
            w32[i] = value
            store(w, i, value)
else:
    # the CPU overloads (resolved when a kernel compiles) serve the CUDA target as well
    from .._common import load, store, store_weight  # noqa: F401

    @njit(inline="always")
    def view(ptrs, tensor, column, start, length, proto):
        """Typed pointer to element ``start`` of the array at ``ptrs[tensor, column]``."""
        return _address_as_pointer(ptrs[tensor, column] + start * proto.itemsize, proto)

    def master_view(ptrs, tensor, start, length, w_fmt, master_fmt):
        """The float32 master copy (column 2) under multi-precision, else the weight, as a
        typed pointer (the CPU ``master_view`` builds arrays, which CUDA cannot)."""
        raise NotImplementedError("only callable from GPU kernels")

    @overload(master_view)
    def _master_view_impl(ptrs, tensor, start, length, w_fmt, master_fmt):
        if isinstance(master_fmt, types.NoneType):
            def impl(ptrs, tensor, start, length, w_fmt, master_fmt):
                return view(ptrs, tensor, 0, start, length, w_fmt)
        elif is_compensation_format(master_fmt):
            def impl(ptrs, tensor, start, length, w_fmt, master_fmt):
                return view(ptrs, tensor, 0, start, length, w_fmt), view(ptrs, tensor, 2, start, length, master_fmt)
        elif is_rounding_table(master_fmt):
            def impl(ptrs, tensor, start, length, w_fmt, master_fmt):
                return (view(ptrs, tensor, 0, start, length, w_fmt), np.uint64(start) + np.uint64(master_fmt[tensor, 4]),
                        np.uint64(master_fmt[tensor, 0]), np.uint64(master_fmt[tensor, 1]),
                        np.uint64(master_fmt[tensor, 2]), np.uint64(master_fmt[tensor, 3]))
        else:
            def impl(ptrs, tensor, start, length, w_fmt, master_fmt):
                return view(ptrs, tensor, 2, start, length, master_fmt)
        return impl


# --------------------------------------------------------------------------- reductions

@gpu_device
def block_sum_pair(scratch, a, b, out, row):
    """Add ``a`` and ``b`` over the threads of the block, in a fixed pairwise order;
    thread 0 writes the totals to ``out[row, 0]`` and ``out[row, 1]``."""
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    scratch[0, tid] = a
    scratch[1, tid] = b
    cuda.syncthreads()
    step = 1
    while step < nt:
        if tid % (2 * step) == 0 and tid + step < nt:
            scratch[0, tid] += scratch[0, tid + step]
            scratch[1, tid] += scratch[1, tid + step]
        cuda.syncthreads()
        step *= 2
    if tid == 0:
        out[row, 0] = scratch[0, 0]
        out[row, 1] = scratch[1, 0]
    cuda.syncthreads()     # the scratch is reused by the block's next table block


@gpu_kernel
def tensor_sums_gpu(blocks, partials, sums):
    """``sums[t, k]`` = sum of ``partials[b, k]`` over the table blocks of tensor ``t``, in
    block order (the table lists each tensor's blocks together, tensors in order)."""
    n_blocks = blocks.shape[0]
    width = sums.shape[1]
    for t in range(cuda.grid(1), sums.shape[0], cuda.gridsize(1)):
        lo = 0
        hi = n_blocks
        while lo < hi:
            mid = (lo + hi) // 2
            if blocks[mid, 0] < t:
                lo = mid + 1
            else:
                hi = mid
        for k in range(width):
            total = 0.0
            b = lo
            while b < n_blocks and blocks[b, 0] == t:
                total += partials[b, k]
                b += 1
            sums[t, k] = total


# --------------------------------------------------------------------------- row-sparse gradients

@gpu_kernel
def densify_rows_gpu(rows, data, out, row_len):
    """``out`` (flat, the dense gradient) gets the listed rows from ``data`` (flat, one
    row per entry of the sorted ``rows``) and zeros elsewhere; raw bits are copied, so any
    float format works through a same-width integer view."""
    n_rows = rows.shape[0]
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        r = i // row_len
        lo = 0
        hi = n_rows
        while lo < hi:
            mid = (lo + hi) // 2
            if rows[mid] < r:
                lo = mid + 1
            else:
                hi = mid
        if lo < n_rows and rows[lo] == r:
            out[i] = data[lo * row_len + i - r * row_len]
        else:
            out[i] = 0


__all__ = ["SIMULATOR", "MAX_THREADS", "GPUKernel", "GPUReduction", "gpu_kernel", "gpu_reduction", "gpu_device",
           "view", "master_view", "store_weight", "load", "store", "block_sum_pair", "tensor_sums_gpu",
           "densify_rows_gpu", "float64"]
