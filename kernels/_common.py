"""Shared pieces of every kernel: decorators, storage formats, gradient preprocessing.

Storage formats.  Numba's CPU target cannot touch float16 (or bfloat16) arrays, so
16-bit tensors reach kernels as integer views: float16 as ``uint16`` and bfloat16 as
``int16`` (the integer type only tells the two bit layouts apart).  ``load`` and
``store`` convert between a storage element and the compute type (float32, or float64
for float64 tensors) with round-to-nearest-even, bit-identical to NumPy/ml_dtypes for
every non-NaN value.

Aggregated launches.  A chunk of tensors is described by an int64 table of data
addresses (one row per tensor, one column per array: weight, gradient, master, states)
and a table of blocks ``(tensor, start, length)``; ``view`` turns one cell of the table
into a 1-D array over one block, so one kernel call updates any number of tensors of
any sizes.
"""
import os
import types as types_module

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload
import numba

from ._cache import quick_loading
from ._launch import BLOCK
from ._scalar import f32_from_bits, f32_to_bits, scalar_rule  # noqa: F401  (shared names)
from .counter_rng import rounding_bits, rounding_octet

# --------------------------------------------------------------------------- decorators

def _cache_enabled():
    return os.environ.get("MXOPT_NUMBA_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")


def cached_jit(func, **options):
    """``njit`` with the disk cache (loaded quickly: ``_cache``) unless turned off or impossible."""
    options.setdefault("error_model", "numpy")   # IEEE inf/nan, and no ZeroDivisionError branch that blocks SIMD
    if _cache_enabled():
        try:
            return quick_loading(njit(cache=True, **options)(func))
        except RuntimeError:
            # no writable cache location at all (read-only package and home): compile per process
            _warn_no_cache()
    return njit(**options)(func)


_warned_no_cache = False


def _warn_no_cache():
    global _warned_no_cache
    if not _warned_no_cache:
        _warned_no_cache = True
        import warnings
        warnings.warn("mxopt_numba cannot cache its compiled kernels: neither the package folder nor "
                      "a user cache folder is writable, so every process compiles them again (seconds "
                      "per kernel). Set NUMBA_CACHE_DIR to a writable folder to keep them.",
                      RuntimeWarning, stacklevel=3)


def cpu_kernel(func):
    """Decorator of every CPU kernel: parallel, numpy error model, cached when possible.

    The result also carries ``.serial``, the same loop compiled without threads, for
    launches too small to be worth waking the thread pool.
    """
    kernel = cached_jit(func, parallel=True)
    twin = types_module.FunctionType(func.__code__, func.__globals__, func.__name__ + "_serial",
                                     func.__defaults__, func.__closure__)
    twin.__qualname__ = func.__qualname__ + "_serial"    # its own cache index file
    twin.__module__ = func.__module__
    kernel.serial = cached_jit(twin)
    return kernel


# --------------------------------------------------------------------------- raw addresses

@intrinsic
def _address_as_pointer(typingctx, address, proto):
    """Reinterpret an int64 address as a pointer to ``proto``'s element type."""
    if not isinstance(address, types.Integer) or not isinstance(proto, types.Array):
        return None
    sig = types.CPointer(proto.dtype)(address, proto)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))
    return sig, codegen


@njit(inline="always")
def view(ptrs, tensor, column, start, length, proto):
    """Block ``[start, start + length)`` of the array whose address is ``ptrs[tensor, column]``."""
    itemsize = proto.itemsize
    return numba.carray(_address_as_pointer(ptrs[tensor, column] + start * itemsize, proto), (length,))


# --------------------------------------------------------------------------- float16, portable

@njit(inline="always")
def f16bits_to_f32_soft(h):
    """IEEE binary16 bits -> float32, exact for every input (NaN payload kept)."""
    h = np.uint32(h)
    sign = (h & np.uint32(0x8000)) << np.uint32(16)
    exp = (h >> np.uint32(10)) & np.uint32(0x1F)
    man = h & np.uint32(0x3FF)
    if exp == 0:
        if man == 0:
            return f32_from_bits(sign)
        # subnormal half: normalise the mantissa
        e = np.uint32(113)
        while (man & np.uint32(0x400)) == 0:
            man <<= np.uint32(1)
            e -= np.uint32(1)
        return f32_from_bits(sign | (e << np.uint32(23)) | ((man & np.uint32(0x3FF)) << np.uint32(13)))
    if exp == 31:
        return f32_from_bits(sign | np.uint32(0x7F800000) | (man << np.uint32(13)))
    return f32_from_bits(sign | ((exp + np.uint32(112)) << np.uint32(23)) | (man << np.uint32(13)))


