"""CUDA twins of ``kernels/dcasgd.py`` (DCASGD): same scalar rules, same table columns."""
from numba import cuda

from ..dcasgd import dcasgd_mom_step, dcasgd_step
from ._common import gpu_kernel, load, store, view


@gpu_kernel
def multi_dcasgd_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                            lamda, rescale, clip):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        prev = view(ptrs, t, 3, start, n, state_fmt)
        lr, wd = lrs[t], wds[t]
        if master_fmt is None:
            for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
                new_w, new_prev = dcasgd_step(load(w, i), load(g, i), load(prev, i), lr, wd, lamda,
                                              rescale, clip)
                store(prev, i, new_prev)
                store(w, i, new_w)
        else:
            w32 = view(ptrs, t, 2, start, n, master_fmt)
            for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
                new_w, new_prev = dcasgd_step(w32[i], load(g, i), load(prev, i), lr, wd, lamda,
                                              rescale, clip)
                store(prev, i, new_prev)
                w32[i] = new_w
                store(w, i, new_w)


@gpu_kernel
def multi_dcasgd_mom_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                                momentum, lamda, rescale, clip):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        prev = view(ptrs, t, 4, start, n, state_fmt)
        lr, wd = lrs[t], wds[t]
        if master_fmt is None:
            for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
                new_w, new_m, new_prev = dcasgd_mom_step(load(w, i), load(g, i), load(m, i),
                                                         load(prev, i), lr, wd, momentum, lamda,
                                                         rescale, clip)
                store(m, i, new_m)
                store(prev, i, new_prev)
                store(w, i, new_w)
        else:
            w32 = view(ptrs, t, 2, start, n, master_fmt)
            for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
                new_w, new_m, new_prev = dcasgd_mom_step(w32[i], load(g, i), load(m, i),
                                                         load(prev, i), lr, wd, momentum, lamda,
                                                         rescale, clip)
                store(m, i, new_m)
                store(prev, i, new_prev)
                w32[i] = new_w
                store(w, i, new_w)
