"""CUDA twins of ``kernels/lans.py`` (LANS): same scalar rules, same table columns."""
from numba import cuda

from ..lans import lans_directions, lans_grad, lans_moments, lans_step
from ..norms import add_square
from ._common import (MAX_THREADS, block_sum_pair, float64, gpu_kernel, gpu_reduction, load,
                      master_view, store, store_weight, view)


@gpu_reduction
def multi_lans_phase1_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                          beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon, clip, out):
    """Update the moments; ``out[b] = (sum(rm**2), sum(rg**2))`` over table block ``b``."""
    scratch = cuda.shared.array((2, MAX_THREADS), float64)
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        v = view(ptrs, t, 4, start, n, state_fmt)
        wd, gscale, c1, c2 = wds[t], coefs[t, 0], coefs[t, 1], coefs[t, 2]
        w = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        sm = 0.0
        sg = 0.0
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            gn = lans_grad(load(g, i), gscale, clip)
            new_m, new_v = lans_moments(gn, load(m, i), load(v, i), beta1, one_minus_beta1, beta2,
                                        one_minus_beta2)
            store(m, i, new_m)
            store(v, i, new_v)
            rm, rg = lans_directions(load(w, i), gn, load(m, i), load(v, i), wd, c1, c2, epsilon)
            sm = add_square(sm, rm)
            sg = add_square(sg, rg)
        block_sum_pair(scratch, sm, sg, out, b)


@gpu_kernel
def multi_lans_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                          epsilon, clip):
    """``w <- w - (lr_m * rm + lr_g * rg)``, both directions from the weight before the step."""
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        v = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        wd, gscale, c1, c2 = wds[t], coefs[t, 0], coefs[t, 1], coefs[t, 2]
        lr_m, lr_g = coefs[t, 3], coefs[t, 4]
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            wi = load(w32, i)
            gn = lans_grad(load(g, i), gscale, clip)
            rm, rg = lans_directions(wi, gn, load(m, i), load(v, i), wd, c1, c2, epsilon)
            store_weight(w, w32, i, lans_step(wi, rm, rg, lr_m, lr_g), master_fmt)
