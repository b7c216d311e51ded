"""Row-sparse gradients: a few rows of a large table.

``row_sparse_array((data, indices), shape=...)`` and ``RowSparseArray(data, indices,
shape)`` hold ``data`` of shape ``(len(indices),) + shape[1:]`` for the sorted, unique
row ``indices``; every other row is zero.  Optimizers accept it wherever a gradient goes.

Both constructors check and normalise their arguments in one place (``indices`` becomes a
C-contiguous int64 array): the kernels turn each index into a raw address, so an index
out of range, a repeated row or a missing data row would read or write outside the
arrays.  The attributes stay assignable and the arrays mutable, so
:meth:`RowSparseArray.validate` repeats the checks before each use.
"""
import numbers
import operator

import numpy as np

from . import _device, _namespace

__all__ = ["RowSparseArray", "row_sparse_array", "is_row_sparse", "check_row_indices"]

_INT64_MAX = np.iinfo(np.int64).max


def _float_dtype(dtype):
    dtype = np.dtype(dtype)
    return dtype in (np.float16, np.float32, np.float64) or dtype.name == "bfloat16"


def _check_shape(shape):
    if isinstance(shape, np.ndarray):
        shape = shape.tolist()
    if not isinstance(shape, (tuple, list)):
        raise TypeError("shape must be a tuple of non-negative ints, got %s" % type(shape).__name__)
    if len(shape) < 1:
        raise ValueError("shape must have at least one dimension (rows), got ()")
    for s in shape:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral):
            raise TypeError("shape must be a tuple of non-negative ints, got %r" % (tuple(shape),))
        if s < 0:
            raise ValueError("shape must be a tuple of non-negative ints, got %r" % (tuple(shape),))
    return tuple(int(s) for s in shape)


def _as_index_array(indices):
    """``indices`` as a 1-D integer NumPy array (not yet range-checked), or TypeError /
    ValueError naming what is wrong; never NumPy's own conversion errors."""
    if isinstance(indices, np.ndarray):
        arr = indices
    else:
        try:
            arr = np.asarray(indices)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError("indices must be a 1-D sequence of ints, got %s (%s)"
                            % (type(indices).__name__, exc)) from None
    if arr.ndim != 1:
        raise ValueError("indices must be 1-D, got shape %s" % (arr.shape,))
    kind = arr.dtype.kind
    if kind == "b":
        raise TypeError("indices must be integers, got booleans (a mask is not a row list)")
    if kind == "O":
        # Python ints too large for int64 land here; anything else is not an index
        if not all(isinstance(i, numbers.Integral) and not isinstance(i, (bool, np.bool_)) for i in arr):
            bad = next(i for i in arr if not isinstance(i, numbers.Integral) or isinstance(i, (bool, np.bool_)))
            raise TypeError("indices must be integers, got %r" % (bad,))
        return arr
    if kind not in "iuf":
        raise TypeError("indices must be integers, got dtype %s" % arr.dtype)
    if kind == "f" and arr.size and not np.all(np.mod(arr, 1) == 0):   # NaN and inf fail too
        bad = arr[~(np.mod(arr, 1) == 0)][0]
        raise TypeError("indices must be integers, got %r" % (float(bad),))
    return arr


def check_row_indices(indices, n_rows):
    """Row indices as a C-contiguous int64 array, after checking that they are integers,
    1-D, within ``[0, n_rows)`` and strictly increasing (sorted and unique).

    Vectorised, O(len(indices)); an int64 C-contiguous array comes back as the same
    object.  The device launcher calls it on a host copy of device-resident indices.
    """
    arr = _as_index_array(indices)
    if arr.size == 0:
        return np.ascontiguousarray(arr, dtype=np.int64)
    if arr.dtype.kind == "i" or (arr.dtype.kind == "u" and arr.dtype.itemsize < 8):
        ordered = arr[1:] > arr[:-1]
        if ordered.all():
            if arr[0] < 0 or arr[-1] >= n_rows:
                raise ValueError("indices must lie in [0, %d), got min %d max %d"
                                 % (n_rows, arr[0], arr[-1]))
            return np.ascontiguousarray(arr, dtype=np.int64)
    # slow path: a failed check (report the range before the order) or an unusual dtype
    # (uint64, float, Python ints beyond int64), compared before any cast can wrap
    lo, hi = arr.min(), arr.max()
    if lo < 0 or hi >= n_rows:
        raise ValueError("indices must lie in [0, %d), got min %s max %s" % (n_rows, lo, hi))
    if hi > _INT64_MAX:        # pragma: no cover - n_rows itself is an int64 row count
        raise ValueError("indices must lie in [0, %d), got max %s" % (n_rows, hi))
    arr = np.ascontiguousarray(arr.astype(np.int64))
    steps = arr[1:] - arr[:-1]
    if np.any(steps == 0):
        raise ValueError("indices must be unique; row %d repeats" % arr[1:][steps == 0][0])
    if np.any(steps < 0):
        pos = int(np.flatnonzero(steps < 0)[0])
        raise ValueError("indices must be sorted in increasing order; %d follows %d at position %d"
                         % (arr[pos + 1], arr[pos], pos + 1))
    return arr


