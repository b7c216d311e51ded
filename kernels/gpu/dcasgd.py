"""CUDA twins of ``kernels/dcasgd.py`` (DCASGD): same scalar rules, same table columns."""
from numba import cuda

from ..dcasgd import (dcasgd_mom_step, dcasgd_step, dcasgd_v1_step, dcasgd_v1_mom_step)
from ._common import gpu_kernel, load, master_view, store, store_weight, view


@gpu_kernel
def multi_dcasgd_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                            lamda, rescale, clip):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        prev = view(ptrs, t, 3, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            new_w, new_prev = dcasgd_step(load(w32, i), load(g, i), load(prev, i), lr, wd, lamda,
                                          rescale, clip)
            store(prev, i, new_prev)
            store_weight(w, w32, i, new_w, master_fmt)


@gpu_kernel
def multi_dcasgd_mom_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                                momentum, lamda, rescale, clip):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        prev = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            new_w, new_m, new_prev = dcasgd_mom_step(load(w32, i), load(g, i), load(m, i),
                                                     load(prev, i), lr, wd, momentum, lamda,
                                                     rescale, clip)
            store(m, i, new_m)
            store(prev, i, new_prev)
            store_weight(w, w32, i, new_w, master_fmt)


# MXNet 1.x rules (mxopt_numba.v1)

@gpu_kernel
def multi_dcasgd_v1_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                               lamda, rescale, clip):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        prev = view(ptrs, t, 3, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            new_w, new_prev = dcasgd_v1_step(load(w32, i), load(g, i), load(prev, i), lr, wd, lamda,
                                             rescale, clip)
            store(prev, i, new_prev)
            store_weight(w, w32, i, new_w, master_fmt)


@gpu_kernel
def multi_dcasgd_v1_mom_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                                   momentum, lamda, rescale, clip):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        prev = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            new_w, new_m, new_prev = dcasgd_v1_mom_step(load(w32, i), load(g, i), load(m, i),
                                                        load(prev, i), lr, wd, momentum, lamda,
                                                        rescale, clip)
            store(m, i, new_m)
            store(prev, i, new_prev)
            store_weight(w, w32, i, new_w, master_fmt)
