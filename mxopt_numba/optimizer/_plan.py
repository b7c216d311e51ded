"""The launch-plan layer: everything between ``Optimizer.update`` and a kernel.

One update call hands this layer its tensors (weights, gradients, states).  The layer

1. validates every array the kernels will touch — type, dtype, shape, contiguity,
   writability, the state's structure against what ``create_state`` builds, row-sparse
   indices, and that no written array overlaps another array of the call — before
   anything is written;
2. groups the tensors by storage layout and builds, per group, the int64 address table
   (one row per tensor: weight, gradient, master copy, states) and the block table
   ``(tensor, start, length)`` the kernels walk;
3. keeps the result as a :class:`Plan`, reused while the caller passes the very same
   weights and states: each later call re-checks, in one compiled pass over the object
   headers, that every array is still what the tables say (same memory, still writeable,
   gradients of the same dtype and shape, no overlap) and rewrites the gradient column;
4. runs kernels over a plan (:func:`launch_kernel`), one call per group.

Arrays reach the layer through a backend — :class:`HostBackend` here for NumPy arrays,
``_gpu_launch.CudaBackend`` for CUDA device arrays — that answers the few questions that
differ by device (array test, dtype, address, contiguity, storage formats, table upload,
densify, run).  Validation, grouping, caching and the launch sequence exist once.

A plan holds no reference to a gradient (it keeps the weights and states it addresses), and a :class:`PlanCache` is bounded in
bytes.  Rules receive the plan explicitly: the ``indices`` and ``weights`` lists passed to
``fused_step`` are :class:`PlanList` objects whose ``plan`` attribute is the plan.
"""
import collections
import operator

import numpy as np

from .. import _device
from .._state_tree import describe, map_state, signature, state_leaves
from ..kernels import _launch as launch
from ..sparse import RowSparseArray
from . import _headers

__all__ = ["Plan", "PlanCache", "PlanList", "HostBackend", "HOST", "build_plan", "build_row_plan",
           "reuse", "launch_kernel", "plan_of", "state_leaves", "map_state", "check_unique"]

_SUPPORTED = "float16, bfloat16, float32 or float64"


def _has_list(state):
    if isinstance(state, list):
        return True
    return isinstance(state, tuple) and any(_has_list(s) for s in state)


def check_unique(key):
    if len(set(key)) != len(key):
        dup = [i for i, c in collections.Counter(key).items() if c > 1]
        raise ValueError("indices must be unique within one update call; repeated: %r" % dup[:5])


# --------------------------------------------------------------------------- backends

class HostBackend:
    """NumPy arrays in host memory; kernels are the ``@njit(parallel=True)`` CPU loops."""

    name = "host"
    fast_checks = True       # object headers can be read in bulk (see ``_headers``)

    @staticmethod
    def owns(x):
        return isinstance(x, np.ndarray)

    @staticmethod
    def dtype(x):
        return x.dtype

    address = staticmethod(launch.address)

    @staticmethod
    def nbytes(x):
        return x.nbytes

    @staticmethod
    def is_c_contiguous(x):
        return x.flags.c_contiguous

    @staticmethod
    def is_writeable(x):
        return x.flags.writeable

    @staticmethod
    def normalised(x):
        return x

    @staticmethod
    def foreign_error(name, x, other=None):
        if _device.is_device_array(x):
            return _device.mixed_error(name, x, other or "another array of the call")
        return TypeError("%s must be a numpy array, got %s" % (name, type(x).__name__))

    @staticmethod
    def contiguous_grad(name, g):
        return np.ascontiguousarray(g)      # documented copy: kernels read flat memory

    @staticmethod
    def format(dtype):
        return launch.storage_format(dtype)

    @staticmethod
    def densify(grad, weight):
        return grad.todense()

    @staticmethod
    def host_rows(indices, n_rows):
        return indices          # checked by RowSparseArray.validate

    @staticmethod
    def upload(group, ptrs, sizes):
        group.ptrs_host = np.ascontiguousarray(ptrs, dtype=np.int64)
        group.ptrs = group.ptrs_host
        group.blocks = launch.block_table(sizes)
        group.n_blocks = group.blocks.shape[0]
        group.n_elements = int(np.sum(sizes))

    @staticmethod
    def grad_column_changed(group):
        pass                                 # the kernels read ptrs_host itself

    @staticmethod
    def run(kernel, group, lrs, wds, coefs, scalars):
        ct = group.compute
        return launch.run(kernel, group.n_elements, group.blocks, group.ptrs, lrs.astype(ct), wds.astype(ct),
                          np.ascontiguousarray(coefs, dtype=ct), group.w_fmt, group.g_fmt, group.master_fmt,
                          group.state_fmt,
                          *[np.ascontiguousarray(s, dtype=ct) if isinstance(s, np.ndarray) else ct(s)
                            for s in scalars])


