"""AdaBelief (MXNet 2.x)."""
import numpy as np

from ..kernels import adabelief as kernels
from ._shared import SkippingAdam, skips_update
from .optimizer import register

__all__ = ["AdaBelief"]


@register
class AdaBelief(SkippingAdam):
    """AdaBelief (Zhuang et al.), MXNet 2.x rule::

        if rescale_grad is 0, NaN or +-inf: skip (weights and moments untouched)
        g' = clip(rescale_grad * g + wd * w)            (weight decay before the clip)
        m <- beta1 * m + (1 - beta1) * g'
        s <- beta2 * s + (1 - beta2) * (g' - m)^2 + epsilon
        eta = lr * sqrt(1 - beta2^t) / (1 - beta1^t)     (eta = lr if not correct_bias)
        w <- w - eta * m / (sqrt(s) + epsilon)

    ``s`` uses the new ``m`` and gets ``epsilon`` added at every step, and the weight
    decay is coupled and clipped with the gradient, as in MXNet (the reference
    implementation offers decoupled decay and adds epsilon to the bias-corrected ``s``).

    The skip, the ``aggregate_num`` handling (honoured here, ignored by MXNet's
    constructor) and the dtypes work as for :class:`AdamW`; ``step`` follows the fused
    kernel (MXNet's ``step`` has no skip).

    Parameters
    ----------
    learning_rate : float, default 0.001
    beta1 : float, default 0.9
        In [0, 1).
    beta2 : float, default 0.999
        In [0, 1).
    epsilon : float, default 1e-6
        Added to ``s`` every step and to ``sqrt(s)``; must be > 0.
    correct_bias : bool, default True
    use_fused_step : bool, default True
    aggregate_num : int or numpy.inf, optional
        Tensors per kernel launch (default ``MXNET_OPTIMIZER_AGGREGATION_SIZE`` or 4,
        clamped to [1, 50], as MXNet's effective value).
    **kwargs : see :class:`Optimizer`.
    """

    elementwise = True

    def step(self, indices, weights, grads, states):
        if skips_update(self.rescale_grad):
            return
        bound = self._clip_bound()
        for eta, wd, weight, grad, (mean, var) in zip(self._etas(indices), self._wd_array(indices),
                                                      weights, grads, states):
            g = grad * self.rescale_grad + wd * weight
            if bound >= 0:
                g = np.clip(g, -bound, bound)
            mean *= self.beta1
            mean += (1.0 - self.beta1) * g
            var *= self.beta2
            var += (1.0 - self.beta2) * np.square(g - mean)
            var += self.epsilon
            weight -= eta * mean / (np.sqrt(var) + self.epsilon)

    def fused_step(self, indices, weights, grads, states):
        if skips_update(self.rescale_grad):
            return
        self._launch(kernels.multi_adabelief_update_cpu, indices, weights, grads, states,
                     self._etas(indices), self._wd_array(indices), self._scalars())
