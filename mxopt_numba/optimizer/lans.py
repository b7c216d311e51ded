"""LANS: LAMB with per-tensor gradient normalisation and two trust ratios."""
import numpy as np

from ..kernels import lans as kernels
from ..kernels import norms as norm_kernels
from ._shared import l2norm, launch_sums, trust_ratios
from .optimizer import (DefaultValue, Optimizer, check_bound, check_fraction, check_positive,
                        register, state_float_dtype)

__all__ = ["LANS"]


@register
class LANS(Optimizer):
    """LANS (Zheng et al., 2020, "Accelerated Large Batch Optimization of BERT
    Pretraining in 54 minutes"), MXNet 2.x fused rule, per tensor::

        g^ = clip(rescale_grad * g / ||rescale_grad * g||)
        m  <- beta1 * m + (1 - beta1) * g^
        v  <- beta2 * v + (1 - beta2) * g^2
        m~ = m / (1 - beta1^t),  v~ = v / (1 - beta2^t),  d = sqrt(v~) + epsilon
        rm = m~ / d + wd * w
        rg = g^ / d + wd * w
        r1 = ||w||, clamped to [lower_bound, upper_bound] (max first, then min)
        w  <- w - lr * (beta1 * trust(r1, ||rm||) * rm + (1 - beta1) * trust(r1, ||rg||) * rg)

    with ``trust(a, b) = a / b`` if both are non-zero, else 1.  All norms are taken
    before the update (``||w||`` from the fp32 master under multi-precision; MXNet's
    multi-precision kernel reads the fp16 weight).  A zero gradient gives 0/0: NaN
    weights, as in MXNet.  A bound of None or 0 is not applied.  States ``(mean, var)``
    are float32 (float64 for float64 weights, which MXNet rejects).

    Both paths follow MXNet's fused kernel: MXNet's ``step`` path takes the second half
    of the update from the half-updated weight, a difference visible only for large
    ``lr * wd``.  Every call counts once and updates all its tensors in one launch per
    pass, whatever ``aggregate_num`` (no cap; MXNet asserts <= 45).

    Parameters
    ----------
    learning_rate : float, default 0.001
    beta1 : float, default 0.9
    beta2 : float, default 0.999
    epsilon : float, default 1e-6
    lower_bound : float, optional
    upper_bound : float, optional
    aggregate_num : int or numpy.inf, default 4
    use_fused_step : bool, default True
    **kwargs : see :class:`Optimizer`.
    """

    layerwise = True

    fused_by_default = True

    def __init__(self, learning_rate=DefaultValue(0.001), beta1=0.9, beta2=0.999, epsilon=1e-6,
                 lower_bound=None, upper_bound=None, aggregate_num=4, use_fused_step=True, **kwargs):
        super().__init__(learning_rate=learning_rate, aggregate_num=aggregate_num,
                         use_fused_step=use_fused_step, **kwargs)
        self.beta1 = check_fraction("beta1", beta1)
        self.beta2 = check_fraction("beta2", beta2)
        self.epsilon = check_positive("epsilon", epsilon)
        self.lower_bound = check_bound("lower_bound", lower_bound)
        self.upper_bound = check_bound("upper_bound", upper_bound)

    def create_state(self, index, weight):
        dtype = state_float_dtype(weight)
        return (np.zeros(weight.shape, dtype=dtype), np.zeros(weight.shape, dtype=dtype))

    # ------------------------------------------------------------------ scalars
    def _coefs(self, indices):
        """``(gscale, c1, c2, lr_m, lr_g)`` per tensor, with the bias corrections
        ``c = 1 / (1 - beta^t)`` filled in."""
        t = self._index_counts(indices)
        coefs = np.zeros((t.size, 5))
        np.divide(1.0, 1.0 - self.beta1 ** t, out=coefs[:, 1])
        np.divide(1.0, 1.0 - self.beta2 ** t, out=coefs[:, 2])
        return coefs

    def _bounded(self, w_norm):
        if self.lower_bound:
            w_norm = np.maximum(w_norm, self.lower_bound)
        if self.upper_bound:
            w_norm = np.minimum(w_norm, self.upper_bound)
        return w_norm

    def _grad_scales(self, g_norm):
        """``rescale_grad / ||rescale_grad * g||`` (inf for a zero gradient: 0 * inf = NaN)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.rescale_grad / g_norm

    # ------------------------------------------------------------------ update paths
    def step(self, indices, weights, grads, states):
        lrs, wds = self._lr_array(indices).tolist(), self._wd_array(indices).tolist()
        c1s, c2s = self._coefs(indices)[:, 1:3].T.tolist()
        bound = self._clip_bound()
        for k, (weight, grad, (mean, var)) in enumerate(zip(weights, grads, states)):
            gscale = float(self._grad_scales(l2norm(grad * self.rescale_grad)))
            with np.errstate(invalid="ignore"):
                g = grad * gscale
            if bound >= 0:
                g = np.clip(g, -bound, bound)
            mean *= self.beta1
            mean += (1.0 - self.beta1) * g
            var *= self.beta2
            var += (1.0 - self.beta2) * np.square(g)
            d = np.sqrt(var * c2s[k]) + self.epsilon
            rm = (mean * c1s[k]) / d + wds[k] * weight
            rg = g / d + wds[k] * weight
            r1 = self._bounded(l2norm(weight))
            lr_m = lrs[k] * self.beta1 * float(trust_ratios(r1, l2norm(rm)))
            lr_g = lrs[k] * (1.0 - self.beta1) * float(trust_ratios(r1, l2norm(rg)))
            weight -= lr_m * rm + lr_g * rg

    def fused_step(self, indices, weights, grads, states):
        lrs, wds = self._lr_array(indices), self._wd_array(indices)
        norms = np.sqrt(launch_sums(self, norm_kernels.multi_sum_sq_cpu, indices, weights, grads,
                                    states, lrs, wds, (self.rescale_grad,)))
        coefs = self._coefs(indices)
        coefs[:, 0] = self._grad_scales(norms[:, 1])
        sums = launch_sums(self, kernels.multi_lans_phase1_cpu, indices, weights, grads, states,
                           lrs, wds, (self.beta1, 1.0 - self.beta1, self.beta2, 1.0 - self.beta2,
                                      self.epsilon, self._clip_bound()), coefs, n_states=2)
        r1 = self._bounded(norms[:, 0])
        coefs[:, 3] = lrs * self.beta1 * trust_ratios(r1, np.sqrt(sums[:, 0]))
        coefs[:, 4] = lrs * (1.0 - self.beta1) * trust_ratios(r1, np.sqrt(sums[:, 1]))
        self._launch(kernels.multi_lans_update_cpu, indices, weights, grads, states, lrs, wds,
                     (self.epsilon, self._clip_bound()), coefs, n_states=2)
