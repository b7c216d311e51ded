"""The Optimizer base class: hyperparameters, update counts, lr/wd resolution, state
layout, multi-precision, and the launch of fused kernels over many tensors at once.

Subclasses implement ``create_state``, a readable NumPy ``step`` and a ``fused_step``
that prepares per-tensor scalars and calls :meth:`Optimizer._launch`.
"""
from __future__ import annotations

import collections
import math
import numbers
import operator
import warnings
import weakref
from typing import Any, Callable

import numpy as np

from .. import _device
from .. import registry as _registry_mod
from ..kernels import _launch as launch
from ..sparse import RowSparseArray

__all__ = ["Optimizer", "register", "create", "DefaultValue"]


class DefaultValue(float):
    """A constructor default that the caller did not pass (prints as the plain number).

    Lets the base class tell ``SGD(lr_scheduler=s)`` (keep ``s.base_lr``) from
    ``SGD(learning_rate=0.1, lr_scheduler=s)`` (overwrite it, as MXNet does).
    """

    def __repr__(self):
        return float.__repr__(self)


def is_low_precision(dtype):
    dtype = np.dtype(dtype)
    return dtype == np.float16 or dtype.name == "bfloat16"


def state_leaves(state):
    """The arrays of a (nested tuple/list) state in order, ``None`` entries dropped."""
    if state is None:
        return ()
    if isinstance(state, np.ndarray):
        return (state,)
    if isinstance(state, (tuple, list)):
        out = ()
        for s in state:
            out += state_leaves(s)
        return out
    raise TypeError("optimizer state must be an array, None or a tuple of them, got %r" % type(state))


def map_state(state, fn):
    if state is None:
        return None
    if isinstance(state, np.ndarray):
        return fn(state)
    return type(state)(map_state(s, fn) for s in state)


def _is_index(x):
    return isinstance(x, (numbers.Integral, str))


def _as_lists(indices, weights, grads, states):
    """Accept MXNet 2.x lists and MXNet 1.x scalars; return four lists of equal length."""
    if _is_index(indices):
        return [indices], [weights], [grads], [states]
    indices, weights, grads, states = (list(x) if isinstance(x, (list, tuple)) else x
                                       for x in (indices, weights, grads, states))
    for name, x in (("weights", weights), ("grads", grads), ("states", states)):
        if not isinstance(x, list):
            raise TypeError("%s must be a list when indices is a list, got %s" % (name, type(x).__name__))
        if len(x) != len(indices):
            raise ValueError("%s has %d entries but indices has %d" % (name, len(x), len(indices)))
    return indices, weights, grads, states


class _IndexCounts(collections.abc.MutableMapping):
    """Update count per parameter index (a dict to the user, an array to the kernels)."""

    def __init__(self):
        self._slot = {}
        self._values = np.zeros(16, dtype=np.int64)
        self._slot_cache = collections.OrderedDict()

    def _new_slot(self, key, value):
        slot = len(self._slot)
        if slot == self._values.size:
            self._values = np.concatenate([self._values, np.zeros(slot, np.int64)])
        self._slot[key] = slot
        self._values[slot] = value
        return slot

    def slots(self, key_tuple, begin):
        slots = self._slot_cache.get(key_tuple)
        if slots is None:
            slots = np.array([self._slot[k] if k in self._slot else self._new_slot(k, begin)
                              for k in key_tuple], dtype=np.int64)
            self._slot_cache[key_tuple] = slots
            if len(self._slot_cache) > 64:
                self._slot_cache.popitem(last=False)
        return slots

    def values_at(self, slots):
        return self._values[slots]

    def bump(self, slots):
        self._values[slots] += 1
        return self._values[slots]

    def __getitem__(self, key):
        return int(self._values[self._slot[key]])

    def __setitem__(self, key, value):
        if key in self._slot:
            self._values[self._slot[key]] = value
        else:
            self._new_slot(key, value)

    def __delitem__(self, key):
        raise TypeError("update counts cannot be deleted")

    def __iter__(self):
        return iter(self._slot)

    def __len__(self):
        return len(self._slot)

    def __repr__(self):
        return repr(dict(self))


class _Group:
    """Tensors of one storage layout inside a launch plan."""

    __slots__ = ("positions", "ptrs", "blocks", "n_elements", "w_fmt", "g_fmt", "master_fmt",
                 "state_fmt", "compute", "keep")


class _Plan:
    """Validated tensors of one update call, with their address tables (reused while the
    caller passes the very same array objects)."""

    __slots__ = ("key", "indices", "weights", "grad_refs", "grads_direct", "grad_dtypes", "states", "slots",
                 "groups", "grad_keep")


