"""Follow the moving leader (MXNet 2.0.0b1 rule).

    g'  = clip(rescale * g) + wd * w
    v   <- beta2 * v + (1 - beta2) * g'^2
    d_t  = (1 - beta1^t) / lr * (sqrt(v / (1 - beta2^t)) + epsilon)
    z   <- beta1 * z + (1 - beta1) * g' - (d_t - beta1 * d) * w
    d   <- d_t
    w   <- -z / d_t

``t`` is the tensor's own update count; the kernel gets ``(1 - beta1^t) / lr`` and
``1 - beta2^t`` per tensor in ``coefs[t, 0]`` and ``coefs[t, 1]``.
"""
import math

from numba import prange

from ._common import (coupled_grad, cpu_kernel, decayed_then_clipped, load, master_view, scalar_rule, store,
                      store_weight, view)


# --------------------------------------------------------------------------- scalar rules

@scalar_rule
def ftml_from_grad(w, gw, d, v, z, beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon, d_scale,
                   v_correction):
    """The rule after the gradient preprocessing (shared by the 2.x and 1.x rules)."""
    v = beta2 * v + one_minus_beta2 * gw * gw
    d_t = d_scale * (math.sqrt(v / v_correction) + epsilon)
    z = beta1 * z + one_minus_beta1 * gw - (d_t - beta1 * d) * w
    return -z / d_t, d_t, v, z


@scalar_rule
def ftml_step(w, g, d, v, z, wd, beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon,
              d_scale, v_correction, rescale, clip):
    """Returns (new weight, d, v, z); ``d_scale = (1 - beta1^t) / lr`` and
    ``v_correction = 1 - beta2^t``."""
    return ftml_from_grad(w, coupled_grad(w, g, wd, rescale, clip), d, v, z, beta1, one_minus_beta1, beta2,
                          one_minus_beta2, epsilon, d_scale, v_correction)


@scalar_rule
def ftml_v1_step(w, g, d, v, z, wd, beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon,
                    d_scale, v_correction, rescale, clip):
    """MXNet 1.x: ``g' = clip(rescale * g + wd * w)``."""
    return ftml_from_grad(w, decayed_then_clipped(w, g, wd, rescale, clip), d, v, z, beta1, one_minus_beta1,
                          beta2, one_minus_beta2, epsilon, d_scale, v_correction)



# --------------------------------------------------------------------------- CPU kernels
# Table columns: 0 weight, 1 gradient, 2 fp32 master (multi-precision only), 3 d, 4 v, 5 z.

@cpu_kernel
def multi_ftml_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                          beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        d = view(ptrs, t, 3, start, n, state_fmt)
        v = view(ptrs, t, 4, start, n, state_fmt)
        z = view(ptrs, t, 5, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        wd, d_scale, v_correction = wds[t], coefs[t, 0], coefs[t, 1]
        for i in range(n):
            new_w, new_d, new_v, new_z = ftml_step(
                load(w32, i), load(g, i), load(d, i), load(v, i), load(z, i), wd, beta1,
                one_minus_beta1, beta2, one_minus_beta2, epsilon, d_scale, v_correction,
                rescale, clip)
            store(d, i, new_d)
            store(v, i, new_v)
            store(z, i, new_z)
            store_weight(w, w32, i, new_w, master_fmt)


# MXNet 1.x rule (mxopt_numba.v1): the same loop with the 1.x preprocessing.

@cpu_kernel
def multi_ftml_v1_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                             beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        d = view(ptrs, t, 3, start, n, state_fmt)
        v = view(ptrs, t, 4, start, n, state_fmt)
        z = view(ptrs, t, 5, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        wd, d_scale, v_correction = wds[t], coefs[t, 0], coefs[t, 1]
        for i in range(n):
            new_w, new_d, new_v, new_z = ftml_v1_step(
                load(w32, i), load(g, i), load(d, i), load(v, i), load(z, i), wd, beta1,
                one_minus_beta1, beta2, one_minus_beta2, epsilon, d_scale, v_correction,
                rescale, clip)
            store(d, i, new_d)
            store(v, i, new_v)
            store(z, i, new_z)
            store_weight(w, w32, i, new_w, master_fmt)
