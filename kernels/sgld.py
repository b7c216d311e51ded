"""Stochastic gradient Langevin dynamics.

    w <- w - lr / 2 * (clip(rescale * g) + wd * w) + sqrt(lr) * z,   z ~ N(0, 1)

The standard normal ``z`` of each element is generated in the kernel by the counter-based
generator of ``counter_rng`` (Philox-4x32-10 plus Box-Muller, the exact map documented
there), keyed by the seed and counted by (parameter key, update count, element position):
no noise array crosses memory, and the numbers depend neither on threads nor on which
tensors share a launch.  Per tensor ``t``:

    coefs[t, 0]  lr / 2
    coefs[t, 1]  sqrt(lr)
    coefs[t, 2]  update count, high 16 bits    coefs[t, 3]  its low 16 bits
    coefs[t, 4]  parameter key, high 16 bits   coefs[t, 5]  its low 16 bits

and the 64-bit seed arrives as four 16-bit scalars (every piece is exact in float32).
"""
import numba
import numpy as np
from numba import prange

from ._common import (coupled_grad, cpu_kernel, load, master_slice, master_view, scalar_rule, stack_buffer,
                      store_weight, view, weight_target)
from .counter_rng import NOISE_STREAM, normal_pair, quad_draw, standard_normal, word_from_halves

#: elements whose generator words are computed ahead of their update (a multiple of 4;
#: the buffer stays in L1)
NOISE_CHUNK = 1024


# --------------------------------------------------------------------------- scalar rule

@scalar_rule
def sgld_step(w, g, z, sqrt_lr, half_lr, wd, rescale, clip):
    return w - half_lr * coupled_grad(w, g, wd, rescale, clip) + sqrt_lr * z


# --------------------------------------------------------------------------- CPU kernels
# Table columns: 0 weight, 1 gradient, 2 fp32 master (multi-precision only); no state.

@cpu_kernel
def multi_sgld_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                          seed_a, seed_b, seed_c, seed_d, rescale, clip):
    k0 = word_from_halves(seed_a, seed_b)
    k1 = word_from_halves(seed_c, seed_d)
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        half_lr, sqrt_lr, wd = coefs[t, 0], coefs[t, 1], wds[t]
        step = word_from_halves(coefs[t, 2], coefs[t, 3])
        key = word_from_halves(coefs[t, 4], coefs[t, 5])
        # one generator call gives four neighbours their normals: walk whole quads, with
        # the elements before the first and after the last quad boundary one by one
        head = min((4 - start % 4) % 4, n)
        quads = (n - head) // 4
        first = (start + head) // 4
        for i in range(head):
            z = standard_normal(start + i, NOISE_STREAM, step, key, k0, k1)
            new_w = sgld_step(load(w32, i), load(g, i), z, sqrt_lr, half_lr, wd, rescale, clip)
            store_weight(w, w32, i, new_w, master_fmt)
        # whole quads, a chunk at a time, in two loops that each vectorise: the generator's
        # words (one call per four elements, 64-bit lanes) into a small buffer on the
        # stack, then their Box-Muller pairs (32-bit lanes, sixteen to a register) fused
        # with the update of the two elements, so that the loads and stores of the
        # operands overlap the arithmetic of the normals
        words = numba.carray(stack_buffer(NOISE_CHUNK, np.uint32), (NOISE_CHUNK,))
        for c in range(0, 4 * quads, NOISE_CHUNK):
            m = min(NOISE_CHUNK, 4 * quads - c)
            lo = head + c
            gc, mc = g[lo:lo + m], master_slice(w32, lo, lo + m)
            wc = weight_target(w[lo:lo + m], mc, master_fmt)
            q0 = first + c // 4
            for j in range(m // 4):
                x0, x1, x2, x3 = quad_draw(q0 + j, NOISE_STREAM, step, key, k0, k1)
                words[4 * j] = np.uint32(x0)
                words[4 * j + 1] = np.uint32(x1)
                words[4 * j + 2] = np.uint32(x2)
                words[4 * j + 3] = np.uint32(x3)
            for p in range(m // 2):
                z0, z1 = normal_pair(words[2 * p], words[2 * p + 1])
                r = 2 * p
                new_w = sgld_step(load(mc, r), load(gc, r), z0, sqrt_lr, half_lr, wd, rescale, clip)
                store_weight(wc, mc, r, new_w, master_fmt)
                new_w = sgld_step(load(mc, r + 1), load(gc, r + 1), z1, sqrt_lr, half_lr, wd, rescale, clip)
                store_weight(wc, mc, r + 1, new_w, master_fmt)
        for i in range(head + 4 * quads, n):
            z = standard_normal(start + i, NOISE_STREAM, step, key, k0, k1)
            new_w = sgld_step(load(w32, i), load(g, i), z, sqrt_lr, half_lr, wd, rescale, clip)
            store_weight(w, w32, i, new_w, master_fmt)
