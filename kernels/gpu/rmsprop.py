"""CUDA twins of ``kernels/rmsprop.py`` (RMSProp): same scalar rules, same table columns."""
from numba import cuda

from ..rmsprop import (rmsprop_centered_step, rmsprop_step, rmsprop_v1_step,
                       rmsprop_v1_centered_step)
from ._common import gpu_kernel, load, master_view, store, store_weight, view


@gpu_kernel
def multi_rmsprop_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                             rho, one_minus_rho, eps, clip_weights, rescale, clip):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        v = view(ptrs, t, 3, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            new_w, new_v = rmsprop_step(load(w32, i), load(g, i), load(v, i), lr, wd, rho,
                                        one_minus_rho, eps, clip_weights, rescale, clip)
            store(v, i, new_v)
            store_weight(w, w32, i, new_w, master_fmt)


@gpu_kernel
def multi_rmsprop_centered_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt,
                                      state_fmt, rho, one_minus_rho, momentum, eps, clip_weights,
                                      rescale, clip):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        a = view(ptrs, t, 3, start, n, state_fmt)
        v = view(ptrs, t, 4, start, n, state_fmt)
        m = view(ptrs, t, 5, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            new_w, new_a, new_v, new_m = rmsprop_centered_step(
                load(w32, i), load(g, i), load(a, i), load(v, i), load(m, i), lr, wd, rho,
                one_minus_rho, momentum, eps, clip_weights, rescale, clip)
            store(a, i, new_a)
            store(v, i, new_v)
            store(m, i, new_m)
            store_weight(w, w32, i, new_w, master_fmt)


# MXNet 1.x rules (mxopt_numba.v1)

@gpu_kernel
def multi_rmsprop_v1_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                                rho, one_minus_rho, eps, clip_weights, rescale, clip):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        v = view(ptrs, t, 3, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            new_w, new_v = rmsprop_v1_step(load(w32, i), load(g, i), load(v, i), lr, wd, rho,
                                           one_minus_rho, eps, clip_weights, rescale, clip)
            store(v, i, new_v)
            store_weight(w, w32, i, new_w, master_fmt)


@gpu_kernel
def multi_rmsprop_v1_centered_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt,
                                         state_fmt, rho, one_minus_rho, momentum, eps, clip_weights,
                                         rescale, clip):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        v = view(ptrs, t, 3, start, n, state_fmt)
        a = view(ptrs, t, 4, start, n, state_fmt)
        m = view(ptrs, t, 5, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            new_w, new_v, new_a, new_m = rmsprop_v1_centered_step(
                load(w32, i), load(g, i), load(v, i), load(a, i), load(m, i), lr, wd, rho,
                one_minus_rho, momentum, eps, clip_weights, rescale, clip)
            store(v, i, new_v)
            store(a, i, new_a)
            store(m, i, new_m)
            store_weight(w, w32, i, new_w, master_fmt)
