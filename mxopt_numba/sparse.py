"""Row-sparse gradients: a few rows of a large table.

``row_sparse_array((data, indices), shape=...)`` holds ``data`` of shape
``(len(indices),) + shape[1:]`` for the sorted, unique row ``indices``; every other row
is zero.  Optimizers accept it wherever a gradient goes.
"""
import numpy as np

from . import _namespace

__all__ = ["RowSparseArray", "row_sparse_array", "is_row_sparse"]


class RowSparseArray:
    """A row-sparse array (see the module docstring).  ``stype`` is ``'row_sparse'``."""

    stype = "row_sparse"

    def __init__(self, data, indices, shape):
        self.data = data
        self.indices = indices
        self.shape = shape

    @property
    def dtype(self):
        return self.data.dtype

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
        return "<RowSparseArray %s %s, %d of %d rows>" % (
            "x".join(map(str, self.shape)), self.dtype, self.indices.size, self.shape[0] if self.shape else 0)


def row_sparse_array(arg, shape=None, dtype=None):
    """Build a :class:`RowSparseArray` from ``(data, indices)``.

    ``indices`` must be sorted, unique, non-negative and below ``shape[0]``; ``data``
    must have shape ``(len(indices),) + shape[1:]``.  ``shape`` defaults to the smallest
    table holding the rows.
    """
    if isinstance(arg, RowSparseArray):
        data, indices = arg.data, arg.indices
        shape = arg.shape if shape is None else shape
    else:
        if not (isinstance(arg, (tuple, list)) and len(arg) == 2):
            raise TypeError("row_sparse_array expects (data, indices), got %r" % (type(arg),))
        data, indices = arg
    data = np.asarray(data) if dtype is None else np.asarray(data, dtype=dtype)
    indices = np.asarray(indices)
    if indices.ndim != 1:
        raise ValueError("indices must be 1-D, got shape %s" % (indices.shape,))
    if indices.size and not np.issubdtype(indices.dtype, np.integer):
        if not np.all(np.mod(indices, 1) == 0):
            raise ValueError("indices must be integers, got %s" % indices.dtype)
    indices = indices.astype(np.int64)
    if data.ndim == 0:
        raise ValueError("data must have at least one dimension (one row per index), got a scalar")
    if shape is None:
        shape = (int(indices.max()) + 1 if indices.size else 0,) + data.shape[1:]
    shape = tuple(int(s) for s in shape)
    if len(shape) < 1:
        raise ValueError("shape must have at least one dimension, got %s" % (shape,))
    if data.shape != (indices.size,) + shape[1:]:
        raise ValueError("data has shape %s; expected %s for %d indices and shape %s"
                         % (data.shape, (indices.size,) + shape[1:], indices.size, shape))
    if indices.size:
        if indices[0] < 0 or indices[-1] >= shape[0] or indices.min() < 0 or indices.max() >= shape[0]:
            raise ValueError("indices must lie in [0, %d), got min %d max %d"
                             % (shape[0], indices.min(), indices.max()))
        steps = np.diff(indices)
        if np.any(steps == 0):
            raise ValueError("indices must be unique; row %d repeats" % indices[1:][steps == 0][0])
        if np.any(steps < 0):
            raise ValueError("indices must be sorted in increasing order")
    return RowSparseArray(np.ascontiguousarray(data), indices, shape)


def is_row_sparse(x):
    return isinstance(x, RowSparseArray)


__dir__ = _namespace.public_dir(__name__)
