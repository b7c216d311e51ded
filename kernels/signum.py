"""Signum (sign of a momentum) and signSGD (sign of the raw gradient).

    momentum > 0 (Signum):
        m <- momentum * m - (1 - momentum) * (clip(rescale * g) + wd * w)
        w <- (1 - lr * wd_lh) * w + lr * sign(m)
    momentum == 0 (signSGD):
        w <- (1 - lr * (wd + wd_lh)) * w - lr * sign(g)

signSGD looks only at the sign of the raw gradient, so ``rescale`` and ``clip`` do not
enter it (MXNet's kernel ignores them too, even for a negative ``rescale``).
``sign(0) = 0`` and ``sign(NaN) = NaN``.  Constants such as ``1 - momentum`` arrive as
arguments so that float32 kernels stay in float32.
"""
from numba import prange

from ._common import coupled_grad, cpu_kernel, load, master_view, scalar_rule, store, store_weight, view


# --------------------------------------------------------------------------- scalar rules

@scalar_rule
def scaled_sign(x, scale):
    """``scale * sign(x)`` in the type of its arguments (0 for a zero, NaN for a NaN)."""
    if x > 0:
        return scale
    if x < 0:
        return -scale
    return x * scale


@scalar_rule
def signum_step(w, g, m, lr, wd, momentum, one_minus_momentum, decay, rescale, clip):
    """``decay`` is ``1 - lr * wd_lh`` of this tensor."""
    m = momentum * m - one_minus_momentum * coupled_grad(w, g, wd, rescale, clip)
    return decay * w + scaled_sign(m, lr), m


@scalar_rule
def signsgd_step(w, g, lr, decay):
    """``decay`` is ``1 - lr * (wd + wd_lh)`` of this tensor."""
    return decay * w - scaled_sign(g, lr)


# --------------------------------------------------------------------------- CPU kernels
# Table columns: 0 weight, 1 gradient, 2 fp32 master (multi-precision only), 3 momentum.
# coefs[t, 0] is the tensor's weight decay factor (see the scalar rules).

@cpu_kernel
def multi_signum_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                            momentum, one_minus_momentum, rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        m = view(ptrs, t, 3, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd, decay = lrs[t], wds[t], coefs[t, 0]
        for i in range(n):
            new_w, new_m = signum_step(load(w32, i), load(g, i), load(m, i), lr, wd, momentum,
                                       one_minus_momentum, decay, rescale, clip)
            store(m, i, new_m)
            store_weight(w, w32, i, new_w, master_fmt)


@cpu_kernel
def multi_signsgd_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                             rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, decay = lrs[t], coefs[t, 0]
        for i in range(n):
            new_w = signsgd_step(load(w32, i), load(g, i), lr, decay)
            store_weight(w, w32, i, new_w, master_fmt)