HOST = HostBackend()


# --------------------------------------------------------------------------- plans

class PlanList(list):
    """A list of indices, weights or gradients handed to ``fused_step``, carrying the plan
    that validated them (``plan``), so that ``_launch`` runs over it without a lookup."""

    __slots__ = ("plan",)

    def __init__(self, items, plan):
        super().__init__(items)
        self.plan = plan


def plan_of(seq):
    """The plan carried by a :class:`PlanList`, else None."""
    return getattr(seq, "plan", None)


class Group:
    """Tensors of one storage layout inside a plan, with their tables."""

    __slots__ = ("positions", "ptrs_host", "ptrs", "blocks", "n_blocks", "n_elements", "w_fmt", "g_fmt",
                 "master_fmt", "state_fmt", "compute", "g_dtype", "n_cols", "signature", "proxy", "buffers")


class Plan:
    """Validated tensors of one update call and their address tables.

    ``rows``: a lazy row-sparse plan, whose 'tensors' are the listed rows of each weight
    (``sources`` then holds the validated whole tensors, for rules that need them).
    """

    __slots__ = ("backend", "key", "indices", "weights", "weight_objs", "weight_ids", "states", "rule_states", "slots",
                 "groups", "rows", "sources", "counts", "written", "grads", "mutable_states", "headers", "grad_addr", "nbytes",
                 "__weakref__")

    def release(self):
        """Drop what belongs to one call only (the caller's gradients above all)."""
        self.grads = None
        self.sources = None


class PlanCache:
    """Plans by key, least recently used first out, bounded in count and in table bytes.

    A key is admitted the second time it is offered: calls whose tensor lists never repeat
    (a random subset of parameters each step) would otherwise fill the cache with plans
    that are never used again.  Keys seen once are remembered by hash only, in a ring of
    ``max_plans`` entries."""

    def __init__(self, max_bytes=64 << 20, max_plans=1 << 14):
        self.max_bytes, self.max_plans = max_bytes, max_plans
        self._plans = collections.OrderedDict()
        self._seen = collections.OrderedDict()
        self.nbytes = 0

    def get(self, key):
        plan = self._plans.get(key)
        if plan is not None:
            self._plans.move_to_end(key)
        return plan

    def put(self, key, plan):
        old = self._plans.pop(key, None)
        if old is not None:
            self.nbytes -= old.nbytes
        else:
            tag = hash(key)
            if self._seen.pop(tag, None) is None:
                self._seen[tag] = True
                if len(self._seen) > self.max_plans:
                    self._seen.popitem(last=False)
                return
        self._plans[key] = plan
        self.nbytes += plan.nbytes
        while self._plans and (self.nbytes > self.max_bytes or len(self._plans) > self.max_plans):
            _, dropped = self._plans.popitem(last=False)
            self.nbytes -= dropped.nbytes

    def clear(self):
        self._plans.clear()
        self._seen.clear()
        self.nbytes = 0

    def __len__(self):
        return len(self._plans)

    def __iter__(self):
        return iter(self._plans.values())


# --------------------------------------------------------------------------- validation

def _check_weight(be, name, w):
    if not be.owns(w):
        raise be.foreign_error(name, w)
    if not launch.supported(be.dtype(w)):
        raise TypeError("%s has dtype %s: expected %s" % (name, be.dtype(w), _SUPPORTED))
    w = be.normalised(w)
    if not be.is_c_contiguous(w):
        raise ValueError("%s must be C-contiguous (it is updated in place); pass "
                         "numpy.ascontiguousarray(w) and keep that array" % name)
    if not be.is_writeable(w):
        raise ValueError("%s is read-only; it is updated in place" % name)
    return w


def _check_state_array(be, name, a, size, weight_name):
    if not be.owns(a):
        raise be.foreign_error(name, a, weight_name)
    if not launch.supported(be.dtype(a)):
        raise TypeError("%s has dtype %s: expected %s" % (name, be.dtype(a), _SUPPORTED))
    a = be.normalised(a)
    if a.size != size:
        raise ValueError("%s has %d elements, expected %d" % (name, a.size, size))
    if not be.is_c_contiguous(a) or not be.is_writeable(a):
        raise ValueError("%s must be a writeable C-contiguous array" % name)
    return a


