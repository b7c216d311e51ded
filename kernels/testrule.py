"""The ``Test`` optimizer's rule (MXNet 2.0.0b1): plain SGD that never clips.

    w <- w - lr * (rescale * g + wd * w)

Its state (an unused float32 array) is neither read nor written.
"""
from numba import prange

from ._common import cpu_kernel, load, master_view, scalar_rule, store, store_weight, view


# --------------------------------------------------------------------------- scalar rules

@scalar_rule
def testrule_step(w, g, lr, wd, rescale):
    return w - lr * (rescale * g + wd * w)


# --------------------------------------------------------------------------- CPU kernels
# Table columns: 0 weight, 1 gradient, 2 fp32 master (multi-precision only), 3 the unused
# state.  ``clip`` is part of the common signature only: this rule never clips.

@cpu_kernel
def multi_testrule_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                               rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        lr, wd = lrs[t], wds[t]
        for i in range(n):
            new_w = testrule_step(load(w32, i), load(g, i), lr, wd, rescale)
            store_weight(w, w32, i, new_w, master_fmt)


# --------------------------------------------------------------------------- MXNet 1.x rule
#     w <- w + rescale * g;  state <- w      (no lr, wd or clipping)

@scalar_rule
def testrule_v1_step(w, g, rescale):
    return w + rescale * g


@cpu_kernel
def multi_testrule_v1_update_cpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt,
                                  rescale, clip):
    for b in prange(blocks.shape[0]):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        g = view(ptrs, t, 1, start, n, g_fmt)
        s = view(ptrs, t, 3, start, n, state_fmt)
        w32 = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        for i in range(n):
            new_w = testrule_v1_step(load(w32, i), load(g, i), rescale)
            store(s, i, new_w)
            store_weight(w, w32, i, new_w, master_fmt)
