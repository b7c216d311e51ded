"""RMSProp, plain (Tieleman & Hinton 2012) and centered (Graves 2013)."""
import numpy as np

from ..kernels import rmsprop as kernels
from .optimizer import (DefaultValue, Optimizer, check_fraction, check_non_negative, check_positive,
                        _real, register, state_float_dtype)

__all__ = ["RMSProp"]


@register
class RMSProp(Optimizer):
    """RMSProp, MXNet 2.x rules::

        g' = clip(rescale_grad * g) + wd * w
        centered=False:  var  <- rho * var + (1 - rho) * g'^2
                         w    <- w - lr * g' / (sqrt(var) + epsilon)
        centered=True:   mean <- rho * mean + (1 - rho) * g'
                         var  <- rho * var + (1 - rho) * g'^2
                         mom  <- momentum * mom - lr * g' / sqrt(var - mean^2 + epsilon)
                         w    <- w + mom
        then, if clip_weights:  w <- clip(w, -clip_weights, clip_weights)

    Epsilon sits outside the root in the plain rule (MXNet 1.x: inside) and inside it in
    the centered rule.  ``momentum`` is used by the centered rule only (torch's RMSprop
    applies momentum to both, and keeps the learning rate outside the buffer).
    ``clip_weights`` None or <= 0 means no weight clipping (MXNet's kernel ignores a
    negative value as well).

    States: ``var`` (plain) or ``(mean, var, mom)`` (centered), float32 whatever the
    weight's dtype, as in MXNet, except for float64 weights, which keep float64 states.
    MXNet itself fails for float64 weights and for float16 weights without
    ``multi_precision``; here float64 runs end to end in float64 and float16/bfloat16
    weights without a master copy are computed in float32 and rounded once.

    Parameters
    ----------
    learning_rate : float, default 0.001
    rho : float, default 0.9
        Decay of the running averages, in [0, 1].  (MXNet 1.x's ``gamma1=`` and
        ``gamma2=`` raise DeprecationWarning, as in MXNet 2.x.)
    momentum : float, default 0.9
        Momentum of the centered rule, >= 0.
    epsilon : float, default 1e-8
        Must be > 0.
    centered : bool, default False
    clip_weights : float, optional
    use_fused_step : bool, default True
    **kwargs : see :class:`Optimizer`.
    """

    elementwise = True

    fused_by_default = True

    def __init__(self, learning_rate=DefaultValue(0.001), rho=0.9, momentum=0.9, epsilon=1e-8,
                 centered=False, clip_weights=None, use_fused_step=True, **kwargs):
        for old in ("gamma1", "gamma2"):
            if old in kwargs:
                raise DeprecationWarning("RMSProp's %s= argument is deprecated: use rho= (decay) and "
                                         "momentum=" % old)
        super().__init__(learning_rate=learning_rate, use_fused_step=use_fused_step, **kwargs)
        self.rho = check_fraction("rho", rho, upper_inclusive=True)
        momentum = check_non_negative("momentum", momentum)
        self.momentum = momentum
        self.epsilon = check_positive("epsilon", epsilon)
        self.centered = bool(centered)
        self.clip_weights = None if clip_weights is None else _real("clip_weights", clip_weights)

    def _clip_weights_bound(self):
        """The kernels' clip_weights argument: negative means no clipping."""
        c = self.clip_weights
        return -1.0 if (c is None or not c > 0) else float(c)

    def create_state(self, index, weight):
        dtype = state_float_dtype(weight)
        if self.centered:
            return (np.zeros(weight.shape, dtype=dtype),    # mean
                    np.zeros(weight.shape, dtype=dtype),    # var
                    np.zeros(weight.shape, dtype=dtype))    # mom
        return np.zeros(weight.shape, dtype=dtype)          # var

    def step(self, indices, weights, grads, states):
        rho, eps, bound = self.rho, self.epsilon, self._clip_weights_bound()
        for lr, wd, weight, grad, state in zip(self._lr_array(indices), self._wd_array(indices),
                                              weights, grads, states):
            g = self._coupled(grad, weight, wd)
            if self.centered:
                mean, var, mom = state
                mean *= rho
                mean += (1.0 - rho) * g
                var *= rho
                var += (1.0 - rho) * np.square(g)
                mom *= self.momentum
                mom -= lr * (g / np.sqrt(var - np.square(mean) + eps))
                weight += mom
            else:
                var = state
                var *= rho
                var += (1.0 - rho) * np.square(g)
                weight -= lr * (g / (np.sqrt(var) + eps))
            if bound >= 0:
                np.clip(weight, -bound, bound, out=weight)

    def fused_step(self, indices, weights, grads, states):
        lrs, wds = self._lr_array(indices), self._wd_array(indices)
        tail = (self.epsilon, self._clip_weights_bound(), self.rescale_grad, self._clip_bound())
        if self.centered:
            self._launch(kernels.multi_rmsprop_centered_update_cpu, indices, weights, grads, states,
                         lrs, wds, (self.rho, 1.0 - self.rho, self.momentum) + tail)
        else:
            self._launch(kernels.multi_rmsprop_update_cpu, indices, weights, grads, states,
                         lrs, wds, (self.rho, 1.0 - self.rho) + tail)
