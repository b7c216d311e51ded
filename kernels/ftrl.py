"""FTRL-proximal (McMahan et al. 2013), MXNet's rule (the same in 1.x and 2.x).

    g' = clip(rescale * g)                      (no weight decay in the gradient)
    z <- z + g' - (sqrt(n + g'^2) - sqrt(n)) * w / lr
    n <- n + g'^2
    w <- (sign(z) * lamda1 - z) / ((beta + sqrt(n)) / lr + wd)   if |z| > lamda1, else 0

Weight decay only enters the denominator.  A NaN in ``z`` gives a NaN weight.
"""
import math

from numba import prange

from ._common import cpu_kernel, load, master_view, rescaled, scalar_rule, store, store_weight, view


# --------------------------------------------------------------------------- scalar rule

@scalar_rule
def ftrl_step(w, g, z, n, lr, wd, lamda1, beta, rescale, clip):
    gc = rescaled(g, rescale, clip)
    sq_old = math.sqrt(n)
    n = n + gc * gc
    sq_new = math.sqrt(n)
    z = z + gc - (sq_new - sq_old) * w / lr
    if z > lamda1:
        num = lamda1 - z
    elif z < -lamda1:
        num = -lamda1 - z
    else:
        num = z - z          # 0, or NaN when z is NaN
    return num / ((beta + sq_new) / lr + wd), z, n


# --------------------------------------------------------------------------- CPU kernel
# Table columns: 0 weight, 1 gradient, 2 fp32 master (multi-precision only), 3 z, 4 n.

@cpu_kernel
def multi_ftrl_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                          lamda1, beta, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        z = view(ptrs, t, 3, start, n, state_fmt)
        sq = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(n):
            new_w, new_z, new_n = ftrl_step(load(w32, i), load(g, i), load(z, i), load(sq, i),
                                            lr, wd, lamda1, beta, rescale, clip)
            store(z, i, new_z)
            store(sq, i, new_n)
            store_weight(w, w32, i, new_w, master_fmt)
