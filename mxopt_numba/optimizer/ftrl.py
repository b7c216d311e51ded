"""Ftrl: Follow-The-Regularized-Leader, proximal form, with L1 and L2 regularization."""
import numpy as np

from ..kernels import ftrl as kernels
from .optimizer import DefaultValue, Optimizer, _real, register, state_float_dtype

__all__ = ["Ftrl"]


@register
class Ftrl(Optimizer):
    """FTRL-proximal (McMahan et al., "Ad Click Prediction", 2013), MXNet's rule::

        g' = clip(rescale_grad * g)
        z  <- z + g' - (sqrt(n + g'^2) - sqrt(n)) * w / lr
        n  <- n + g'^2
        w  <- (sign(z) * lamda1 - z) / ((beta + sqrt(n)) / lr + wd)   where |z| > lamda1
        w  <- 0                                                        elsewhere

    ``lamda1`` is the L1 strength (it makes weights exactly 0); weight decay ``wd`` is
    the L2 strength and enters only the denominator, never the gradient.  Every weight
    is recomputed from ``(z, n)`` at each step, including elements whose gradient is 0
    (so a first step sets them to 0).  The rule is the same in MXNet 1.x and 2.x; 2.x
    (and this class) pass ``learning_rate`` to the base class, so an explicit learning
    rate overwrites an attached scheduler's ``base_lr``.  The rule divides by the
    learning rate, so a learning rate of 0 (``lr_mult`` 0 included) does not freeze a
    parameter: it gives inf/NaN in ``z`` and 0 or NaN weights, as in MXNet.

    The state ``(z, n)`` is float32 whatever the weight's dtype, as in MXNet, except for
    float64 weights, which keep float64 states.  MXNet itself fails for float64 weights
    and for float16 weights without ``multi_precision``; here float64 runs end to end in
    float64 and float16/bfloat16 weights without a master copy are computed in float32
    and rounded once.  Row-sparse gradients are made dense (MXNet does the same when the
    weight is dense).

    Parameters
    ----------
    learning_rate : float, default 0.1
    lamda1 : float, default 0.01
        L1 strength, >= 0.
    beta : float, default 1.0
        Added to ``sqrt(n)`` in the per-element rate; must be > 0 (with 0, elements that
        never saw a gradient would be 0 / 0 when ``wd`` is 0).
    use_fused_step : bool, default True
    **kwargs : see :class:`Optimizer`.
    """

    elementwise = True

    fused_by_default = True

    def __init__(self, learning_rate=DefaultValue(0.1), lamda1=0.01, beta=1.0, use_fused_step=True,
                 **kwargs):
        super().__init__(learning_rate=learning_rate, use_fused_step=use_fused_step, **kwargs)
        lamda1, beta = _real("lamda1", lamda1), _real("beta", beta)
        if not lamda1 >= 0.0:
            raise ValueError("lamda1 (the L1 strength) must be >= 0, got %r" % lamda1)
        if not beta > 0.0:
            raise ValueError("beta must be > 0 (it keeps the denominator away from zero), got %r" % beta)
        self.lamda1 = lamda1
        self.beta = beta

    def create_state(self, index, weight):
        dtype = state_float_dtype(weight)
        return (np.zeros(weight.shape, dtype=dtype),    # z
                np.zeros(weight.shape, dtype=dtype))    # n

    def step(self, indices, weights, grads, states):
        lamda1, beta = self.lamda1, self.beta
        for lr, wd, weight, grad, (z, n) in zip(self._lr_array(indices), self._wd_array(indices),
                                               weights, grads, states):
            g = self._rescaled(grad)
            sqrt_old = np.sqrt(n)
            n += np.square(g)
            sqrt_new = np.sqrt(n)
            z += g - (sqrt_new - sqrt_old) * weight / lr
            shrunk = np.where(np.abs(z) > lamda1, np.sign(z) * lamda1 - z, z - z)
            weight[...] = shrunk / ((beta + sqrt_new) / lr + wd)

    def fused_step(self, indices, weights, grads, states):
        self._launch(kernels.multi_ftrl_update_cpu, indices, weights, grads, states,
                     self._lr_array(indices), self._wd_array(indices),
                     (self.lamda1, self.beta, self.rescale_grad, self._clip_bound()))
