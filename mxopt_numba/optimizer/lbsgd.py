"""LBSGD: large-batch SGD with gradient accumulation and a warm-up multiplier (MXNet 1.x)."""
import math
import numbers
import warnings

import numpy as np

from ..kernels import lbsgd as kernels
from ..kernels import norms as norm_kernels
from ..kernels import sgd as sgd_kernels
from ..sparse import RowSparseArray
from ._shared import launch_sums
from .optimizer import (DefaultValue, Optimizer, check_non_negative, _is_index, _real, register,
                        state_leaves)

__all__ = ["LBSGD"]

_STRATEGIES = ("linear", "power2", "sqrt", "lars")


@register
class LBSGD(Optimizer):
    """Large-batch SGD (MXNet 1.9.1's ``LBSGD``; MXNet 2.x dropped it), per tensor::

        lr, wd = the values before this call is counted (unlike every other optimizer)
        n = begin_epoch * updates_per_epoch + (calls of this tensor so far, this one included)
        c <- c + g                                   (accumulated raw gradient)
        if n % batch_scale == 0:
            g~ = c / batch_scale;  c <- 0
            mult = warm-up multiplier (below)
            g' = clip(rescale_grad * g~) + wd * w
            momentum == 0:  w <- w - lr * mult * g'
            momentum  > 0:  m <- momentum * m - lr * mult * g';  w <- w + m
        (other calls only accumulate)

    Warm-up over ``N = warmup_epochs * updates_per_epoch`` calls towards
    ``M = batch_scale``: ``mult = M`` once ``n >= N``; 1 if ``N <= 1``; otherwise
    ``linear``: ``1 + (M - 1) n / N``; ``power2``: ``1 + (M - 1) n^2 / N^2``; ``sqrt``:
    ``1 + (M - 1) sqrt(n / N)``.  ``lars``: ``mult = sqrt(sum(w^2) / (sum(g~^2) +
    wd sum(w^2) + 1e-18))`` clipped to [0.01, 100] (from the fp32 master under
    multi-precision), on every update call whatever ``n``.  Another strategy name
    gives ``mult = 1`` with a warning (MXNet: silently 1).

    State: with ``batch_scale == 1`` the momentum buffer (or None), exactly like SGD;
    with ``batch_scale > 1`` the pair ``(accumulated gradient, momentum or None)``.
    Multi-precision keeps ``(weight32, state)`` with float32 arrays (MXNet 1.9's LBSGD
    laid it out as ``(momentum, weight32)``).  A row-sparse gradient updates only its
    rows, and only rows touched since the last update call move on an update call
    (MXNet's lazy ``sgd_update``, the 1.x default).

    As an MXNet 1.x optimizer it keeps 1.x's ``set_wd_mult``: parameter names (from
    ``param_idx2name``) ending in neither ``_weight`` nor ``_gamma`` start with
    ``wd_mult = 0`` (biases and betas are not decayed) before the given multipliers apply.

    Differences from MXNet 1.9.1: the accumulated gradient is a copy (MXNet keeps a reference to the
    caller's first gradient array, so a caller that reuses its gradient buffer sees the
    wrong sum); a call that only accumulates leaves the weight untouched even for a
    non-finite gradient (MXNet runs an ``lr=0`` SGD step there, which turns the weight to
    NaN).  With ``aggregate_num > 1`` all tensors of a call read lr and wd before any of
    them is counted (per-index calls, the default, match MXNet exactly).

    Parameters
    ----------
    momentum : float, default 0.0
    multi_precision : bool, default False
    warmup_strategy : {'linear', 'power2', 'sqrt', 'lars'}, default 'linear'
    warmup_epochs : int, default 5
    batch_scale : int, default 1
        Gradients of this many calls are averaged into one update.
    updates_per_epoch : int, default 32
    begin_epoch : int, default 0
    num_epochs : int, default 60
        Stored only (as in MXNet).
    learning_rate : float, default 0.01
    use_fused_step : bool, default True
    **kwargs : see :class:`Optimizer`.
    """

    layerwise = True

    fused_by_default = True

    def __init__(self, momentum=0.0, multi_precision=False, warmup_strategy="linear",
                 warmup_epochs=5, batch_scale=1, updates_per_epoch=32, begin_epoch=0,
                 num_epochs=60, learning_rate=DefaultValue(0.01), use_fused_step=True, **kwargs):
        super().__init__(learning_rate=learning_rate, multi_precision=multi_precision,
                         use_fused_step=use_fused_step, **kwargs)
        momentum = check_non_negative("momentum", momentum)
        if not isinstance(warmup_strategy, str):
            raise TypeError("warmup_strategy must be a string, got %r" % (warmup_strategy,))
        if warmup_strategy not in _STRATEGIES:
            warnings.warn("unknown warmup_strategy %r (expected one of %s): the learning rate "
                          "multiplier stays 1, as in MXNet" % (warmup_strategy, ", ".join(_STRATEGIES)),
                          UserWarning, stacklevel=2)
        warmup_epochs = _real("warmup_epochs", warmup_epochs)
        if not warmup_epochs >= 0:
            raise ValueError("warmup_epochs must be >= 0, got %r" % warmup_epochs)
        self.momentum = momentum
        self.warmup_strategy = warmup_strategy
        self.warmup_epochs = warmup_epochs
        self.batch_scale = _count("batch_scale", batch_scale, 1)
        self.updates_per_epoch = _count("updates_per_epoch", updates_per_epoch, 0)
        self.begin_epoch = _count("begin_epoch", begin_epoch, 0)
        self.num_epochs = _count("num_epochs", num_epochs, 0)
        self.init_updates = self.begin_epoch * self.updates_per_epoch

    def set_wd_mult(self, args_wd_mult):
        """MXNet 1.x rule: names ending in neither ``_weight`` nor ``_gamma`` get no weight
        decay unless ``args_wd_mult`` (or the symbol) says otherwise."""
        super().set_wd_mult(args_wd_mult)
        for name in self.idx2name.values():
            if not (name.endswith("_weight") or name.endswith("_gamma")):
                self.wd_mult.setdefault(name, 0.0)

    def create_state(self, index, weight):
        mom = np.zeros(weight.shape, dtype=weight.dtype) if self.momentum != 0.0 else None
        if self.batch_scale == 1:
            return mom
        return (np.zeros(weight.shape, dtype=weight.dtype), mom)

    # ------------------------------------------------------------------ update entry point
    def update(self, indices, weights, grads, states):
        """As :meth:`Optimizer.update`, with lr and wd read before the count (MXNet 1.x
        LBSGD) and row-sparse gradients applied lazily."""
        idx = [indices] if _is_index(indices) else list(indices)
        self._before_count = (idx, self._lr_array(idx), self._wd_array(idx))
        try:
            if any(isinstance(g, RowSparseArray) for g in ([grads] if _is_index(indices) else grads)):
                self._lazy_update(indices, weights, grads, states)
            else:
                super().update(indices, weights, grads, states)
        finally:
            del self._before_count

    def _lazy_update(self, indices, weights, grads, states):
        """Run the dense update, then put back the rows the update must not touch: rows
        without a gradient in this call and none accumulated since the last update."""
        if _is_index(indices):
            lists = [weights], [grads], [states]
        else:
            lists = weights, grads, states
        kept = []
        for weight, grad, state in zip(*lists):
            if not isinstance(grad, RowSparseArray) or weight.ndim == 0:
                continue
            absent = np.ones(weight.shape[0], dtype=bool)
            absent[np.asarray(grad.indices, dtype=np.int64)] = False
            leaves = [leaf.reshape(weight.shape) for leaf in state_leaves(state)]
            if self.batch_scale > 1:
                cum = state[1][0] if self.pairs_state(weight) else state[0]
                touched = np.any(cum.reshape(weight.shape[0], -1) != 0, axis=1)
                absent &= ~touched
            rows = np.flatnonzero(absent)
            if rows.size:
                kept.append([(a, rows, a[rows].copy()) for a in [weight] + leaves])
        super().update(indices, weights, grads, states)
        for saved in kept:
            for array, rows, values in saved:
                array[rows] = values

    # ------------------------------------------------------------------ scalars
    def _lrs_wds(self, indices):
        """Learning rates and weight decays as read before this call was counted."""
        before = getattr(self, "_before_count", None)
        if before is None:
            return self._lr_array(indices), self._wd_array(indices)
        idx, lrs, wds = before
        if len(idx) == len(indices) and all(a == b for a, b in zip(idx, indices)):
            return lrs, wds
        position = {i: k for k, i in enumerate(idx)}
        pick = np.array([position[i] for i in indices], dtype=np.int64)
        return lrs[pick], wds[pick]

    def _call_counts(self, indices):
        """``n``: MXNet's per-tensor count of accumulated calls, this one included."""
        return self.init_updates + self._index_counts(indices) - self.begin_num_update

    def _warmup(self, n):
        nwup = self.warmup_epochs * self.updates_per_epoch
        top = float(self.batch_scale)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.warmup_strategy == "linear":
                mult = 1.0 + (top - 1.0) * n / nwup
            elif self.warmup_strategy == "power2":
                mult = 1.0 + (top - 1.0) * (n * n) / (nwup * nwup)
            elif self.warmup_strategy == "sqrt":
                mult = 1.0 + (top - 1.0) * np.sqrt(n / nwup)
            else:
                mult = np.ones_like(n)
        return np.where(n >= nwup, top, np.where(nwup <= 1, 1.0, mult))

    @staticmethod
    def _lars(w_sq, g_sq, wds):
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.sqrt(w_sq / (g_sq + wds * w_sq + 1e-18))
        return np.clip(ratio, 0.01, 100.0)

    # ------------------------------------------------------------------ update paths
    def step(self, indices, weights, grads, states):
        lrs, wds = (a.tolist() for a in self._lrs_wds(indices))
        counts = self._call_counts(indices)
        warm = self._warmup(counts).tolist()
        for k, (weight, grad, state) in enumerate(zip(weights, grads, states)):
            if self.batch_scale == 1:
                mom, g = state, grad
            else:
                cum, mom = state
                cum += grad
                if counts[k] % self.batch_scale != 0:
                    continue
                g = cum / self.batch_scale
                cum[...] = 0
            if self.warmup_strategy == "lars":
                mult = float(self._lars(np.sum(np.square(weight, dtype=np.float64)),
                                        np.sum(np.square(g, dtype=np.float64)), wds[k]))
            else:
                mult = warm[k]
            lr = lrs[k] * mult
            g = self._coupled(g, weight, wds[k])
            if mom is None:
                weight -= lr * g
            else:
                mom *= self.momentum
                mom -= lr * g
                weight += mom

    def fused_step(self, indices, weights, grads, states):
        lrs, wds = self._lrs_wds(indices)
        counts = self._call_counts(indices)
        accumulate = self.batch_scale > 1
        momentum = self.momentum != 0.0
        n_states = int(accumulate) + int(momentum)
        apply = counts % self.batch_scale == 0
        if self.warmup_strategy == "lars":
            if apply.any():
                if accumulate:
                    sums = launch_sums(self, kernels.multi_lbsgd_sum_sq_cpu, indices, weights, grads,
                                       states, lrs, wds, (float(self.batch_scale),),
                                       n_states=n_states)
                else:
                    sums = launch_sums(self, norm_kernels.multi_sum_sq_cpu, indices, weights, grads,
                                       states, lrs, wds, (1.0,))
                lrs = lrs * self._lars(sums[:, 0], sums[:, 1], wds)
        else:
            lrs = lrs * self._warmup(counts)
        tail = (self.rescale_grad, self._clip_bound())
        if momentum:
            tail = (self.momentum,) + tail
        if accumulate:
            kernel = kernels.multi_lbsgd_mom_update_cpu if momentum else kernels.multi_lbsgd_update_cpu
            self._launch(kernel, indices, weights, grads, states, lrs, wds,
                         (float(self.batch_scale),) + tail, apply.astype(np.float64),
                         n_states=n_states)
        else:
            kernel = sgd_kernels.multi_sgd_mom_update_cpu if momentum else sgd_kernels.multi_sgd_update_cpu
            self._launch(kernel, indices, weights, grads, states, lrs, wds, tail, n_states=n_states)


def _count(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) and not (
            isinstance(value, numbers.Real) and math.isfinite(value) and value == int(value)):
        raise TypeError("%s must be an integer, got %r" % (name, value))
    value = int(value)
    if value < minimum:
        raise ValueError("%s must be >= %d, got %r" % (name, minimum, value))
    return value