@njit(inline="always")
def f32_to_f16bits_soft(value):
    """float32 -> IEEE binary16 bits, round to nearest even, as numpy's astype(float16)."""
    f = f32_to_bits(value)
    sign = np.uint16((f >> np.uint32(16)) & np.uint32(0x8000))
    a = f & np.uint32(0x7FFFFFFF)
    if a >= np.uint32(0x7F800000):
        if a == np.uint32(0x7F800000):
            return sign | np.uint16(0x7C00)
        payload = (a >> np.uint32(13)) & np.uint32(0x3FF)
        if payload == 0:
            payload = np.uint32(1)     # keep it a NaN
        return sign | np.uint16(np.uint32(0x7C00) | payload)
    if a >= np.uint32(0x477FF000):     # rounds to >= 65520: overflow
        return sign | np.uint16(0x7C00)
    if a < np.uint32(0x38800000):      # below the smallest normal half
        if a <= np.uint32(0x33000000):  # <= 2**-25 rounds (ties to even) to zero
            return sign
        e = a >> np.uint32(23)
        man = (a & np.uint32(0x7FFFFF)) | np.uint32(0x800000)
        shift = np.uint32(126) - e
        h = man >> shift
        rem = man & ((np.uint32(1) << shift) - np.uint32(1))
        half = np.uint32(1) << (shift - np.uint32(1))
        if rem > half or (rem == half and (h & np.uint32(1)) != 0):
            h += np.uint32(1)
        return sign | np.uint16(h)
    h = (a - np.uint32(0x38000000)) >> np.uint32(13)
    rem = a & np.uint32(0x1FFF)
    if rem > np.uint32(0x1000) or (rem == np.uint32(0x1000) and (h & np.uint32(1)) != 0):
        h += np.uint32(1)
    return sign | np.uint16(h)


# --------------------------------------------------------------------------- float16, F16C

@intrinsic
def f16bits_to_f32_hw(typingctx, bits):
    if bits != types.uint16:
        return None

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())
    return types.float32(bits), codegen


@intrinsic
def f32_to_f16bits_hw(typingctx, value):
    if value != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))
    return types.uint16(value), codegen


