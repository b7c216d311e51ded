"""CUDA twins of ``kernels/ftml.py`` (FTML): same scalar rules, same table columns."""
from numba import cuda

from ..ftml import ftml_step, ftml_v1_step
from ._common import gpu_kernel, load, master_view, store, store_weight, view


@gpu_kernel
def multi_ftml_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                          beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon, rescale, clip):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        d = view(ptrs, t, 3, start, n, state_fmt)
        v = view(ptrs, t, 4, start, n, state_fmt)
        z = view(ptrs, t, 5, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        wd, d_scale, v_correction = wds[t], coefs[t, 0], coefs[t, 1]
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            new_w, new_d, new_v, new_z = ftml_step(
                load(w32, i), load(g, i), load(d, i), load(v, i), load(z, i), wd, beta1,
                one_minus_beta1, beta2, one_minus_beta2, epsilon, d_scale, v_correction,
                rescale, clip)
            store(d, i, new_d)
            store(v, i, new_v)
            store(z, i, new_z)
            store_weight(w, w32, i, new_w, master_fmt)


@gpu_kernel
def multi_ftml_v1_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                             beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon, rescale, clip):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        d = view(ptrs, t, 3, start, n, state_fmt)
        v = view(ptrs, t, 4, start, n, state_fmt)
        z = view(ptrs, t, 5, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        wd, d_scale, v_correction = wds[t], coefs[t, 0], coefs[t, 1]
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            new_w, new_d, new_v, new_z = ftml_v1_step(
                load(w32, i), load(g, i), load(d, i), load(v, i), load(z, i), wd, beta1,
                one_minus_beta1, beta2, one_minus_beta2, epsilon, d_scale, v_correction,
                rescale, clip)
            store(d, i, new_d)
            store(v, i, new_v)
            store(z, i, new_z)
            store_weight(w, w32, i, new_w, master_fmt)
