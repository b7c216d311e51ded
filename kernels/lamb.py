"""LAMB (MXNet 2.x), in two passes over the chunk.

    g' = clip(rescale * g)                        (no weight decay in the moments)
    m <- beta1 * m + (1 - beta1) * g'
    v <- beta2 * v + (1 - beta2) * g'^2
    r  = (m * c1) / (sqrt(v * c2) + epsilon) + wd * w      c = 1 / (1 - beta^t), or 1
    w <- w - lr_t * r                             lr_t = lr * trust(||w||, ||r||)

Pass 1 (``multi_lamb_phase1_cpu``) updates ``m`` and ``v`` and returns the per-tensor
sums of ``w**2`` and ``r**2``; the optimizer turns them into ``lr_t`` (bounds, trust
ratio); pass 2 (``multi_lamb_update_cpu``) recomputes ``r`` from the stored moments and
moves the weight.  ``coefs[t] = (c1, c2)`` carry the bias corrections.
"""
import math

import numpy as np
from numba import njit, prange

from ._common import cpu_kernel, load, master_view, rescaled, scalar_rule, store, store_weight, view
from .norms import add_square, tensor_sums


# --------------------------------------------------------------------------- scalar rules

@scalar_rule
def lamb_moments(g, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2, rescale, clip):
    gc = rescaled(g, rescale, clip)
    return beta1 * m + one_minus_beta1 * gc, beta2 * v + one_minus_beta2 * gc * gc


@scalar_rule
def lamb_direction(w, m, v, wd, c1, c2, epsilon):
    return (m * c1) / (math.sqrt(v * c2) + epsilon) + wd * w


@scalar_rule
def lamb_step(w, r, lr):
    return w - lr * r


# --------------------------------------------------------------------------- CPU kernels
# Table columns: 0 weight, 1 gradient, 2 fp32 master (multi-precision only), 3 mean, 4 var.

@njit(inline="always")
def _phase1_block(w, g, m, v, wd, c1, c2, beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon,
                  rescale, clip):
    sw = 0.0
    sr = 0.0
    for i in range(w.shape[0]):
        wi = load(w, i)
        new_m, new_v = lamb_moments(load(g, i), load(m, i), load(v, i), beta1, one_minus_beta1,
                                    beta2, one_minus_beta2, rescale, clip)
        store(m, i, new_m)
        store(v, i, new_v)
        # r from the stored (rounded) moments, exactly as pass 2 will see them
        r = lamb_direction(wi, load(m, i), load(v, i), wd, c1, c2, epsilon)
        sw = add_square(sw, wi)
        sr = add_square(sr, r)
    return sw, sr


@cpu_kernel
def multi_lamb_phase1_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                          beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon, rescale, clip):
    """Update the moments; return ``sums[t] = (sum(w**2), sum(r**2))`` (float64)."""
    n_blocks = blocks.shape[0]
    partials = np.empty((n_blocks, 2), dtype=np.float64)
    for b in prange(n_blocks):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        v = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        wd, c1, c2 = wds[t], coefs[t, 0], coefs[t, 1]
        sw, sr = _phase1_block(w32, g, m, v, wd, c1, c2, beta1, one_minus_beta1, beta2,
                               one_minus_beta2, epsilon, rescale, clip)
        partials[b, 0] = sw
        partials[b, 1] = sr
    return tensor_sums(blocks, partials, ptrs.shape[0])


@cpu_kernel
def multi_lamb_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                          epsilon):
    """``w <- w - lrs[t] * r`` with ``lrs`` already scaled by the trust ratios."""
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        v = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd, c1, c2 = lrs[t], wds[t], coefs[t, 0], coefs[t, 1]
        for i in range(n):
            wi = load(w32, i)
            r = lamb_direction(wi, load(m, i), load(v, i), wd, c1, c2, epsilon)
            store_weight(w, w32, i, lamb_step(wi, r, lr), master_fmt)


# --------------------------------------------------------------------------- the two-phase operators
# ``lamb_update_phase1`` hands the direction ``r`` back to the caller and
# ``lamb_update_phase2`` applies a given direction: the same rules, split at ``r``.
# Phase 1 table columns: 3 mean, 4 var, 5 the output ``r``.  Phase 2: column 1 holds ``r``.

@cpu_kernel
def multi_lamb_direction_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                             beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        v = view(ptrs, t, 4, start, n, state_fmt)
        r = view(ptrs, t, 5, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        wd, c1, c2 = wds[t], coefs[t, 0], coefs[t, 1]
        for i in range(n):
            new_m, new_v = lamb_moments(load(g, i), load(m, i), load(v, i), beta1, one_minus_beta1,
                                        beta2, one_minus_beta2, rescale, clip)
            store(m, i, new_m)
            store(v, i, new_v)
            store(r, i, lamb_direction(load(w32, i), load(m, i), load(v, i), wd, c1, c2, epsilon))


@cpu_kernel
def multi_lamb_apply_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt):
    """``w <- w - lrs[t] * r`` with ``r`` in the gradient column (``lrs`` hold the trust)."""
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        r = view(ptrs, t, 1, start, n, g_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr = lrs[t]
        for i in range(n):
            store_weight(w, w32, i, lamb_step(load(w32, i), load(r, i), lr), master_fmt)
