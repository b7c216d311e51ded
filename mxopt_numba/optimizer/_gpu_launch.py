"""GPU side of an update: launch plans over device arrays, and the launch of kernel twins.

Entry points (the Optimizer base branches here when the arrays are device arrays):

* :func:`update` runs one update call on device arrays (counts, then ``fused_step``);
* :func:`launch_gpu` is what ``Optimizer._launch`` (and the layer-wise ``launch_sums``)
  does on the device: it finds the twin ``kernels/gpu/<module>.py:multi_X_gpu`` of the
  CPU kernel ``kernels/<module>.py:multi_X_cpu`` it is given and launches it once per
  storage layout of the chunk (usually once), returning the per-tensor sums of a
  reduction twin as a host array.

A plan holds, per storage layout, the int64 address table (one row per tensor: weight,
gradient, master copy, states) and the block table ``(tensor, start, length)``, both as
device arrays, built once and reused while the caller passes the very same arrays (only
the gradient column is refreshed when gradients change).  Per launch, the per-tensor
``lrs``, ``wds`` and ``coefs`` travel to the device in one packed copy, already cast to the
compute dtype like every rule scalar (float32, float64 for float64 weights).
"""
import importlib
import operator
import weakref

import numpy as np

from .. import _device
from ..kernels import _launch as launch
from ..sparse import RowSparseArray

__all__ = ["LaunchConfig", "config", "update", "launch_gpu", "twin_of"]


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

_GPU_KEY = object()    # tags GPU plans inside the optimizer's plan cache


# --------------------------------------------------------------------------- kernel twins

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


def _scratch(group, twin):
    """Device buffers of a reduction over ``group``, kept for the next launches."""
    key = ("scratch", twin.width)
    bufs = group.array_buffers.get(key)
    if bufs is None:
        cuda = _device.cuda_module()
        bufs = (cuda.device_array((max(group.n_blocks, 1), twin.width), dtype=np.float64),
                cuda.device_array((group.ptrs_host.shape[0], twin.width), dtype=np.float64))
        group.array_buffers[key] = bufs
    return bufs


# --------------------------------------------------------------------------- plans

class _GPUGroup:
    __slots__ = ("positions", "g_dtype", "ptrs_host", "ptrs", "blocks", "n_blocks", "n_elements", "w_fmt",
                 "g_fmt", "master_fmt", "state_fmt", "compute", "array_buffers")


class _GPUPlan:
    """Validated device tensors of one call with their device tables."""

    on_device = True
    __slots__ = ("key", "indices", "weights", "states", "dev_weights", "dev_states", "grad_refs",
                 "grad_keep", "slots", "groups")


_formats = {}


def _format(dtype):
    """Device array whose dtype tells a twin how to read a column (the device counterpart
    of ``launch.storage_format``; one element, so no launcher meets an empty allocation)."""
    if dtype is None:
        return None
    dtype = np.dtype(dtype)
    fmt = _formats.get(dtype)
    if fmt is None:
        fmt = _device.cuda_module().to_device(np.zeros(1, launch.storage_format(dtype).dtype))
        _formats[dtype] = fmt
    return fmt


def _check_weight(name, weight):
    if not _device.is_device_array(weight):
        raise _device.mixed_error(name, weight)
    if not launch.supported(_device.dtype_of(weight)):
        raise TypeError("%s has dtype %s: expected float16, bfloat16, float32 or float64"
                        % (name, _device.dtype_of(weight)))
    if not _device.is_c_contiguous(weight):
        raise ValueError("%s must be C-contiguous (it is updated in place)" % name)
    if _device.is_read_only(weight):
        raise ValueError("%s is read-only; it is updated in place" % name)
    return _device.as_device_array(weight)


def _check_state(name, a, size, weight_name):
    if not _device.is_device_array(a):
        raise _device.mixed_error(name, a, weight_name)
    if not launch.supported(_device.dtype_of(a)):
        raise TypeError("%s has dtype %s" % (name, _device.dtype_of(a)))
    a = _device.as_device_array(a)
    if a.size != size:
        raise ValueError("%s has %d elements, expected %d" % (name, a.size, size))
    if not _device.is_c_contiguous(a) or _device.is_read_only(a):
        raise ValueError("%s must be a writeable C-contiguous array" % name)
    return a


