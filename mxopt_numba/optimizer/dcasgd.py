"""Delay-compensated asynchronous SGD."""
import numpy as np

from ..kernels import dcasgd as kernels
from .optimizer import DefaultValue, Optimizer, check_non_negative, _real, register

__all__ = ["DCASGD"]


@register
class DCASGD(Optimizer):
    """DCASGD, MXNet 2.0.0b1 rule::

        g' = clip(rescale_grad * g) + wd * w
        d  = g' + lamda * g' * g' * (w - w_prev)
        momentum == 0:  m  = -lr * d
        momentum  > 0:  m <- momentum * m - lr * d
        w_prev <- w
        w      <- w + m

    The delay compensation uses the gradient *with* weight decay (1.9 used it without).
    Momentum works here; MXNet 1.9 raised on ``momentum > 0``.  The state is
    ``(momentum or None, previous weight)``; the previous weight starts as a copy of the
    weight (of the float32 master with ``multi_precision``).

    MXNet runs DCASGD only in Python (``use_fused_step=False``); here the fused kernel
    is the default and gives the same results as ``step``.

    Parameters
    ----------
    learning_rate : float, default 0.1
    momentum : float, default 0.0
    lamda : float, default 0.04
        Strength of the delay compensation.
    use_fused_step : bool, default True
    **kwargs : see :class:`Optimizer`.
    """

    elementwise = True

    fused_by_default = True

    def __init__(self, learning_rate=DefaultValue(0.1), momentum=0.0, lamda=0.04,
                 use_fused_step=True, **kwargs):
        super().__init__(learning_rate=learning_rate, use_fused_step=use_fused_step, **kwargs)
        momentum = check_non_negative("momentum", momentum)
        lamda = _real("lamda", lamda)
        if not lamda >= 0.0:
            raise ValueError("lamda must be >= 0 (strength of the delay compensation), got %r" % lamda)
        self.momentum = momentum
        self.lamda = lamda

    def create_state(self, index, weight):
        mom = None if self.momentum == 0.0 else np.zeros(weight.shape, dtype=weight.dtype)
        return (mom, weight.copy())

    def step(self, indices, weights, grads, states):
        for lr, wd, weight, grad, (mom, prev) in zip(self._lr_array(indices), self._wd_array(indices),
                                                    weights, grads, states):
            g = self._coupled(grad, weight, wd)
            d = g + self.lamda * g * g * (weight - prev)
            if mom is None:
                mom = -lr * d
            else:
                mom *= self.momentum
                mom -= lr * d
            prev[...] = weight
            weight += mom

    def fused_step(self, indices, weights, grads, states):
        lrs, wds = self._lr_array(indices), self._wd_array(indices)
        if self.momentum == 0.0:
            self._launch(kernels.multi_dcasgd_update_cpu, indices, weights, grads, states, lrs, wds,
                         (self.lamda, self.rescale_grad, self._clip_bound()))
        else:
            self._launch(kernels.multi_dcasgd_mom_update_cpu, indices, weights, grads, states, lrs,
                         wds, (self.momentum, self.lamda, self.rescale_grad, self._clip_bound()))