def _check_device_indices(indices):
    """Metadata checks of device-resident indices; their values are checked where they
    are copied to the host (see :func:`check_row_indices`)."""
    shape = tuple(getattr(indices, "shape", ()))
    if len(shape) != 1:
        raise ValueError("indices must be 1-D, got shape %s" % (shape,))
    dtype = _device.dtype_of(indices)
    if dtype.kind not in "iu":
        raise TypeError("indices on the device must have an integer dtype, got %s" % dtype)
    return shape[0]


def _check(data, indices, shape):
    """The one set of checks behind both constructors and :meth:`RowSparseArray.validate`;
    returns the normalised ``(data, indices, shape)``."""
    shape = _check_shape(shape)
    on_device = _device.is_device_array(data)
    if on_device:
        data_shape = tuple(getattr(data, "shape", ()))
        dtype = _device.dtype_of(data)
    else:
        if not isinstance(data, np.ndarray):
            raise TypeError("data must be a numpy array (or a CUDA device array), got %s" % type(data).__name__)
        data_shape, dtype = data.shape, data.dtype
    if not _float_dtype(dtype):
        raise TypeError("data has dtype %s: expected float16, bfloat16, float32 or float64" % dtype)
    if len(data_shape) == 0:
        raise ValueError("data must have one row per index, got a scalar")
    if _device.is_device_array(indices):
        n_indices = _check_device_indices(indices)
    else:
        indices = check_row_indices(indices, shape[0])
        n_indices = indices.size
    expected = (n_indices,) + shape[1:]
    if data_shape != expected:
        raise ValueError("data has shape %s; expected %s for %d indices and shape %s"
                         % (data_shape, expected, n_indices, shape))
    if not on_device and not data.flags.c_contiguous:
        data = np.ascontiguousarray(data)    # the kernels address rows of flat memory
    return data, indices, shape


class RowSparseArray:
    """A row-sparse array (see the module docstring).  ``stype`` is ``'row_sparse'``.

    Raises TypeError / ValueError naming ``data``, ``indices`` or ``shape`` when they do
    not describe a valid row-sparse array.  ``data`` may be a CUDA device array; so may
    ``indices``, whose values are then checked when they reach the host.
    """

    stype = "row_sparse"

    def __init__(self, data, indices, shape):
        self.data, self.indices, self.shape = _check(data, indices, shape)

    def validate(self, weight_shape=None):
        """Repeat the construction checks on the current attributes (they may have been
        reassigned, or changed in place) and store the normalised values back.

        ``weight_shape``, when given, must equal ``shape``.  Vectorised, O(len(indices));
        returns ``self``.
        """
        data, indices, shape = _check(self.data, self.indices, self.shape)
        if weight_shape is not None and shape != tuple(weight_shape):
            raise ValueError("shape %s of the row_sparse gradient does not match the weight's shape %s"
                             % (shape, tuple(weight_shape)))
        if data is not self.data:
            self.data = data
        if indices is not self.indices:
            self.indices = indices
        if shape != self.shape or type(self.shape) is not tuple:
            self.shape = shape
        return self

    @property
    def dtype(self):
        return _device.dtype_of(self.data)

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return int(np.prod(self.shape))

    def todense(self):
        """The dense array (zeros outside the listed rows)."""
        out = np.zeros(self.shape, dtype=self.data.dtype)
        out[self.indices] = self.data
        return out

    asnumpy = todense

    def __repr__(self):
        rows = operator.length_hint(self.indices, -1)
        return "<RowSparseArray %s %s, %d of %d rows>" % (
            "x".join(map(str, self.shape)), self.dtype, rows, self.shape[0] if self.shape else 0)


def row_sparse_array(arg, shape=None, dtype=None):
    """Build a :class:`RowSparseArray` from ``(data, indices)``, or from another one
    (with another ``shape`` or ``dtype``).

    ``indices`` must be sorted, unique, non-negative and below ``shape[0]``; ``data``
    must have shape ``(len(indices),) + shape[1:]`` and a float dtype (``dtype`` casts
    it; data given as nested lists defaults to float32).  ``shape`` defaults to the
    smallest table holding the rows.  The checks are the constructor's.
    """
    if isinstance(arg, RowSparseArray):
        data, indices = arg.data, arg.indices
        shape = arg.shape if shape is None else shape
    else:
        if not (isinstance(arg, (tuple, list)) and len(arg) == 2):
            raise TypeError("row_sparse_array expects (data, indices), got %r" % (type(arg),))
        data, indices = arg
    if not _device.is_device_array(data):
        if dtype is None and not isinstance(data, np.ndarray):
            dtype = np.float32      # as MXNet: nested lists become float32, arrays keep theirs
        try:
            data = np.asarray(data) if dtype is None else np.asarray(data, dtype=dtype)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError("data must be an array of floats, got %s (%s)" % (type(data).__name__, exc)) from None
    if shape is None:
        if _device.is_device_array(indices):
            raise ValueError("shape is required when indices are on the device")
        rows = _as_index_array(indices)
        n_rows = int(rows.max()) + 1 if rows.size else 0
        shape = (max(n_rows, 0),) + tuple(getattr(data, "shape", ())[1:])
    return RowSparseArray(data, indices, shape)


def is_row_sparse(x):
    return isinstance(x, RowSparseArray)


__dir__ = _namespace.public_dir(__name__)