def check_grad(be, opt, k, weight, grad, rows_ok):
    """The gradient of ``weight`` as the kernels will read it: row-sparse gradients stay
    row-sparse where the rule updates only the listed rows (``rows_ok``), else become
    dense; dense gradients must match the weight's shape and be a separate array."""
    name = "grads[%d]" % k
    if isinstance(grad, RowSparseArray):
        grad.validate(tuple(weight.shape))
        if not be.owns(grad.data):
            raise be.foreign_error(name + ".data", grad.data, "weights[%d]" % k)
        if not launch.supported(be.dtype(grad.data)):
            raise TypeError("%s has dtype %s: expected %s" % (name, be.dtype(grad.data), _SUPPORTED))
        if rows_ok:
            return grad
        grad = be.densify(grad, weight)
    if not be.owns(grad):
        if be is HOST and not _device.is_device_array(grad):
            raise TypeError("%s must be a numpy array or row_sparse_array, got %s" % (name, type(grad).__name__))
        raise be.foreign_error(name, grad, "weights[%d]" % k)
    if not launch.supported(be.dtype(grad)):
        raise TypeError("%s has dtype %s: expected %s" % (name, be.dtype(grad), _SUPPORTED))
    g = be.normalised(grad)
    if tuple(g.shape) != tuple(weight.shape):
        raise ValueError("%s has shape %s but its weight has shape %s" % (name, tuple(g.shape), tuple(weight.shape)))
    if not be.is_c_contiguous(g):
        g = be.contiguous_grad(name, g)
    return g


def _expected_signature(be, opt, index, weight, cache):
    """Structure of the state ``create_state_multi_precision`` would build for ``weight``
    (computed on an empty stand-in of the same dtype and trailing shape)."""
    dtype = np.dtype(be.dtype(weight))
    key = (dtype.str, tuple(weight.shape[1:]), weight.ndim)
    sig = cache.get(key)
    if sig is None:
        proxy = np.zeros((0,) + tuple(weight.shape[1:]) if weight.ndim else (), dtype=dtype)
        sig = (opt.state_signature(index, proxy), (index, proxy))
        cache[key] = sig
    return sig


def validate(be, opt, indices, weights, grads, states, rows_ok=False, structure=True):
    """Check every tensor of a call.  Returns per tensor ``(weight, grad, master, leaves,
    sig, proxy)`` with arrays as the backend normalises them, and the call's
    :class:`Written` arrays.  Raises before anything is written.

    ``structure=False`` (a kernel launched directly, with states of the kernel's own
    layout): the states are not compared with what ``create_state`` builds; every array
    is still checked, and the launch refuses a table with fewer columns than the kernel
    reads."""
    out = []
    sig_cache = {}
    for k, (index, weight, grad, state) in enumerate(zip(indices, weights, grads, states)):
        wname = "weights[%d]" % k
        w = _check_weight(be, wname, weight)
        g = check_grad(be, opt, k, w, grad, rows_ok)
        expected, proxy = _expected_signature(be, opt, index, w, sig_cache) if structure else (None, None)
        got = signature(state, be.dtype)
        if structure and got != expected:
            raise ValueError(
                "states[%d] (index %r) does not fit %s with a %s weight%s: expected a state shaped %s "
                "(what create_state_multi_precision builds now), got %s; were the states made by another "
                "optimizer, another precision or other hyperparameters?"
                % (k, index, type(opt).__name__, np.dtype(be.dtype(w)).name,
                   " and multi_precision" if opt.uses_master(w) else "", describe(expected), describe(got)))
        if opt.pairs_state(w) and isinstance(state, (tuple, list)) and len(state) == 2:
            master = _check_state_array(be, "states[%d] master copy" % k, state[0], w.size, wname)
            inner = state[1]
        else:
            master, inner = None, state
        leaves = tuple(_check_state_array(be, "states[%d] leaf %d" % (k, p), leaf, opt._leaf_size(w, p), wname)
                       for p, leaf in enumerate(state_leaves(inner)))
        out.append((w, g, master, leaves, expected, proxy))
    written = Written(be, out)
    written.check_grads(be, [c[1] for c in out])
    return out, written


