"""CUDA twins of ``kernels/lamb.py`` (LAMB): same scalar rules, same table columns."""
from numba import cuda

from ..lamb import lamb_direction, lamb_moments, lamb_step
from ..norms import add_square
from ._common import (MAX_THREADS, block_sum_pair, float64, gpu_kernel, gpu_reduction, load,
                      master_view, store, store_weight, view)


@gpu_reduction
def multi_lamb_phase1_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                          beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon, rescale, clip,
                          out):
    """Update the moments; ``out[b] = (sum(w**2), sum(r**2))`` over table block ``b``."""
    scratch = cuda.shared.array((2, MAX_THREADS), float64)
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        v = view(ptrs, t, 4, start, n, state_fmt)
        wd, c1, c2 = wds[t], coefs[t, 0], coefs[t, 1]
        w = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        sw = 0.0
        sr = 0.0
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            wi = load(w, i)
            new_m, new_v = lamb_moments(load(g, i), load(m, i), load(v, i), beta1, one_minus_beta1,
                                        beta2, one_minus_beta2, rescale, clip)
            store(m, i, new_m)
            store(v, i, new_v)
            # r from the stored (rounded) moments, exactly as pass 2 will see them
            r = lamb_direction(wi, load(m, i), load(v, i), wd, c1, c2, epsilon)
            sw = add_square(sw, wi)
            sr = add_square(sr, r)
        block_sum_pair(scratch, sw, sr, out, b)


@gpu_kernel
def multi_lamb_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                          epsilon):
    """``w <- w - lrs[t] * r`` with ``lrs`` already scaled by the trust ratios."""
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        v = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd, c1, c2 = lrs[t], wds[t], coefs[t, 0], coefs[t, 1]
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            wi = load(w32, i)
            r = lamb_direction(wi, load(m, i), load(v, i), wd, c1, c2, epsilon)
            store_weight(w, w32, i, lamb_step(wi, r, lr), master_fmt)


@gpu_kernel
def multi_lamb_direction_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                             beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon, rescale, clip):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        v = view(ptrs, t, 4, start, n, state_fmt)
        r = view(ptrs, t, 5, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        wd, c1, c2 = wds[t], coefs[t, 0], coefs[t, 1]
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            new_m, new_v = lamb_moments(load(g, i), load(m, i), load(v, i), beta1, one_minus_beta1,
                                        beta2, one_minus_beta2, rescale, clip)
            store(m, i, new_m)
            store(v, i, new_v)
            store(r, i, lamb_direction(load(w32, i), load(m, i), load(v, i), wd, c1, c2, epsilon))


@gpu_kernel
def multi_lamb_apply_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        r = view(ptrs, t, 1, start, n, g_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr = lrs[t]
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            store_weight(w, w32, i, lamb_step(load(w32, i), load(r, i), lr), master_fmt)
