"""AdaBelief (MXNet 2.x): the second moment tracks the gradient's deviation from its mean.

    g' = clip(rescale * g + wd * w)                  (weight decay before the clip)
    m <- beta1 * m + (1 - beta1) * g'
    v <- beta2 * v + (1 - beta2) * (g' - m)^2 + epsilon      (new m; epsilon every step)
    w <- w - eta * m / (sqrt(v) + epsilon)

``lrs`` holds ``eta`` of each tensor (bias-corrected lr, or lr without bias correction).
The whole-update skip for a zero or non-finite ``rescale`` is decided by the optimizer
before launching.
"""
import math

from numba import prange

from ._common import clip as clip_to, cpu_kernel, load, master_view, scalar_rule, store, store_weight, view


# --------------------------------------------------------------------------- scalar rule

@scalar_rule
def adabelief_step(w, g, m, s, eta, wd, beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon,
                   rescale, clip):
    gw = clip_to(g * rescale + wd * w, clip)
    m = beta1 * m + one_minus_beta1 * gw
    d = gw - m
    s = beta2 * s + one_minus_beta2 * d * d + epsilon
    return w - eta * m / (math.sqrt(s) + epsilon), m, s


# --------------------------------------------------------------------------- CPU kernel
# Table columns: 0 weight, 1 gradient, 2 fp32 master (multi-precision only), 3 mean, 4 var.

@cpu_kernel
def multi_adabelief_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                               beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        s = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        eta, wd = lrs[t], wds[t]
        for i in range(n):
            new_w, new_m, new_s = adabelief_step(load(w32, i), load(g, i), load(m, i), load(s, i), eta,
                                                 wd, beta1, one_minus_beta1, beta2, one_minus_beta2,
                                                 epsilon, rescale, clip)
            store(m, i, new_m)
            store(s, i, new_s)
            store_weight(w, w32, i, new_w, master_fmt)
