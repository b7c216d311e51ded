"""Stochastic gradient Langevin dynamics."""
import math

import numpy as np

from .. import random as _random
from ..kernels import sgld as kernels
from .optimizer import DefaultValue, Optimizer, register

__all__ = ["SGLD"]


@register
class SGLD(Optimizer):
    """SGLD, MXNet 2.0.0b1 rule::

        g' = clip(rescale_grad * g) + wd * w
        w  <- w - lr / 2 * g' + noise,      noise ~ N(0, std = sqrt(lr))

    The noise comes from :func:`mxopt_numba.random.generator`: one standard normal array
    per tensor, in the order of the call, scaled by ``sqrt(lr)`` in float64 and rounded to
    the weight's compute dtype (float32, or float64 for float64 weights).  ``step`` and
    ``fused_step`` draw the same numbers in the same order, so after
    ``mxopt_numba.random.seed(n)`` both give the same trajectory, whatever the
    aggregation.  MXNet draws with its own generator, so only the distribution of the
    updates can match MXNet's.

    MXNet runs SGLD only in Python (``use_fused_step=False``); here the fused kernel is
    the default and gives the same results as ``step``.

    Parameters
    ----------
    learning_rate : float, default 0.1
    use_fused_step : bool, default True
    **kwargs : see :class:`Optimizer`.
    """

    draws_noise = True

    fused_by_default = True

    #: noise drawn for a whole call while ``step`` runs tensor by tensor (see
    #: ``_step_in_precision``); None outside an update
    _pending_noise = None

    def __init__(self, learning_rate=DefaultValue(0.1), use_fused_step=True, **kwargs):
        super().__init__(learning_rate=learning_rate, use_fused_step=use_fused_step, **kwargs)

    def create_state(self, index, weight):
        return None

    @staticmethod
    def _draw_noise(lrs, weights):
        """One float64 noise array per weight (flat), std ``sqrt(lr)``, in call order."""
        rng = _random.generator()
        return [math.sqrt(lr) * rng.standard_normal(np.size(w)) for lr, w in zip(lrs, weights)]

    def _step_in_precision(self, indices, weights, grads, states):
        # The base class may call step() on sub-lists in another order (low-precision
        # weights first); draw the noise for the whole call here, in call order, so the
        # step path consumes exactly what fused_step would.
        self._pending_noise = dict(zip(indices, self._draw_noise(self._lr_array(indices), weights)))
        try:
            super()._step_in_precision(indices, weights, grads, states)
        finally:
            del self._pending_noise

    def step(self, indices, weights, grads, states):
        lrs, wds = self._lr_array(indices), self._wd_array(indices)
        if self._pending_noise is not None:
            noises = [self._pending_noise.pop(index) for index in indices]
        else:
            noises = self._draw_noise(lrs, weights)
        for lr, wd, weight, grad, noise in zip(lrs, wds, weights, grads, noises):
            g = self._coupled(grad, weight, wd)
            weight -= lr / 2 * g
            weight += noise.astype(weight.dtype).reshape(weight.shape)

    def fused_step(self, indices, weights, grads, states):
        lrs, wds = self._lr_array(indices), self._wd_array(indices)
        noises = self._draw_noise(lrs, weights)
        sizes = np.array([w.size for w in weights], dtype=np.int64)
        offsets = np.cumsum(sizes) - sizes
        noise = np.concatenate(noises) if noises else np.zeros(0)
        coefs = np.stack([lrs / 2, offsets // kernels.OFFSET_SPLIT, offsets % kernels.OFFSET_SPLIT],
                         axis=1)
        # ``noise`` goes in as a rule argument: _launch rounds it to each group's compute dtype
        self._launch(kernels.multi_sgld_update_cpu, indices, weights, grads, states, lrs, wds,
                     (noise, self.rescale_grad, self._clip_bound()), coefs=coefs)
