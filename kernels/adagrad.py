"""AdaGrad (MXNet 2.x dense rule).

    g' = clip(rescale * g) + wd * w
    h <- h + g'^2
    w <- w - lr * g' / (sqrt(h) + eps)
"""
import math

from numba import prange

from ._common import (coupled_grad, cpu_kernel, load, master_view, rescaled, scalar_rule, store,
                      store_weight, view)


# --------------------------------------------------------------------------- scalar rule

@scalar_rule
def adagrad_step(w, g, h, lr, wd, eps, rescale, clip):
    gw = coupled_grad(w, g, wd, rescale, clip)
    h = h + gw * gw
    return w - lr * (gw / (math.sqrt(h) + eps)), h


# --------------------------------------------------------------------------- CPU kernel
# Table columns: 0 weight, 1 gradient, 2 fp32 master (multi-precision only), 3 history.

@cpu_kernel
def multi_adagrad_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                             eps, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        h = view(ptrs, t, 3, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(n):
            new_w, new_h = adagrad_step(load(w32, i), load(g, i), load(h, i), lr, wd, eps,
                                        rescale, clip)
            store(h, i, new_h)
            store_weight(w, w32, i, new_w, master_fmt)


# --------------------------------------------------------------------------- MXNet 1.x rule
#     g' = clip(rescale * g)
#     h <- h + g'^2
#     w <- w - lr * (g' / sqrt(h + eps) + wd * w)       (eps inside the root, wd decoupled)

@scalar_rule
def adagrad_v1_step(w, g, h, lr, wd, eps, rescale, clip):
    gc = rescaled(g, rescale, clip)
    h = h + gc * gc
    return w - lr * (gc / math.sqrt(h + eps) + wd * w), h


@cpu_kernel
def multi_adagrad_v1_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                                eps, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        h = view(ptrs, t, 3, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(n):
            new_w, new_h = adagrad_v1_step(load(w32, i), load(g, i), load(h, i), lr, wd, eps,
                                           rescale, clip)
            store(h, i, new_h)
            store_weight(w, w32, i, new_w, master_fmt)
