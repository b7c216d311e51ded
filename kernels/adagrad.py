"""AdaGrad (MXNet 2.x dense rule).

    g' = clip(rescale * g) + wd * w
    h <- h + g'^2
    w <- w - lr * g' / (sqrt(h) + eps)
"""
import math

from numba import prange

from ._common import coupled_grad, cpu_kernel, load, scalar_rule, store, view


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
        lr, wd = lrs[t], wds[t]
        if master_fmt is None:
            for i in range(n):
                new_w, new_h = adagrad_step(load(w, i), load(g, i), load(h, i), lr, wd, eps,
                                            rescale, clip)
                store(h, i, new_h)
                store(w, i, new_w)
        else:
            w32 = view(ptrs, t, 2, start, n, master_fmt)
            for i in range(n):
                new_w, new_h = adagrad_step(w32[i], load(g, i), load(h, i), lr, wd, eps,
                                            rescale, clip)
                store(h, i, new_h)
                w32[i] = new_w
                store(w, i, new_w)
