"""Stochastic gradient Langevin dynamics.

    w <- w - lr / 2 * (clip(rescale * g) + wd * w) + noise,   noise ~ N(0, sqrt(lr))

The noise is drawn by the caller (NumPy's generator, so the kernel and the NumPy path
give the same numbers) and passed as one flat array ``noise`` in the compute dtype,
holding every tensor of the launch one after another.  Per tensor ``t``:

    coefs[t, 0]  lr / 2
    coefs[t, 1]  offset of the tensor's noise in ``noise``, divided by 2**24 (an integer)
    coefs[t, 2]  that offset modulo 2**24

The offset is split in two so that float32 coefficients hold it exactly.
"""
import numpy as np
from numba import prange

from ._common import coupled_grad, cpu_kernel, load, master_view, scalar_rule, store_weight, view

#: the offset of a tensor's noise is ``hi * OFFSET_SPLIT + lo`` (both exact in float32);
#: the kernel spells the same number as a literal
OFFSET_SPLIT = 1 << 24


# --------------------------------------------------------------------------- scalar rules

@scalar_rule
def sgld_step(w, g, noise, half_lr, wd, rescale, clip):
    return w - half_lr * coupled_grad(w, g, wd, rescale, clip) + noise


# --------------------------------------------------------------------------- CPU kernels
# Table columns: 0 weight, 1 gradient, 2 fp32 master (multi-precision only); no state.

@cpu_kernel
def multi_sgld_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                          noise, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        half_lr, wd = coefs[t, 0], wds[t]
        base = np.int64(coefs[t, 1]) * 16777216 + np.int64(coefs[t, 2]) + start
        for i in range(n):
            new_w = sgld_step(load(w32, i), load(g, i), noise[base + i], half_lr, wd, rescale, clip)
            store_weight(w, w32, i, new_w, master_fmt)
