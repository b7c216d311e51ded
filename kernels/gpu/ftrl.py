"""CUDA twins of ``kernels/ftrl.py`` (FTRL): same scalar rules, same table columns."""
from numba import cuda

from ..ftrl import ftrl_step
from ._common import gpu_kernel, load, master_view, store, store_weight, view


@gpu_kernel
def multi_ftrl_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                          lamda1, beta, rescale, clip):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        z = view(ptrs, t, 3, start, n, state_fmt)
        sq = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            new_w, new_z, new_n = ftrl_step(load(w32, i), load(g, i), load(z, i), load(sq, i),
                                            lr, wd, lamda1, beta, rescale, clip)
            store(z, i, new_z)
            store(sq, i, new_n)
            store_weight(w, w32, i, new_w, master_fmt)
