"""AdaDelta (MXNet 2.x rule: the learning rate is used, weight decay is coupled).

    g' = clip(rescale * g) + wd * w
    acc_g     <- rho * acc_g + (1 - rho) * g'^2
    delta      = sqrt(acc_delta + eps) / sqrt(acc_g + eps) * g'
    acc_delta <- rho * acc_delta + (1 - rho) * delta^2
    w         <- w - lr * delta

``one_minus_rho`` arrives precomputed so that no float64 literal widens float32 math.
"""
import math

from numba import prange

from ._common import (coupled_grad, cpu_kernel, load, master_view, rescaled, scalar_rule, store,
                      store_weight, view)


# --------------------------------------------------------------------------- scalar rule

@scalar_rule
def adadelta_step(w, g, acc_g, acc_delta, lr, wd, rho, one_minus_rho, eps, rescale, clip):
    gw = coupled_grad(w, g, wd, rescale, clip)
    acc_g = rho * acc_g + one_minus_rho * (gw * gw)
    delta = math.sqrt(acc_delta + eps) / math.sqrt(acc_g + eps) * gw
    acc_delta = rho * acc_delta + one_minus_rho * (delta * delta)
    return w - lr * delta, acc_g, acc_delta


# --------------------------------------------------------------------------- CPU kernel
# Table columns: 0 weight, 1 gradient, 2 fp32 master (multi-precision only),
# 3 acc_g, 4 acc_delta.

@cpu_kernel
def multi_adadelta_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                              rho, one_minus_rho, eps, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        ag = view(ptrs, t, 3, start, n, state_fmt)
        ad = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(n):
            new_w, new_ag, new_ad = adadelta_step(load(w32, i), load(g, i), load(ag, i), load(ad, i),
                                                  lr, wd, rho, one_minus_rho, eps, rescale, clip)
            store(ag, i, new_ag)
            store(ad, i, new_ad)
            store_weight(w, w32, i, new_w, master_fmt)


# --------------------------------------------------------------------------- MXNet 1.x rule
#     g' = clip(rescale * g)                         (no weight decay in the statistics)
#     acc_g     <- rho * acc_g + (1 - rho) * g'^2
#     delta      = sqrt(acc_delta + eps) / sqrt(acc_g + eps) * g'
#     acc_delta <- rho * acc_delta + (1 - rho) * delta^2
#     w         <- w - (delta + wd * w)               (no learning rate, decoupled decay)

@scalar_rule
def adadelta_v1_step(w, g, acc_g, acc_delta, wd, rho, one_minus_rho, eps, rescale, clip):
    gc = rescaled(g, rescale, clip)
    acc_g = rho * acc_g + one_minus_rho * (gc * gc)
    delta = math.sqrt(acc_delta + eps) / math.sqrt(acc_g + eps) * gc
    acc_delta = rho * acc_delta + one_minus_rho * (delta * delta)
    return w - (delta + wd * w), acc_g, acc_delta


@cpu_kernel
def multi_adadelta_v1_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                                 rho, one_minus_rho, eps, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        acc_g = view(ptrs, t, 3, start, n, state_fmt)
        acc_delta = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        wd = wds[t]
        for i in range(n):
            new_w, new_g, new_d = adadelta_v1_step(load(w32, i), load(g, i), load(acc_g, i),
                                                   load(acc_delta, i), wd, rho, one_minus_rho, eps,
                                                   rescale, clip)
            store(acc_g, i, new_g)
            store(acc_delta, i, new_d)
            store_weight(w, w32, i, new_w, master_fmt)
