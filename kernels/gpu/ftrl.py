"""CUDA twins of ``kernels/ftrl.py`` (FTRL): same scalar rules, same table columns."""
from numba import cuda

from ..ftrl import ftrl_step
from ._common import gpu_kernel, load, store, view


@gpu_kernel
def multi_ftrl_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                          lamda1, beta, rescale, clip):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        z = view(ptrs, t, 3, start, n, state_fmt)
        sq = view(ptrs, t, 4, start, n, state_fmt)
        lr, wd = lrs[t], wds[t]
        if master_fmt is None:
            for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
                new_w, new_z, new_n = ftrl_step(load(w, i), load(g, i), load(z, i), load(sq, i),
                                                lr, wd, lamda1, beta, rescale, clip)
                store(z, i, new_z)
                store(sq, i, new_n)
                store(w, i, new_w)
        else:
            w32 = view(ptrs, t, 2, start, n, master_fmt)
            for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
                new_w, new_z, new_n = ftrl_step(w32[i], load(g, i), load(z, i), load(sq, i),
                                                lr, wd, lamda1, beta, rescale, clip)
                store(z, i, new_z)
                store(sq, i, new_n)
                w32[i] = new_w
                store(w, i, new_w)
