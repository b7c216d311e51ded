"""Stochastic gradient Langevin dynamics."""
import functools
import math

import numpy as np

from ..kernels import counter_rng
from ..kernels import sgld as kernels
from .optimizer import DefaultValue, Optimizer, register

__all__ = ["SGLD"]


@functools.lru_cache(maxsize=256)
def _key_halves(indices):
    return counter_rng.word_halves([counter_rng.param_key(i) for i in indices])


@register
class SGLD(Optimizer):
    """SGLD, MXNet 2.0.0b1 rule::

        g' = clip(rescale_grad * g) + wd * w
        w  <- w - lr / 2 * g' + sqrt(lr) * z,      z ~ N(0, 1)

    The noise is generated inside the kernels by a counter-based generator
    (Philox-4x32-10 and Box-Muller, see ``mxopt_numba.kernels.counter_rng``): the normal
    ``z`` of an element is a function of the optimizer's ``seed``, the parameter's index,
    its update count and the element's position only.  The same numbers therefore come
    out whatever the thread count, ``aggregate_num``, the order of the call or the device
    (the CUDA twins use the same functions), and ``step`` (the NumPy path, a vectorised
    copy of the same generator) agrees with ``fused_step``.  ``z`` is a float32 number;
    ``sqrt(lr) * z`` is computed in the weight's compute dtype.

    ``seed`` (a 64-bit integer) is taken from :func:`mxopt_numba.random.generator` at the
    first update unless given, so ``mxopt_numba.random.seed(n)`` before the first update
    makes a run repeatable.  It is an attribute of the optimizer: saved optimizer settings
    (``Updater.get_states(dump_optimizer=True)``, pickling) keep it together with the
    update counts, so a restored run continues the same noise sequence.

    MXNet draws with its own generator, so only the distribution of the updates can match
    MXNet's.  MXNet runs SGLD only in Python (``use_fused_step=False``); here the fused
    kernel is the default and gives the same results as ``step``.

    Parameters
    ----------
    learning_rate : float, default 0.1
    use_fused_step : bool, default True
    seed : int, optional
        Key of the noise (default: drawn from the library's generator at first use).
    **kwargs : see :class:`Optimizer`.
    """

    draws_noise = True

    fused_by_default = True

    def __init__(self, learning_rate=DefaultValue(0.1), use_fused_step=True, seed=None, **kwargs):
        super().__init__(learning_rate=learning_rate, use_fused_step=use_fused_step, **kwargs)
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 1 << 64:
                raise ValueError("seed must be None or an integer in [0, 2**64), got %r" % (seed,))
            seed = int(seed)
        self.seed = seed

    def create_state(self, index, weight):
        return None

    def _noise_seed(self):
        return self._random_seed()

    def _noise(self, index, weight, lr):
        """``sqrt(lr) * z`` for one weight (its compute dtype, its shape)."""
        step = int(self._index_counts([index])[0])
        z = counter_rng.standard_normal_np(weight.size, step, counter_rng.param_key(index),
                                           self._noise_seed())
        ct = np.float64 if weight.dtype == np.float64 else np.float32
        return (ct(math.sqrt(lr)) * z.astype(ct)).reshape(weight.shape)

    def step(self, indices, weights, grads, states):
        lrs, wds = self._lr_array(indices), self._wd_array(indices)
        for index, lr, wd, weight, grad in zip(indices, lrs, wds, weights, grads):
            # Python floats, so that NumPy computes in the weight's dtype like the kernel
            g = self._coupled(grad, weight, float(wd))
            weight -= float(lr) / 2 * g
            weight += self._noise(index, weight, lr)

    def fused_step(self, indices, weights, grads, states):
        lrs, wds = self._lr_array(indices), self._wd_array(indices)
        steps_hi, steps_lo = counter_rng.word_halves(self._index_counts(indices).astype(np.int64))
        keys_hi, keys_lo = _key_halves(tuple(indices))
        coefs = np.stack([lrs / 2, np.sqrt(lrs), steps_hi, steps_lo, keys_hi, keys_lo], axis=1)
        self._launch(kernels.multi_sgld_update_cpu, indices, weights, grads, states, lrs, wds,
                     counter_rng.seed_halves(self._noise_seed()) + (self.rescale_grad, self._clip_bound()),
                     coefs=coefs)