def _check_grad(opt, k, weight, grad, rows_ok):
    """The gradient as a device array (row-sparse ones stay row-sparse where the rule
    updates only the listed rows, else become dense on the device)."""
    if isinstance(grad, RowSparseArray):
        if tuple(grad.shape) != weight.shape:
            raise ValueError("grads[%d]: row_sparse shape %s does not match weight shape %s"
                             % (k, tuple(grad.shape), weight.shape))
        if not _device.is_device_array(grad.data):
            raise _device.mixed_error("grads[%d].data" % k, grad.data, "weights[%d]" % k)
        if not launch.supported(_device.dtype_of(grad.data)):
            raise TypeError("grads[%d] has dtype %s: expected float16, bfloat16, float32 or float64"
                            % (k, _device.dtype_of(grad.data)))
        if rows_ok:
            return grad
        return _densify(grad, weight)
    if not _device.is_device_array(grad):
        raise _device.mixed_error("grads[%d]" % k, grad, "weights[%d]" % k)
    g = _device.as_device_array(grad)
    if tuple(g.shape) != tuple(weight.shape):
        raise ValueError("grads[%d] has shape %s but its weight has shape %s" % (k, g.shape, weight.shape))
    if not launch.supported(g.dtype):
        raise TypeError("grads[%d] has dtype %s: expected float16, bfloat16, float32 or float64" % (k, g.dtype))
    if not _device.is_c_contiguous(g):
        raise ValueError("grads[%d] must be C-contiguous on the device (no implicit copies)" % k)
    if g.size and _device.address(g) == _device.address(weight):
        raise ValueError("grads[%d] is the weight array itself: pass a separate gradient" % k)
    return g


def _validated(opt, weights, grads, states, rows_ok=False):
    """Per tensor ``(weight, grad, master, leaves)`` as Numba device arrays."""
    out = []
    for k, (weight, grad, state) in enumerate(zip(weights, grads, states)):
        w = _check_weight("weights[%d]" % k, weight)
        g = _check_grad(opt, k, w, grad, rows_ok)
        if opt.uses_master(w):
            if isinstance(state, (tuple, list)) and len(state) == 2 and isinstance(state[0], np.ndarray):
                raise _device.mixed_error("states[%d] master copy" % k, state[0], "weights[%d]" % k)
            if not (isinstance(state, (tuple, list)) and len(state) == 2 and state[0] is not None
                    and _device.is_device_array(state[0]) and _device.dtype_of(state[0]) == np.float32):
                raise ValueError("states[%d]: a %s weight with multi_precision needs the state "
                                 "(weight32, inner_state) from create_state_multi_precision, got %r"
                                 % (k, w.dtype, type(state).__name__))
            master = _check_state("states[%d] master copy" % k, state[0], w.size, "weights[%d]" % k)
            inner = state[1]
        else:
            master, inner = None, state
        leaves = tuple(_check_state("states[%d] leaf %d" % (k, p), leaf, opt._leaf_size(w, p), "weights[%d]" % k)
                       for p, leaf in enumerate(_device.leaves(inner)))
        for leaf in leaves:
            if leaf.dtype != leaves[0].dtype:
                raise TypeError("states[%d]: state arrays mix dtypes %s and %s" % (k, leaves[0].dtype, leaf.dtype))
        out.append((w, g, master, leaves))
    return out


def _layout(w, g, master, leaves):
    data = g.data if isinstance(g, RowSparseArray) else g
    state_dtype = leaves[0].dtype if leaves else w.dtype
    return (w.dtype, _device.dtype_of(data), master is not None, np.dtype(state_dtype), len(leaves))


def _new_group(layout, positions):
    w_dtype, g_dtype, has_master, s_dtype, _ = layout
    group = _GPUGroup()
    group.positions = positions
    group.g_dtype = np.dtype(g_dtype)
    group.w_fmt = _format(w_dtype)
    group.g_fmt = _format(g_dtype)
    group.master_fmt = _format(np.float32) if has_master else None
    group.state_fmt = _format(s_dtype)
    group.compute = launch.compute_dtype(w_dtype)
    group.array_buffers = {}
    return group


