"""FTML: follow the moving leader."""
import numpy as np

from ..kernels import ftml as kernels
from .optimizer import DefaultValue, Optimizer, check_fraction, check_positive, register

__all__ = ["FTML"]


@register
class FTML(Optimizer):
    """FTML, MXNet 2.0.0b1 rule (``t`` = this parameter's update count)::

        g'  = clip(rescale_grad * g) + wd * w
        v   <- beta2 * v + (1 - beta2) * g'^2
        d_t  = (1 - beta1^t) / lr * (sqrt(v / (1 - beta2^t)) + epsilon)
        z   <- beta1 * z + (1 - beta1) * g' - (d_t - beta1 * d) * w
        d   <- d_t
        w   <- -z / d_t

    The state is ``(d, v, z)`` in the weight's dtype.  MXNet 1.9 clipped after adding
    the weight decay (``clip(rescale_grad * g + wd * w)``); 2.x clips first, as here.
    torch has no FTML.

    Parameters
    ----------
    learning_rate : float, default 0.0025
    beta1 : float, default 0.6
        In [0, 1).
    beta2 : float, default 0.999
        In [0, 1).
    epsilon : float, default 1e-8
        > 0 (a zero gradient history would otherwise divide by zero).
    use_fused_step : bool, default True
    **kwargs : see :class:`Optimizer`.
    """

    elementwise = True

    fused_by_default = True

    def __init__(self, learning_rate=DefaultValue(0.0025), beta1=0.6, beta2=0.999, epsilon=1e-8,
                 use_fused_step=True, **kwargs):
        super().__init__(learning_rate=learning_rate, use_fused_step=use_fused_step, **kwargs)
        self.beta1 = check_fraction("beta1", beta1)
        self.beta2 = check_fraction("beta2", beta2)
        self.epsilon = check_positive("epsilon", epsilon)

    def create_state(self, index, weight):
        return (np.zeros(weight.shape, dtype=weight.dtype),   # d
                np.zeros(weight.shape, dtype=weight.dtype),   # v
                np.zeros(weight.shape, dtype=weight.dtype))   # z

    def _coefs(self, indices, lrs):
        """Per tensor: ``(1 - beta1^t) / lr`` and ``1 - beta2^t``."""
        t = self._index_counts(indices)
        with np.errstate(divide="ignore"):
            d_scale = (1.0 - self.beta1 ** t) / lrs
        return d_scale, 1.0 - self.beta2 ** t

    def step(self, indices, weights, grads, states):
        lrs, wds = self._lr_array(indices), self._wd_array(indices)
        d_scales, v_corrections = self._coefs(indices, lrs)
        b1, b2 = self.beta1, self.beta2
        for wd, d_scale, v_corr, weight, grad, (d, v, z) in zip(wds, d_scales, v_corrections,
                                                                 weights, grads, states):
            g = self._coupled(grad, weight, wd)
            v[...] = b2 * v + (1.0 - b2) * g * g
            d_t = d_scale * (np.sqrt(v / v_corr) + self.epsilon)
            z[...] = b1 * z + (1.0 - b1) * g - (d_t - b1 * d) * weight
            d[...] = d_t
            weight[...] = -z / d_t

    def fused_step(self, indices, weights, grads, states):
        lrs, wds = self._lr_array(indices), self._wd_array(indices)
        d_scale, v_correction = self._coefs(indices, lrs)
        b1, b2 = self.beta1, self.beta2
        self._launch(kernels.multi_ftml_update_cpu, indices, weights, grads, states, lrs, wds,
                     (b1, 1.0 - b1, b2, 1.0 - b2, self.epsilon, self.rescale_grad, self._clip_bound()),
                     coefs=np.stack([d_scale, v_correction], axis=1))
