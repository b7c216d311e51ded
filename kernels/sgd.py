"""SGD, with and without momentum.

    g' = clip(rescale * g) + wd * w
    momentum == 0:  w <- w - lr * g'
    momentum  > 0:  m <- momentum * m - lr * g';  w <- w + m
"""
from numba import prange

from ._common import coupled_grad, cpu_kernel, load, scalar_rule, store, view


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
        lr, wd = lrs[t], wds[t]
        if master_fmt is None:
            for i in range(n):
                store(w, i, sgd_step(load(w, i), load(g, i), lr, wd, rescale, clip))
        else:
            w32 = view(ptrs, t, 2, start, n, master_fmt)
            for i in range(n):
                new_w = sgd_step(w32[i], load(g, i), lr, wd, rescale, clip)
                w32[i] = new_w
                store(w, i, new_w)


@cpu_kernel
def multi_sgd_mom_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                             momentum, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        lr, wd = lrs[t], wds[t]
        if master_fmt is None:
            for i in range(n):
                new_w, new_m = sgd_mom_step(load(w, i), load(g, i), load(m, i), lr, wd, momentum,
                                            rescale, clip)
                store(m, i, new_m)
                store(w, i, new_w)
        else:
            w32 = view(ptrs, t, 2, start, n, master_fmt)
            for i in range(n):
                new_w, new_m = sgd_mom_step(w32[i], load(g, i), load(m, i), lr, wd, momentum,
                                            rescale, clip)
                store(m, i, new_m)
                w32[i] = new_w
                store(w, i, new_w)
