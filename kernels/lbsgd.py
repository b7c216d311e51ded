"""LBSGD (MXNet 1.x) with gradient accumulation over ``batch_scale`` calls.

    c <- c + g                                     (raw gradient, every call)
    on the tensor's update call (coefs[t, 0] != 0):
        g~ = c / batch_scale
        SGD / SGD-momentum step with g~ (kernels/sgd.py's scalar rules)
        c <- 0
    on the other calls the weight and momentum stay as they are.

Only used with ``batch_scale > 1``; with ``batch_scale == 1`` the optimizer runs the
SGD kernels directly.  ``lrs`` hold the warm-up-scaled learning rates.
"""
import numpy as np
from numba import njit, prange

from ._common import cpu_kernel, load, master_view, scalar_rule, store, store_weight, view
from .norms import add_square, tensor_sums
from .sgd import sgd_mom_step, sgd_step


# --------------------------------------------------------------------------- scalar rules

@scalar_rule
def lbsgd_accumulate(c, g):
    return c + g


@scalar_rule
def lbsgd_mean_grad(c, batch_scale):
    return c / batch_scale


# --------------------------------------------------------------------------- CPU kernels
# Table columns: 0 weight, 1 gradient, 2 fp32 master (multi-precision only),
# 3 accumulated gradient, 4 momentum (momentum > 0 only).

@njit(inline="always")
def _sum_sq_block(w, g, c, batch_scale):
    sw = 0.0
    sg = 0.0
    for i in range(g.shape[0]):
        sw = add_square(sw, load(w, i))
        sg = add_square(sg, lbsgd_mean_grad(lbsgd_accumulate(load(c, i), load(g, i)), batch_scale))
    return sw, sg


@cpu_kernel
def multi_lbsgd_sum_sq_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                           batch_scale):
    """``sums[t] = (sum(w**2), sum(g~**2))`` with ``g~ = (c + g) / batch_scale`` (the
    gradient the update call would use); nothing is written."""
    n_blocks = blocks.shape[0]
    partials = np.empty((n_blocks, 2), dtype=np.float64)
    for b in prange(n_blocks):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        g = view(ptrs, t, 1, start, n, g_fmt)
        c = view(ptrs, t, 3, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        sw, sg = _sum_sq_block(w32, g, c, batch_scale)
        partials[b, 0] = sw
        partials[b, 1] = sg
    return tensor_sums(blocks, partials, ptrs.shape[0])


@cpu_kernel
def multi_lbsgd_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                           batch_scale, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        c = view(ptrs, t, 3, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        if coefs[t, 0] == 0:
            for i in range(n):
                store(c, i, lbsgd_accumulate(load(c, i), load(g, i)))
        else:
            for i in range(n):
                gm = lbsgd_mean_grad(lbsgd_accumulate(load(c, i), load(g, i)), batch_scale)
                new_w = sgd_step(load(w32, i), gm, lr, wd, rescale, clip)
                store_weight(w, w32, i, new_w, master_fmt)
                store(c, i, 0.0)


@cpu_kernel
def multi_lbsgd_mom_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                               batch_scale, momentum, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        c = view(ptrs, t, 3, start, n, state_fmt)
        m = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        if coefs[t, 0] == 0:
            for i in range(n):
                store(c, i, lbsgd_accumulate(load(c, i), load(g, i)))
        else:
            for i in range(n):
                gm = lbsgd_mean_grad(lbsgd_accumulate(load(c, i), load(g, i)), batch_scale)
                new_w, new_m = sgd_mom_step(load(w32, i), gm, load(m, i), lr, wd, momentum, rescale, clip)
                store(m, i, new_m)
                store_weight(w, w32, i, new_w, master_fmt)
                store(c, i, 0.0)
