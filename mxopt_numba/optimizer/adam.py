"""Adam, with the bias correction folded into the learning rate (MXNet 2.x)."""
import math

import numpy as np

from ..kernels import adam as kernels
from ._shared import per_count
from .optimizer import DefaultValue, Optimizer, check_fraction, check_positive, register

__all__ = ["Adam"]


@register
class Adam(Optimizer):
    """Adam (Kingma & Ba), MXNet 2.x rule::

        g' = clip(rescale_grad * g) + wd * w
        m <- beta1 * m + (1 - beta1) * g'
        v <- beta2 * v + (1 - beta2) * g'^2
        lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
        w <- w - lr_t * m / (sqrt(v) + epsilon)

    ``t`` is the parameter's own update count.  As in MXNet, the bias correction is
    folded into the learning rate and ``epsilon`` is added to the *uncorrected*
    ``sqrt(v)``; torch adds it to ``sqrt(v / (1 - beta2^t))``, which amounts to MXNet's
    rule with ``epsilon * sqrt(1 - beta2^t)``.  Weight decay is coupled (L2 added to the
    gradient after clipping); see :class:`AdamW` for the decoupled form.

    Parameters
    ----------
    learning_rate : float, default 0.001
    beta1 : float, default 0.9
        Decay of the first moment, in [0, 1).
    beta2 : float, default 0.999
        Decay of the second moment, in [0, 1).
    epsilon : float, default 1e-8
        Added to ``sqrt(v)``; must be > 0 (a zero gradient would give 0/0).
    lazy_update : bool, default False
        With a row_sparse gradient, update only the listed rows: weight decay and the
        decay of both moments skip every other row (MXNet's lazy Adam).  False applies
        the standard update, as if the gradient were dense with zeros elsewhere.
    use_fused_step : bool, default True
    **kwargs : see :class:`Optimizer` (``multi_precision``, ``aggregate_num``, ...).
    """

    elementwise = True

    fused_by_default = True

    def __init__(self, learning_rate=DefaultValue(0.001), beta1=0.9, beta2=0.999, epsilon=1e-8,
                 lazy_update=False, use_fused_step=True, **kwargs):
        super().__init__(learning_rate=learning_rate, use_fused_step=use_fused_step, **kwargs)
        self.beta1 = check_fraction("beta1", beta1)
        self.beta2 = check_fraction("beta2", beta2)
        self.epsilon = check_positive("epsilon", epsilon)
        self.lazy_update = bool(lazy_update)

    def create_state(self, index, weight):
        return (np.zeros(weight.shape, dtype=weight.dtype),   # mean
                np.zeros(weight.shape, dtype=weight.dtype))   # var

    def _corrected_lrs(self, indices):
        beta1, beta2 = self.beta1, self.beta2
        return self._lr_array(indices) * per_count(
            self._index_counts(indices), lambda t: math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t))

    def step(self, indices, weights, grads, states):
        for lr_t, wd, weight, grad, (mean, var) in zip(self._corrected_lrs(indices), self._wd_array(indices),
                                                       weights, grads, states):
            g = self._coupled(grad, weight, wd)
            mean *= self.beta1
            mean += (1.0 - self.beta1) * g
            var *= self.beta2
            var += (1.0 - self.beta2) * np.square(g)
            weight -= lr_t * mean / (np.sqrt(var) + self.epsilon)

    def fused_step(self, indices, weights, grads, states):
        self._launch(kernels.multi_adam_update_cpu, indices, weights, grads, states,
                     self._corrected_lrs(indices), self._wd_array(indices),
                     (self.beta1, 1.0 - self.beta1, self.beta2, 1.0 - self.beta2, self.epsilon,
                      self.rescale_grad, self._clip_bound()))
