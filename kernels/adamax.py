"""Adamax (MXNet 2.x): Adam with an infinity-norm second moment, epsilon in the divisor.

    g' = clip(rescale * g) + wd * w
    m <- beta1 * m + (1 - beta1) * g'
    u <- max(beta2 * u, |g'|)                    (NaN propagates)
    w <- w - lr_t * m / (u + epsilon)            lr_t = lr / (1 - beta1^t)

``lrs`` holds the bias-corrected ``lr_t`` of each tensor.
"""
from numba import prange

from ._common import (coupled_grad, cpu_kernel, decayed_then_clipped, load, master_view, scalar_rule, store,
                      store_weight, view)


# --------------------------------------------------------------------------- scalar rule

@scalar_rule
def adamax_from_grad(w, gw, m, u, lr, beta1, one_minus_beta1, beta2, epsilon):
    """The rule after the gradient preprocessing (shared by the 2.x and 1.x rules)."""
    m = beta1 * m + one_minus_beta1 * gw
    decayed = beta2 * u
    a = abs(gw)
    u = a if (a > decayed or a != a) else decayed
    return w - lr * m / (u + epsilon), m, u


@scalar_rule
def adamax_step(w, g, m, u, lr, wd, beta1, one_minus_beta1, beta2, epsilon, rescale, clip):
    return adamax_from_grad(w, coupled_grad(w, g, wd, rescale, clip), m, u, lr, beta1, one_minus_beta1,
                            beta2, epsilon)


@scalar_rule
def adamax_v1_step(w, g, m, u, lr, wd, beta1, one_minus_beta1, beta2, epsilon, rescale, clip):
    """MXNet 1.x: ``g' = clip(rescale * g + wd * w)`` (and epsilon 0, set by the optimizer)."""
    return adamax_from_grad(w, decayed_then_clipped(w, g, wd, rescale, clip), m, u, lr, beta1,
                            one_minus_beta1, beta2, epsilon)



# --------------------------------------------------------------------------- CPU kernel
# Table columns: 0 weight, 1 gradient, 2 fp32 master (multi-precision only), 3 m, 4 u.

@cpu_kernel
def multi_adamax_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                            beta1, one_minus_beta1, beta2, epsilon, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        u = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(n):
            new_w, new_m, new_u = adamax_step(load(w32, i), load(g, i), load(m, i), load(u, i), lr, wd,
                                              beta1, one_minus_beta1, beta2, epsilon, rescale, clip)
            store(m, i, new_m)
            store(u, i, new_u)
            store_weight(w, w32, i, new_w, master_fmt)


# MXNet 1.x rule (mxopt_numba.v1): the same loop with the 1.x preprocessing.

@cpu_kernel
def multi_adamax_v1_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                               beta1, one_minus_beta1, beta2, epsilon, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        u = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(n):
            new_w, new_m, new_u = adamax_v1_step(load(w32, i), load(g, i), load(m, i), load(u, i), lr, wd,
                                                 beta1, one_minus_beta1, beta2, epsilon, rescale, clip)
            store(m, i, new_m)
            store(u, i, new_u)
            store_weight(w, w32, i, new_w, master_fmt)
