"""GroupAdaGrad (MXNet contrib): AdaGrad with one history value per row of a 2-D weight.

    g' = clip(rescale * g)                      (weight decay must be 0)
    h[r] <- h[r] + mean_c(g'[r, c]^2)
    w[r, c] <- w[r, c] - lr * g'[r, c] / (sqrt(h[r]) + eps)

The row mean is a reduction, so the kernel works row by row: a block ``(tensor, start,
length)`` of the launch table handles every row whose *first* element lies in
``[start, start + length)``, whole, even where the row runs past the block.  Each row is
then handled exactly once, by one thread, in the same order whatever the block table
(so results do not depend on aggregation), rows longer than a block included.

The row sum of squares is accumulated in float64 (for every weight dtype), then the new
history is rounded to the history's dtype and that stored value scales the row, so long
rows lose no accuracy and the NumPy ``step`` (a float64 mean) gives the same history.

Per-tensor coefficients: ``coefs[t] = (cols // 4096, cols % 4096, cols)``; the first two
give the exact column count even in float32, the third is the divisor of the mean.
"""
import math

import numpy as np
from numba import prange

from ._common import cpu_kernel, load, master_view, rescaled, scalar_rule, store, store_weight, view

#: the column count travels as ``hi * COLS_SPLIT + lo`` (both exact in float32)
COLS_SPLIT = 4096


# --------------------------------------------------------------------------- scalar rules

@scalar_rule
def group_adagrad_square(g, rescale, clip):
    gc = rescaled(g, rescale, clip)
    return gc * gc


@scalar_rule
def group_adagrad_history(h, sum_sq, cols):
    """``sum_sq`` is float64, so is the result (the caller rounds it when storing)."""
    return h + sum_sq / cols


@scalar_rule
def group_adagrad_step(w, g, h, lr, eps, rescale, clip):
    gc = rescaled(g, rescale, clip)
    return w - lr * (gc / (math.sqrt(h) + eps))


# --------------------------------------------------------------------------- CPU kernel
# Table columns: 0 weight, 1 gradient, 2 fp32 master (multi-precision only),
# 3 history (one element per row).

@cpu_kernel
def multi_group_adagrad_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt,
                                   state_fmt, eps, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        cols = np.int64(coefs[t, 0]) * COLS_SPLIT + np.int64(coefs[t, 1])
        cols_f = coefs[t, 2]
        lr = lrs[t]
        first = (start + cols - 1) // cols
        stop = (start + n + cols - 1) // cols
        for r in range(first, stop):
            g = view(ptrs, t, 1, r * cols, cols, g_fmt)
            h = view(ptrs, t, 3, r, 1, state_fmt)
            sum_sq = 0.0                                   # float64 accumulator
            for i in range(cols):
                sum_sq += group_adagrad_square(load(g, i), rescale, clip)
            store(h, 0, group_adagrad_history(load(h, 0), sum_sq, cols_f))
            new_h = load(h, 0)
            w = view(ptrs, t, 0, r * cols, cols, w_fmt)
            w32 = master_view(ptrs, t, r * cols, cols, w_fmt, master_fmt)
            for i in range(cols):
                new_w = group_adagrad_step(load(w32, i), load(g, i), new_h, lr, eps, rescale, clip)
                store_weight(w, w32, i, new_w, master_fmt)


# --------------------------------------------------------------------------- MXNet 1.x rule
# The same, with eps inside the root: w[r, c] <- w[r, c] - lr * g'[r, c] / sqrt(h[r] + eps).

@scalar_rule
def group_adagrad_v1_step(w, g, h, lr, eps, rescale, clip):
    gc = rescaled(g, rescale, clip)
    return w - lr * (gc / math.sqrt(h + eps))


@cpu_kernel
def multi_group_adagrad_v1_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt,
                                      state_fmt, eps, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        cols = np.int64(coefs[t, 0]) * COLS_SPLIT + np.int64(coefs[t, 1])
        cols_f = coefs[t, 2]
        lr = lrs[t]
        first = (start + cols - 1) // cols
        stop = (start + n + cols - 1) // cols
        for r in range(first, stop):
            g = view(ptrs, t, 1, r * cols, cols, g_fmt)
            h = view(ptrs, t, 3, r, 1, state_fmt)
            sum_sq = 0.0                                   # float64 accumulator
            for i in range(cols):
                sum_sq += group_adagrad_square(load(g, i), rescale, clip)
            store(h, 0, group_adagrad_history(load(h, 0), sum_sq, cols_f))
            new_h = load(h, 0)
            w = view(ptrs, t, 0, r * cols, cols, w_fmt)
            w32 = master_view(ptrs, t, r * cols, cols, w_fmt, master_fmt)
            for i in range(cols):
                new_w = group_adagrad_v1_step(load(w32, i), load(g, i), new_h, lr, eps, rescale, clip)
                store_weight(w, w32, i, new_w, master_fmt)
