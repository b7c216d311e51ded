"""LANS (MXNet 2.x fused formula), in three passes over the chunk.

    g^ = clip(g * gscale)                      gscale = rescale / ||rescale * g||
    m <- beta1 * m + (1 - beta1) * g^
    v <- beta2 * v + (1 - beta2) * g^2
    d  = sqrt(v * c2) + epsilon                c = 1 / (1 - beta^t)
    rm = (m * c1) / d + wd * w
    rg = g^ / d + wd * w
    w <- w - (lr_m * rm + lr_g * rg)           lr_m = lr * beta1 * trust(||w||, ||rm||)
                                               lr_g = lr * (1 - beta1) * trust(||w||, ||rg||)

Pass 0 is ``norms.multi_sum_sq_cpu`` (``||w||`` and ``||rescale * g||``); pass 1
(``multi_lans_phase1_cpu``) updates the moments and returns the sums of ``rm**2`` and
``rg**2``; pass 2 (``multi_lans_update_cpu``) recomputes both directions from the stored
moments and moves the weight.  ``coefs[t] = (gscale, c1, c2, lr_m, lr_g)`` (pass 1 reads
the first three).
"""
import math

import numpy as np
from numba import njit, prange

from ._common import clip as clip_to, cpu_kernel, load, master_view, scalar_rule, store, store_weight, view
from .norms import add_square, tensor_sums


# --------------------------------------------------------------------------- scalar rules

@scalar_rule
def lans_grad(g, gscale, clip):
    """The per-tensor normalised gradient, then clipped."""
    return clip_to(g * gscale, clip)


@scalar_rule
def lans_moments(gn, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2):
    return beta1 * m + one_minus_beta1 * gn, beta2 * v + one_minus_beta2 * gn * gn


@scalar_rule
def lans_directions(w, gn, m, v, wd, c1, c2, epsilon):
    d = math.sqrt(v * c2) + epsilon
    decay = wd * w
    return (m * c1) / d + decay, gn / d + decay


@scalar_rule
def lans_step(w, rm, rg, lr_m, lr_g):
    return w - (lr_m * rm + lr_g * rg)


# --------------------------------------------------------------------------- CPU kernels
# Table columns: 0 weight, 1 gradient, 2 fp32 master (multi-precision only), 3 mean, 4 var.

@njit(inline="always")
def _phase1_block(w, g, m, v, wd, gscale, c1, c2, beta1, one_minus_beta1, beta2, one_minus_beta2,
                  epsilon, clip):
    sm = 0.0
    sg = 0.0
    for i in range(g.shape[0]):
        gn = lans_grad(load(g, i), gscale, clip)
        new_m, new_v = lans_moments(gn, load(m, i), load(v, i), beta1, one_minus_beta1, beta2,
                                    one_minus_beta2)
        store(m, i, new_m)
        store(v, i, new_v)
        rm, rg = lans_directions(load(w, i), gn, load(m, i), load(v, i), wd, c1, c2, epsilon)
        sm = add_square(sm, rm)
        sg = add_square(sg, rg)
    return sm, sg


@cpu_kernel
def multi_lans_phase1_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                          beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon, clip):
    """Update the moments; return ``sums[t] = (sum(rm**2), sum(rg**2))`` (float64)."""
    n_blocks = blocks.shape[0]
    partials = np.empty((n_blocks, 2), dtype=np.float64)
    for b in prange(n_blocks):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        v = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        wd, gscale, c1, c2 = wds[t], coefs[t, 0], coefs[t, 1], coefs[t, 2]
        sm, sg = _phase1_block(w32, g, m, v, wd, gscale, c1, c2, beta1, one_minus_beta1, beta2,
                               one_minus_beta2, epsilon, clip)
        partials[b, 0] = sm
        partials[b, 1] = sg
    return tensor_sums(blocks, partials, ptrs.shape[0])


@cpu_kernel
def multi_lans_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                          epsilon, clip):
    """``w <- w - (lr_m * rm + lr_g * rg)``, both directions from the weight before the step."""
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        v = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        wd, gscale, c1, c2 = wds[t], coefs[t, 0], coefs[t, 1], coefs[t, 2]
        lr_m, lr_g = coefs[t, 3], coefs[t, 4]
        for i in range(n):
            wi = load(w32, i)
            gn = lans_grad(load(g, i), gscale, clip)
            rm, rg = lans_directions(wi, gn, load(m, i), load(v, i), wd, c1, c2, epsilon)
            store_weight(w, w32, i, lans_step(wi, rm, rg, lr_m, lr_g), master_fmt)
