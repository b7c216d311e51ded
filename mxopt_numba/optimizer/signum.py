"""Signum and signSGD: steps of fixed size along the sign of a momentum or gradient."""
import numpy as np

from ..kernels import signum as kernels
from .optimizer import DefaultValue, Optimizer, _real, register

__all__ = ["Signum"]


@register
class Signum(Optimizer):
    """Signum (momentum > 0) and signSGD (momentum == 0), MXNet 2.0.0b1 rule::

        momentum > 0:
            g' = clip(rescale_grad * g) + wd * w
            m  <- momentum * m - (1 - momentum) * g'
            w  <- (1 - lr * wd_lh) * w + lr * sign(m)
        momentum == 0:
            w  <- (1 - lr * (wd + wd_lh)) * w - lr * sign(g)

    ``wd`` is coupled (it enters the momentum, and so only changes the sign), ``wd_lh``
    is decoupled (it shrinks the weight directly).  signSGD takes the sign of the *raw*
    gradient: ``rescale_grad`` (even a negative one) and ``clip_gradient`` have no effect
    there, exactly as in MXNet's kernel and step.  ``sign(0) = 0``.  The momentum holds the
    negative direction, hence the ``+`` in the weight update.

    Parameters
    ----------
    learning_rate : float, default 0.01
    momentum : float, default 0.9
        In [0, 1); 0 selects signSGD (no state).
    wd_lh : float, default 0.0
        Decoupled weight decay, scaled by the learning rate.
    use_fused_step : bool, default True
    **kwargs : see :class:`Optimizer`.
    """

    elementwise = True

    fused_by_default = True

    def __init__(self, learning_rate=DefaultValue(0.01), momentum=0.9, wd_lh=0.0,
                 use_fused_step=True, **kwargs):
        super().__init__(learning_rate=learning_rate, use_fused_step=use_fused_step, **kwargs)
        momentum = _real("momentum", momentum)
        if not 0.0 <= momentum < 1.0:
            raise ValueError("momentum must be in [0, 1) (Signum averages the gradient with "
                             "weight 1 - momentum), got %r" % momentum)
        self.momentum = momentum
        self.wd_lh = _real("wd_lh", wd_lh)

    def create_state(self, index, weight):
        if self.momentum == 0.0:
            return None
        return np.zeros(weight.shape, dtype=weight.dtype)

    def step(self, indices, weights, grads, states):
        for lr, wd, weight, grad, mom in zip(self._lr_array(indices), self._wd_array(indices),
                                            weights, grads, states):
            if mom is None:
                weight *= 1.0 - lr * (wd + self.wd_lh)
                weight -= lr * np.sign(grad)
            else:
                g = self._coupled(grad, weight, wd)
                mom *= self.momentum
                mom -= (1.0 - self.momentum) * g
                weight *= 1.0 - lr * self.wd_lh
                weight += lr * np.sign(mom)

    def fused_step(self, indices, weights, grads, states):
        lrs, wds = self._lr_array(indices), self._wd_array(indices)
        if self.momentum == 0.0:
            decay = 1.0 - lrs * (wds + self.wd_lh)
            self._launch(kernels.multi_signsgd_update_cpu, indices, weights, grads, states, lrs, wds,
                         (self.rescale_grad, self._clip_bound()), coefs=decay)
        else:
            decay = 1.0 - lrs * self.wd_lh
            self._launch(kernels.multi_signum_update_cpu, indices, weights, grads, states, lrs, wds,
                         (self.momentum, 1.0 - self.momentum, self.rescale_grad, self._clip_bound()),
                         coefs=decay)