class Optimizer:
    """Base class of every optimizer (MXNet 2.x signature and semantics).

    Parameters
    ----------
    rescale_grad : float
        Every gradient is multiplied by this before anything else.
    param_idx2name : dict, optional
        index -> parameter name; name-keyed lr/wd multipliers and name rules (LARS) use it.
    wd : float
        Weight decay (L2 strength), scaled per parameter by ``wd_mult``.
    clip_gradient : float, optional
        Clip the rescaled gradient to ``[-clip_gradient, clip_gradient]``; None or 0
        (or a negative value) means no clipping.
    learning_rate : float, optional
        Base learning rate (0.01 when neither it nor a scheduler is given).
    lr_scheduler : LRScheduler, optional
        Gives the learning rate as a function of ``num_update``.
    sym : object, optional
        Anything with ``attr_dict()`` and ``list_arguments()``; its ``__lr_mult__`` /
        ``__wd_mult__`` attributes seed the multipliers.
    begin_num_update : int
        Update count a parameter starts from.
    multi_precision : bool
        Keep a float32 master copy of float16 / bfloat16 weights (and float32 states).
    param_dict : dict, optional
        index -> object with ``lr_mult`` and ``wd_mult`` (read at every step).
    aggregate_num : int or inf, optional
        Tensors per kernel launch in the Updater (None: 1; ``numpy.inf``: all).
    use_fused_step : bool, optional
        Run the fused kernels (``fused_step``) rather than the NumPy ``step``.
    """

    #: default of ``use_fused_step`` when the caller passes None
    fused_by_default = False

    #: distributed training sets this to a function that sums per-tensor partial sums of
    #: squares across processes (layer-wise rules call it on their norms); None alone
    norm_reducer = None

    def __init__(self, rescale_grad: float = 1.0, param_idx2name: dict[int, str] | None = None,
                 wd: float = 0.0, clip_gradient: float | None = None,
                 learning_rate: float | None = None, lr_scheduler: Callable[[int], float] | None = None,
                 sym: Any = None, begin_num_update: int = 0, multi_precision: bool = False,
                 param_dict: dict[int, Any] | None = None, aggregate_num: float | None = None,
                 use_fused_step: bool | None = None, **kwargs: Any) -> None:
        if kwargs:
            raise TypeError("%s got unexpected keyword argument(s): %s"
                            % (type(self).__name__, ", ".join(sorted(kwargs))))
        self.rescale_grad = _real("rescale_grad", rescale_grad)
        self.wd = _real("wd", wd)
        if clip_gradient is not None:
            clip_gradient = _real("clip_gradient", clip_gradient)
        self.clip_gradient = clip_gradient
        self.lr_scheduler = lr_scheduler
        explicit_lr = learning_rate is not None and not isinstance(learning_rate, DefaultValue)
        if learning_rate is not None:
            learning_rate = _real("learning_rate", learning_rate)
            if learning_rate < 0:
                raise ValueError("learning_rate must be >= 0, got %r" % learning_rate)
        if lr_scheduler is not None:
            if not callable(lr_scheduler) or not hasattr(lr_scheduler, "base_lr"):
                raise TypeError("lr_scheduler must be an LRScheduler, got %r" % (lr_scheduler,))
            if explicit_lr and lr_scheduler.base_lr != learning_rate:
                warnings.warn("learning rate from ``lr_scheduler`` has been overwritten by "
                              "``learning_rate`` in optimizer.", UserWarning, stacklevel=2)
                lr_scheduler.base_lr = learning_rate
            self.lr = lr_scheduler.base_lr
        else:
            self.lr = 0.01 if learning_rate is None else learning_rate
        if not isinstance(begin_num_update, numbers.Integral) or begin_num_update < 0:
            raise ValueError("begin_num_update must be a non-negative int, got %r" % (begin_num_update,))
        self.begin_num_update = int(begin_num_update)
        self.num_update = int(begin_num_update)
        self._all_index_update_counts = {0: _IndexCounts()}
        self._index_update_count = self._all_index_update_counts[0]
        self.multi_precision = bool(multi_precision)
        self.aggregate_num = aggregate_num
        self.use_fused_step = self.fused_by_default if use_fused_step is None else bool(use_fused_step)
        if param_idx2name is None:
            param_idx2name = {}
        if not isinstance(param_idx2name, dict):
            raise TypeError("param_idx2name must be a dict of index -> name, got %s"
                            % type(param_idx2name).__name__)
        self.idx2name = param_idx2name.copy()
        self.sym_info = (sym.attr_dict(), sym.list_arguments()) if sym is not None else ()
        if param_dict is not None and not isinstance(param_dict, dict):
            raise TypeError("param_dict must be a dict of index -> parameter, got %s"
                            % type(param_dict).__name__)
        self.param_dict = param_dict if param_dict else {}
        self.allow_np_array = True
        self._plans = collections.OrderedDict()
        self._active = None
        self.set_lr_mult({})
        self.set_wd_mult({})

    # ------------------------------------------------------------------ registry
    @staticmethod
    def register(klass: type[Optimizer]) -> type[Optimizer]:
        """Register an optimizer class under its lower-cased name (decorator)."""
        return _registry.register(klass)

    @staticmethod
    def create_optimizer(name: str, **kwargs: Any) -> Optimizer:
        """Create an optimizer by registered name (case-insensitive)."""
        return _registry.create(name, **kwargs)

    # ------------------------------------------------------------------ hyperparameters
    @property
    def aggregate_num(self):
        return self._aggregate_num

    @aggregate_num.setter
    def aggregate_num(self, value):
        if value is None:
            value = 1
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value) or value < 0:
            raise ValueError("aggregate_num must be None, a non-negative int or numpy.inf, got %r" % (value,))
        if math.isinf(value):
            self._aggregate_num = math.inf
        elif value != int(value):
            raise ValueError("aggregate_num must be an integer or numpy.inf, got %r" % (value,))
        else:
            self._aggregate_num = int(value)

    @property
    def learning_rate(self):
        if self.lr_scheduler is not None:
            return self.lr_scheduler(self.num_update)
        return self.lr

    def set_learning_rate(self, lr: float) -> None:
        """Set the base learning rate (an error while a scheduler is attached)."""
        if self.lr_scheduler is not None:
            raise UserWarning("LRScheduler of the optimizer has already been defined. Note that "
                              "set_learning_rate can mutate the value of the learning rate of the "
                              "optimizer only when the LRScheduler of the optimizer is undefined.")
        lr = _real("learning_rate", lr)
        if lr < 0:
            raise ValueError("learning_rate must be >= 0, got %r" % lr)
        self.lr = lr

    def set_lr_scale(self, args_lrscale):
        raise DeprecationWarning("set_lr_scale is deprecated; use set_lr_mult instead")

    def set_lr_mult(self, args_lr_mult):
        """Replace the learning-rate multipliers (keys: indices or names)."""
        self.lr_mult = self._mults_from_sym("__lr_mult__")
        self.lr_mult.update(_mult_dict("args_lr_mult", args_lr_mult))

    def set_wd_mult(self, args_wd_mult):
        """Replace the weight-decay multipliers (keys: indices or names)."""
        self.wd_mult = self._mults_from_sym("__wd_mult__")
        self.wd_mult.update(_mult_dict("args_wd_mult", args_wd_mult))

    def _mults_from_sym(self, attr):
        out = {}
        if self.sym_info:
            attrs, names = self.sym_info
            for name in names:
                if name in attrs and attr in attrs[name]:
                    out[name] = float(attrs[name][attr])
        return out

    def _set_current_device(self, device_id):
        if device_id not in self._all_index_update_counts:
            self._all_index_update_counts[device_id] = _IndexCounts()
        self._index_update_count = self._all_index_update_counts[device_id]

    def _set_current_context(self, device_id):
        warnings.warn("_set_current_context is deprecated; use _set_current_device", DeprecationWarning,
                      stacklevel=2)
        self._set_current_device(device_id)

    # ------------------------------------------------------------------ counts, lr, wd
    def _slots(self, indices):
        plan = self._active
        if plan is not None and plan.indices is indices and plan.slots is not None:
            return plan.slots
        if _is_index(indices):
            indices = (indices,)
        return self._index_update_count.slots(tuple(indices), self.begin_num_update)

    def _update_count(self, index):
        """Count one more update of ``index`` (or of every index in a list)."""
        counts = self._index_update_count.bump(self._slots(index))
        if counts.size:
            self.num_update = max(self.num_update, int(counts.max()))

    def _index_counts(self, indices):
        """Update counts ``t`` of ``indices`` as a float64 array (for bias corrections)."""
        return self._index_update_count.values_at(self._slots(indices)).astype(np.float64)

    def _base_lr(self):
        if self.lr_scheduler is not None:
            return float(self.lr_scheduler(self.num_update))
        return float(self.lr)

    def _multipliers(self, indices, attr, table):
        out = np.ones(len(indices), dtype=np.float64)
        if not self.param_dict and not table:
            return out
        param_dict, idx2name = self.param_dict, self.idx2name
        for k, index in enumerate(indices):
            if index in param_dict:
                out[k] = getattr(param_dict[index], attr)
            elif index in table:
                out[k] = table[index]
            elif index in idx2name:
                out[k] = table.get(idx2name[index], 1.0)
        return out

    def _lr_array(self, indices):
        return self._base_lr() * self._multipliers(indices, "lr_mult", self.lr_mult)

    def _wd_array(self, indices):
        return self.wd * self._multipliers(indices, "wd_mult", self.wd_mult)

    def _get_lrs(self, indices):
        return self._lr_array(indices).tolist()

    def _get_wds(self, indices):
        return self._wd_array(indices).tolist()

    def _get_lr(self, index):
        return self._get_lrs([index])[0]

    def _get_wd(self, index):
        return self._get_wds([index])[0]

    def _clip_bound(self):
        """The kernels' clip argument: a negative value means no clipping."""
        c = self.clip_gradient
        return -1.0 if (c is None or not c > 0) else float(c)

    # ------------------------------------------------------------------ states
    def create_state(self, index, weight):
        """The optimizer state of one weight (None when the rule keeps none)."""
        return None

    def uses_master(self, weight):
        """True when ``weight`` keeps a float32 master copy in its state."""
        return self.multi_precision and is_low_precision(_device.dtype_of(weight))

    def create_state_multi_precision(self, index, weight):
        """``(weight32, create_state(weight32))`` for float16/bfloat16 weights with
        multi_precision, else ``create_state(weight)``.  A CUDA device weight gets its
        state on the device."""
        if _device.is_device_array(weight):
            return _device.create_state(self, index, weight)
        _check_weight("weight", weight)
        if self.uses_master(weight):
            master = weight.astype(np.float32)
            return (master, self.create_state(index, master))
        if weight.dtype == np.float16 and not self.multi_precision:
            warnings.warn("Accumulating with float16 in optimizer can lead to poor accuracy or slow "
                          "convergence. Consider using multi_precision=True option of the %s optimizer"
                          % type(self).__name__, UserWarning, stacklevel=2)
        return self.create_state(index, weight)

    def _leaf_size(self, weight, position):
        """Elements expected in state leaf ``position`` of ``weight`` (override for rules
        whose states are not weight-shaped)."""
        return weight.size

    # ------------------------------------------------------------------ update entry points
    def update(self, indices, weights, grads, states):
        """Update weights in place: lists (MXNet 2.x) or one index (MXNet 1.x)."""
        indices, weights, grads, states = _as_lists(indices, weights, grads, states)
        if weights and _device.is_device_array(weights[0]):
            from ._gpu_launch import update      # CUDA arrays: the twins of the kernels
            return update(self, indices, weights, grads, states)
        if self.sparse_updates_rows():
            sparse = [k for k, g in enumerate(grads) if isinstance(g, RowSparseArray)]
            if sparse:
                return self._update_rows(indices, weights, grads, states, sparse)
        plan = self._plan(indices, weights, grads, states)    # validates everything first
        self._active = plan
        try:
            self._update_count(indices)
            if self.use_fused_step:
                self.fused_step(indices, weights, plan.grad_keep, states)
            else:
                self._step_in_precision(indices, weights, plan.grad_keep, states)
        finally:
            self._active = None
            plan.grad_keep = None    # do not keep the caller's gradients alive between steps

    def update_multi_precision(self, indices, weights, grads, states):
        """Same as :meth:`update`: every path here understands multi-precision states."""
        self.update(indices, weights, grads, states)

    def step(self, indices, weights, grads, states):
        """Readable NumPy version of the rule (float32/float64 arrays, plain states)."""
        raise NotImplementedError("%s has no step()" % type(self).__name__)

    def fused_step(self, indices, weights, grads, states):
        """Kernel version of the rule."""
        raise NotImplementedError("%s has no fused_step()" % type(self).__name__)

    def _step_in_precision(self, indices, weights, grads, states):
        """Run ``step`` so that low-precision weights are computed in float32 and rounded
        once, exactly like the kernels (multi-precision: on the master copy)."""
        plain = []
        for index, weight, grad, state in zip(indices, weights, grads, states):
            if self.uses_master(weight):
                master, inner = state
                self.step([index], [master], [grad.astype(np.float32)], [inner])
                weight[...] = master.astype(weight.dtype)
            elif is_low_precision(weight.dtype):
                w32 = weight.astype(np.float32)
                s32 = map_state(state, lambda a: a.astype(np.float32))
                self.step([index], [w32], [grad.astype(np.float32)], [s32])
                weight[...] = w32.astype(weight.dtype)
                for dst, src in zip(state_leaves(state), state_leaves(s32)):
                    dst[...] = src.astype(dst.dtype)
            else:
                plain.append((index, weight, grad.astype(weight.dtype, copy=False), state))
        if plain:
            self.step(*map(list, zip(*plain)))

    # ------------------------------------------------------------------ kernel launch
    def _plan(self, indices, weights, grads, states):
        key = tuple(indices)
        plan = self._plans.get(key)
        if (plan is not None and len(plan.weights) == len(weights)
                and all(map(operator.is_, weights, plan.weights))
                and all(map(operator.is_, states, plan.states))):
            if plan.grads_direct and all(map(operator.is_, grads, map(_deref, plan.grad_refs))):
                plan.grad_keep = grads
                plan.indices = indices
                self._plans.move_to_end(key)
                return plan
            if self._refresh_grads(plan, grads):
                plan.indices = indices
                self._plans.move_to_end(key)
                return plan
        plan = self._build_plan(key, indices, weights, grads, states)
        self._plans[key] = plan
        if len(self._plans) > 4096:
            self._plans.popitem(last=False)
        return plan

    def _remember_grads(self, plan, grads, checked):
        """Weak references only: a gradient array is never kept alive by the cache, and a
        new array at a recycled address is never mistaken for the old one."""
        plan.grad_keep = checked
        plan.grad_dtypes = [c.dtype for c in checked]
        plan.grads_direct = all(map(operator.is_, grads, checked))
        plan.grad_refs = [weakref.ref(g) for g in grads]

    def _check_grad(self, k, weight, grad):
        if isinstance(grad, RowSparseArray):
            if tuple(grad.shape) != weight.shape:
                raise ValueError("grads[%d]: row_sparse shape %s does not match weight shape %s"
                                 % (k, tuple(grad.shape), weight.shape))
            if not launch.supported(grad.data.dtype):
                raise TypeError("grads[%d] has dtype %s: expected float16, bfloat16, float32 or float64"
                                % (k, grad.data.dtype))
            if self.sparse_updates_rows():
                return grad
            # the standard update: as if the gradient were dense with zeros elsewhere
            grad = grad.todense()
        if not isinstance(grad, np.ndarray):
            if _device.is_device_array(grad):
                raise _device.mixed_error("grads[%d]" % k, grad, "weights[%d]" % k)
            raise TypeError("grads[%d] must be a numpy array or row_sparse_array, got %s"
                            % (k, type(grad).__name__))
        if grad.shape != weight.shape:
            raise ValueError("grads[%d] has shape %s but its weight has shape %s" % (k, grad.shape, weight.shape))
        if not launch.supported(grad.dtype):
            raise TypeError("grads[%d] has dtype %s: expected float16, bfloat16, float32 or float64"
                            % (k, grad.dtype))
        if grad.size and launch.address(grad) == launch.address(weight):
            raise ValueError("grads[%d] is the weight array itself: pass a separate gradient" % k)
        if not grad.flags.c_contiguous:
            grad = np.ascontiguousarray(grad)    # documented copy: kernels read flat memory
        return grad

    def _validated(self, weights, grads, states):
        """Check every tensor of a call; returns per tensor (weight, grad, master, leaves)."""
        out = []
        for k, (weight, grad, state) in enumerate(zip(weights, grads, states)):
            _check_weight("weights[%d]" % k, weight)
            grad = self._check_grad(k, weight, grad)
            if self.uses_master(weight):
                if not (isinstance(state, (tuple, list)) and len(state) == 2
                        and isinstance(state[0], np.ndarray) and state[0].dtype == np.float32):
                    raise ValueError("states[%d]: a %s weight with multi_precision needs the state "
                                     "(weight32, inner_state) from create_state_multi_precision, got %r"
                                     % (k, weight.dtype, type(state).__name__))
                master, inner = state
                _check_state_array("states[%d] master copy" % k, master, weight.size)
            else:
                master, inner = None, state
            leaves = state_leaves(inner)
            for p, leaf in enumerate(leaves):
                _check_state_array("states[%d] leaf %d" % (k, p), leaf, self._leaf_size(weight, p))
                if leaf.dtype != leaves[0].dtype:
                    raise TypeError("states[%d]: state arrays mix dtypes %s and %s"
                                    % (k, leaves[0].dtype, leaf.dtype))
            out.append((weight, grad, master, leaves))
        return out

    @staticmethod
    def _layout(weight, grad, master, leaves):
        state_dtype = leaves[0].dtype if leaves else weight.dtype
        data = grad.data if isinstance(grad, RowSparseArray) else grad
        return (weight.dtype, data.dtype, master is not None, np.dtype(state_dtype), len(leaves))

    @staticmethod
    def _new_group(layout, positions):
        w_dtype, g_dtype, has_master, s_dtype, _ = layout
        group = _Group()
        group.positions = positions
        group.w_fmt = launch.storage_format(w_dtype)
        group.g_fmt = launch.storage_format(g_dtype)
        group.master_fmt = launch.storage_format(np.float32) if has_master else None
        group.state_fmt = launch.storage_format(s_dtype)
        group.compute = launch.compute_dtype(w_dtype)
        return group

    def _build_plan(self, key, indices, weights, grads, states):
        _check_unique(key)
        checked = self._validated(weights, grads, states)
        plan = _Plan()
        plan.key, plan.indices = key, indices
        plan.weights, plan.states = list(weights), list(states)
        self._remember_grads(plan, grads, [c[1] for c in checked])
        plan.slots = self._index_update_count.slots(key, self.begin_num_update)
        plan.groups = []
        by_layout = collections.OrderedDict()
        for k, c in enumerate(checked):
            by_layout.setdefault(self._layout(*c), []).append(k)
        for layout, members in by_layout.items():
            group = self._new_group(layout, None if len(by_layout) == 1 else np.array(members, dtype=np.int64))
            rows = [(w, g, w if m is None else m) + leaves for w, g, m, leaves in (checked[k] for k in members)]
            group.keep = rows
            group.ptrs = np.array([[launch.address(a) for a in row] for row in rows],
                                  dtype=np.int64).reshape(len(members), 3 + layout[4])
            sizes = [row[0].size for row in rows]
            group.blocks = launch.block_table(sizes)
            group.n_elements = int(sum(sizes))
            plan.groups.append(group)
        return plan

    # ------------------------------------------------------------------ row-sparse (lazy) updates
    #: the rule has row-only kernels: a row_sparse gradient always updates only its rows
    sparse_rows_only = False

    def sparse_updates_rows(self):
        """True when a row_sparse gradient updates only the rows it lists (the weight
        decay and the decay of the states skip every other row)."""
        return self.sparse_rows_only or bool(getattr(self, "lazy_update", False))

    def _build_row_plan(self, indices, weights, grads, states):
        """A plan whose 'tensors' are the listed rows: each row of weight, master copy and
        states is addressed directly, so the work is proportional to the listed rows."""
        checked = self._validated(weights, grads, states)
        plan = _Plan()
        plan.key, plan.indices = tuple(indices), indices
        plan.weights, plan.states = list(weights), list(states)
        plan.grad_keep = [c[1].data for c in checked]
        plan.slots = None
        plan.groups = []
        by_layout = collections.OrderedDict()
        for k, c in enumerate(checked):
            by_layout.setdefault(self._layout(*c), []).append(k)
        for layout, members in by_layout.items():
            ptr_parts, owners, row_lens = [], [], []
            keep = []
            for k in members:
                weight, grad, master, leaves = checked[k]
                n_rows = weight.shape[0]
                row_len = weight.size // n_rows if n_rows else 0
                rows = grad.indices
                cols = [launch.address(weight) + rows * (row_len * weight.itemsize),
                        launch.address(grad.data) + np.arange(rows.size, dtype=np.int64) * (row_len * grad.data.itemsize)]
                base = weight if master is None else master
                cols.append(launch.address(base) + rows * (row_len * base.itemsize))
                for leaf in leaves:
                    cols.append(launch.address(leaf) + rows * ((leaf.size // n_rows) * leaf.itemsize))
                ptr_parts.append(np.stack(cols, axis=1) if rows.size else np.zeros((0, len(cols)), np.int64))
                owners.append(np.full(rows.size, k, dtype=np.int64))
                row_lens.append(np.full(rows.size, row_len, dtype=np.int64))
                keep.append((weight, grad, master) + leaves)
            group = self._new_group(layout, np.concatenate(owners))
            group.keep = keep
            group.ptrs = np.ascontiguousarray(np.concatenate(ptr_parts), dtype=np.int64)
            sizes = np.concatenate(row_lens)
            group.blocks = launch.block_table(sizes)
            group.n_elements = int(sizes.sum())
            plan.groups.append(group)
        return plan

    def _update_rows(self, indices, weights, grads, states, sparse):
        _check_unique(tuple(indices))
        dense = [k for k in range(len(indices)) if k not in set(sparse)]

        def pick(ks, values):
            return [values[k] for k in ks]
        parts = []
        if dense:
            parts.append(self._plan(pick(dense, indices), pick(dense, weights), pick(dense, grads),
                                    pick(dense, states)))
        parts.append(self._build_row_plan(pick(sparse, indices), pick(sparse, weights), pick(sparse, grads),
                                          pick(sparse, states)))
        self._update_count(indices)
        try:
            for plan in parts:
                self._active = plan
                if self.use_fused_step:
                    self.fused_step(plan.indices, plan.weights, plan.grad_keep, plan.states)
                elif plan is parts[-1]:
                    self._step_rows(plan.indices, plan.weights, pick(sparse, grads), plan.states)
                else:
                    self._step_in_precision(plan.indices, plan.weights, plan.grad_keep, plan.states)
        finally:
            self._active = None
            for plan in parts:
                plan.grad_keep = None

    def _step_rows(self, indices, weights, grads, states):
        """NumPy path of a row-sparse update: gather the rows, step them, scatter back."""
        for index, weight, grad, state in zip(indices, weights, grads, states):
            rows = grad.indices
            if rows.size == 0:
                continue
            w_rows = weight[rows]
            s_rows = map_state(state, lambda a: a.reshape(weight.shape[0], -1)[rows])
            self._step_in_precision([index], [w_rows], [grad.data], [s_rows])
            weight[rows] = w_rows
            for dst, src in zip(state_leaves(state), state_leaves(s_rows)):
                dst.reshape(weight.shape[0], -1)[rows] = src.reshape(rows.size, -1)

    def _refresh_grads(self, plan, grads):
        """Point a cached plan at new gradient arrays; False when their dtypes changed
        (the kernels were chosen for the old ones: the plan must be rebuilt)."""
        checked = [self._check_grad(k, w, g) for k, (w, g) in enumerate(zip(plan.weights, grads))]
        if any(c.dtype != old for c, old in zip(checked, plan.grad_dtypes)):
            return False
        for group in plan.groups:
            members = range(len(grads)) if group.positions is None else group.positions
            group.ptrs[:, 1] = [launch.address(checked[k]) for k in members]
        self._remember_grads(plan, grads, checked)
        return True

    def _launch(self, kernel, indices, weights, grads, states, lrs, wds, scalars=(), coefs=None,
                n_states=None):
        """Apply ``kernel`` to every tensor, one call per storage layout (usually one).

        ``lrs``, ``wds`` (and the rows of the 2-D ``coefs``) hold one value per tensor;
        ``scalars`` are the rule's hyperparameters in the kernel's order (numbers, or
        arrays such as noise).  Everything is cast to the compute dtype here, so no Python
        float reaches a kernel.  ``n_states``: the state arrays the kernel reads per tensor;
        a state of another layout (say, momentum switched on after the states were made)
        is an error rather than a read through a missing address.

        Reduction kernels return one row per tensor of their launch; those rows come back
        in call order (None for kernels that return nothing).
        """
        plan = self._active
        if getattr(plan, "on_device", False) or (plan is None and weights and _device.is_device_array(weights[0])):
            from ._gpu_launch import launch_gpu
            return launch_gpu(self, kernel, indices, weights, grads, states, lrs, wds, scalars, coefs, n_states)
        if plan is None or plan.indices is not indices:
            plan = self._plan(indices, weights, grads, states)
        n = len(weights)
        lrs = np.asarray(lrs, dtype=np.float64)
        wds = np.asarray(wds, dtype=np.float64)
        coefs = np.zeros((n, 1)) if coefs is None else np.asarray(coefs, dtype=np.float64)
        if coefs.ndim == 1:
            coefs = coefs[:, None]
        out = None
        for group in plan.groups:
            if n_states is not None and group.ptrs.shape[1] - 3 != n_states:
                raise ValueError("%s expects %d state array(s) per weight, the given states hold %d; "
                                 "were the states created with other hyperparameters?"
                                 % (type(self).__name__, n_states, group.ptrs.shape[1] - 3))
            ct = group.compute
            rows = group.positions
            if rows is None:
                glrs, gwds, gcoefs = lrs, wds, coefs
            else:
                glrs, gwds, gcoefs = lrs[rows], wds[rows], coefs[rows]
            result = launch.run(kernel, group.n_elements, group.blocks, group.ptrs,
                                glrs.astype(ct), gwds.astype(ct), np.ascontiguousarray(gcoefs, dtype=ct),
                                group.w_fmt, group.g_fmt, group.master_fmt, group.state_fmt,
                                *[np.ascontiguousarray(s, dtype=ct) if isinstance(s, np.ndarray) else ct(s)
                                  for s in scalars])
            if result is None:
                continue
            if rows is None:
                out = result
            else:
                if out is None:
                    out = np.zeros((n,) + result.shape[1:], dtype=result.dtype)
                out[rows] = result
        return out

    # ------------------------------------------------------------------ NumPy helpers for step()
    def _rescaled(self, grad):
        """``clip(rescale_grad * grad)`` as a new array (the caller's gradient is untouched)."""
        g = grad * self.rescale_grad
        bound = self._clip_bound()
        if bound >= 0:
            g = np.clip(g, -bound, bound)
        return g

    def _coupled(self, grad, weight, wd):
        """``clip(rescale_grad * grad) + wd * weight``."""
        return self._rescaled(grad) + wd * weight

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        ret = self.__dict__.copy()
        ret.pop("param_dict", None)
        ret.pop("norm_reducer", None)
        ret["_plans"] = collections.OrderedDict()
        ret["_active"] = None
        return ret

    def __setstate__(self, state):
        self.__dict__ = state
        self.param_dict = {}

    def __repr__(self):
        return "%s(learning_rate=%r, wd=%r, rescale_grad=%r, clip_gradient=%r, multi_precision=%r)" % (
            type(self).__name__, self.learning_rate, self.wd, self.rescale_grad, self.clip_gradient,
            self.multi_precision)


def _check_unique(key):
    if len(set(key)) != len(key):
        dup = [i for i, c in collections.Counter(key).items() if c > 1]
        raise ValueError("indices must be unique within one update call; repeated: %r" % dup[:5])


_deref = weakref.ref.__call__      # a C-level call: the identity check stays cheap per tensor


def _real(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError("%s must be a real number, got %r" % (name, value))
    return float(value)


def check_fraction(name, value, upper_inclusive=False):
    """``value`` as a float in [0, 1) (or [0, 1]), else a ValueError naming ``name``:
    decay rates (betas, rho) of every rule."""
    value = _real(name, value)
    if not (0.0 <= value < 1.0 or (upper_inclusive and value == 1.0)):
        raise ValueError("%s must be in [0, 1%s, got %r" % (name, "]" if upper_inclusive else ")", value))
    return value


def check_positive(name, value):
    """``value`` as a finite float > 0, else a ValueError naming ``name``: epsilons and
    other terms that keep a division away from zero."""
    value = _real(name, value)
    if not (0.0 < value < math.inf):
        raise ValueError("%s must be a finite number > 0 (it keeps a division away from zero), got %r"
                         % (name, value))
    return value


def state_float_dtype(weight):
    """Dtype of states MXNet keeps in float32: float32, or float64 for float64 weights."""
    return np.float64 if weight.dtype == np.float64 else np.float32


def _mult_dict(name, d):
    if not isinstance(d, dict):
        raise TypeError("%s must be a dict of index or name -> multiplier, got %s" % (name, type(d).__name__))
    return {k: _real("%s[%r]" % (name, k), v) for k, v in d.items()}


def _check_weight(name, weight):
    if not isinstance(weight, np.ndarray):
        if _device.is_device_array(weight):
            raise _device.mixed_error(name, weight)
        raise TypeError("%s must be a numpy array, got %s" % (name, type(weight).__name__))
    if not launch.supported(weight.dtype):
        raise TypeError("%s has dtype %s: expected float16, bfloat16, float32 or float64" % (name, weight.dtype))
    if not weight.flags.c_contiguous:
        raise ValueError("%s must be C-contiguous (it is updated in place); pass "
                         "numpy.ascontiguousarray(w) and keep that array" % name)
    if not weight.flags.writeable:
        raise ValueError("%s is read-only; it is updated in place" % name)


def _check_state_array(name, a, size):
    if not isinstance(a, np.ndarray):
        if _device.is_device_array(a):
            raise _device.mixed_error(name, a)
        raise TypeError("%s must be a numpy array, got %s" % (name, type(a).__name__))
    if a.size != size:
        raise ValueError("%s has %d elements, expected %d" % (name, a.size, size))
    if not launch.supported(a.dtype):
        raise TypeError("%s has dtype %s" % (name, a.dtype))
    if not a.flags.c_contiguous or not a.flags.writeable:
        raise ValueError("%s must be a writeable C-contiguous array" % name)


_registry = _registry_mod.Registry(Optimizer, "optimizer")
Optimizer.opt_registry = _registry._classes


def register(klass: type[Optimizer]) -> type[Optimizer]:
    """Register an optimizer class under its lower-cased class name (decorator)."""
    return _registry.register(klass)


def create(name: str | Optimizer | dict[str, Any], **kwargs: Any) -> Optimizer:
    """Create an optimizer by registered name (case-insensitive), e.g. ``create('adam')``."""
    return _registry.create(name, **kwargs)
