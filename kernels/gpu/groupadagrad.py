"""CUDA twin of ``kernels/groupadagrad.py`` (GroupAdaGrad): same scalar rules, same
table columns, same row ownership (a table block handles the rows whose first element
lies in it).  One thread handles a whole row, adding its squares in column order as the
CPU kernel does, so the float64 row sums and the results are the CPU's."""
import numpy as np
from numba import cuda

from ..groupadagrad import (COLS_SPLIT, group_adagrad_history, group_adagrad_square,
                            group_adagrad_step, group_adagrad_v1_step)
from ._common import gpu_kernel, load, master_view, store, store_weight, view


@gpu_kernel
def multi_group_adagrad_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt,
                                   state_fmt, eps, rescale, clip):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        cols = np.int64(coefs[t, 0]) * COLS_SPLIT + np.int64(coefs[t, 1])
        cols_f = coefs[t, 2]
        lr = lrs[t]
        first = (start + cols - 1) // cols
        stop = (start + n + cols - 1) // cols
        for r in range(first + cuda.threadIdx.x, stop, cuda.blockDim.x):
            g = view(ptrs, t, 1, r * cols, cols, g_fmt)
            h = view(ptrs, t, 3, r, 1, state_fmt)
            sum_sq = np.float64(0.0)     # float64 accumulator (a bare 0.0 would turn float32 in NumPy)
            for i in range(cols):
                sum_sq += group_adagrad_square(load(g, i), rescale, clip)
            store(h, 0, group_adagrad_history(load(h, 0), sum_sq, cols_f))
            new_h = load(h, 0)
            w = view(ptrs, t, 0, r * cols, cols, w_fmt)
            w32 = master_view(ptrs, t, r * cols, cols, w_fmt, master_fmt)
            for i in range(cols):
                new_w = group_adagrad_step(load(w32, i), load(g, i), new_h, lr, eps, rescale, clip)
                store_weight(w, w32, i, new_w, master_fmt)


# MXNet 1.x rules (mxopt_numba.v1)

@gpu_kernel
def multi_group_adagrad_v1_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt,
                                      state_fmt, eps, rescale, clip):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        cols = np.int64(coefs[t, 0]) * COLS_SPLIT + np.int64(coefs[t, 1])
        cols_f = coefs[t, 2]
        lr = lrs[t]
        first = (start + cols - 1) // cols
        stop = (start + n + cols - 1) // cols
        for r in range(first + cuda.threadIdx.x, stop, cuda.blockDim.x):
            g = view(ptrs, t, 1, r * cols, cols, g_fmt)
            h = view(ptrs, t, 3, r, 1, state_fmt)
            sum_sq = np.float64(0.0)     # float64 accumulator (a bare 0.0 would turn float32 in NumPy)
            for i in range(cols):
                sum_sq += group_adagrad_square(load(g, i), rescale, clip)
            store(h, 0, group_adagrad_history(load(h, 0), sum_sq, cols_f))
            new_h = load(h, 0)
            w = view(ptrs, t, 0, r * cols, cols, w_fmt)
            w32 = master_view(ptrs, t, r * cols, cols, w_fmt, master_fmt)
            for i in range(cols):
                new_w = group_adagrad_v1_step(load(w32, i), load(g, i), new_h, lr, eps, rescale, clip)
                store_weight(w, w32, i, new_w, master_fmt)
