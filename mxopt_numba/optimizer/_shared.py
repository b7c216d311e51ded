"""Pieces several rules share: per-count coefficients, per-tensor sums (the first phase of
the layer-wise rules), norms and trust ratios, and the AdamW/AdaBelief base class."""
import math
import os

import numpy as np

from . import _plan
from .optimizer import DefaultValue, Optimizer, check_fraction, check_positive

__all__ = ["per_count", "launch_sums", "l2norm", "trust_ratios", "SkippingAdam", "skips_update",
           "default_aggregate_num"]


def per_count(counts, fn):
    """``fn(t)`` for each update count, as a float64 array.

    ``fn`` runs on Python floats once per distinct count (usually one per step), so a
    tensor's coefficient never depends on which other tensors share its launch.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.size == 0:
        return np.zeros(0)
    if (counts == counts[0]).all():
        return np.full(counts.size, fn(float(counts[0])))
    cache = {}
    out = np.empty(counts.size)
    for k, t in enumerate(counts.tolist()):
        if t not in cache:
            cache[t] = fn(t)
        out[k] = cache[t]
    return out


def launch_sums(opt, kernel, indices, weights, grads, states, lrs, wds, scalars=(), coefs=None,
                n_states=None):
    """Run a reduction kernel over the chunk (one call per storage layout, usually one) and
    return its per-tensor float64 sums as an array with one row per tensor.

    Same arguments as :meth:`Optimizer._launch`, which scatters each launch's rows back
    into call order.
    """
    plan = opt._plan_for(indices, weights, grads, states)
    if plan.rows:
        # a row plan (lazy row_sparse update) addresses rows: its sums would not be norms
        raise RuntimeError("per-tensor sums need whole tensors, not the rows of a lazy update")
    sums = _plan.launch_kernel(opt, plan, kernel, lrs, wds, scalars, coefs, n_states)
    if sums is None:
        sums = np.zeros((len(weights), 2), dtype=np.float64)
    # under sharded distributed training a tensor's sums are partial: add them up across
    # processes (every process calls this the same number of times)
    reducer = opt.norm_reducer
    return sums if reducer is None else reducer(sums)


def l2norm(x):
    """``||x||`` accumulated in float64 (the kernels' precision, whatever ``x``'s dtype)."""
    return np.sqrt(np.sum(np.square(x, dtype=np.float64)))


def trust_ratios(r1, r2):
    """``r1 / r2`` where both are non-zero, else 1 (MXNet's LAMB/LANS kernels; NaN stays NaN)."""
    ok = (r1 != 0) & (r2 != 0)
    return np.where(ok, r1 / np.where(ok, r2, 1.0), 1.0)


def default_aggregate_num():
    """MXNet's effective default for AdamW/AdaBelief:
    ``clamp(int(MXNET_OPTIMIZER_AGGREGATION_SIZE or 4), 1, 50)``."""
    try:
        n = int(os.environ.get("MXNET_OPTIMIZER_AGGREGATION_SIZE", "4"))
    except ValueError:
        n = 4
    return min(max(n, 1), 50)


def skips_update(rescale_grad):
    """True when ``rescale_grad`` is 0, NaN or +-inf: the whole update is skipped."""
    r = float(rescale_grad)
    return r == 0.0 or not math.isfinite(r)


class SkippingAdam(Optimizer):
    """Common constructor, state and step size of AdamW and AdaBelief."""

    fused_by_default = True

    def __init__(self, learning_rate=DefaultValue(0.001), beta1=0.9, beta2=0.999, epsilon=1e-6,
                 correct_bias=True, use_fused_step=True, aggregate_num=None, **kwargs):
        if aggregate_num is None:
            aggregate_num = default_aggregate_num()
        super().__init__(learning_rate=learning_rate, use_fused_step=use_fused_step,
                         aggregate_num=aggregate_num, **kwargs)
        self.beta1 = check_fraction("beta1", beta1)
        self.beta2 = check_fraction("beta2", beta2)
        self.epsilon = check_positive("epsilon", epsilon)
        self.correct_bias = bool(correct_bias)

    def create_state(self, index, weight):
        return (np.zeros(weight.shape, dtype=weight.dtype),   # mean
                np.zeros(weight.shape, dtype=weight.dtype))   # var

    def _etas(self, indices):
        """Step size per tensor: the learning rate, bias-corrected if ``correct_bias``."""
        lrs = self._lr_array(indices)
        if not self.correct_bias:
            return lrs
        beta1, beta2 = self.beta1, self.beta2
        return lrs * per_count(self._index_counts(indices),
                               lambda t: math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t))

    def _scalars(self):
        return (self.beta1, 1.0 - self.beta1, self.beta2, 1.0 - self.beta2, self.epsilon,
                float(self.rescale_grad), self._clip_bound())