def _intervals(be, arrays):
    starts = np.fromiter((be.address(a) for a in arrays), dtype=np.int64, count=len(arrays))
    sizes = np.fromiter((be.nbytes(a) for a in arrays), dtype=np.int64, count=len(arrays))
    return starts, starts + sizes


_WRITTEN_TWICE = ("every weight and state of one update call must be a separate array (the same "
                  "array under two indices would be updated twice, in parallel)")


def check_disjoint(be, arrays, names, why=_WRITTEN_TWICE):
    """Raise when two of ``arrays`` (arrays the kernels write) share memory; returns their
    non-empty intervals sorted by start, for the gradient checks."""
    keep = [i for i, a in enumerate(arrays) if a.size]
    starts, ends = _intervals(be, [arrays[i] for i in keep])
    order = np.argsort(starts, kind="stable")
    s_sorted, e_sorted = starts[order], ends[order]
    clash = np.nonzero(s_sorted[1:] < np.maximum.accumulate(e_sorted)[:-1])[0]
    if clash.size:
        second = order[clash[0] + 1]
        first = order[np.nonzero(e_sorted[:clash[0] + 1] > s_sorted[clash[0] + 1])[0][0]]
        a, b = sorted((names[keep[first]], names[keep[second]]))
        raise ValueError("%s and %s share memory: %s" % (a, b, why))
    return s_sorted, e_sorted, [names[keep[i]] for i in order]


def _first_overlap(starts, ends, g_starts, g_ends):
    """Position of the first interval ``[g_starts, g_ends)`` overlapping one of the sorted,
    disjoint intervals ``[starts, ends)``, or -1 (vectorised: plans are built without
    compiled code, so a first call loads no more than its kernel)."""
    if not starts.size or not g_starts.size:
        return -1
    j = np.searchsorted(starts, g_ends, side="left") - 1
    hits = np.nonzero((j >= 0) & (ends[np.maximum(j, 0)] > g_starts))[0]
    return int(hits[0]) if hits.size else -1


class Written:
    """The arrays a call's kernels write (weights, master copies, states), checked to be
    disjoint, with their memory intervals sorted by start: what every gradient of the
    call, and of later calls through the same plan, must not overlap."""

    def __init__(self, be, checked):
        self.arrays, names = [], []
        for k, (w, _, master, leaves, _, _) in enumerate(checked):
            self.arrays.append(w)
            names.append("weights[%d]" % k)
            if master is not None:
                self.arrays.append(master)
                names.append("states[%d] master copy" % k)
            for p, leaf in enumerate(leaves):
                self.arrays.append(leaf)
                names.append("states[%d] leaf %d" % (k, p))
        self.starts, self.ends, self.names = check_disjoint(be, self.arrays, names)

    def check_grads(self, be, grads):
        """Raise when a dense gradient shares memory with a written array."""
        dense = [(k, g) for k, g in enumerate(grads) if not isinstance(g, RowSparseArray) and g.size]
        if not dense or not self.starts.size:
            return
        g_starts, g_ends = _intervals(be, [g for _, g in dense])
        hit = _first_overlap(self.starts, self.ends, g_starts, g_ends)
        if hit >= 0:
            k = dense[hit][0]
            what = self.names[np.searchsorted(self.starts, g_ends[hit], side="left") - 1]
            if what == "weights[%d]" % k:
                raise ValueError("grads[%d] shares memory with its weight: pass a separate gradient array" % k)
            raise ValueError("grads[%d] shares memory with %s: pass a separate gradient array" % (k, what))


# --------------------------------------------------------------------------- building

def _layout(be, w, g, master, leaves):
    data = g.data if isinstance(g, RowSparseArray) else g
    state_dtype = be.dtype(leaves[0]) if leaves else be.dtype(w)
    master_dtype = None if master is None else np.dtype(be.dtype(master))
    return (np.dtype(be.dtype(w)), np.dtype(be.dtype(data)), master_dtype, np.dtype(state_dtype), len(leaves))


def _new_group(be, layout, positions, sig, proxy):
    w_dtype, g_dtype, master_dtype, s_dtype, n_leaves = layout
    group = Group()
    group.positions = positions
    group.g_dtype = g_dtype
    group.w_fmt = be.format(w_dtype)
    group.g_fmt = be.format(g_dtype)
    # a float32 master copy, or a 16-bit Kahan compensation (the format tells the kernels)
    group.master_fmt = None if master_dtype is None else be.format(master_dtype)
    group.state_fmt = be.format(s_dtype)
    group.compute = launch.compute_dtype(w_dtype)
    group.n_cols = 3 + n_leaves
    group.signature, group.proxy = sig, proxy
    group.buffers = {}
    return group


