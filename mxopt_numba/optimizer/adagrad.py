"""AdaGrad: per-element learning rates from the sum of squared gradients.

Also holds the small validation helpers of the adaptive family (AdaGrad, GroupAdaGrad,
AdaDelta, RMSProp, Ftrl).
"""

import numpy as np

from ..kernels import adagrad as kernels
from .optimizer import DefaultValue, Optimizer, check_positive, register, state_float_dtype

__all__ = ["AdaGrad"]


@register
class AdaGrad(Optimizer):
    """AdaGrad (Duchi et al. 2011), MXNet 2.x dense rule::

        g' = clip(rescale_grad * g) + wd * w
        h  <- h + g'^2
        w  <- w - lr * g' / (sqrt(h) + epsilon)

    Weight decay is coupled (it enters ``h``), epsilon sits outside the root (MXNet 1.x
    decayed the weight outside the adaptive part and put epsilon inside the root; torch
    also puts epsilon outside but applies its own lr decay).

    The history ``h`` is float32 whatever the weight's dtype, as in MXNet, except for
    float64 weights, which keep a float64 history.  MXNet itself fails for float64 weights
    and for float16 weights without ``multi_precision`` (the history's dtype does not
    match); here float64 runs end to end in float64 and float16/bfloat16 weights without
    a master copy are computed in float32 against the float32 history and rounded once.

    Row-sparse gradients: with ``wd`` 0 only the listed rows are updated (MXNet's
    row-wise kernel; the other rows would not move anyway, so this is also the dense
    result, at a cost proportional to the listed rows).  With ``wd`` != 0 (where MXNet's
    kernel refuses to run) the gradient counts as dense with zero rows, as in MXNet's
    ``step``.  MXNet's dense path always runs its NumPy-style ``step`` and so clips with
    ``clip_gradient=0`` (every gradient becomes 0); here ``clip_gradient`` None or <= 0
    means no clipping.

    Parameters
    ----------
    learning_rate : float, default 0.01
    epsilon : float, default 1e-6
        Must be > 0.  (MXNet 1.x called it ``eps``; passing ``eps=`` raises
        DeprecationWarning, as in MXNet 2.x.)
    use_fused_step : bool, default True
    **kwargs : see :class:`Optimizer`.
    """

    elementwise = True

    fused_by_default = True

    def __init__(self, learning_rate=DefaultValue(0.01), epsilon=1e-6, use_fused_step=True, **kwargs):
        if "eps" in kwargs:
            raise DeprecationWarning("AdaGrad's eps= argument is deprecated: use epsilon=")
        super().__init__(learning_rate=learning_rate, use_fused_step=use_fused_step, **kwargs)
        self.epsilon = check_positive("epsilon", epsilon)

    def create_state(self, index, weight):
        return np.zeros(weight.shape, dtype=state_float_dtype(weight))

    def sparse_updates_rows(self):
        # without weight decay a row with no gradient keeps its weight and history
        return self.wd == 0.0

    def step(self, indices, weights, grads, states):
        for lr, wd, weight, grad, history in zip(self._lr_array(indices), self._wd_array(indices),
                                                weights, grads, states):
            g = self._coupled(grad, weight, wd)
            history += np.square(g)
            weight -= lr * (g / (np.sqrt(history) + self.epsilon))

    def fused_step(self, indices, weights, grads, states):
        self._launch(kernels.multi_adagrad_update_cpu, indices, weights, grads, states,
                     self._lr_array(indices), self._wd_array(indices),
                     (self.epsilon, self.rescale_grad, self._clip_bound()))
