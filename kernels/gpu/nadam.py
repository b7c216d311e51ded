"""CUDA twins of ``kernels/nadam.py`` (Nadam): same scalar rules, same table columns."""
from numba import cuda

from ..nadam import nadam_step, nadam_v1_step
from ._common import gpu_kernel, load, master_view, store, store_weight, view


@gpu_kernel
def multi_nadam_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                           beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon, rescale, clip):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        v = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        c0, c1, c2, c3, c4 = coefs[t, 0], coefs[t, 1], coefs[t, 2], coefs[t, 3], coefs[t, 4]
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            new_w, new_m, new_v = nadam_step(load(w32, i), load(g, i), load(m, i), load(v, i), lr, wd,
                                             c0, c1, c2, c3, c4, beta1, one_minus_beta1, beta2,
                                             one_minus_beta2, epsilon, rescale, clip)
            store(m, i, new_m)
            store(v, i, new_v)
            store_weight(w, w32, i, new_w, master_fmt)


@gpu_kernel
def multi_nadam_v1_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                              beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon, rescale, clip):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        v = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        c0, c1, c2, c3, c4 = coefs[t, 0], coefs[t, 1], coefs[t, 2], coefs[t, 3], coefs[t, 4]
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            new_w, new_m, new_v = nadam_v1_step(load(w32, i), load(g, i), load(m, i), load(v, i), lr, wd,
                                                c0, c1, c2, c3, c4, beta1, one_minus_beta1, beta2,
                                                one_minus_beta2, epsilon, rescale, clip)
            store(m, i, new_m)
            store(v, i, new_v)
            store_weight(w, w32, i, new_w, master_fmt)
