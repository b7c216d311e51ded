"""RMSProp (MXNet 2.x rules), plain and centered (Graves 2013).

    g' = clip(rescale * g) + wd * w
    plain:     v <- rho * v + (1 - rho) * g'^2
               w <- w - lr * g' / (sqrt(v) + eps)
    centered:  a <- rho * a + (1 - rho) * g'
               v <- rho * v + (1 - rho) * g'^2
               m <- momentum * m - lr * g' / sqrt(v - a^2 + eps)
               w <- w + m
    then, when clip_weights >= 0:  w <- clip(w, -clip_weights, clip_weights)

``one_minus_rho`` arrives precomputed so that no float64 literal widens float32 math.
"""
import math

from numba import prange

from ._common import (clip as clip_to, coupled_grad, cpu_kernel, decayed_then_clipped, load, master_view,
                      scalar_rule, store, store_weight, view)


# --------------------------------------------------------------------------- scalar rules

@scalar_rule
def rmsprop_step(w, g, v, lr, wd, rho, one_minus_rho, eps, clip_weights, rescale, clip):
    gw = coupled_grad(w, g, wd, rescale, clip)
    v = rho * v + one_minus_rho * (gw * gw)
    w = w - lr * (gw / (math.sqrt(v) + eps))
    return clip_to(w, clip_weights), v


@scalar_rule
def rmsprop_centered_step(w, g, a, v, m, lr, wd, rho, one_minus_rho, momentum, eps, clip_weights,
                          rescale, clip):
    gw = coupled_grad(w, g, wd, rescale, clip)
    a = rho * a + one_minus_rho * gw
    v = rho * v + one_minus_rho * (gw * gw)
    m = momentum * m - lr * (gw / math.sqrt(v - a * a + eps))
    return clip_to(w + m, clip_weights), a, v, m


# --------------------------------------------------------------------------- CPU kernels
# Table columns: 0 weight, 1 gradient, 2 fp32 master (multi-precision only), then
# plain: 3 var;  centered: 3 mean, 4 var, 5 mom.

@cpu_kernel
def multi_rmsprop_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                             rho, one_minus_rho, eps, clip_weights, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        v = view(ptrs, t, 3, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(n):
            new_w, new_v = rmsprop_step(load(w32, i), load(g, i), load(v, i), lr, wd, rho,
                                        one_minus_rho, eps, clip_weights, rescale, clip)
            store(v, i, new_v)
            store_weight(w, w32, i, new_w, master_fmt)


@cpu_kernel
def multi_rmsprop_centered_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt,
                                      state_fmt, rho, one_minus_rho, momentum, eps, clip_weights,
                                      rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        a = view(ptrs, t, 3, start, n, state_fmt)
        v = view(ptrs, t, 4, start, n, state_fmt)
        m = view(ptrs, t, 5, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(n):
            new_w, new_a, new_v, new_m = rmsprop_centered_step(
                load(w32, i), load(g, i), load(a, i), load(v, i), load(m, i), lr, wd, rho,
                one_minus_rho, momentum, eps, clip_weights, rescale, clip)
            store(a, i, new_a)
            store(v, i, new_v)
            store(m, i, new_m)
            store_weight(w, w32, i, new_w, master_fmt)


# --------------------------------------------------------------------------- MXNet 1.x rules
#     g' = clip(rescale * g + wd * w)                  (weight decay before the clip)
#     plain:     n <- (1 - rho) * g'^2 + rho * n
#                w <- w - lr * g' / sqrt(n + eps)      (eps inside the root)
#     centered:  n <- (1 - rho) * g'^2 + rho * n;  a <- (1 - rho) * g' + rho * a
#                d <- momentum * d - lr * g' / sqrt(n - a^2 + eps);  w <- w + d
#     then clip_weights as above.  1.x state order: plain (n,); centered (n, a, d).

@scalar_rule
def rmsprop_v1_step(w, g, n, lr, wd, rho, one_minus_rho, eps, clip_weights, rescale, clip):
    gw = decayed_then_clipped(w, g, wd, rescale, clip)
    n = one_minus_rho * (gw * gw) + rho * n
    w = w - lr * (gw / math.sqrt(n + eps))
    return clip_to(w, clip_weights), n


@scalar_rule
def rmsprop_v1_centered_step(w, g, n, a, d, lr, wd, rho, one_minus_rho, momentum, eps, clip_weights,
                             rescale, clip):
    gw = decayed_then_clipped(w, g, wd, rescale, clip)
    n = one_minus_rho * (gw * gw) + rho * n
    a = one_minus_rho * gw + rho * a
    d = momentum * d - lr * (gw / math.sqrt(n - a * a + eps))
    return clip_to(w + d, clip_weights), n, a, d


# Table columns: 0 weight, 1 gradient, 2 fp32 master (multi-precision only), then
# plain: 3 n;  centered: 3 n (mean square), 4 a (mean), 5 d (delta).

@cpu_kernel
def multi_rmsprop_v1_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                                rho, one_minus_rho, eps, clip_weights, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        v = view(ptrs, t, 3, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(n):
            new_w, new_v = rmsprop_v1_step(load(w32, i), load(g, i), load(v, i), lr, wd, rho,
                                           one_minus_rho, eps, clip_weights, rescale, clip)
            store(v, i, new_v)
            store_weight(w, w32, i, new_w, master_fmt)


@cpu_kernel
def multi_rmsprop_v1_centered_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt,
                                         state_fmt, rho, one_minus_rho, momentum, eps, clip_weights,
                                         rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        v = view(ptrs, t, 3, start, n, state_fmt)
        a = view(ptrs, t, 4, start, n, state_fmt)
        m = view(ptrs, t, 5, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(n):
            new_w, new_v, new_a, new_m = rmsprop_v1_centered_step(
                load(w32, i), load(g, i), load(v, i), load(a, i), load(m, i), lr, wd, rho,
                one_minus_rho, momentum, eps, clip_weights, rescale, clip)
            store(v, i, new_v)
            store(a, i, new_a)
            store(m, i, new_m)
            store_weight(w, w32, i, new_w, master_fmt)