def _upload_tables(group, ptrs, sizes):
    cuda = _device.cuda_module()
    blocks = launch.block_table(sizes, block=max(1, int(config.block_elements)))
    group.ptrs_host = np.ascontiguousarray(ptrs, dtype=np.int64)
    group.ptrs = cuda.to_device(group.ptrs_host)
    group.blocks = cuda.to_device(blocks)
    group.n_blocks = blocks.shape[0]
    group.n_elements = int(np.sum(sizes))


def _start_plan(opt, key, indices, weights, grads, states, checked):
    plan = _GPUPlan()
    plan.key, plan.indices = key, indices
    plan.weights, plan.states = list(weights), list(states)
    plan.dev_weights = [c[0] for c in checked]
    # the states as the optimizer made them, with every array seen as a Numba device array
    plan.dev_states = [_device.map_leaves(s, _device.as_device_array) for s in states]
    plan.grad_keep = [c[1] for c in checked]
    plan.groups = []
    return plan


def _build_plan(opt, key, indices, weights, grads, states):
    from .optimizer import _check_unique
    _check_unique(key[1])
    checked = _validated(opt, weights, grads, states)
    plan = _start_plan(opt, key, indices, weights, grads, states, checked)
    _remember_grads(plan, grads)
    plan.slots = opt._index_update_count.slots(key[1], opt.begin_num_update)
    by_layout = {}
    for k, c in enumerate(checked):
        by_layout.setdefault(_layout(*c), []).append(k)
    for layout, members in by_layout.items():
        group = _new_group(layout, None if len(by_layout) == 1 else np.array(members, dtype=np.int64))
        rows = [(w, g, w if m is None else m) + leaves for w, g, m, leaves in (checked[k] for k in members)]
        ptrs = np.array([[_device.address(a) for a in row] for row in rows], dtype=np.int64)
        _upload_tables(group, ptrs.reshape(len(members), 3 + layout[4]), [row[0].size for row in rows])
        plan.groups.append(group)
    return plan


def _remember_grads(plan, grads):
    """Weak references only (as on the CPU): the cache never keeps a gradient alive, and
    a new array at a recycled address is never taken for the old one.  Row-sparse
    gradients of a dense plan are densified into a new array every call, so they are
    never remembered."""
    if any(isinstance(g, RowSparseArray) for g in grads):
        plan.grad_refs = None
        return
    try:
        plan.grad_refs = [weakref.ref(g) for g in grads]
    except TypeError:          # gradients that take no weak reference: re-read every call
        plan.grad_refs = None


def _same_grads(plan, grads):
    refs = plan.grad_refs
    return refs is not None and len(refs) == len(grads) and all(r() is g for r, g in zip(refs, grads))


def _refresh_grads(opt, plan, grads):
    """New gradient arrays for a cached plan: check them, rewrite the gradient column.
    False when a gradient changed its storage format (the plan must be rebuilt)."""
    checked = [_check_grad(opt, k, w, g, False) for k, (w, g) in enumerate(zip(plan.dev_weights, grads))]
    for group in plan.groups:
        members = range(len(grads)) if group.positions is None else group.positions
        if any(checked[k].dtype != group.g_dtype for k in members):
            return False
    for group in plan.groups:
        members = range(len(grads)) if group.positions is None else group.positions
        column = np.array([_device.address(checked[k]) for k in members], dtype=np.int64)
        if not np.array_equal(column, group.ptrs_host[:, 1]):
            group.ptrs_host[:, 1] = column
            group.ptrs.copy_to_device(group.ptrs_host)
    _remember_grads(plan, grads)
    plan.grad_keep = checked
    return True


