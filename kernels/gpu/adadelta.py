"""CUDA twins of ``kernels/adadelta.py`` (AdaDelta): same scalar rules, same table columns."""
from numba import cuda

from ..adadelta import (adadelta_step, adadelta_v1_step)
from ._common import gpu_kernel, load, master_view, store, store_weight, view


@gpu_kernel
def multi_adadelta_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                              rho, one_minus_rho, eps, rescale, clip):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        ag = view(ptrs, t, 3, start, n, state_fmt)
        ad = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            new_w, new_ag, new_ad = adadelta_step(load(w32, i), load(g, i), load(ag, i), load(ad, i),
                                                  lr, wd, rho, one_minus_rho, eps, rescale, clip)
            store(ag, i, new_ag)
            store(ad, i, new_ad)
            store_weight(w, w32, i, new_w, master_fmt)


# MXNet 1.x rules (mxopt_numba.v1)

@gpu_kernel
def multi_adadelta_v1_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                                 rho, one_minus_rho, eps, rescale, clip):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        acc_g = view(ptrs, t, 3, start, n, state_fmt)
        acc_delta = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        wd = wds[t]
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            new_w, new_g, new_d = adadelta_v1_step(load(w32, i), load(g, i), load(acc_g, i),
                                                   load(acc_delta, i), wd, rho, one_minus_rho, eps,
                                                   rescale, clip)
            store(acc_g, i, new_g)
            store(acc_delta, i, new_d)
            store_weight(w, w32, i, new_w, master_fmt)
