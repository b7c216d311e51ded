"""Delay-compensated asynchronous SGD (MXNet 2.0.0b1 rule).

    g' = clip(rescale * g) + wd * w
    d  = g' + lamda * g' * g' * (w - w_prev)
    momentum == 0:  m = -lr * d
    momentum  > 0:  m <- momentum * m - lr * d
    w_prev <- w     (the weight before this step)
    w      <- w + m
"""
from numba import prange

from ._common import (coupled_grad, cpu_kernel, load, master_view, rescaled, scalar_rule, store,
                      store_weight, view)


# --------------------------------------------------------------------------- scalar rules

@scalar_rule
def dcasgd_direction(w, g, prev, wd, lamda, rescale, clip):
    gw = coupled_grad(w, g, wd, rescale, clip)
    return gw + lamda * gw * gw * (w - prev)


@scalar_rule
def dcasgd_step(w, g, prev, lr, wd, lamda, rescale, clip):
    """Returns (new weight, new previous weight)."""
    return w - lr * dcasgd_direction(w, g, prev, wd, lamda, rescale, clip), w


@scalar_rule
def dcasgd_mom_step(w, g, m, prev, lr, wd, momentum, lamda, rescale, clip):
    """Returns (new weight, new momentum, new previous weight)."""
    m = momentum * m - lr * dcasgd_direction(w, g, prev, wd, lamda, rescale, clip)
    return w + m, m, w


# --------------------------------------------------------------------------- CPU kernels
# Table columns: 0 weight, 1 gradient, 2 fp32 master (multi-precision only), then the
# state leaves: without momentum 3 previous weight; with momentum 3 momentum, 4 previous
# weight.

@cpu_kernel
def multi_dcasgd_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                            lamda, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        prev = view(ptrs, t, 3, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(n):
            new_w, new_prev = dcasgd_step(load(w32, i), load(g, i), load(prev, i), lr, wd, lamda,
                                          rescale, clip)
            store(prev, i, new_prev)
            store_weight(w, w32, i, new_w, master_fmt)


@cpu_kernel
def multi_dcasgd_mom_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                                momentum, lamda, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        prev = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(n):
            new_w, new_m, new_prev = dcasgd_mom_step(load(w32, i), load(g, i), load(m, i),
                                                     load(prev, i), lr, wd, momentum, lamda,
                                                     rescale, clip)
            store(m, i, new_m)
            store(prev, i, new_prev)
            store_weight(w, w32, i, new_w, master_fmt)


# --------------------------------------------------------------------------- MXNet 1.x rule
# The delay compensation uses the gradient without weight decay:
#     d = clip(rescale * g) + wd * w + lamda * gc^2 * (w - w_prev)

@scalar_rule
def dcasgd_v1_direction(w, g, prev, wd, lamda, rescale, clip):
    gc = rescaled(g, rescale, clip)
    return gc + wd * w + lamda * gc * gc * (w - prev)


@scalar_rule
def dcasgd_v1_step(w, g, prev, lr, wd, lamda, rescale, clip):
    """Returns (new weight, new previous weight)."""
    return w - lr * dcasgd_v1_direction(w, g, prev, wd, lamda, rescale, clip), w


@scalar_rule
def dcasgd_v1_mom_step(w, g, m, prev, lr, wd, momentum, lamda, rescale, clip):
    """Returns (new weight, new momentum, new previous weight)."""
    m = momentum * m - lr * dcasgd_v1_direction(w, g, prev, wd, lamda, rescale, clip)
    return w + m, m, w


@cpu_kernel
def multi_dcasgd_v1_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                               lamda, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        prev = view(ptrs, t, 3, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(n):
            new_w, new_prev = dcasgd_v1_step(load(w32, i), load(g, i), load(prev, i), lr, wd, lamda,
                                             rescale, clip)
            store(prev, i, new_prev)
            store_weight(w, w32, i, new_w, master_fmt)


@cpu_kernel
def multi_dcasgd_v1_mom_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                                   momentum, lamda, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        prev = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(n):
            new_w, new_m, new_prev = dcasgd_v1_mom_step(load(w32, i), load(g, i), load(m, i),
                                                        load(prev, i), lr, wd, momentum, lamda,
                                                        rescale, clip)
            store(m, i, new_m)
            store(prev, i, new_prev)
            store_weight(w, w32, i, new_w, master_fmt)
