"""AdamW (MXNet 2.x): Adam moments with decoupled weight decay, both scaled by the
bias-corrected learning rate.

    g' = clip(rescale * g)
    m <- beta1 * m + (1 - beta1) * g'
    v <- beta2 * v + (1 - beta2) * g'^2
    w <- w - eta * (m / (sqrt(v) + epsilon) + wd * w)      (wd * w uses the weight before the step)

``lrs`` holds ``eta`` of each tensor: ``lr * sqrt(1 - beta2^t) / (1 - beta1^t)`` with bias
correction, else ``lr``.  The whole-update skip for a zero or non-finite ``rescale`` is
decided by the optimizer before launching (the kernel always updates).
"""
import math

from numba import prange

from ._common import cpu_kernel, load, master_view, rescaled, scalar_rule, store, store_weight, view


# --------------------------------------------------------------------------- scalar rule

@scalar_rule
def adamw_step(w, g, m, v, eta, wd, beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon,
               rescale, clip):
    gc = rescaled(g, rescale, clip)
    m = beta1 * m + one_minus_beta1 * gc
    v = beta2 * v + one_minus_beta2 * gc * gc
    return w - eta * (m / (math.sqrt(v) + epsilon) + wd * w), m, v


# --------------------------------------------------------------------------- CPU kernel
# Table columns: 0 weight, 1 gradient, 2 fp32 master (multi-precision only), 3 mean, 4 var.

@cpu_kernel
def multi_adamw_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                           beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        v = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        eta, wd = lrs[t], wds[t]
        for i in range(n):
            new_w, new_m, new_v = adamw_step(load(w32, i), load(g, i), load(m, i), load(v, i), eta, wd,
                                             beta1, one_minus_beta1, beta2, one_minus_beta2,
                                             epsilon, rescale, clip)
            store(m, i, new_m)
            store(v, i, new_v)
            store_weight(w, w32, i, new_w, master_fmt)