def use_hardware_f16():
    """True when the host has F16C (LLVM's half casts then become vcvtph2ps/vcvtps2ph).

    Without F16C LLVM would emit calls to conversion helpers that Numba's JIT cannot
    resolve, so the portable integer conversions are used there.  Set
    ``MXOPT_NUMBA_F16C=0`` to force the portable path.  Decided when a kernel compiles
    (cached kernels are keyed by the CPU's features, so a cache never crosses hosts).
    """
    if os.environ.get("MXOPT_NUMBA_F16C", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    from llvmlite import binding
    try:
        features = binding.get_host_cpu_features()
    except RuntimeError:
        return False
    return bool(features.get("f16c", False))


# --------------------------------------------------------------------------- bfloat16

@njit(inline="always")
def bf16bits_to_f32(bits):
    return f32_from_bits(np.uint32(np.uint16(bits)) << np.uint32(16))


@njit(inline="always")
def f32_to_bf16bits(value):
    """float32 -> bfloat16 bits, round to nearest even, NaN -> quiet NaN (as ml_dtypes)."""
    f = f32_to_bits(value)
    if (f & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000):
        return np.int16(np.uint16(((f >> np.uint32(16)) & np.uint32(0x8000)) | np.uint32(0x7FC0)))
    f = f + np.uint32(0x7FFF) + ((f >> np.uint32(16)) & np.uint32(1))
    return np.int16(np.uint16(f >> np.uint32(16)))


# --------------------------------------------------------------------------- load / store

def load(arr, i):
    """Element ``i`` of a storage array, in the compute type."""
    raise NotImplementedError("only callable from jitted code")


def store(arr, i, value):
    """Write ``value`` (compute type) to element ``i`` of a storage array."""
    raise NotImplementedError("only callable from jitted code")


@overload(load)
def _load_impl(arr, i):
    if isinstance(arr, types.BaseTuple):
        if len(arr) == 2:      # compensated weight: (16-bit weight, 16-bit compensation)
            return lambda arr, i: load(arr[0], i) + load(arr[1], i)
        return lambda arr, i: load(arr[0], i)      # (weight, rounding key...): the weight
    dtype = arr.dtype
    if dtype in (types.float32, types.float64):
        return lambda arr, i: arr[i]
    if dtype == types.uint16:
        if use_hardware_f16():
            return lambda arr, i: f16bits_to_f32_hw(arr[i])
        return lambda arr, i: f16bits_to_f32_soft(arr[i])
    if dtype == types.int16:
        return lambda arr, i: bf16bits_to_f32(arr[i])
    return None


@overload(store)
def _store_impl(arr, i, value):
    dtype = arr.dtype
    if dtype == types.float32:
        def impl(arr, i, value):
            arr[i] = np.float32(value)
        return impl
    if dtype == types.float64:
        def impl(arr, i, value):
            arr[i] = np.float64(value)
        return impl
    if dtype == types.uint16:
        if use_hardware_f16():
            def impl(arr, i, value):
                arr[i] = f32_to_f16bits_hw(np.float32(value))
            return impl

        def impl(arr, i, value):
            arr[i] = f32_to_f16bits_soft(np.float32(value))
        return impl
    if dtype == types.int16:
        def impl(arr, i, value):
            arr[i] = f32_to_bf16bits(np.float32(value))
        return impl
    return None


# --------------------------------------------------------------------------- weights and master copies
#
# ``master_fmt`` selects, at compile time, how a rule reads and writes its weight:
#
# * None: the weight itself, rounded to nearest when 16-bit (MXNet's multi_precision=False);
# * a float32 format: the float32 master copy in column 2, rounded into the weight
#   (multi_precision=True);
# * the 16-bit format of the weight (multi_precision="kahan"): column 2 holds a 16-bit
#   compensation ``c``; the rule reads ``w + c`` (exact in float32) and a new value ``v``
#   is stored as ``w = rn(v)``, ``c = rn(v - w)`` (``v - w`` is exact), so the pair keeps
#   about twice the weight's significand and small updates accumulate in ``c`` until
#   they move ``w``;
# * a uint32 table ``(tensors, 5)`` of (update count, parameter key, seed low word, seed
#   high word, position of the tensor's element 0 in its parameter: non-zero for the rows
#   of a row-sparse update) (multi_precision="stochastic"): the new weight is rounded stochastically
#   with 16 random bits from ``counter_rng.rounding_bits`` keyed by the seed, the
#   parameter, its update count and the element's position.  On the CPU, ``master_view``
#   fills a buffer on the stack with the bits of the whole block first (one generator
#   call per eight elements, ``counter_rng.rounding_octet``, in a loop that vectorises)
#   and ``store_weight`` reads them back; the CUDA twins compute each element's bits.

def master_view(ptrs, tensor, start, length, w_fmt, master_fmt):
    """What the rule reads its weight from (``load(view, i)``): see above."""
    raise NotImplementedError("only callable from jitted code")


def master_slice(w32, lo, hi):
    """Elements ``[lo, hi)`` of what ``master_view`` returned, of the same kind."""
    raise NotImplementedError("only callable from jitted code")


def store_weight(w, w32, i, value, master_fmt):
    """Write a new weight (see above for the four kinds of ``master_fmt``)."""
    raise NotImplementedError("only callable from jitted code")


def is_compensation_format(master_fmt):
    """Typing-time test: ``master_fmt`` selects Kahan-compensated 16-bit weights."""
    return isinstance(master_fmt, types.Array) and master_fmt.dtype in (types.uint16, types.int16)


def is_rounding_table(master_fmt):
    """Typing-time test: ``master_fmt`` selects stochastic rounding of 16-bit weights."""
    return isinstance(master_fmt, types.Array) and master_fmt.dtype == types.uint32


@intrinsic
def _advance(typingctx, ptr, n):
    """``ptr + n`` elements, for typed pointers."""
    if not isinstance(ptr, types.CPointer) or not isinstance(n, types.Integer):
        return None
    sig = ptr(ptr, n)

    def codegen(context, builder, signature, args):
        return builder.gep(args[0], [args[1]])
    return sig, codegen


@njit(inline="always")
def _pointer(ptrs, tensor, column, start, proto):
    return _address_as_pointer(ptrs[tensor, column] + start * proto.itemsize, proto)


# The compensated and stochastic views are tuples of typed pointers and integers, not of
# arrays: a tuple holding an array would be reference-counted at every element access
# inside the loops, which stops them from vectorising.
#
# The CPU stochastic view is (weight pointer, position of element 0, update count,
# parameter key, seed low word, seed high word, pointer to element 0's rounding bits);
# the CUDA one has no bits pointer (its ``store_weight`` computes the bits per element).

#: rounding bits a CPU block can hold: the launch layer's block length, plus the elements
#: of the partial octets at either end
ROUNDING_BUFFER = BLOCK + 16


@intrinsic
def stack_buffer(typingctx, size, dtype):
    """Pointer to ``size`` (a compile-time constant) values of ``dtype`` on the stack,
    allocated once in the entry block of the function being compiled (so once per thread
    of a parallel loop, never per iteration).  Only for code inlined into a kernel at the
    Numba IR level (``inline="always"``): the buffer lives as long as that function's
    frame."""
    if not isinstance(size, types.IntegerLiteral) or not isinstance(dtype, types.NumberClass):
        return None
    count = size.literal_value
    elem = dtype.instance_type
    sig = types.CPointer(elem)(size, dtype)

    def codegen(context, builder, signature, args):
        return cgutils.alloca_once(builder, context.get_value_type(elem), size=count)
    return sig, codegen


@njit(inline="always")
def _fill_rounding_bits(bits, first_octet, octets, step, key, k0, k1):
    """The rounding bits of ``octets`` octets from ``first_octet`` on, into ``bits[0 ..]``."""
    for j in range(octets):
        x0, x1, x2, x3 = rounding_octet(first_octet + np.uint64(j), step, key, k0, k1)
        bits[8 * j] = np.uint16(x0 & np.uint64(0xFFFF))
        bits[8 * j + 1] = np.uint16(x0 >> np.uint64(16))
        bits[8 * j + 2] = np.uint16(x1 & np.uint64(0xFFFF))
        bits[8 * j + 3] = np.uint16(x1 >> np.uint64(16))
        bits[8 * j + 4] = np.uint16(x2 & np.uint64(0xFFFF))
        bits[8 * j + 5] = np.uint16(x2 >> np.uint64(16))
        bits[8 * j + 6] = np.uint16(x3 & np.uint64(0xFFFF))
        bits[8 * j + 7] = np.uint16(x3 >> np.uint64(16))


def _rounding_view(ptrs, tensor, start, length, w_fmt, master_fmt):
    # The CPU stochastic view (see master_view below), inlined into the kernel at the
    # Numba IR level so that the buffer is allocated in the kernel's own stack frame.
    # The weight's pointer is read before the buffer is written, so that the compiler can
    # see it is the very pointer the kernel's own view of the weight holds (else it cannot
    # rule out overlap between the two and keeps the element loop scalar).
    wptr = _pointer(ptrs, tensor, 0, start, w_fmt)
    pos = np.uint64(start) + np.uint64(master_fmt[tensor, 4])
    step, key = np.uint64(master_fmt[tensor, 0]), np.uint64(master_fmt[tensor, 1])
    k0, k1 = np.uint64(master_fmt[tensor, 2]), np.uint64(master_fmt[tensor, 3])
    buf = stack_buffer(ROUNDING_BUFFER, np.uint16)
    first = pos >> np.uint64(3)
    last = (pos + np.uint64(length) + np.uint64(7)) >> np.uint64(3)
    # never past the buffer (a raise here would keep the block loop from running in
    # parallel); the launch layer's blocks are at most BLOCK long, which it checks
    n_octets = min(np.int64(last - first), np.int64(ROUNDING_BUFFER // 8))
    bits = numba.carray(buf, (ROUNDING_BUFFER,))
    _fill_rounding_bits(bits, first, n_octets, step, key, k0, k1)
    return (wptr, pos, step, key, k0, k1, _advance(buf, np.int64(pos & np.uint64(7))))


@overload(master_view, inline="always")
def _master_view_impl(ptrs, tensor, start, length, w_fmt, master_fmt):
    if isinstance(master_fmt, types.NoneType):
        return lambda ptrs, tensor, start, length, w_fmt, master_fmt: view(ptrs, tensor, 0, start, length, w_fmt)
    if is_compensation_format(master_fmt):
        return lambda ptrs, tensor, start, length, w_fmt, master_fmt: (
            _pointer(ptrs, tensor, 0, start, w_fmt), _pointer(ptrs, tensor, 2, start, master_fmt))
    if is_rounding_table(master_fmt):
        return _rounding_view
    return lambda ptrs, tensor, start, length, w_fmt, master_fmt: view(ptrs, tensor, 2, start, length, master_fmt)


@overload(master_slice)
def _master_slice_impl(w32, lo, hi):
    if isinstance(w32, types.BaseTuple):
        if len(w32) == 2:
            return lambda w32, lo, hi: (_advance(w32[0], lo), _advance(w32[1], lo))
        if len(w32) == 7:
            return lambda w32, lo, hi: (_advance(w32[0], lo), w32[1] + np.uint64(lo), w32[2], w32[3], w32[4],
                                        w32[5], _advance(w32[6], lo))
        return lambda w32, lo, hi: (_advance(w32[0], lo), w32[1] + np.uint64(lo), w32[2], w32[3], w32[4], w32[5])
    return lambda w32, lo, hi: w32[lo:hi]


def weight_target(w, w32, master_fmt):
    """The array to hand ``store_weight`` as the weight, given slices ``w`` and ``w32`` of
    one block (as ``view`` and ``master_slice`` give them): with no master copy, ``w32``
    itself, the very array the rule reads, so that the compiler sees that a loop's loads
    and stores of element ``i`` are one address and vectorises it without run-time
    overlap checks (which two views of the same memory fail); else ``w``."""
    raise NotImplementedError("only callable from jitted code")


@overload(weight_target, inline="always")
def _weight_target_impl(w, w32, master_fmt):
    if isinstance(master_fmt, types.NoneType):
        return lambda w, w32, master_fmt: w32
    return lambda w, w32, master_fmt: w


@njit(inline="always")
def bf16_bits_stochastic(value, rnd):
    """float32 -> bfloat16 bits, rounded up in magnitude with probability (dropped bits) /
    2**16 when ``rnd`` is uniform on [0, 2**16): unbiased.  inf and NaN round to nearest."""
    f = f32_to_bits(value)
    if (f & np.uint32(0x7FFFFFFF)) >= np.uint32(0x7F800000):
        return f32_to_bf16bits(value)
    return np.int16(np.uint16((f + np.uint32(rnd)) >> np.uint32(16)))


def f16_decode(bits):
    """float16 bits (uint16) -> float32, exact (F16C when the host has it)."""
    raise NotImplementedError("only callable from jitted code")


def f16_encode(value):
    """float32 -> float16 bits (uint16), round to nearest even (F16C when available)."""
    raise NotImplementedError("only callable from jitted code")


@overload(f16_decode)
def _f16_decode_impl(bits):
    if use_hardware_f16():
        return lambda bits: f16bits_to_f32_hw(np.uint16(bits))
    return lambda bits: f16bits_to_f32_soft(np.uint16(bits))


@overload(f16_encode)
def _f16_encode_impl(value):
    if use_hardware_f16():
        return lambda value: f32_to_f16bits_hw(np.float32(value))
    return lambda value: f32_to_f16bits_soft(np.float32(value))


@njit(inline="always")
def f16_bits_stochastic(value, rnd):
    """float32 -> float16 bits: one of the two float16 neighbours of ``value``, the one
    farther from zero with probability (distance from the nearer-to-zero one) / spacing,
    resolved with the 16 random bits ``rnd``; exact values, inf and NaN round to nearest.
    Written without data-dependent control flow, so that loops vectorise."""
    h = f16_encode(value)
    back = f16_decode(h)
    a = abs(value)
    b = abs(back)
    hu = np.uint32(h)
    away = b > a                       # the nearest is the neighbour farther from zero
    lo = np.uint16(hu - np.uint32(1)) if away else h
    hi = h if away else np.uint16(hu + np.uint32(1))
    lo_v = abs(f16_decode(lo))
    hi_v = abs(f16_decode(hi))
    frac = (a - lo_v) / (hi_v - lo_v)
    # (``rnd`` < 2**16 converts exactly from 32 bits; ``|`` rather than ``or``, which
    # would branch and keep the loop scalar)
    up = (np.float32(np.uint32(rnd)) + np.float32(0.5)) * np.float32(1.0 / 65536) < frac
    pick = hi if up else lo
    keep = (back == value) | (value != value) | (b == np.float32(np.inf))
    return h if keep else pick


def store_stochastic(arr, i, value, rnd):
    """Write ``value`` to element ``i`` of a 16-bit storage array, stochastically rounded."""
    raise NotImplementedError("only callable from jitted code")


@overload(store_stochastic, inline="always")
def _store_stochastic_impl(arr, i, value, rnd):
    if arr.dtype == types.int16:
        def impl(arr, i, value, rnd):
            arr[i] = bf16_bits_stochastic(np.float32(value), rnd)
        return impl
    if arr.dtype == types.uint16:
        def impl(arr, i, value, rnd):
            arr[i] = f16_bits_stochastic(np.float32(value), rnd)
        return impl

    def impl(arr, i, value, rnd):      # nothing to round
        store(arr, i, value)
    return impl


@overload(store_weight, inline="always")
def _store_weight_impl(w, w32, i, value, master_fmt):
    if isinstance(master_fmt, types.NoneType):
        def impl(w, w32, i, value, master_fmt):
            store(w, i, value)
        return impl
    if is_compensation_format(master_fmt):
        def impl(w, w32, i, value, master_fmt):
            v = np.float32(value)
            store(w, i, v)
            hi = load(w, i)
            # an overflow to inf would make the compensation -inf and the next read NaN
            store(w32[1], i, v - hi if abs(hi) < np.float32(np.inf) else np.float32(0.0))
        return impl
    if is_rounding_table(master_fmt):
        if isinstance(w32, types.BaseTuple) and len(w32) == 7:      # CPU: bits filled by master_view
            def impl(w, w32, i, value, master_fmt):
                store_stochastic(w, i, value, np.uint64(w32[6][i]))
            return impl

        def impl(w, w32, i, value, master_fmt):                      # CUDA: bits per element
            rnd = rounding_bits(w32[1] + np.uint64(i), w32[2], w32[3], w32[4], w32[5])
            store_stochastic(w, i, value, rnd)
        return impl

    def impl(w, w32, i, value, master_fmt):
        w32[i] = value
        store(w, i, value)
    return impl


# --------------------------------------------------------------------------- preprocessing

@scalar_rule
def clip(x, bound):
    """Clip to [-bound, bound]; ``bound < 0`` means no clipping.  NaN stays NaN."""
    if bound >= 0:
        if x > bound:
            return bound
        if x < -bound:
            return -bound
    return x


@scalar_rule
def rescaled(g, rescale, clip_bound):
    """``clip(rescale * g)``: the gradient every rule starts from."""
    return clip(g * rescale, clip_bound)


@scalar_rule
def coupled_grad(w, g, wd, rescale, clip_bound):
    """``clip(rescale * g) + wd * w``: MXNet 2.x's preprocessing for most rules."""
    return clip(g * rescale, clip_bound) + wd * w


@scalar_rule
def decayed_then_clipped(w, g, wd, rescale, clip_bound):
    """``clip(rescale * g + wd * w)``: MXNet 1.x's preprocessing for Adam, RMSProp, FTML,
    Adamax and Nadam (weight decay enters before the clip)."""
    return clip(g * rescale + wd * w, clip_bound)