def _plan(opt, indices, weights, grads, states):
    key = (_GPU_KEY, tuple(indices))
    plan = opt._plans.get(key)
    if (plan is not None and len(plan.weights) == len(weights)
            and all(map(operator.is_, weights, plan.weights))
            and all(map(operator.is_, states, plan.states))):
        if _same_grads(plan, grads):
            plan.grad_keep = grads       # the rules never read them: the table has the addresses
        elif not _refresh_grads(opt, plan, grads):
            plan = None
        if plan is not None:
            plan.indices = indices
            opt._plans.move_to_end(key)
            return plan
    plan = _build_plan(opt, key, indices, weights, grads, states)
    opt._plans[key] = plan
    if len(opt._plans) > 4096:
        opt._plans.popitem(last=False)
    return plan


def _row_plan(opt, indices, weights, grads, states):
    """Plan of a lazy row-sparse update: its 'tensors' are the listed rows, addressed
    directly on the device (weight, gradient data, master copy and state rows)."""
    checked = _validated(opt, weights, grads, states, rows_ok=True)
    plan = _start_plan(opt, None, indices, weights, grads, states, checked)
    plan.grad_keep = [_device.as_device_array(c[1].data) for c in checked]
    plan.grad_refs = None
    plan.slots = None
    by_layout = {}
    for k, c in enumerate(checked):
        by_layout.setdefault(_layout(*c), []).append(k)
    for layout, members in by_layout.items():
        ptr_parts, owners, row_lens = [], [], []
        for k in members:
            weight, grad, master, leaves = checked[k]
            n_rows = weight.shape[0]
            row_len = weight.size // n_rows if n_rows else 0
            rows = np.asarray(_rows_on_host(grad.indices), dtype=np.int64)
            data = _device.as_device_array(grad.data)
            cols = [_device.address(weight) + rows * (row_len * weight.dtype.itemsize),
                    _device.address(data) + np.arange(rows.size, dtype=np.int64) * (row_len * data.dtype.itemsize)]
            base = weight if master is None else master
            cols.append(_device.address(base) + rows * (row_len * base.dtype.itemsize))
            for leaf in leaves:
                cols.append(_device.address(leaf) + rows * ((leaf.size // n_rows) * leaf.dtype.itemsize))
            ptr_parts.append(np.stack(cols, axis=1) if rows.size else np.zeros((0, len(cols)), np.int64))
            owners.append(np.full(rows.size, k, dtype=np.int64))
            row_lens.append(np.full(rows.size, row_len, dtype=np.int64))
        group = _new_group(layout, np.concatenate(owners))
        _upload_tables(group, np.concatenate(ptr_parts), np.concatenate(row_lens))
        plan.groups.append(group)
    return plan


def _rows_on_host(indices):
    """Row indices of a row-sparse gradient on the host (they build the address table);
    device-resident indices are copied once per call."""
    if _device.is_device_array(indices):
        return _device.to_host(indices)
    return indices


def _densify(grad, weight):
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
        rows = cuda.to_device(np.ascontiguousarray(_rows_on_host(grad.indices), dtype=np.int64))
        flat_out = out.reshape(out.size).view(bits)
        flat_data = data.reshape(data.size).view(bits) if data.size else cuda.device_array(1, bits)
        threads = config.threads_per_block
        grid = max(1, min(config.max_blocks, (out.size + threads - 1) // threads))
        densify_rows_gpu[grid, threads](rows, flat_data, flat_out, np.int64(row_len))
    return out


# --------------------------------------------------------------------------- update and launch

def update(opt, indices, weights, grads, states):
    """One update call on device arrays (what ``Optimizer.update`` does for host ones)."""
    _device.cuda_module()
    if not opt.use_fused_step:
        raise TypeError("%s(use_fused_step=False) runs the NumPy step(), which needs host arrays; "
                        "device arrays are updated by the fused kernels (use_fused_step=True)"
                        % type(opt).__name__)
    if opt.sparse_updates_rows():
        sparse = [k for k, g in enumerate(grads) if isinstance(g, RowSparseArray)]
        if sparse:
            return _update_rows(opt, indices, weights, grads, states, sparse)
    plan = _plan(opt, indices, weights, grads, states)
    opt._active = plan
    try:
        opt._update_count(indices)
        opt.fused_step(indices, plan.dev_weights, plan.grad_keep, plan.dev_states)
    finally:
        opt._active = None
        plan.grad_keep = None


def _update_rows(opt, indices, weights, grads, states, sparse):
    from .optimizer import _check_unique
    _check_unique(tuple(indices))
    sparse_set = set(sparse)
    dense = [k for k in range(len(indices)) if k not in sparse_set]

    def pick(ks, values):
        return [values[k] for k in ks]
    parts = []
    if dense:
        parts.append(_plan(opt, pick(dense, indices), pick(dense, weights), pick(dense, grads),
                           pick(dense, states)))
    parts.append(_row_plan(opt, pick(sparse, indices), pick(sparse, weights), pick(sparse, grads),
                           pick(sparse, states)))
    opt._update_count(indices)
    try:
        for plan in parts:
            opt._active = plan
            opt.fused_step(plan.indices, plan.dev_weights, plan.grad_keep, plan.dev_states)
    finally:
        opt._active = None
        for plan in parts:
            plan.grad_keep = None


def _device_args(group, key, value, ct):
    """``value`` (host array) as a device array of the compute dtype, in a buffer the
    group keeps (one allocation per shape, one copy per launch)."""
    host = np.ascontiguousarray(value, dtype=ct)
    buf = group.array_buffers.get(key)
    if buf is None or buf.shape != host.shape or buf.dtype != host.dtype:
        buf = _device.cuda_module().to_device(host)
        group.array_buffers[key] = buf
    else:
        buf.copy_to_device(host)
    return buf


def launch_gpu(opt, kernel, indices, weights, grads, states, lrs, wds, scalars=(), coefs=None,
               n_states=None):
    """``Optimizer._launch`` on the device: run the GPU twin of ``kernel`` (a CPU kernel of
    ``mxopt_numba.kernels``) over the chunk, once per storage layout.

    Same arguments, casts and state-count check as the CPU launch.  Returns None for an
    update kernel and, for a reduction (``norms``, LAMB/LANS phase 1, LBSGD sums), the
    float64 per-tensor sums as a host array with one row per tensor.
    """
    plan = opt._active
    if not (getattr(plan, "on_device", False) and plan.indices is indices):
        plan = _plan(opt, indices, weights, grads, states)
    twin = twin_of(kernel)
    reduction = hasattr(twin, "run")
    n = len(plan.dev_weights)
    lrs = np.asarray(lrs, dtype=np.float64)
    wds = np.asarray(wds, dtype=np.float64)
    coefs = np.zeros((n, 1)) if coefs is None else np.asarray(coefs, dtype=np.float64)
    if coefs.ndim == 1:
        coefs = coefs[:, None]
    out = np.zeros((n, getattr(twin, "width", 2)), dtype=np.float64) if reduction else None
    for group in plan.groups:
        n_cols = group.ptrs_host.shape[1]
        if n_states is not None and n_cols - 3 != n_states:
            raise ValueError("%s expects %d state array(s) per weight, the given states hold %d; "
                             "were the states created with other hyperparameters?"
                             % (type(opt).__name__, n_states, n_cols - 3))
        ct = group.compute
        rows = slice(None) if group.positions is None else group.positions
        glrs, gwds, gcoefs = lrs[rows], wds[rows], coefs[rows]
        m, width = glrs.shape[0], gcoefs.shape[1]
        packed = _device_args(group, "per_tensor", np.concatenate([glrs, gwds, gcoefs.ravel()]), ct)
        d_lrs, d_wds = packed[:m], packed[m:2 * m]
        d_coefs = packed[2 * m:].reshape(m, width)
        rule = [_device_args(group, p, s, ct) if isinstance(s, np.ndarray) else ct(s)
                for p, s in enumerate(scalars)]
        if group.n_blocks == 0:
            continue
        args = (group.blocks, group.ptrs, d_lrs, d_wds, d_coefs, group.w_fmt, group.g_fmt,
                group.master_fmt, group.state_fmt, *rule)
        grid = max(1, min(group.n_blocks, int(config.max_blocks)))
        sums = _call(twin, grid, int(config.threads_per_block), args,
                     _scratch(group, twin) if reduction else None)
        if reduction:
            out[rows] = sums.copy_to_host()
    return out