def _start(be, opt, key, indices, weights, states, checked, rows):
    plan = Plan()
    plan.backend, plan.key, plan.rows = be, key, rows
    plan.indices = PlanList(indices, plan)
    plan.weights = PlanList([c[0] for c in checked], plan)
    plan.weight_objs = list(weights)
    plan.weight_ids = _headers.ids_of(plan.weight_objs)
    plan.states = list(states)
    plan.rule_states = plan.states if be is HOST else [map_state(s, be.normalised) for s in states]
    plan.mutable_states = [(k, state_leaves(s)) for k, s in enumerate(states) if _has_list(s)]
    plan.groups = []
    plan.sources = None
    plan.written = None
    plan.headers = None
    plan.grad_addr = None
    return plan


def _by_layout(be, checked):
    by_layout = collections.OrderedDict()
    for k, c in enumerate(checked):
        by_layout.setdefault(_layout(be, *c[:4]), []).append(k)
    return by_layout


def build_plan(be, opt, key, indices, weights, grads, states, structure=True):
    """A dense plan: every tensor of the call, whole (``structure``: see :func:`validate`)."""
    check_unique(tuple(indices))
    checked, written = validate(be, opt, indices, weights, grads, states, structure=structure)
    plan = _start(be, opt, key, indices, weights, states, checked, rows=False)
    plan.written = written
    plan.grads = PlanList([c[1] for c in checked], plan)
    plan.counts = opt._index_update_count
    plan.slots = plan.counts.slots(tuple(indices), opt.begin_num_update)
    by_layout = _by_layout(be, checked)
    nbytes = 0
    for layout, members in by_layout.items():
        first = checked[members[0]]
        group = _new_group(be, layout, None if len(by_layout) == 1 else np.array(members, dtype=np.int64),
                           first[4], first[5])
        rows = [(w, g, w if m is None else m) + leaves for w, g, m, leaves, _, _ in (checked[k] for k in members)]
        ptrs = np.array([[be.address(a) for a in row] for row in rows], dtype=np.int64)
        be.upload(group, ptrs.reshape(len(members), group.n_cols), [row[0].size for row in rows])
        nbytes += group.ptrs_host.nbytes + group.blocks.nbytes * (1 if be is HOST else 2)
        plan.groups.append(group)
    if be.fast_checks:
        plan.headers = _headers.PlanHeaders(checked, plan.groups, written)
        nbytes += plan.headers.nbytes
    plan.nbytes = nbytes + written.starts.nbytes * 2 + 200 * len(checked) + 1024
    return plan


