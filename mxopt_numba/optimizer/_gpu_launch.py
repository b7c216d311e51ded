"""The CUDA backend of the launch-plan layer (``_plan``): device arrays, twin kernels.

Validation, grouping and plan caching live in ``_plan`` for both backends; this module
answers what differs on a GPU:

* arrays are anything exposing ``__cuda_array_interface__`` (seen through Numba device
  array views, see ``_device``);
* storage formats are one-element device arrays (so no launcher meets an empty
  allocation), the address and block tables are uploaded once per plan, and only the
  gradient column is copied again when gradients change;
* a row-sparse gradient that must become dense is densified on the device;
* a launch runs the twin ``kernels/gpu/<module>.py:multi_X_gpu`` of the CPU kernel
  ``kernels/<module>.py:multi_X_cpu``, with the per-tensor ``lrs``, ``wds`` and ``coefs``
  in one packed copy (cast to the compute dtype like every rule scalar); a reduction
  twin's per-tensor sums come back as a host array.
"""
import importlib

import numpy as np

from .. import _device
from ..kernels import _launch as launch
from ..sparse import check_row_indices

__all__ = ["LaunchConfig", "config", "CudaBackend", "CUDA", "twin_of"]


class LaunchConfig:
    """Launch geometry of the CUDA twins (tests shrink it to keep the simulator fast).

    ``threads_per_block``: threads of a CUDA block (at most 1024); ``max_blocks``: cap on
    the grid (the kernels stride over the remaining table blocks); ``block_elements``:
    elements per table block, the work of one CUDA block (read when a plan is built).
    """

    def __init__(self):
        self.reset()

    def reset(self):
        self.threads_per_block = 256
        self.max_blocks = 65535
        self.block_elements = 1 << 13


config = LaunchConfig()

_twins = {}


def twin_of(kernel):
    """The GPU twin of a CPU kernel: ``mxopt_numba.kernels.<m>.multi_X_cpu`` ->
    ``mxopt_numba.kernels.gpu.<m>.multi_X_gpu``."""
    twin = _twins.get(kernel)
    if twin is None:
        func = getattr(kernel, "py_func", kernel)
        module, name = func.__module__, func.__name__
        package, _, rule = module.rpartition(".")
        if not name.endswith("_cpu"):
            raise NotImplementedError("%s.%s is not a CPU kernel (name ends in _cpu)" % (module, name))
        try:
            twin = getattr(importlib.import_module("%s.gpu.%s" % (package, rule)), name[:-4] + "_gpu")
        except (ImportError, AttributeError):
            raise NotImplementedError("%s.%s has no GPU twin (expected %s.gpu.%s.%s_gpu)"
                                      % (module, name, package, rule, name[:-4])) from None
        _twins[kernel] = twin
    return twin


def _call(twin, grid, threads, args, scratch=None):
    """The single place where a twin is launched (returns a reduction's device sums;
    ``scratch``: its ``(partials, sums)`` device buffers)."""
    if hasattr(twin, "run"):
        partials, sums = scratch if scratch is not None else (None, None)
        return twin.run(grid, threads, args, partials=partials, sums=sums)
    twin[grid, threads](*args)
    return None


_formats = {}


def _format(dtype):
    """Device array whose dtype tells a twin how to read a column (the device counterpart
    of ``launch.storage_format``)."""
    dtype = np.dtype(dtype)
    fmt = _formats.get(dtype)
    if fmt is None:
        fmt = _device.cuda_module().to_device(np.zeros(1, launch.storage_format(dtype).dtype))
        _formats[dtype] = fmt
    return fmt


def _buffer(group, key, value, ct):
    """``value`` as a device array of dtype ``ct`` in a buffer the group keeps (one
    allocation per shape, one copy per launch)."""
    host = np.ascontiguousarray(value, dtype=ct)
    buf = group.buffers.get(key)
    if buf is None or buf.shape != host.shape or buf.dtype != host.dtype:
        buf = _device.cuda_module().to_device(host)
        group.buffers[key] = buf
    else:
        buf.copy_to_device(host)
    return buf


