"""CUDA twins of ``kernels/sgld.py`` (SGLD): same scalar rules, same generator, same table
columns.  A thread takes whole quads (one generator call feeds four neighbours)."""
from numba import cuda

from ..counter_rng import NOISE_STREAM, normal_pair, quad_draw, standard_normal, word_from_halves
from ..sgld import sgld_step
from ._common import gpu_kernel, load, master_view, store_weight, view


@gpu_kernel
def multi_sgld_update_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                          seed_a, seed_b, seed_c, seed_d, rescale, clip):
    k0 = word_from_halves(seed_a, seed_b)
    k1 = word_from_halves(seed_c, seed_d)
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        half_lr, sqrt_lr, wd = coefs[t, 0], coefs[t, 1], wds[t]
        step = word_from_halves(coefs[t, 2], coefs[t, 3])
        key = word_from_halves(coefs[t, 4], coefs[t, 5])
        head = min((4 - start % 4) % 4, n)
        quads = (n - head) // 4
        first = (start + head) // 4
        for j in range(cuda.threadIdx.x, quads, cuda.blockDim.x):
            i = head + 4 * j
            x0, x1, x2, x3 = quad_draw(first + j, NOISE_STREAM, step, key, k0, k1)
            z0, z1 = normal_pair(x0, x1)
            z2, z3 = normal_pair(x2, x3)
            new_w = sgld_step(load(w32, i), load(g, i), z0, sqrt_lr, half_lr, wd, rescale, clip)
            store_weight(w, w32, i, new_w, master_fmt)
            new_w = sgld_step(load(w32, i + 1), load(g, i + 1), z1, sqrt_lr, half_lr, wd, rescale, clip)
            store_weight(w, w32, i + 1, new_w, master_fmt)
            new_w = sgld_step(load(w32, i + 2), load(g, i + 2), z2, sqrt_lr, half_lr, wd, rescale, clip)
            store_weight(w, w32, i + 2, new_w, master_fmt)
            new_w = sgld_step(load(w32, i + 3), load(g, i + 3), z3, sqrt_lr, half_lr, wd, rescale, clip)
            store_weight(w, w32, i + 3, new_w, master_fmt)
        # the elements outside whole quads (at most 3 before, 3 after)
        rest = head + n - (head + 4 * quads)
        for r in range(cuda.threadIdx.x, rest, cuda.blockDim.x):
            i = r if r < head else head + 4 * quads + (r - head)
            z = standard_normal(start + i, NOISE_STREAM, step, key, k0, k1)
            new_w = sgld_step(load(w32, i), load(g, i), z, sqrt_lr, half_lr, wd, rescale, clip)
            store_weight(w, w32, i, new_w, master_fmt)
