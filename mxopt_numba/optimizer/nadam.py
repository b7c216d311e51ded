"""Nadam (MXNet 2.x rule), with the momentum schedule kept per parameter."""
import collections

import numpy as np

from ..kernels import nadam as kernels
from .optimizer import DefaultValue, Optimizer, _real, check_fraction, check_positive, register

__all__ = ["Nadam"]


@register
class Nadam(Optimizer):
    """Adam with Nesterov momentum (Dozat, 2016), MXNet 2.x rule::

        g' = clip(rescale_grad * g) + wd * w
        mu_t = beta1 * (1 - 0.5 * 0.96^(t * schedule_decay))
        M_t = mu_1 * mu_2 * ... * mu_t                  (the "m_schedule")
        m <- beta1 * m + (1 - beta1) * g'
        v <- beta2 * v + (1 - beta2) * g'^2
        g_hat = g' / (1 - M_t)
        m_hat = m / (1 - M_t * mu_t+1)
        v_hat = v / (1 - beta2^t)
        w <- w - lr * ((1 - mu_t) * g_hat + mu_t+1 * m_hat) / (sqrt(v_hat) + epsilon)

    ``t`` is the parameter's own update count (the product starts after
    ``begin_num_update``).

    Deliberate difference from MXNet: MXNet keeps *one* ``m_schedule`` for the whole
    optimizer and multiplies it by ``mu_t`` at every tensor update, so with P parameters
    it advances P times per iteration and a tensor's trajectory depends on how many
    other tensors there are (and on their order).  Here ``M_t`` belongs to each parameter.
    It is not stored: it is a function of the parameter's update count, recomputed (as
    the same left-to-right product of Python floats MXNet accumulates, so a single-tensor
    run matches MXNet exactly) and cached for consecutive counts.  The state therefore
    keeps MXNet's ``(mean, var)`` layout, and saving the optimizer's update counts (the
    Updater's ``get_states(dump_optimizer=True)``) is all a resumed run needs.
    :meth:`m_schedule_of` gives ``M_t`` of a parameter.

    MXNet runs this rule in Python only (``use_fused_step=False`` there); here it has a
    kernel and fuses by default.

    Parameters
    ----------
    learning_rate : float, default 0.001
    beta1 : float, default 0.9
        In [0, 1).
    beta2 : float, default 0.999
        In [0, 1).
    epsilon : float, default 1e-8
        Must be > 0.
    schedule_decay : float, default 0.004
        Decay of the momentum schedule, finite and >= 0.
    use_fused_step : bool, default True
    **kwargs : see :class:`Optimizer`.
    """

    elementwise = True

    fused_by_default = True

    def __init__(self, learning_rate=DefaultValue(0.001), beta1=0.9, beta2=0.999, epsilon=1e-8,
                 schedule_decay=0.004, use_fused_step=True, **kwargs):
        super().__init__(learning_rate=learning_rate, use_fused_step=use_fused_step, **kwargs)
        self.beta1 = check_fraction("beta1", beta1)
        self.beta2 = check_fraction("beta2", beta2)
        self.epsilon = check_positive("epsilon", epsilon)
        schedule_decay = _real("schedule_decay", schedule_decay)
        if not 0.0 <= schedule_decay < float("inf"):
            raise ValueError("schedule_decay must be a finite number >= 0, got %r" % schedule_decay)
        self.schedule_decay = schedule_decay

    def create_state(self, index, weight):
        return (np.zeros(weight.shape, dtype=weight.dtype),   # mean
                np.zeros(weight.shape, dtype=weight.dtype))   # var

    # ------------------------------------------------------------------ momentum schedule
    def _mu(self, t):
        return momentum_schedule(self.beta1, self.schedule_decay, t)

    def _m_schedule(self, t):
        """``M_t``: product of ``mu_k`` for k = begin_num_update + 1 .. t, left to right."""
        return _schedule_product(self.beta1, self.schedule_decay, self.begin_num_update, int(t))

    def m_schedule_of(self, index):
        """The momentum-schedule product ``M_t`` of parameter ``index`` after its last update
        (1.0 before the first one)."""
        t = int(self._index_counts([index])[0])
        return self._m_schedule(t) if t > self.begin_num_update else 1.0

    def _coefs(self, indices):
        """Per-tensor ``(1 - M_t, 1 - M_t * mu_t+1, 1 - beta2^t, 1 - mu_t, mu_t+1)``."""
        counts, which = np.unique(self._index_counts(indices), return_inverse=True)
        table = np.empty((counts.size, 5))
        for k, t in enumerate(counts.tolist()):
            mu, mu_next = self._mu(t), self._mu(t + 1)
            m_schedule = self._m_schedule(t)
            table[k] = (1.0 - m_schedule, 1.0 - m_schedule * mu_next, 1.0 - pow(self.beta2, t),
                        1.0 - mu, mu_next)
        return table[which.reshape(-1)]

    # ------------------------------------------------------------------ update
    def step(self, indices, weights, grads, states):
        for lr, wd, c, weight, grad, (mean, var) in zip(self._lr_array(indices), self._wd_array(indices),
                                                        self._coefs(indices), weights, grads, states):
            one_minus_m, one_minus_m_next, one_minus_beta2_t, one_minus_mu, mu_next = c
            g = self._coupled(grad, weight, wd)
            mean *= self.beta1
            mean += (1.0 - self.beta1) * g
            var *= self.beta2
            var += (1.0 - self.beta2) * np.square(g)
            g_hat = g / one_minus_m
            m_hat = mean / one_minus_m_next
            v_hat = var / one_minus_beta2_t
            m_bar = one_minus_mu * g_hat + mu_next * m_hat
            weight -= lr * m_bar / (np.sqrt(v_hat) + self.epsilon)

    def fused_step(self, indices, weights, grads, states):
        self._launch(kernels.multi_nadam_update_cpu, indices, weights, grads, states,
                     self._lr_array(indices), self._wd_array(indices),
                     (self.beta1, 1.0 - self.beta1, self.beta2, 1.0 - self.beta2, self.epsilon,
                      self.rescale_grad, self._clip_bound()),
                     coefs=self._coefs(indices))


def momentum_schedule(beta1, schedule_decay, t):
    """``mu_t = beta1 * (1 - 0.5 * 0.96^(t * schedule_decay))``."""
    return beta1 * (1.0 - 0.5 * pow(0.96, t * schedule_decay))


# Recent products per (beta1, schedule_decay, begin): {t: M_t}.  Training asks for t, t+1,
# ... so each step extends the previous product by one factor; a resumed run pays one
# O(t) product.  Kept off the optimizer so it is never saved with it.
_PRODUCTS = collections.OrderedDict()
_KEEP = 16


def _schedule_product(beta1, schedule_decay, begin, t):
    key = (beta1, schedule_decay, begin)
    known = _PRODUCTS.get(key)
    if known is None:
        known = _PRODUCTS[key] = {}
        if len(_PRODUCTS) > _KEEP:
            _PRODUCTS.popitem(last=False)
    else:
        _PRODUCTS.move_to_end(key)
    product = known.get(t)
    if product is not None:
        return product
    below = [k for k in known if k < t]
    start = max(below) if below else min(begin, t - 1)
    product = known[start] if below else 1.0
    for k in range(start + 1, t + 1):
        product = product * momentum_schedule(beta1, schedule_decay, k)
    known[t] = product
    if len(known) > _KEEP:
        del known[min(known)]
    return product
