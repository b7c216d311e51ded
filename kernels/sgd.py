"""SGD, with and without momentum.

    g' = clip(rescale * g) + wd * w
    momentum == 0:  w <- w - lr * g'
    momentum  > 0:  m <- momentum * m - lr * g';  w <- w + m
"""
from numba import prange

from ._common import coupled_grad, cpu_kernel, load, master_view, scalar_rule, store, store_weight, view


# --------------------------------------------------------------------------- scalar rules

@scalar_rule
def sgd_step(w, g, lr, wd, rescale, clip):
    return w - lr * coupled_grad(w, g, wd, rescale, clip)


@scalar_rule
def sgd_mom_step(w, g, m, lr, wd, momentum, rescale, clip):
    m = momentum * m - lr * coupled_grad(w, g, wd, rescale, clip)
    return w + m, m


# --------------------------------------------------------------------------- CPU kernels
# Table columns: 0 weight, 1 gradient, 2 fp32 master (multi-precision only), 3 momentum.

@cpu_kernel
def multi_sgd_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                         rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(n):
            new_w = sgd_step(load(w32, i), load(g, i), lr, wd, rescale, clip)
            store_weight(w, w32, i, new_w, master_fmt)


@cpu_kernel
def multi_sgd_mom_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                             momentum, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(n):
            new_w, new_m = sgd_mom_step(load(w32, i), load(g, i), load(m, i), lr, wd, momentum,
                                        rescale, clip)
            store(m, i, new_m)
            store_weight(w, w32, i, new_w, master_fmt)