def build_row_plan(be, opt, indices, weights, grads, states):
    """A lazy row-sparse plan: its 'tensors' are the listed rows of each weight, each row of
    weight, gradient data, master copy and states addressed directly."""
    check_unique(tuple(indices))
    checked, _ = validate(be, opt, indices, weights, grads, states, rows_ok=True)
    plan = _start(be, opt, None, indices, weights, states, checked, rows=True)
    plan.grads = PlanList([be.normalised(c[1].data) for c in checked], plan)
    plan.sources = checked
    plan.counts, plan.slots = None, None
    for layout, members in _by_layout(be, checked).items():
        ptr_parts, owners, row_lens = [], [], []
        for k in members:
            weight, grad, master, leaves, _, _ = checked[k]
            n_rows = weight.shape[0]
            row_len = weight.size // n_rows if n_rows else 0
            rows = np.ascontiguousarray(be.host_rows(grad.indices, n_rows), dtype=np.int64)
            data = be.normalised(grad.data)
            cols = [be.address(weight) + rows * (row_len * weight.dtype.itemsize),
                    be.address(data) + np.arange(rows.size, dtype=np.int64) * (row_len * data.dtype.itemsize)]
            base = weight if master is None else master
            cols.append(be.address(base) + rows * (row_len * base.dtype.itemsize))
            for leaf in leaves:
                cols.append(be.address(leaf) + rows * ((leaf.size // n_rows) * leaf.dtype.itemsize))
            ptr_parts.append(np.stack(cols, axis=1) if rows.size else np.zeros((0, len(cols)), np.int64))
            owners.append(np.full(rows.size, k, dtype=np.int64))
            row_lens.append(np.full(rows.size, row_len, dtype=np.int64))
        first = checked[members[0]]
        group = _new_group(be, layout, np.concatenate(owners), first[4], first[5])
        be.upload(group, np.concatenate(ptr_parts), np.concatenate(row_lens))
        plan.groups.append(group)
    plan.nbytes = 0
    return plan


# --------------------------------------------------------------------------- reuse

def reuse(plan, opt, weights, grads, states, verified=False):
    """``plan`` made valid for this call's arrays, or None when it must be rebuilt.

    The weights and states must be the plan's very objects; every array is re-checked
    (memory, dtype, writability, the state structure the rule expects now) and the
    gradient column rewritten for this call's gradients.  Raises for a gradient that is
    invalid whatever the plan.  ``verified``: the caller (an Updater chunk) has already
    checked that the weights and states are the plan's objects."""
    if not verified and not (_headers.holds(weights, plan.weight_ids) and len(states) == len(plan.states)
                             and all(map(operator.is_, states, plan.states))):
        return None
    for k, leaves in plan.mutable_states:
        now = state_leaves(states[k])
        if len(now) != len(leaves) or not all(map(operator.is_, now, leaves)):
            return None
    be = plan.backend
    for group in plan.groups:
        if group.proxy is not None and opt.state_signature(*group.proxy) != group.signature:
            return None          # a hyperparameter that shapes the state changed: validate anew
    if plan.headers is not None:
        status = plan.headers.refresh(grads)
        if status == _headers.OK:
            plan.grads = grads
            return plan
        if status == _headers.STALE:
            return None
    # slow path: gradients that are not plain contiguous arrays of the planned dtypes
    for k, w in enumerate(plan.weights):
        if not be.is_writeable(w):
            raise ValueError("weights[%d] is read-only; it is updated in place" % k)
    checked = [check_grad(be, opt, k, w, g, False) for k, (w, g) in enumerate(zip(plan.weights, grads))]
    for group in plan.groups:
        members = range(len(grads)) if group.positions is None else group.positions
        if any(np.dtype(be.dtype(checked[k])) != group.g_dtype for k in members):
            return None
    plan.written.check_grads(be, checked)
    for group in plan.groups:
        members = range(len(grads)) if group.positions is None else group.positions
        column = np.array([be.address(checked[k]) for k in members], dtype=np.int64)
        if not np.array_equal(column, group.ptrs_host[:, 1]):
            group.ptrs_host[:, 1] = column
            be.grad_column_changed(group)
    plan.grads = PlanList(checked, plan)
    return plan


# --------------------------------------------------------------------------- launch

def launch_kernel(opt, plan, kernel, lrs, wds, scalars=(), coefs=None, n_states=None):
    """Run ``kernel`` over ``plan``, one call per group; reductions return their per-tensor
    rows in call order (None for update kernels)."""
    n = len(plan.weights)
    lrs = np.asarray(lrs, dtype=np.float64)
    wds = np.asarray(wds, dtype=np.float64)
    coefs = np.zeros((n, 1)) if coefs is None else np.asarray(coefs, dtype=np.float64)
    if coefs.ndim == 1:
        coefs = coefs[:, None]
    if lrs.shape != (n,) or wds.shape != (n,) or coefs.shape[0] != n:
        raise ValueError("%s: one learning rate, weight decay and coefficient row per tensor expected "
                         "(%d tensors), got %s, %s and %s" % (type(opt).__name__, n, lrs.shape, wds.shape,
                                                             coefs.shape))
    needed = launch.columns_read(kernel)
    out = None
    for group in plan.groups:
        if n_states is not None and group.n_cols - 3 != n_states:
            raise ValueError("%s expects %d state array(s) per weight, the given states hold %d; "
                             "were the states created with other hyperparameters?"
                             % (type(opt).__name__, n_states, group.n_cols - 3))
        if group.n_cols < needed:
            raise ValueError("%s: kernel %s reads %d state array(s) per weight, the states hold %d"
                             % (type(opt).__name__, getattr(kernel, "__name__", kernel), needed - 3,
                                group.n_cols - 3))
        rows = group.positions
        if rows is None:
            glrs, gwds, gcoefs = lrs, wds, coefs
        else:
            glrs, gwds, gcoefs = lrs[rows], wds[rows], coefs[rows]
        result = plan.backend.run(kernel, group, glrs, gwds, gcoefs, scalars)
        if result is None:
            continue
        if rows is None:
            out = result
        else:
            if out is None:
                out = np.zeros((n,) + result.shape[1:], dtype=result.dtype)
            out[rows] = result
    return out
