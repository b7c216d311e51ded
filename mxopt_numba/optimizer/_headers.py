"""Bulk checks of NumPy array headers, for plans reused step after step.

A training loop passes the same weights and states every step and, usually, fresh
gradient arrays.  Re-validating those in Python costs microseconds per tensor (building
``__array_interface__`` dicts alone is ~1 us each), which for thousands of small tensors
is more than the update itself.  Instead, one compiled pass reads the fields of each
array's C header (``PyArrayObject``: data pointer, ndim, dimensions, descriptor, flags)
through its object address, and checks every array against what the plan's tables say.

The header layout is part of NumPy's stable C ABI; it is nevertheless verified on probe
arrays before the first use, and if it does not match, plans fall back to the Python
checks (``HEADERS_USABLE`` is False).  Only exact ``numpy.ndarray`` objects are read this
way: the type pointer is compared first, and anything else takes the Python path.
"""
import ctypes

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ..kernels import _background
from ..kernels._common import cached_jit

__all__ = ["PlanHeaders", "OK", "STALE", "SLOW", "usable", "item_ids", "ids_of", "holds"]

OK, STALE, SLOW = 0, 1, 2

_DATA, _NDIM, _DIMS, _DESCR, _FLAGS = 16, 24, 32, 56, 64
_LIST_SIZE, _LIST_ITEMS = 16, 24          # PyListObject: ob_size, ob_item
_C_CONTIGUOUS, _WRITEABLE = 0x1, 0x400

_usable = None


def usable():
    """True when the header layout above matches this interpreter's NumPy."""
    global _usable
    if _usable is None:
        _usable = _verify()
    return _usable


def _verify():
    if ctypes.sizeof(ctypes.c_void_p) != 8:
        return False

    def i64(addr):
        return ctypes.c_int64.from_address(addr).value

    def i32(addr):
        return ctypes.c_int32.from_address(addr).value
    try:
        probes = [np.zeros((3, 4), np.float32), np.zeros(7, np.float16)[::2], np.zeros((), np.float64),
                  np.zeros((2, 0, 5), np.float32)]
        ro = np.zeros(3)
        ro.flags.writeable = False
        probes.append(ro)
        for a in probes:
            base = id(a)
            if i64(base + 8) != id(np.ndarray) or i64(base + _DATA) != a.__array_interface__["data"][0]:
                return False
            if i32(base + _NDIM) != a.ndim or i64(base + _DESCR) != id(a.dtype):
                return False
            dims = i64(base + _DIMS)
            if tuple(i64(dims + 8 * d) for d in range(a.ndim)) != a.shape:
                return False
            flags = i32(base + _FLAGS)
            if bool(flags & _C_CONTIGUOUS) != a.flags.c_contiguous or bool(flags & _WRITEABLE) != a.flags.writeable:
                return False
        items = list(probes)
        items.append(ro)                     # over-allocated list: ob_size, not the capacity
        if i64(id(items) + _LIST_SIZE) != len(items):
            return False
        table = i64(id(items) + _LIST_ITEMS)
        return all(i64(table + 8 * k) == id(a) for k, a in enumerate(items))
    except Exception:          # pragma: no cover - exotic interpreters
        return False


@intrinsic
def _peek64(typingctx, address):
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        return builder.load(ptr)
    return types.int64(address), codegen


@intrinsic
def _peek32(typingctx, address):
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(32).as_pointer())
        return builder.sext(builder.load(ptr), ir.IntType(64))
    return types.int64(address), codegen


@cached_jit
def same_items(list_address, ids):
    """True when the list at ``list_address`` holds exactly the objects ``ids`` (which the
    caller keeps alive, so an id names one object)."""
    if _peek64(list_address + _LIST_SIZE) != ids.size:
        return False
    items = _peek64(list_address + _LIST_ITEMS)
    for k in range(ids.size):
        if _peek64(items + 8 * k) != ids[k]:
            return False
    return True


@cached_jit
def _list_ids(list_address, n, out):
    """The object addresses held by the list at ``list_address`` (``n`` of them)."""
    if _peek64(list_address + _LIST_SIZE) != n:
        return False
    items = _peek64(list_address + _LIST_ITEMS)
    for k in range(n):
        out[k] = _peek64(items + 8 * k)
    return True


def _compiled(helper, args):
    """True when ``helper`` can run on ``args`` without compiling now; until then (a cold
    cache: it is being compiled in the background) callers take the Python path, which
    decides the same things more slowly."""
    if _background.ready(helper, args):
        return True
    _background.flush()
    return False


def item_ids(seq, out=None):
    """``id`` of every item of ``seq`` as an int64 array (read straight from a list)."""
    n = len(seq)
    if usable() and isinstance(seq, list):
        if out is None or out.size != n:
            out = np.empty(n, dtype=np.int64)
        args = (id(seq), n, out)
        if _compiled(_list_ids, args) and _list_ids(*args):
            return out
    return np.fromiter(map(id, seq), dtype=np.int64, count=n)


def ids_of(seq):
    """``id`` of every item of ``seq`` (plan building: no compiled code on a first call)."""
    return np.fromiter(map(id, seq), dtype=np.int64, count=len(seq))


