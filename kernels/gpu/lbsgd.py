"""CUDA twins of ``kernels/lbsgd.py`` (LBSGD): same scalar rules, same table columns."""
from numba import cuda

from ..lbsgd import lbsgd_accumulate, lbsgd_mean_grad
from ..norms import add_square
from ..sgd import sgd_mom_step, sgd_step
from ._common import (MAX_THREADS, block_sum_pair, float64, gpu_kernel, gpu_reduction, load,
                      master_view, store, store_weight, view)


@gpu_reduction
def multi_lbsgd_sum_sq_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                           batch_scale, out):
    """``out[b] = (sum(w**2), sum(g~**2))`` over table block ``b``, ``g~ = (c + g) /
    batch_scale``; nothing is written."""
    scratch = cuda.shared.array((2, MAX_THREADS), float64)
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        g = view(ptrs, t, 1, start, n, g_fmt)
        c = view(ptrs, t, 3, start, n, state_fmt)
        w = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        sw = 0.0
        sg = 0.0
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            sw = add_square(sw, load(w, i))
            sg = add_square(sg, lbsgd_mean_grad(lbsgd_accumulate(load(c, i), load(g, i)), batch_scale))
        block_sum_pair(scratch, sw, sg, out, b)


@gpu_kernel
def multi_lbsgd_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                           batch_scale, rescale, clip):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        c = view(ptrs, t, 3, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        if coefs[t, 0] == 0:
            for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
                store(c, i, lbsgd_accumulate(load(c, i), load(g, i)))
        else:
            for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
                gm = lbsgd_mean_grad(lbsgd_accumulate(load(c, i), load(g, i)), batch_scale)
                new_w = sgd_step(load(w32, i), gm, lr, wd, rescale, clip)
                store_weight(w, w32, i, new_w, master_fmt)
                store(c, i, 0.0)


@gpu_kernel
def multi_lbsgd_mom_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                               batch_scale, momentum, rescale, clip):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        c = view(ptrs, t, 3, start, n, state_fmt)
        m = view(ptrs, t, 4, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        if coefs[t, 0] == 0:
            for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
                store(c, i, lbsgd_accumulate(load(c, i), load(g, i)))
        else:
            for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
                gm = lbsgd_mean_grad(lbsgd_accumulate(load(c, i), load(g, i)), batch_scale)
                new_w, new_m = sgd_mom_step(load(w32, i), gm, load(m, i), lr, wd, momentum, rescale, clip)
                store(m, i, new_m)
                store_weight(w, w32, i, new_w, master_fmt)
                store(c, i, 0.0)
