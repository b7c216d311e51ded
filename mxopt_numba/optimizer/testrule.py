"""MXNet's ``Test`` optimizer (registered as ``'test'``)."""
import numpy as np

from ..kernels import testrule as kernels
from .optimizer import Optimizer, register

__all__ = ["Test"]


@register
class Test(Optimizer):
    """The optimizer MXNet keeps for its own tests, MXNet 2.0.0b1 rule::

        w <- w - lr * (rescale_grad * g + wd * w)

    ``clip_gradient`` is accepted and ignored (MXNet's ``Test`` never clips).  The state
    is a float32 array of zeros of the weight's shape that nothing reads or writes (also
    for float64 weights, as in MXNet).  There is no learning-rate default of its own:
    the base class's 0.01 applies, and an attached scheduler's ``base_lr`` is kept.
    MXNet 1.9's ``Test`` was a different rule (``w += rescale_grad * g``, state := w).

    Parameters
    ----------
    use_fused_step : bool, default True
        MXNet runs it only in Python; here the kernel is the default.
    **kwargs : see :class:`Optimizer`.
    """

    elementwise = True

    fused_by_default = True

    def __init__(self, use_fused_step=True, **kwargs):
        super().__init__(use_fused_step=use_fused_step, **kwargs)

    def create_state(self, index, weight):
        return np.zeros(weight.shape, dtype=np.float32)

    def step(self, indices, weights, grads, states):
        for lr, wd, weight, grad in zip(self._lr_array(indices), self._wd_array(indices),
                                        weights, grads):
            weight -= lr * (self.rescale_grad * grad + wd * weight)

    def fused_step(self, indices, weights, grads, states):
        # clip is passed as "off": the rule has no clipping
        self._launch(kernels.multi_testrule_update_cpu, indices, weights, grads, states,
                     self._lr_array(indices), self._wd_array(indices), (self.rescale_grad, -1.0))
