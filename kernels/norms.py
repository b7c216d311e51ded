"""Per-tensor sums of squares over a whole aggregated chunk: the shared reduction of the
layer-wise rules (LARS, LAMB, LANS, LBSGD).

A reduction runs in ONE parallel call, in two stages:

1. ``prange`` over the chunk's blocks; each block adds up its own squares into row ``b``
   of a ``partials`` array (float64, one column per quantity);
2. ``tensor_sums`` adds the partials of each tensor, in block order (a serial pass over
   the block table: a few hundred additions for a ResNet-50 chunk).

A tensor's blocks depend only on its own size, and each block is always added up by the
same code, so a tensor's sums do not depend on which other tensors share its chunk:
results are bitwise identical for every ``aggregate_num``.

Squares are added in float64 whatever the storage type (weights and trust ratios are
insensitive to the last bits of a norm, but float32 accumulation over millions of
elements loses digits).  ``add_square`` is the only code compiled with reassociation
allowed: it lets LLVM vectorise the running sum (several partial sums in SIMD lanes,
combined at the end of the block), and it is kept out of Numba's inliner so that the flag
stays on its two instructions and never reaches the update arithmetic around it.
"""
import numpy as np
from numba import njit, prange

from ._common import cpu_kernel, load, master_view, scalar_rule, store, view


# --------------------------------------------------------------------------- building blocks

@njit(fastmath={"reassoc"}, error_model="numpy")
def add_square(acc, x):
    """``acc + x * x`` in float64 (reassociable: the running sum may be split into lanes)."""
    y = np.float64(x)
    return acc + y * y


@njit(error_model="numpy")
def tensor_sums(blocks, partials, n_tensors):
    """Stage 2: ``sums[t, k]`` = sum of ``partials[b, k]`` over the blocks ``b`` of tensor
    ``t``, added in block order."""
    width = partials.shape[1]
    sums = np.zeros((n_tensors, width), dtype=np.float64)
    for b in range(blocks.shape[0]):
        t = blocks[b, 0]
        for k in range(width):
            sums[t, k] += partials[b, k]
    return sums


@njit(inline="always")
def _sum_sq_block(w, g, grad_scale):
    sw = 0.0
    sg = 0.0
    for i in range(w.shape[0]):
        sw = add_square(sw, load(w, i))
        sg = add_square(sg, load(g, i) * grad_scale)
    return sw, sg


# --------------------------------------------------------------------------- CPU kernel
# Table columns: 0 weight, 1 gradient, 2 fp32 master (multi-precision only).

@cpu_kernel
def multi_sum_sq_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt, grad_scale):
    """``sums[t] = (sum(w**2), sum((grad_scale * g)**2))`` for every tensor ``t`` of the
    chunk; ``w`` is the fp32 master copy when there is one.  The gradient is neither
    clipped nor decayed (LARS takes its norm from the rescaled, unclipped gradient)."""
    n_blocks = blocks.shape[0]
    partials = np.empty((n_blocks, 2), dtype=np.float64)
    for b in prange(n_blocks):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        g = view(ptrs, t, 1, start, n, g_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        sw, sg = _sum_sq_block(w32, g, grad_scale)
        partials[b, 0] = sw
        partials[b, 1] = sg
    return tensor_sums(blocks, partials, ptrs.shape[0])



# --------------------------------------------------------------------------- global-norm clipping
# mxopt_numba.utils.clip_global_norm: the norm comes from multi_sum_sq_cpu (each array as
# both the weight and the gradient column: the second read of an element hits the cache),
# the scaling from multi_scale_cpu.

@scalar_rule
def scale_step(x, factor):
    """One element scaled by a global-norm clipping factor (in the compute type)."""
    return x * factor


@cpu_kernel
def multi_scale_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt):
    """``w *= lrs[t]`` for every array ``t`` of the table (column 0), the product in the
    compute type, rounded once to the storage type."""
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        factor = lrs[t]
        for i in range(n):
            store(w, i, scale_step(load(w, i), factor))