def holds(seq, ids):
    """True when ``seq`` holds exactly the objects whose ids are ``ids`` (kept alive by
    the caller)."""
    if usable() and isinstance(seq, list) and _compiled(same_items, (id(seq), ids)):
        return bool(same_items(id(seq), ids))
    return len(seq) == ids.size and bool(np.array_equal(np.fromiter(map(id, seq), np.int64, len(seq)), ids))


@cached_jit
def _check(ndarray_type, w_ids, w_addr, w_descr, w_size, g_ids, g_owner, g_descr, g_itemsize, starts, ends,
           g_addr):
    """Status of a reused plan: the written arrays unchanged (else STALE), every gradient
    an exact C-contiguous ndarray of its planned dtype and its weight's shape, sharing no
    memory with a written array (else SLOW); gradient addresses land in ``g_addr``."""
    for k in range(w_ids.size):
        a = w_ids[k]
        flags = _peek32(a + _FLAGS)
        if (_peek64(a + _DATA) != w_addr[k] or _peek64(a + _DESCR) != w_descr[k]
                or (flags & _C_CONTIGUOUS) == 0 or (flags & _WRITEABLE) == 0):
            return STALE
        nd = _peek32(a + _NDIM)
        dims = _peek64(a + _DIMS)
        size = 1
        for d in range(nd):
            size *= _peek64(dims + 8 * d)
        if size != w_size[k]:
            return STALE
    for k in range(g_ids.size):
        a = g_ids[k]
        if _peek64(a + 8) != ndarray_type or _peek64(a + _DESCR) != g_descr[k]:
            return SLOW
        if (_peek32(a + _FLAGS) & _C_CONTIGUOUS) == 0:
            return SLOW
        w = w_ids[g_owner[k]]
        nd = _peek32(a + _NDIM)
        if nd != _peek32(w + _NDIM):
            return SLOW
        dims, w_dims = _peek64(a + _DIMS), _peek64(w + _DIMS)
        size = 1
        for d in range(nd):
            n = _peek64(dims + 8 * d)
            if n != _peek64(w_dims + 8 * d):
                return SLOW
            size *= n
        addr = _peek64(a + _DATA)
        if size > 0:
            end = addr + size * g_itemsize[k]
            # the last written array starting before ``end`` must end at or before ``addr``
            lo, hi = 0, starts.size
            while lo < hi:
                mid = (lo + hi) // 2
                if starts[mid] < end:
                    lo = mid + 1
                else:
                    hi = mid
            if lo > 0 and ends[lo - 1] > addr:
                return SLOW
        g_addr[k] = addr
    return OK


class PlanHeaders:
    """What a dense host plan expects of its arrays, as flat tables for :func:`_check`."""

    def __init__(self, checked, groups, written):
        """``written``: the plan's ``_plan.Written`` (its arrays and sorted intervals)."""
        arrays = written.arrays
        self.enabled = usable() and all(type(a) is np.ndarray for a in arrays)
        self.groups = groups
        n = len(checked)
        self.g_owner = np.zeros(n, dtype=np.int64)
        position = 0
        for k, c in enumerate(checked):
            self.g_owner[k] = position
            position += 1 + (c[2] is not None) + len(c[3])
        self.written = arrays
        self.w_ids = np.array([id(a) for a in arrays], dtype=np.int64)
        self.w_addr = np.array([a.__array_interface__["data"][0] for a in arrays], dtype=np.int64)
        self.w_descr = np.array([id(a.dtype) for a in arrays], dtype=np.int64)
        self.w_size = np.array([a.size for a in arrays], dtype=np.int64)
        self.starts, self.ends = written.starts, written.ends
        g_dtypes = [None] * n
        for group in groups:
            members = range(n) if group.positions is None else group.positions
            for k in members:
                g_dtypes[k] = np.dtype(group.g_dtype)
        self._dtypes = g_dtypes          # keeps the descriptors whose ids are compared
        self.g_descr = np.array([id(d) for d in g_dtypes], dtype=np.int64)
        self.g_itemsize = np.array([d.itemsize for d in g_dtypes], dtype=np.int64)
        self.g_addr = np.zeros(n, dtype=np.int64)
        self.g_ids = np.zeros(n, dtype=np.int64)
        self.nbytes = 8 * (4 * len(arrays) + 5 * n)

    def _python_status(self):
        """STALE or SLOW as :func:`_check` would decide it about the written arrays, in
        Python (the gradients are then left to the caller's Python checks)."""
        for a, addr, descr, size in zip(self.written, self.w_addr, self.w_descr, self.w_size):
            flags = a.flags
            if (a.__array_interface__["data"][0] != addr or id(a.dtype) != descr or a.size != size
                    or not flags.c_contiguous or not flags.writeable):
                return STALE
        return SLOW

    def refresh(self, grads):
        """OK after rewriting the gradient column of every group, STALE when a weight or
        state changed under the plan, SLOW when the Python checks must decide."""
        if not self.enabled:
            return self._python_status()
        g_ids = item_ids(grads, self.g_ids)
        args = (id(np.ndarray), self.w_ids, self.w_addr, self.w_descr, self.w_size, g_ids, self.g_owner,
                self.g_descr, self.g_itemsize, self.starts, self.ends, self.g_addr)
        if not _compiled(_check, args):
            return self._python_status()
        status = _check(*args)
        if status == OK:
            for group in self.groups:
                if group.positions is None:
                    group.ptrs_host[:, 1] = self.g_addr
                else:
                    group.ptrs_host[:, 1] = self.g_addr[group.positions]
        return status
