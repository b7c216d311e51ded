"""AdaDelta: adaptive steps from running averages of squared gradients and updates."""
import numpy as np

from ..kernels import adadelta as kernels
from .optimizer import (DefaultValue, Optimizer, check_fraction, check_positive, register,
                        state_float_dtype)

__all__ = ["AdaDelta"]


@register
class AdaDelta(Optimizer):
    """AdaDelta (Zeiler 2012), MXNet 2.x rule::

        g'        = clip(rescale_grad * g) + wd * w
        acc_g     <- rho * acc_g + (1 - rho) * g'^2
        delta      = sqrt(acc_delta + epsilon) / sqrt(acc_g + epsilon) * g'
        acc_delta <- rho * acc_delta + (1 - rho) * delta^2
        w         <- w - lr * delta

    MXNet 2.x scales the step by the learning rate (default 1.0, the paper's rule) and
    couples weight decay; MXNet 1.x used no learning rate and decayed the weight outside
    (``w <- w - delta - wd * w``).  torch's Adadelta has the same rule as 2.x.

    The state ``(acc_g, acc_delta)`` is float32 whatever the weight's dtype, as in MXNet,
    except for float64 weights, which keep float64 accumulators.  MXNet itself fails for
    float64 weights and for float16 weights without ``multi_precision``; here float64
    runs end to end in float64 and float16/bfloat16 weights without a master copy are
    computed in float32 and rounded once.  MXNet runs AdaDelta in Python only
    (``use_fused_step=False`` by default); here the kernel is the default path and the
    NumPy ``step`` gives the same results.

    Parameters
    ----------
    learning_rate : float, default 1.0
    rho : float, default 0.9
        Decay of both running averages, in [0, 1].
    epsilon : float, default 1e-6
        Must be > 0 (with 0 the first step would be 0 / 0).
    use_fused_step : bool, default True
    **kwargs : see :class:`Optimizer`.
    """

    elementwise = True

    fused_by_default = True

    def __init__(self, learning_rate=DefaultValue(1.0), rho=0.9, epsilon=1e-6, use_fused_step=True,
                 **kwargs):
        super().__init__(learning_rate=learning_rate, use_fused_step=use_fused_step, **kwargs)
        self.rho = check_fraction("rho", rho, upper_inclusive=True)
        self.epsilon = check_positive("epsilon", epsilon)

    def create_state(self, index, weight):
        dtype = state_float_dtype(weight)
        return (np.zeros(weight.shape, dtype=dtype),    # acc_g
                np.zeros(weight.shape, dtype=dtype))    # acc_delta

    def step(self, indices, weights, grads, states):
        rho, eps = self.rho, self.epsilon
        for lr, wd, weight, grad, (acc_g, acc_delta) in zip(self._lr_array(indices), self._wd_array(indices),
                                                            weights, grads, states):
            g = self._coupled(grad, weight, wd)
            acc_g *= rho
            acc_g += (1.0 - rho) * np.square(g)
            delta = np.sqrt(acc_delta + eps) / np.sqrt(acc_g + eps) * g
            acc_delta *= rho
            acc_delta += (1.0 - rho) * np.square(delta)
            weight -= lr * delta

    def fused_step(self, indices, weights, grads, states):
        self._launch(kernels.multi_adadelta_update_cpu, indices, weights, grads, states,
                     self._lr_array(indices), self._wd_array(indices),
                     (self.rho, 1.0 - self.rho, self.epsilon, self.rescale_grad, self._clip_bound()))
