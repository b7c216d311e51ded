"""Stochastic gradient descent, with optional momentum."""
import warnings

import numpy as np

from ..kernels import sgd as kernels
from .optimizer import DefaultValue, Optimizer, check_non_negative, register

__all__ = ["SGD", "ccSGD"]


@register
class SGD(Optimizer):
    """SGD with momentum and (coupled) weight decay, MXNet 2.x rule::

        g' = clip(rescale_grad * g) + wd * w
        momentum == 0:   w <- w - lr * g'
        momentum  > 0:   m <- momentum * m - lr * g'
                         w <- w + m

    The momentum buffer holds ``-lr * g'`` sums, so a later change of ``lr`` does not
    rescale what is stored (as in MXNet; torch keeps lr outside the buffer).

    Parameters
    ----------
    learning_rate : float, default 0.1
    momentum : float, default 0.0
    lazy_update : bool, default False
        With a row_sparse gradient, update only the listed rows (weight decay and
        momentum decay skip the other rows).
    multi_precision : bool, default False
    use_fused_step : bool, default True
    aggregate_num : int, default 1
    **kwargs : see :class:`Optimizer`.
    """

    elementwise = True

    fused_by_default = True

    def __init__(self, learning_rate=DefaultValue(0.1), momentum=0.0, lazy_update=False,
                 multi_precision=False, use_fused_step=True, aggregate_num=1, **kwargs):
        super().__init__(learning_rate=learning_rate, multi_precision=multi_precision,
                         aggregate_num=aggregate_num, use_fused_step=use_fused_step, **kwargs)
        momentum = check_non_negative("momentum", momentum)
        self.momentum = momentum
        self.lazy_update = bool(lazy_update)

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
                weight += mom

    def fused_step(self, indices, weights, grads, states):
        lrs, wds = self._lr_array(indices), self._wd_array(indices)
        if self.momentum == 0.0:
            self._launch(kernels.multi_sgd_update_cpu, indices, weights, grads, states, lrs, wds,
                         (self.rescale_grad, self._clip_bound()), n_states=0)
        else:
            self._launch(kernels.multi_sgd_mom_update_cpu, indices, weights, grads, states, lrs, wds,
                         (self.momentum, self.rescale_grad, self._clip_bound()), n_states=1)


@register
class ccSGD(SGD):  # noqa: N801  (MXNet's registered name)
    """Deprecated alias of :class:`SGD` (MXNet 1.x ``ccsgd``)."""

    def __init__(self, *args, **kwargs):
        warnings.warn("ccSGD is deprecated; use SGD", DeprecationWarning, stacklevel=2)
        super().__init__(*args, **kwargs)
