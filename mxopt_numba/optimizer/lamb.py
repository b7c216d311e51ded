"""LAMB: Adam-style moments with a layer-wise trust ratio."""
import numpy as np

from ..kernels import lamb as kernels
from ._shared import l2norm, launch_sums, trust_ratios
from .optimizer import (DefaultValue, Optimizer, check_bound, check_fraction, check_positive,
                        register, state_float_dtype)

__all__ = ["LAMB"]


@register
class LAMB(Optimizer):
    """LAMB (You et al., 2019, "Large Batch Optimization for Deep Learning"), MXNet 2.x
    rule, per tensor::

        g' = clip(rescale_grad * g)                 (weight decay is not in the moments)
        m  <- beta1 * m + (1 - beta1) * g'
        v  <- beta2 * v + (1 - beta2) * g'^2
        m^ = m / (1 - beta1^t),  v^ = v / (1 - beta2^t)     (m^ = m, v^ = v without
                                                            bias_correction)
        r  = m^ / (sqrt(v^) + epsilon) + wd * w
        r1 = ||w||, clamped to [lower_bound, upper_bound] (max first, then min)
        r2 = ||r||
        w  <- w - lr * (r1 / r2 if r1 != 0 and r2 != 0 else 1) * r

    Both norms are taken before the update, ``||w||`` from the fp32 master copy under
    multi-precision.  A bound of None or 0 is not applied (MXNet's fused kernel; its
    ``step`` path would clamp to 0).  The states ``(mean, var)`` are float32, as in MXNet
    2.x, also for float16/bfloat16 weights without multi-precision; float64 weights keep
    float64 states (MXNet 2.x rejects float64 LAMB with a type error).

    Fixed MXNet bugs: with ``aggregate_num <= 1`` MXNet counts every step twice (bias
    correction and lr schedules run at double speed) and its non-aggregated
    multi-precision path never writes the fp32 master copy back; here every path counts
    once and updates the master.  ``aggregate_num`` has no cap (MXNet asserts <= 45):
    ``numpy.inf`` puts every tensor in one launch.

    Parameters
    ----------
    learning_rate : float, default 0.001
    beta1 : float, default 0.9
    beta2 : float, default 0.999
    epsilon : float, default 1e-6
    lower_bound : float, optional
        Lower clamp of ``||w||`` in the trust ratio.
    upper_bound : float, optional
        Upper clamp of ``||w||`` in the trust ratio.
    bias_correction : bool, default True
    aggregate_num : int or numpy.inf, default 4
    use_fused_step : bool, default True
    **kwargs : see :class:`Optimizer`.
    """

    layerwise = True

    fused_by_default = True

    def __init__(self, learning_rate=DefaultValue(0.001), beta1=0.9, beta2=0.999, epsilon=1e-6,
                 lower_bound=None, upper_bound=None, bias_correction=True, aggregate_num=4,
                 use_fused_step=True, **kwargs):
        super().__init__(learning_rate=learning_rate, aggregate_num=aggregate_num,
                         use_fused_step=use_fused_step, **kwargs)
        self.beta1 = check_fraction("beta1", beta1)
        self.beta2 = check_fraction("beta2", beta2)
        self.epsilon = check_positive("epsilon", epsilon)
        self.lower_bound = check_bound("lower_bound", lower_bound)
        self.upper_bound = check_bound("upper_bound", upper_bound)
        self.bias_correction = bool(bias_correction)

    def create_state(self, index, weight):
        dtype = state_float_dtype(weight)
        return (np.zeros(weight.shape, dtype=dtype), np.zeros(weight.shape, dtype=dtype))

    # ------------------------------------------------------------------ scalars
    def _bias_corrections(self, indices):
        """``coefs[:, 0] = 1 / (1 - beta1^t)``, ``coefs[:, 1] = 1 / (1 - beta2^t)`` per
        tensor (1 without bias correction)."""
        t = self._index_counts(indices)
        coefs = np.empty((t.size, 2))
        if not self.bias_correction:
            coefs.fill(1.0)
        else:
            np.divide(1.0, 1.0 - self.beta1 ** t, out=coefs[:, 0])
            np.divide(1.0, 1.0 - self.beta2 ** t, out=coefs[:, 1])
        return coefs

    def _trust(self, w_norm, r_norm):
        r1 = w_norm
        if self.lower_bound:
            r1 = np.maximum(r1, self.lower_bound)
        if self.upper_bound:
            r1 = np.minimum(r1, self.upper_bound)
        return trust_ratios(r1, r_norm)

    # ------------------------------------------------------------------ update paths
    def step(self, indices, weights, grads, states):
        lrs, wds = self._lr_array(indices).tolist(), self._wd_array(indices).tolist()
        c1s, c2s = self._bias_corrections(indices).T.tolist()
        for k, (weight, grad, (mean, var)) in enumerate(zip(weights, grads, states)):
            g = self._rescaled(grad)
            mean *= self.beta1
            mean += (1.0 - self.beta1) * g
            var *= self.beta2
            var += (1.0 - self.beta2) * np.square(g)
            r = (mean * c1s[k]) / (np.sqrt(var * c2s[k]) + self.epsilon) + wds[k] * weight
            trust = float(self._trust(l2norm(weight), l2norm(r)))
            weight -= (lrs[k] * trust) * r

    def fused_step(self, indices, weights, grads, states):
        lrs, wds = self._lr_array(indices), self._wd_array(indices)
        coefs = self._bias_corrections(indices)
        sums = launch_sums(self, kernels.multi_lamb_phase1_cpu, indices, weights, grads, states,
                           lrs, wds, (self.beta1, 1.0 - self.beta1, self.beta2, 1.0 - self.beta2,
                                      self.epsilon, self.rescale_grad, self._clip_bound()), coefs,
                           n_states=2)
        lrs = lrs * self._trust(np.sqrt(sums[:, 0]), np.sqrt(sums[:, 1]))
        self._launch(kernels.multi_lamb_update_cpu, indices, weights, grads, states, lrs, wds,
                     (self.epsilon,), coefs, n_states=2)
