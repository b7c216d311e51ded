"""Nadam (MXNet 2.x rule): Adam with Nesterov momentum and a momentum schedule.

    g' = clip(rescale * g) + wd * w
    m <- beta1 * m + (1 - beta1) * g'
    v <- beta2 * v + (1 - beta2) * g'^2
    g_hat = g' / (1 - M_t);  m_hat = m / (1 - M_t+1);  v_hat = v / (1 - beta2^t)
    w <- w - lr * ((1 - mu_t) * g_hat + mu_t+1 * m_hat) / (sqrt(v_hat) + epsilon)

Per-tensor ``coefs`` columns (computed by the optimizer from the update count ``t``):
0 ``1 - M_t``, 1 ``1 - M_t+1``, 2 ``1 - beta2^t``, 3 ``1 - mu_t``, 4 ``mu_t+1``, where
``mu_t`` is the momentum schedule and ``M_t = mu_1 * ... * mu_t`` its running product.
"""
import math

from numba import prange

from ._common import (coupled_grad, cpu_kernel, decayed_then_clipped, load, master_view, scalar_rule, store,
                      store_weight, view)


# --------------------------------------------------------------------------- scalar rule

@scalar_rule
def nadam_from_grad(w, gw, m, v, lr, one_minus_m_schedule, one_minus_m_schedule_next, one_minus_beta2_t,
                    one_minus_mu, mu_next, beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon):
    """The rule after the gradient preprocessing (shared by the 2.x and 1.x rules)."""
    m = beta1 * m + one_minus_beta1 * gw
    v = beta2 * v + one_minus_beta2 * gw * gw
    g_hat = gw / one_minus_m_schedule
    m_hat = m / one_minus_m_schedule_next
    v_hat = v / one_minus_beta2_t
    m_bar = one_minus_mu * g_hat + mu_next * m_hat
    return w - lr * m_bar / (math.sqrt(v_hat) + epsilon), m, v


@scalar_rule
def nadam_step(w, g, m, v, lr, wd, one_minus_m_schedule, one_minus_m_schedule_next,
               one_minus_beta2_t, one_minus_mu, mu_next, beta1, one_minus_beta1, beta2,
               one_minus_beta2, epsilon, rescale, clip):
    return nadam_from_grad(w, coupled_grad(w, g, wd, rescale, clip), m, v, lr, one_minus_m_schedule,
                           one_minus_m_schedule_next, one_minus_beta2_t, one_minus_mu, mu_next, beta1,
                           one_minus_beta1, beta2, one_minus_beta2, epsilon)


@scalar_rule
def nadam_v1_step(w, g, m, v, lr, wd, one_minus_m_schedule, one_minus_m_schedule_next,
                     one_minus_beta2_t, one_minus_mu, mu_next, beta1, one_minus_beta1, beta2,
                     one_minus_beta2, epsilon, rescale, clip):
    """MXNet 1.x: ``g' = clip(rescale * g + wd * w)``."""
    return nadam_from_grad(w, decayed_then_clipped(w, g, wd, rescale, clip), m, v, lr, one_minus_m_schedule,
                           one_minus_m_schedule_next, one_minus_beta2_t, one_minus_mu, mu_next, beta1,
                           one_minus_beta1, beta2, one_minus_beta2, epsilon)



# --------------------------------------------------------------------------- CPU kernel
# Table columns: 0 weight, 1 gradient, 2 fp32 master (multi-precision only), 3 m, 4 v.

@cpu_kernel
def multi_nadam_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                           beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        v = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        c0, c1, c2, c3, c4 = coefs[t, 0], coefs[t, 1], coefs[t, 2], coefs[t, 3], coefs[t, 4]
        for i in range(n):
            new_w, new_m, new_v = nadam_step(load(w32, i), load(g, i), load(m, i), load(v, i), lr, wd,
                                             c0, c1, c2, c3, c4, beta1, one_minus_beta1, beta2,
                                             one_minus_beta2, epsilon, rescale, clip)
            store(m, i, new_m)
            store(v, i, new_v)
            store_weight(w, w32, i, new_w, master_fmt)


# MXNet 1.x rule (mxopt_numba.v1): the same loop with the 1.x preprocessing.

@cpu_kernel
def multi_nadam_v1_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                              beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        v = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        c0, c1, c2, c3, c4 = coefs[t, 0], coefs[t, 1], coefs[t, 2], coefs[t, 3], coefs[t, 4]
        for i in range(n):
            new_w, new_m, new_v = nadam_v1_step(load(w32, i), load(g, i), load(m, i), load(v, i), lr, wd,
                                                c0, c1, c2, c3, c4, beta1, one_minus_beta1, beta2,
                                                one_minus_beta2, epsilon, rescale, clip)
            store(m, i, new_m)
            store(v, i, new_v)
            store_weight(w, w32, i, new_w, master_fmt)
