"""CUDA twin of ``kernels/norms.py``: per-tensor sums of squares over a whole chunk.

Two launches per reduction (see ``GPUReduction``): each CUDA block adds its threads'
float64 partial sums of one table block in a fixed pairwise order and writes one row of
``partials``; ``tensor_sums_gpu`` then adds each tensor's rows in block order.  A
tensor's sums depend only on its own blocks and the launch's threads per block, not on
the other tensors of the chunk.  The order of the additions differs from the CPU's, so
GPU and CPU sums agree to rounding, not bit for bit.
"""
from numba import cuda

from ..norms import add_square, scale_step
from ._common import (MAX_THREADS, block_sum_pair, float64, gpu_kernel, gpu_reduction, load, master_view,
                      store, view)


@gpu_reduction
def multi_sum_sq_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt, grad_scale,
                     out):
    """``out[b] = (sum(w**2), sum((grad_scale * g)**2))`` over table block ``b``; ``w`` is
    the fp32 master copy when there is one."""
    scratch = cuda.shared.array((2, MAX_THREADS), float64)
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        g = view(ptrs, t, 1, start, n, g_fmt)
        w = master_view(ptrs, t, start, n, w_fmt, master_fmt)
        sw = 0.0
        sg = 0.0
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            sw = add_square(sw, load(w, i))
            sg = add_square(sg, load(g, i) * grad_scale)
        block_sum_pair(scratch, sw, sg, out, b)


@gpu_kernel
def multi_scale_gpu(blocks, ptrs, lrs, wds, coefs, w_fmt, g_fmt, master_fmt, state_fmt):
    for b in range(cuda.blockIdx.x, blocks.shape[0], cuda.gridDim.x):
        t, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        w = view(ptrs, t, 0, start, n, w_fmt)
        factor = lrs[t]
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            store(w, i, scale_step(load(w, i), factor))
