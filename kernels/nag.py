"""Nesterov accelerated gradient (MXNet 2.0.0b1 rule), with momentum.

    g' = clip(rescale * g) + wd * w          (w: the weight before this step)
    m  <- momentum * m - lr * g'
    w  <- w + momentum * m - lr * g'

Without momentum NAG is plain SGD: the optimizer launches ``sgd.multi_sgd_update_cpu``.
"""
from numba import prange

from ._common import (coupled_grad, cpu_kernel, load, master_view, rescaled, scalar_rule, store,
                      store_weight, view)


# --------------------------------------------------------------------------- scalar rules

@scalar_rule
def nag_mom_step(w, g, m, lr, wd, momentum, rescale, clip):
    gw = coupled_grad(w, g, wd, rescale, clip)
    m = momentum * m - lr * gw
    return w + (momentum * m - lr * gw), m


# --------------------------------------------------------------------------- CPU kernels
# Table columns: 0 weight, 1 gradient, 2 fp32 master (multi-precision only), 3 momentum.

@cpu_kernel
def multi_nag_mom_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                             momentum, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(n):
            new_w, new_m = nag_mom_step(load(w32, i), load(g, i), load(m, i), lr, wd, momentum,
                                        rescale, clip)
            store(m, i, new_m)
            store_weight(w, w32, i, new_w, master_fmt)


# --------------------------------------------------------------------------- MXNet 1.x rule
# MXNet 1.x updates the weight in place before the momentum, so the momentum's decay
# term reads the new weight:
#     g' = clip(rescale * g);  m1 = momentum * m
#     w_new = w - m1 + (momentum + 1) * (m1 - lr * (g' + wd * w))
#     m     <- m1 - lr * (g' + wd * w_new)

@scalar_rule
def nag_v1_mom_step(w, g, m, lr, wd, momentum, rescale, clip):
    gc = rescaled(g, rescale, clip)
    m1 = momentum * m
    w_new = w - m1 + (momentum + 1) * (m1 - lr * (gc + wd * w))
    return w_new, m1 - lr * (gc + wd * w_new)


@cpu_kernel
def multi_nag_v1_mom_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                                momentum, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(n):
            new_w, new_m = nag_v1_mom_step(load(w32, i), load(g, i), load(m, i), lr, wd, momentum,
                                           rescale, clip)
            store(m, i, new_m)
            store_weight(w, w32, i, new_w, master_fmt)
