"""Adamax (MXNet 2.x)."""
import numpy as np

from ..kernels import adamax as kernels
from ._shared import per_count
from .optimizer import DefaultValue, Optimizer, check_fraction, check_positive, register

__all__ = ["Adamax"]


@register
class Adamax(Optimizer):
    """Adamax, the infinity-norm variant of Adam (Kingma & Ba, section 7), MXNet 2.x rule::

        g' = clip(rescale_grad * g) + wd * w
        m <- beta1 * m + (1 - beta1) * g'
        u <- max(beta2 * u, |g'|)
        w <- w - lr / (1 - beta1^t) * m / (u + epsilon)

    ``epsilon`` is the 2.x addition that keeps a zero ``u`` (a gradient that has been 0
    so far) from giving 0/0; MXNet 1.x had none.  A NaN gradient makes ``u`` NaN.
    MXNet runs this rule in Python only (``use_fused_step=False`` there); here it has a
    kernel and fuses by default, with the same results.

    Parameters
    ----------
    learning_rate : float, default 0.002
    beta1 : float, default 0.9
        In [0, 1).
    beta2 : float, default 0.999
        In [0, 1] (1 keeps the running maximum of ``|g'|``).
    epsilon : float, default 1e-8
        Must be > 0.
    use_fused_step : bool, default True
    **kwargs : see :class:`Optimizer`.
    """

    elementwise = True

    fused_by_default = True

    def __init__(self, learning_rate=DefaultValue(0.002), beta1=0.9, beta2=0.999, epsilon=1e-8,
                 use_fused_step=True, **kwargs):
        super().__init__(learning_rate=learning_rate, use_fused_step=use_fused_step, **kwargs)
        self.beta1 = check_fraction("beta1", beta1)
        self.beta2 = check_fraction("beta2", beta2, upper_inclusive=True)
        self.epsilon = check_positive("epsilon", epsilon)

    def create_state(self, index, weight):
        return (np.zeros(weight.shape, dtype=weight.dtype),   # m: first moment
                np.zeros(weight.shape, dtype=weight.dtype))   # u: infinity norm

    def _corrected_lrs(self, indices):
        beta1 = self.beta1
        return self._lr_array(indices) / per_count(self._index_counts(indices), lambda t: 1.0 - beta1 ** t)

    def step(self, indices, weights, grads, states):
        for lr_t, wd, weight, grad, (m, u) in zip(self._corrected_lrs(indices), self._wd_array(indices),
                                                  weights, grads, states):
            g = self._coupled(grad, weight, wd)
            m *= self.beta1
            m += (1.0 - self.beta1) * g
            u[...] = np.maximum(self.beta2 * u, np.abs(g))
            weight -= lr_t * m / (u + self.epsilon)

    def fused_step(self, indices, weights, grads, states):
        self._launch(kernels.multi_adamax_update_cpu, indices, weights, grads, states,
                     self._corrected_lrs(indices), self._wd_array(indices),
                     (self.beta1, 1.0 - self.beta1, self.beta2, self.epsilon, self.rescale_grad,
                      self._clip_bound()))
