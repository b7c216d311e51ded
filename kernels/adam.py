"""Adam (MXNet 2.x), bias correction folded into the learning rate.

    g' = clip(rescale * g) + wd * w
    m <- beta1 * m + (1 - beta1) * g'
    v <- beta2 * v + (1 - beta2) * g'^2
    w <- w - lr_t * m / (sqrt(v) + epsilon)      lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)

``lrs`` holds the bias-corrected ``lr_t`` of each tensor (computed by the optimizer from
its update count); ``1 - beta1`` and ``1 - beta2`` arrive as scalars.
"""
import math

from numba import prange

from ._common import (coupled_grad, cpu_kernel, decayed_then_clipped, load, master_view, scalar_rule, store,
                      store_weight, view)


# --------------------------------------------------------------------------- scalar rule

@scalar_rule
def adam_from_grad(w, gw, m, v, lr, beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon):
    """The rule after the gradient preprocessing (shared by the 2.x and 1.x rules)."""
    m = beta1 * m + one_minus_beta1 * gw
    v = beta2 * v + one_minus_beta2 * gw * gw
    return w - lr * m / (math.sqrt(v) + epsilon), m, v


@scalar_rule
def adam_step(w, g, m, v, lr, wd, beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon,
              rescale, clip):
    return adam_from_grad(w, coupled_grad(w, g, wd, rescale, clip), m, v, lr, beta1, one_minus_beta1,
                          beta2, one_minus_beta2, epsilon)


@scalar_rule
def adam_v1_step(w, g, m, v, lr, wd, beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon,
                    rescale, clip):
    """MXNet 1.x: the weight decay enters before the clip, ``g' = clip(rescale * g + wd * w)``."""
    return adam_from_grad(w, decayed_then_clipped(w, g, wd, rescale, clip), m, v, lr, beta1,
                          one_minus_beta1, beta2, one_minus_beta2, epsilon)


# --------------------------------------------------------------------------- CPU kernel
# Table columns: 0 weight, 1 gradient, 2 fp32 master (multi-precision only), 3 mean, 4 var.

@cpu_kernel
def multi_adam_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                          beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        v = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(n):
            new_w, new_m, new_v = adam_step(load(w32, i), load(g, i), load(m, i), load(v, i), lr, wd,
                                            beta1, one_minus_beta1, beta2, one_minus_beta2,
                                            epsilon, rescale, clip)
            store(m, i, new_m)
            store(v, i, new_v)
            store_weight(w, w32, i, new_w, master_fmt)


# MXNet 1.x rule (mxopt_numba.v1): the same loop with the 1.x preprocessing.

@cpu_kernel
def multi_adam_v1_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                             beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        v = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(n):
            new_w, new_m, new_v = adam_v1_step(load(w32, i), load(g, i), load(m, i), load(v, i), lr, wd,
                                               beta1, one_minus_beta1, beta2, one_minus_beta2,
                                               epsilon, rescale, clip)
            store(m, i, new_m)
            store(v, i, new_v)
            store_weight(w, w32, i, new_w, master_fmt)
