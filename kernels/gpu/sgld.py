"""CUDA twins of ``kernels/sgld.py`` (SGLD): same scalar rules, same table columns."""
import numpy as np
from numba import cuda

from ..sgld import sgld_step
from ._common import gpu_kernel, load, master_view, store_weight, view


@gpu_kernel
def multi_sgld_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                          noise, rescale, clip):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        half_lr, wd = coefs[t, 0], wds[t]
        base = np.int64(coefs[t, 1]) * 16777216 + np.int64(coefs[t, 2]) + start
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            new_w = sgld_step(load(w32, i), load(g, i), noise[base + i], half_lr, wd, rescale, clip)
            store_weight(w, w32, i, new_w, master_fmt)
