"""AdamW: Adam with decoupled weight decay (MXNet 2.x)."""
import numpy as np

from ..kernels import adamw as kernels
from ._shared import SkippingAdam, skips_update
from .optimizer import register

__all__ = ["AdamW"]


@register
class AdamW(SkippingAdam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), MXNet 2.x rule::

        if rescale_grad is 0, NaN or +-inf: skip (weights and moments untouched)
        g' = clip(rescale_grad * g)
        m <- beta1 * m + (1 - beta1) * g'
        v <- beta2 * v + (1 - beta2) * g'^2
        eta = lr * sqrt(1 - beta2^t) / (1 - beta1^t)     (eta = lr if not correct_bias)
        w <- w - eta * (m / (sqrt(v) + epsilon) + wd * w)

    The decay uses the weight from before the step and is scaled by the bias-corrected
    ``eta``, like MXNet's fused kernel (torch decays by ``lr * wd * w`` with the plain lr,
    and adds epsilon to the bias-corrected ``sqrt(v)``).

    The skip is MXNet's hook for dynamic loss scaling: an overflowed step can be dropped
    by setting ``rescale_grad`` to 0 or inf.  The update counts still advance.  It is
    decided once per call (``rescale_grad`` is one value for every tensor), before any
    kernel is launched; ``step`` follows the fused path here, whereas MXNet's ``step``
    has no skip and applies the decay to the already-updated weight.

    Differences from MXNet: ``aggregate_num`` passed to the constructor is honoured
    (MXNet overwrites it with ``clamp(MXNET_OPTIMIZER_AGGREGATION_SIZE or 4, 1, 50)``;
    that is only our default here), and float16 without ``multi_precision`` and float64
    weights work on the fused path (MXNet's fused kernel rejects them).

    Parameters
    ----------
    learning_rate : float, default 0.001
    beta1 : float, default 0.9
        In [0, 1).
    beta2 : float, default 0.999
        In [0, 1).
    epsilon : float, default 1e-6
        Added to ``sqrt(v)``; must be > 0.
    correct_bias : bool, default True
        Scale the step size by ``sqrt(1 - beta2^t) / (1 - beta1^t)``.  (MXNet's docstring
        says wd is added to the gradient when False; its code never does, nor does ours.)
    use_fused_step : bool, default True
    aggregate_num : int or numpy.inf, optional
        Tensors per kernel launch; default as described above.
    **kwargs : see :class:`Optimizer`.
    """

    elementwise = True

    def step(self, indices, weights, grads, states):
        if skips_update(self.rescale_grad):
            return
        for eta, wd, weight, grad, (mean, var) in zip(self._etas(indices), self._wd_array(indices),
                                                      weights, grads, states):
            g = self._rescaled(grad)
            mean *= self.beta1
            mean += (1.0 - self.beta1) * g
            var *= self.beta2
            var += (1.0 - self.beta2) * np.square(g)
            weight -= eta * (mean / (np.sqrt(var) + self.epsilon) + wd * weight)

    def fused_step(self, indices, weights, grads, states):
        if skips_update(self.rescale_grad):
            return
        self._launch(kernels.multi_adamw_update_cpu, indices, weights, grads, states,
                     self._etas(indices), self._wd_array(indices), self._scalars())