def _scratch(group, twin):
    """Device buffers of a reduction over ``group``, kept for the next launches."""
    key = ("scratch", twin.width)
    bufs = group.buffers.get(key)
    if bufs is None:
        cuda = _device.cuda_module()
        bufs = (cuda.device_array((max(group.n_blocks, 1), twin.width), dtype=np.float64),
                cuda.device_array((group.ptrs_host.shape[0], twin.width), dtype=np.float64))
        group.buffers[key] = bufs
    return bufs


class CudaBackend:
    """CUDA device arrays; kernels are the ``@cuda.jit`` twins."""

    name = "cuda"
    fast_checks = False

    @staticmethod
    def owns(x):
        return _device.is_device_array(x)

    dtype = staticmethod(_device.dtype_of)
    address = staticmethod(_device.address)
    is_c_contiguous = staticmethod(_device.is_c_contiguous)
    normalised = staticmethod(_device.as_device_array)

    @staticmethod
    def nbytes(x):
        return int(x.size) * np.dtype(_device.dtype_of(x)).itemsize

    @staticmethod
    def is_writeable(x):
        return not _device.is_read_only(x)

    @staticmethod
    def foreign_error(name, x, other=None):
        return _device.mixed_error(name, x, other or "another array of the call")

    @staticmethod
    def contiguous_grad(name, g):
        raise ValueError("%s must be C-contiguous on the device (no implicit copies)" % name)

    format = staticmethod(_format)

    @staticmethod
    def host_rows(indices, n_rows):
        """Row indices on the host, checked (device-resident ones are copied once per call:
        they become addresses in the table, so their values are checked here)."""
        if _device.is_device_array(indices):
            return check_row_indices(_device.to_host(indices), n_rows)
        return indices

    @staticmethod
    def densify(grad, weight):
        """Dense device copy of a row-sparse device gradient (zeros outside its rows)."""
        cuda = _device.cuda_module()
        from ..kernels.gpu._common import densify_rows_gpu
        data = _device.as_device_array(grad.data)
        dtype = data.dtype
        out = cuda.device_array(tuple(grad.shape), dtype=dtype)
        n_rows = grad.shape[0]
        row_len = out.size // n_rows if n_rows else 0
        if out.size:
            bits = np.dtype("u%d" % dtype.itemsize)
            rows = cuda.to_device(np.ascontiguousarray(CudaBackend.host_rows(grad.indices, n_rows), dtype=np.int64))
            flat_out = out.reshape(out.size).view(bits)
            flat_data = data.reshape(data.size).view(bits) if data.size else cuda.device_array(1, bits)
            threads = config.threads_per_block
            grid = max(1, min(config.max_blocks, (out.size + threads - 1) // threads))
            densify_rows_gpu[grid, threads](rows, flat_data, flat_out, np.int64(row_len))
        return out

    @staticmethod
    def upload(group, ptrs, sizes):
        cuda = _device.cuda_module()
        blocks = launch.block_table(sizes, block=max(1, int(config.block_elements)))
        group.ptrs_host = np.ascontiguousarray(ptrs, dtype=np.int64)
        group.ptrs = cuda.to_device(group.ptrs_host)
        group.blocks = cuda.to_device(blocks)
        group.n_blocks = blocks.shape[0]
        group.n_elements = int(np.sum(sizes))

    @staticmethod
    def grad_column_changed(group):
        group.ptrs.copy_to_device(group.ptrs_host)

    @staticmethod
    def run(kernel, group, lrs, wds, coefs, scalars):
        twin = twin_of(kernel)
        ct = group.compute
        m, width = lrs.shape[0], coefs.shape[1]
        packed = _buffer(group, "per_tensor", np.concatenate([lrs, wds, coefs.ravel()]), ct)
        rule = [_buffer(group, p, s, ct) if isinstance(s, np.ndarray) else ct(s) for p, s in enumerate(scalars)]
        reduction = hasattr(twin, "run")
        if group.n_blocks == 0:
            return np.zeros((m, twin.width), dtype=np.float64) if reduction else None
        args = (group.blocks, group.ptrs, packed[:m], packed[m:2 * m], packed[2 * m:].reshape(m, width),
                group.w_fmt, group.g_fmt, group.master_fmt, group.state_fmt, *rule)
        grid = max(1, min(group.n_blocks, int(config.max_blocks)))
        sums = _call(twin, grid, int(config.threads_per_block), args, _scratch(group, twin) if reduction else None)
        return sums.copy_to_host() if reduction else None


CUDA = CudaBackend()
