"""The Optimizer base class: hyperparameters, update counts, lr/wd resolution, state
layout, multi-precision, and the launch of fused kernels over many tensors at once.

Subclasses implement ``create_state``, a readable NumPy ``step`` and a ``fused_step``
that prepares per-tensor scalars and calls :meth:`Optimizer._launch`.
"""
from __future__ import annotations

import collections
import math
import numbers
import warnings
import weakref
from typing import Any, Callable

import numpy as np

from .. import _device
from .. import registry as _registry_mod
from . import _rules
from ..kernels import _common, counter_rng
from ..sparse import RowSparseArray
from . import _plan
from .._state_tree import map_state, state_leaves
from ._gpu_launch import CUDA

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


def _is_index(x):
    return isinstance(x, (numbers.Integral, str))


def _as_lists(indices, weights, grads, states):
    """Accept MXNet 2.x lists and MXNet 1.x scalars; return four lists of equal length."""
    if _is_index(indices) and not isinstance(indices, bool):
        return [indices], [weights], [grads], [states]
    if not isinstance(indices, (list, tuple)):
        if isinstance(indices, (str, bytes)) or not hasattr(indices, "__iter__"):
            raise TypeError("indices must be an int, a string or a list of them, got %r (%s)"
                            % (indices, type(indices).__name__))
        indices = list(indices)
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
    multi_precision : bool or str
        How float16 / bfloat16 weights are updated (float32 and float64 weights ignore it):

        * ``True`` — keep a float32 master copy (and float32 states), as in MXNet; costs
          4 bytes per parameter and a read and a write of them each step;
        * ``False`` — compute in float32 and round to nearest once per step, as in MXNet
          (updates smaller than half a 16-bit ulp are lost);
        * ``"kahan"`` — Kahan-compensated updates: a 16-bit compensation buffer (an extra
          state, the first of the pair ``(compensation, inner_state)``) keeps what rounding
          dropped and feeds it back, so weight + compensation carries about twice the
          weight's significand and small updates accumulate;
        * ``"stochastic"`` — stochastic rounding of the updated weight: up or down with
          probabilities that make the rounding exact in expectation, from 16 random bits of
          the counter-based generator keyed by the optimizer's ``seed``, the parameter, its
          update count and the element (no extra state).
    param_dict : dict, optional
        index -> object with ``lr_mult`` and ``wd_mult`` (read at every step).
    aggregate_num : int or inf, optional
        Tensors per kernel launch in the Updater (None: 1; ``numpy.inf``: all).
    use_fused_step : bool, optional
        Run the fused kernels (``fused_step``) rather than the NumPy ``step``.
    """

    #: default of ``use_fused_step`` when the caller passes None
    fused_by_default = False

    #: what distributed training may assume of the rule: ``elementwise`` — each element
    #: of a tensor is updated from that element alone (states can be cut anywhere);
    #: ``layerwise`` — per-tensor norms enter the update, through ``launch_sums``;
    #: ``draws_noise`` — the update draws random numbers
    elementwise = False
    layerwise = False
    draws_noise = False

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
        self.wd = _finite("wd", wd)
        if clip_gradient is not None:
            clip_gradient = _real("clip_gradient", clip_gradient)
        self.clip_gradient = clip_gradient
        self.lr_scheduler = lr_scheduler
        explicit_lr = learning_rate is not None and not isinstance(learning_rate, DefaultValue)
        if learning_rate is not None:
            learning_rate = _finite("learning_rate", learning_rate)
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
        self.multi_precision = _precision_mode(multi_precision)
        self.seed = None
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
        self._plans = _plan.PlanCache()
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
        lr = _finite("learning_rate", lr)
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
        plan = _plan.plan_of(indices)
        if plan is not None and plan.slots is not None and plan.counts is self._index_update_count:
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
        return _precision_mode(self.multi_precision) is True and is_low_precision(_device.dtype_of(weight))

    def compensates(self, weight):
        """True when ``weight`` is updated with a Kahan compensation buffer
        (``multi_precision="kahan"`` and a 16-bit weight)."""
        return self.multi_precision == "kahan" and is_low_precision(_device.dtype_of(weight))

    def rounds_stochastically(self, weight):
        """True when ``weight`` is rounded stochastically (``multi_precision="stochastic"``
        and a 16-bit weight)."""
        return self.multi_precision == "stochastic" and is_low_precision(_device.dtype_of(weight))

    def pairs_state(self, weight):
        """True when the state of ``weight`` is a pair ``(array, inner_state)``: the float32
        master copy, or the Kahan compensation."""
        return self.uses_master(weight) or self.compensates(weight)

    def _random_seed(self):
        """The 64-bit key of the counter-based generator (stochastic rounding, SGLD noise):
        drawn from :mod:`mxopt_numba.random` at first use, then kept (and saved with the
        optimizer's settings)."""
        if getattr(self, "seed", None) is None:
            from .. import random as _random
            self.seed = int(_random.generator().integers(0, 1 << 64, dtype=np.uint64))
        return self.seed

    def create_state_multi_precision(self, index, weight):
        """``(weight32, create_state(weight32))`` for float16/bfloat16 weights with
        ``multi_precision=True``, ``(compensation, create_state(weight))`` with
        ``multi_precision="kahan"``, else ``create_state(weight)``.  A CUDA device weight
        gets its state on the device."""
        if _device.is_device_array(weight):
            return _device.create_state(self, index, weight)
        _plan._check_weight(_plan.HOST, "weight", weight)
        if weight.dtype == np.float16 and not self.multi_precision:
            warnings.warn("Accumulating with float16 in optimizer can lead to poor accuracy or slow "
                          "convergence. Consider using multi_precision=True option of the %s optimizer"
                          % type(self).__name__, UserWarning, stacklevel=2)
        return self._new_state(index, weight)

    def _new_state(self, index, weight):
        if self.uses_master(weight):
            master = weight.astype(np.float32)
            return (master, self.create_state(index, master))
        if self.compensates(weight):
            return (np.zeros_like(weight), self.create_state(index, weight))
        return self.create_state(index, weight)

    def state_signature(self, index, weight):
        """Structure (nesting, ``None`` entries, leaf dtypes) of the state this optimizer,
        as configured now, builds for a host ``weight``; the launch layer refuses states of
        any other structure before a kernel reads them."""
        return _plan.signature(self._new_state(index, weight), _device.dtype_of)

    def _leaf_size(self, weight, position):
        """Elements expected in state leaf ``position`` of ``weight`` (override for rules
        whose states are not weight-shaped)."""
        return weight.size

    # ------------------------------------------------------------------ update entry points
    def update(self, indices, weights, grads, states):
        """Update weights in place: lists (MXNet 2.x) or one index (MXNet 1.x).

        A subclass's own ``step``/``fused_step`` is called as in MXNet 2.0: with the
        arrays as given, and it counts the update itself (``self._update_count``)."""
        indices, weights, grads, states = _as_lists(indices, weights, grads, states)
        user_step = _user_step(self)
        if user_step is not None:
            return user_step(indices, weights, grads, states)
        self._run_update(self._plans, indices, weights, grads, states)

    def update_multi_precision(self, indices, weights, grads, states):
        """Same as :meth:`update`: every path here understands multi-precision states.
        A subclass's own ``update`` or ``step`` gets the float32 master copies instead
        of 16-bit weights (the weights are rounded from them afterwards), as in MXNet."""
        if _user_update_kind(type(self)) is not None:
            return _unwrapped_update(self, indices, weights, grads, states)
        self.update(indices, weights, grads, states)

    def step(self, indices, weights, grads, states):
        """Readable NumPy version of the rule (float32/float64 arrays, plain states)."""
        raise NotImplementedError("%s has no step()" % type(self).__name__)

    def fused_step(self, indices, weights, grads, states):
        """Kernel version of the rule."""
        raise NotImplementedError("%s has no fused_step()" % type(self).__name__)

    def _step_in_precision(self, indices, weights, grads, states, step=None, positions=None):
        """Run ``step`` so that low-precision weights are computed in float32 and rounded
        once, exactly like the kernels (multi-precision: on the master copy).
        ``positions``: where the elements of a single weight sit in their parameter (the
        gathered rows of a row-sparse update), for stochastic rounding."""
        step = self.step if step is None else step
        plain = []
        for index, weight, grad, state in zip(indices, weights, grads, states):
            if self.uses_master(weight):
                master, inner = state
                step([index], [master], [grad.astype(np.float32)], [inner])
                weight[...] = master.astype(weight.dtype)
            elif self.compensates(weight) or self.rounds_stochastically(weight):
                self._step_rounded(step, index, weight, grad, state, positions)
            elif is_low_precision(weight.dtype):
                w32 = weight.astype(np.float32)
                s32 = map_state(state, lambda a: a.astype(np.float32))
                step([index], [w32], [grad.astype(np.float32)], [s32])
                weight[...] = w32.astype(weight.dtype)
                for dst, src in zip(state_leaves(state), state_leaves(s32)):
                    dst[...] = src.astype(dst.dtype)
            else:
                plain.append((index, weight, grad.astype(weight.dtype, copy=False), state))
        if plain:
            step(*map(list, zip(*plain)))

    def _step_rounded(self, step, index, weight, grad, state, positions=None):
        """``step`` on one 16-bit weight under ``multi_precision="kahan"`` or
        ``"stochastic"``, storing the result exactly as the kernels' ``store_weight``."""
        comp, inner = state if self.compensates(weight) else (None, state)
        w32 = weight.astype(np.float32)
        if comp is not None:
            w32 += comp.astype(np.float32)
        s32 = map_state(inner, lambda a: a.astype(np.float32))
        step([index], [w32], [grad.astype(np.float32)], [s32])
        if comp is not None:
            hi = w32.astype(weight.dtype)
            back = hi.astype(np.float32)
            with np.errstate(invalid="ignore"):
                comp[...] = np.where(np.abs(back) < np.inf, w32 - back, np.float32(0)).astype(weight.dtype)
            weight[...] = hi
        else:
            t = int(self._index_counts([index])[0])
            if positions is None:
                positions = np.arange(weight.size, dtype=np.int64)
            rnd = counter_rng.rounding_bits_at_np(positions, t, counter_rng.param_key(index), self._random_seed())
            weight[...] = stochastic_round_np(w32.ravel(), rnd, weight.dtype).reshape(weight.shape)
        for dst, src in zip(state_leaves(inner), state_leaves(s32)):
            dst[...] = src.astype(dst.dtype)

    # ------------------------------------------------------------------ plans
    def _run_update(self, cache, indices, weights, grads, states, verified=False):
        """One update call: pick the backend, validate and plan, count, run the rule.
        ``cache`` keeps the dense plan for the next call (the optimizer's own cache, or an
        Updater chunk's slot)."""
        backend = _backend_of(weights, grads, states)
        if backend is not _plan.HOST and not self.use_fused_step:
            raise TypeError("%s(use_fused_step=False) runs the NumPy step(), which needs host arrays; "
                            "device arrays are updated by the fused kernels (use_fused_step=True)"
                            % type(self).__name__)
        if self.sparse_updates_rows():
            sparse = [k for k, g in enumerate(grads) if isinstance(g, RowSparseArray)]
            if sparse:
                return self._update_rows(backend, cache, indices, weights, grads, states, sparse)
        plan = self._dense_plan(backend, cache, indices, weights, grads, states, verified)
        try:
            self._count_plan(plan)
            if self.use_fused_step:
                self.fused_step(plan.indices, plan.weights, plan.grads, plan.rule_states)
            else:
                self._step_in_precision(plan.indices, plan.weights, plan.grads, plan.states)
        finally:
            plan.release()    # keep none of the caller's gradients between calls

    def _dense_plan(self, backend, cache, indices, weights, grads, states, verified=False, structure=True):
        key = tuple(indices) if structure else ("launch",) + tuple(indices)
        plan = cache.get(key)
        if plan is not None and plan.backend is backend:
            plan = _plan.reuse(plan, self, weights, grads, states, verified)
            if plan is not None:
                if plan.counts is not self._index_update_count:      # another device's counts
                    plan.counts = self._index_update_count
                    plan.slots = plan.counts.slots(tuple(indices), self.begin_num_update)
                return plan
        _check_indices(tuple(indices))
        plan = _plan.build_plan(backend, self, key, indices, weights, grads, states, structure)
        cache.put(key, plan)
        return plan

    def _count_plan(self, plan):
        counts = self._index_update_count.bump(plan.slots)
        if counts.size:
            top = int(counts.max())
            if top > self.num_update:
                self.num_update = top

    # ------------------------------------------------------------------ row-sparse (lazy) updates
    #: the rule has row-only kernels: a row_sparse gradient always updates only its rows
    sparse_rows_only = False

    def sparse_updates_rows(self):
        """True when a row_sparse gradient updates only the rows it lists (the weight
        decay and the decay of the states skip every other row)."""
        return self.sparse_rows_only or bool(getattr(self, "lazy_update", False))

    def _update_rows(self, backend, cache, indices, weights, grads, states, sparse):
        key = tuple(indices)
        _check_indices(key)
        _plan.check_unique(key)
        sparse_set = set(sparse)
        dense = [k for k in range(len(indices)) if k not in sparse_set]

        def pick(ks, values):
            return [values[k] for k in ks]
        parts = []
        if dense:
            parts.append(self._dense_plan(backend, cache, pick(dense, indices), pick(dense, weights),
                                          pick(dense, grads), pick(dense, states)))
        parts.append(_plan.build_row_plan(backend, self, pick(sparse, indices), pick(sparse, weights),
                                          pick(sparse, grads), pick(sparse, states)))
        self._update_count(indices)
        try:
            for plan in parts:
                if self.use_fused_step:
                    self.fused_step(plan.indices, plan.weights, plan.grads, plan.rule_states)
                elif plan.rows:
                    self._step_rows(plan)
                else:
                    self._step_in_precision(plan.indices, plan.weights, plan.grads, plan.states)
        finally:
            for plan in parts:
                plan.release()

    def _step_rows(self, plan, step=None):
        """NumPy path of a row-sparse update: gather the rows, step them, scatter back."""
        for index, weight, state, source in zip(plan.indices, plan.weights, plan.states, plan.sources):
            grad = source[1]
            rows = grad.indices
            if rows.size == 0:
                continue
            w_rows = weight[rows]
            s_rows = map_state(state, lambda a: a.reshape(weight.shape[0], -1)[rows])
            row_len = weight.size // weight.shape[0]
            positions = (np.asarray(rows, dtype=np.int64)[:, None] * row_len + np.arange(row_len)).ravel()
            self._step_in_precision([index], [w_rows], [grad.data], [s_rows], step, positions=positions)
            weight[rows] = w_rows
            for dst, src in zip(state_leaves(state), state_leaves(s_rows)):
                dst.reshape(weight.shape[0], -1)[rows] = src.reshape(rows.size, -1)

    # ------------------------------------------------------------------ kernel launch
    def _launch(self, kernel, indices, weights, grads, states, lrs, wds, scalars=(), coefs=None,
                n_states=None):
        """Apply ``kernel`` to every tensor, one call per storage layout (usually one).

        ``lrs``, ``wds`` (and the rows of the 2-D ``coefs``) hold one value per tensor;
        ``scalars`` are the rule's hyperparameters in the kernel's order (numbers, or
        arrays such as noise).  Everything is cast to the compute dtype at the launch, so
        no Python float reaches a kernel.  ``n_states``: the state arrays the kernel reads
        per tensor (a state of another layout is an error, never a read through a missing
        address).

        The plan is the one ``update`` validated (carried by ``indices``/``weights``); a
        ``fused_step`` called directly plans its arguments here.  Reduction kernels return
        one row per tensor, in call order (None for kernels that return nothing).
        """
        plan = self._plan_for(indices, weights, grads, states)
        if self.multi_precision == "stochastic":
            self._set_rounding_tables(plan)
        return _plan.launch_kernel(self, plan, kernel, lrs, wds, scalars, coefs, n_states)

    def _set_rounding_tables(self, plan):
        """Stochastic rounding: hand each group of 16-bit weights its table (update count,
        parameter key, seed words, position of the block's first element) as
        ``master_fmt`` (see ``kernels/_common.py``).  In a row-sparse plan every 'tensor'
        is one row, whose elements keep their positions in the whole weight."""
        counts = self._index_update_count.values_at(self._slots(plan.indices)).astype(np.int64)
        seed = self._random_seed()
        for group in plan.groups:
            if np.dtype(group.w_fmt.dtype).itemsize != 2:
                continue
            rows = np.arange(len(plan.indices)) if group.positions is None else group.positions
            table = np.zeros((rows.size, 5), dtype=np.uint32)
            table[:, 0] = counts[rows] & 0xFFFFFFFF
            table[:, 1] = [counter_rng.param_key(plan.indices[k]) for k in rows]
            table[:, 2] = seed & 0xFFFFFFFF
            table[:, 3] = seed >> 32
            if plan.rows:
                offsets = []
                for k in dict.fromkeys(rows.tolist()):
                    weight, grad = plan.sources[k][0], plan.sources[k][1]
                    row_len = weight.size // weight.shape[0] if weight.shape[0] else 0
                    offsets.append(np.asarray(plan.backend.host_rows(grad.indices, weight.shape[0]),
                                              dtype=np.int64) * row_len)
                table[:, 4] = np.concatenate(offsets) if offsets else 0
            if plan.backend is not _plan.HOST:
                from numba import cuda
                table = cuda.to_device(table)
            elif group.blocks.shape[0] and int(group.blocks[:, 2].max()) > _common.ROUNDING_BUFFER - 16:
                # the CPU kernels read each block's rounding bits from a fixed-size buffer
                raise RuntimeError("stochastic rounding: CPU blocks of %d elements exceed the rounding "
                                   "buffer" % int(group.blocks[:, 2].max()))
            group.master_fmt = table

    def _plan_for(self, indices, weights, grads, states):
        plan = _plan.plan_of(weights) or _plan.plan_of(indices)
        if plan is None:
            indices = list(indices)
            # a kernel launched directly: its states have the kernel's layout, not the rule's
            plan = self._dense_plan(_backend_of(weights, grads, states), self._plans, indices, list(weights),
                                    list(grads), list(states), structure=False)
        return plan

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
        ret["_plans"] = _plan.PlanCache()
        return ret

    def __setstate__(self, state):
        self.__dict__ = state
        self.param_dict = {}

    def __repr__(self):
        return "%s(learning_rate=%r, wd=%r, rescale_grad=%r, clip_gradient=%r, multi_precision=%r)" % (
            type(self).__name__, self.learning_rate, self.wd, self.rescale_grad, self.clip_gradient,
            self.multi_precision)


def _precision_mode(value):
    """``multi_precision`` as True, False, "kahan" or "stochastic" (else a ValueError)."""
    if isinstance(value, str):
        mode = value.strip().lower()
        if mode in ("kahan", "stochastic"):
            return mode
        raise ValueError("multi_precision must be True, False, 'kahan' or 'stochastic', got %r" % (value,))
    if isinstance(value, (bool, np.bool_, numbers.Integral)) or value is None:
        return bool(value)
    raise ValueError("multi_precision must be True, False, 'kahan' or 'stochastic', got %r" % (value,))


def stochastic_round_np(x, rnd, dtype):
    """float32 array -> ``dtype`` (float16/bfloat16), stochastically rounded with the
    16-bit draws ``rnd``: the same bits as the kernels' ``store_stochastic``."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    dtype = np.dtype(dtype)
    nearest = x.astype(dtype)
    if dtype.name == "bfloat16":
        f = x.view(np.uint32)
        up = ((f.astype(np.uint64) + rnd.astype(np.uint64)) >> np.uint64(16)).astype(np.uint16)
        special = (f & np.uint32(0x7FFFFFFF)) >= np.uint32(0x7F800000)
        return np.where(special, nearest.view(np.uint16), up).view(dtype)
    h = nearest.view(np.uint16).astype(np.int64)
    back = nearest.astype(np.float32)
    a, b = np.abs(x), np.abs(back)
    toward = b > a
    lo = np.where(toward, h - 1, h)
    hi = np.where(toward, h, h + 1)
    lo_v = np.abs(lo.astype(np.uint16).view(np.float16).astype(np.float32))
    hi_v = np.abs(hi.astype(np.uint16).view(np.float16).astype(np.float32))
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = (a - lo_v) / (hi_v - lo_v)
    up = (rnd.astype(np.float32) + np.float32(0.5)) * np.float32(1.0 / 65536) < frac
    out = np.where(up, hi, lo).astype(np.uint16)
    keep = (back == x) | np.isnan(x) | (b == np.inf)
    return np.where(keep, nearest.view(np.uint16), out).view(dtype)


def _check_indices(key):
    """Indices are ints or strings (parameter names); anything else is a caller's mistake
    that would otherwise silently get its own update count."""
    for index in key:
        if isinstance(index, bool) or not isinstance(index, (numbers.Integral, str)):
            raise TypeError("indices must be ints or strings, got %r (%s)" % (index, type(index).__name__))


def _backend_of(weights, grads, states):
    """The array backend of one call: host unless its arrays are CUDA device arrays
    (mixing the two raises)."""
    if weights and not isinstance(weights[0], np.ndarray) and _device.on_device(weights, grads, states):
        return CUDA
    return _plan.HOST


def _real(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError("%s must be a real number, got %r" % (name, value))
    return float(value)


def _finite(name, value):
    value = _real(name, value)
    if not math.isfinite(value):
        raise ValueError("%s must be a finite number, got %r" % (name, value))
    return value


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


def check_non_negative(name, value):
    """``value`` as a float >= 0, else a ValueError naming ``name`` (momentum and other
    coefficients whose sign would flip the rule)."""
    value = _real(name, value)
    if not value >= 0.0:
        raise ValueError("%s must be >= 0, got %r" % (name, value))
    return value


def check_bound(name, value):
    """None, or ``value`` as a float >= 0 (a bound on a norm), else a ValueError."""
    if value is None:
        return None
    value = _real(name, value)
    if not value >= 0.0:
        raise ValueError("%s must be None or >= 0 (a bound on a norm), got %r" % (name, value))
    return value


def state_float_dtype(weight):
    """Dtype of states MXNet keeps in float32: float32, or float64 for float64 weights."""
    return np.float64 if weight.dtype == np.float64 else np.float32


def _mult_dict(name, d):
    if not isinstance(d, dict):
        raise TypeError("%s must be a dict of index or name -> multiplier, got %s" % (name, type(d).__name__))
    return {k: _finite("%s[%r]" % (name, k), v) for k, v in d.items()}


_registry = _registry_mod.Registry(Optimizer, "optimizer", _rules.load)
Optimizer.opt_registry = _registry._classes


def register(klass: type[Optimizer]) -> type[Optimizer]:
    """Register an optimizer class under its lower-cased class name (decorator)."""
    return _registry.register(klass)


def create(name: str | Optimizer | dict[str, Any], **kwargs: Any) -> Optimizer:
    """Create an optimizer by registered name (case-insensitive), e.g. ``create('adam')``."""
    return _registry.create(name, **kwargs)


# ---------------------------------------------------------------------- user subclasses
# MXNet's documented ways to extend the base class: override ``update`` (1.x, scalar
# arguments) or ``step``/``fused_step`` (2.x, lists; the subclass counts the update
# itself).  Only the library's own rules count inside ``Optimizer.update``.

def _defined_by_user(cls, name):
    """True when the ``name`` that ``cls`` resolves to is defined outside this package."""
    for klass in cls.__mro__:
        if name in klass.__dict__:
            module = klass.__module__ or ""
            return not (module == "mxopt_numba" or module.startswith("mxopt_numba."))
    return False


_USER_INFO = weakref.WeakKeyDictionary()


def _user_info(cls):
    """Per class, once: (kind, own step counts, own fused_step counts, own update takes
    lists); ``kind`` is
    ``"update"`` for a class with its own ``update``, ``"step"`` for one whose ``step`` or
    ``fused_step`` counts itself, None for a library rule.  ``counts_in_step`` (class
    attribute) overrides the guess: True for a step that calls ``_update_count``, False
    for a library-style step that expects the base class to count."""
    info = _USER_INFO.get(cls)
    if info is None:
        flag = getattr(cls, "counts_in_step", None)
        step = _defined_by_user(cls, "step") if flag is None else bool(flag)
        fused = _defined_by_user(cls, "fused_step") if flag is None else bool(flag)
        kind = "update" if _defined_by_user(cls, "update") else ("step" if step or fused else None)
        info = _USER_INFO[cls] = (kind, step, fused, kind != "update" or _takes_lists(cls.update))
    return info


def _user_update_kind(cls):
    return _user_info(cls)[0]


def _user_step(opt):
    """The subclass's ``step`` or ``fused_step`` that this update runs, when it counts
    the update itself; None when the library's path (which counts here) runs."""
    _, step, fused, _ = _user_info(type(opt))
    if opt.use_fused_step:
        return opt.fused_step if fused else None
    return opt.step if step else None


def _takes_lists(function):
    """Whether a subclass's ``update(self, ...)`` is written for lists (2.x names
    ``indices, weights, ...``) rather than for one tensor (1.x names ``index, weight, ...``)."""
    import inspect
    try:
        params = [p for p in inspect.signature(function).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][1:]
    except (TypeError, ValueError):
        return True
    return not params or params[0].name in ("indices", "idxs") or params[0].name.endswith("s")


def _unwrapped_update(opt, indices, weights, grads, states):
    """MXNet's generic multi-precision wrapper for user subclasses: a 16-bit weight with
    a master copy is updated through its float32 master (with a float32 gradient and the
    inner state), then rounded back into the weight."""
    indices, weights, grads, states = _as_lists(indices, weights, grads, states)
    work_w, work_g, work_s, rounded = [], [], [], []
    for weight, grad, state in zip(weights, grads, states):
        if opt.uses_master(weight):
            if not (isinstance(state, (tuple, list)) and len(state) == 2):
                raise ValueError("a %s weight with multi_precision needs the state (weight32, "
                                 "inner_state) from create_state_multi_precision" % weight.dtype)
            master, inner = state
            if isinstance(grad, RowSparseArray):
                grad32 = RowSparseArray(grad.data.astype(np.float32), grad.indices, grad.shape)
            else:
                grad32 = grad.astype(np.float32)
            work_w.append(master)
            work_g.append(grad32)
            work_s.append(inner)
            rounded.append((weight, master))
        else:
            work_w.append(weight)
            work_g.append(grad)
            work_s.append(state)
    if not _user_info(type(opt))[3]:
        for item in zip(indices, work_w, work_g, work_s):
            opt.update(*item)
    else:
        opt.update(indices, work_w, work_g, work_s)
    for weight, master in rounded:
        weight[...] = master.astype(weight.dtype)
