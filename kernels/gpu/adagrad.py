"""CUDA twins of ``kernels/adagrad.py`` (AdaGrad): same scalar rules, same table columns."""
from numba import cuda

from ..adagrad import (adagrad_step, adagrad_v1_step)
from ._common import gpu_kernel, load, master_view, store, store_weight, view


@gpu_kernel
def multi_adagrad_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                             eps, rescale, clip):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        h = view(ptrs, t, 3, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            new_w, new_h = adagrad_step(load(w32, i), load(g, i), load(h, i), lr, wd, eps,
                                        rescale, clip)
            store(h, i, new_h)
            store_weight(w, w32, i, new_w, master_fmt)


# MXNet 1.x rules (mxopt_numba.v1)

@gpu_kernel
def multi_adagrad_v1_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                                eps, rescale, clip):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        h = view(ptrs, t, 3, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            new_w, new_h = adagrad_v1_step(load(w32, i), load(g, i), load(h, i), lr, wd, eps,
                                           rescale, clip)
            store(h, i, new_h)
            store_weight(w, w32, i, new_w, master_fmt)
