"""Nesterov accelerated gradient."""
import numpy as np

from ..kernels import nag as kernels
from ..kernels import sgd as sgd_kernels
from .optimizer import DefaultValue, Optimizer, check_non_negative, register

__all__ = ["NAG"]


@register
class NAG(Optimizer):
    """Nesterov momentum SGD, MXNet 2.0.0b1 rule::

        g' = clip(rescale_grad * g) + wd * w
        m  <- momentum * m - lr * g'
        w  <- w + momentum * m - lr * g'
        (momentum == 0: plain SGD, w <- w - lr * g')

    Both ``wd * w`` terms use the weight from before the step, as in MXNet 2.0.0b1
    (1.9's in-place kernel used the already-updated weight in the momentum's decay term).
    Like SGD, the buffer holds ``-lr`` times gradient sums; torch's ``nesterov=True``
    keeps lr outside it (``w <- w - lr * (g' + momentum * buf)``), so the two agree only
    while lr is constant.

    Parameters
    ----------
    learning_rate : float, default 0.1
    momentum : float, default 0.9
        0 turns NAG into plain SGD (no state).
    multi_precision : bool, default False
    use_fused_step : bool, default True
    **kwargs : see :class:`Optimizer`.
    """

    elementwise = True

    fused_by_default = True

    def __init__(self, learning_rate=DefaultValue(0.1), momentum=0.9, multi_precision=False,
                 use_fused_step=True, **kwargs):
        super().__init__(learning_rate=learning_rate, multi_precision=multi_precision,
                         use_fused_step=use_fused_step, **kwargs)
        momentum = check_non_negative("momentum", momentum)
        self.momentum = momentum

    def create_state(self, index, weight):
        if self.momentum == 0.0:
            return None
        return np.zeros(weight.shape, dtype=weight.dtype)

    def step(self, indices, weights, grads, states):
        for lr, wd, weight, grad, mom in zip(self._lr_array(indices), self._wd_array(indices),
                                            weights, grads, states):
            g = self._coupled(grad, weight, wd)
            if mom is None:
                weight -= lr * g
            else:
                mom *= self.momentum
                mom -= lr * g
                weight += self.momentum * mom - lr * g

    def fused_step(self, indices, weights, grads, states):
        lrs, wds = self._lr_array(indices), self._wd_array(indices)
        if self.momentum == 0.0:
            self._launch(sgd_kernels.multi_sgd_update_cpu, indices, weights, grads, states, lrs, wds,
                         (self.rescale_grad, self._clip_bound()))
        else:
            self._launch(kernels.multi_nag_mom_update_cpu, indices, weights, grads, states, lrs, wds,
                         (self.momentum, self.rescale_grad, self._clip_bound()))

