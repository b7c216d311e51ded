"""Sizes, data builders and same-access-pattern copy kernels shared by the benchmarks.

Append only: changing a size or a builder makes old results incomparable.
"""
import numpy as np
from numba import njit, prange

ONE_TENSOR = 1 << 24                      # 16,777,216 elements
SMALL_TENSORS = (2000, 512)               # 2000 tensors of 512 elements

DTYPES = {"float32": (np.float32, False), "float16-mp": (np.float16, True)}


def tensors(shapes, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(s, dtype=np.float32).astype(dtype) for s in shapes]
    grads = [(0.1 * rng.standard_normal(s, dtype=np.float32)).astype(dtype) for s in shapes]
    return weights, grads


def resnet50_shapes():
    from mxopt_numba import workloads
    return workloads.resnet50_shapes()


def warm_up(fn, *args, times=2):
    """Call ``fn(*args)`` so that JIT compilation happens in setup, never in timing
    (including the multi-threaded kernels compiled in the background)."""
    from mxopt_numba.utils import wait_for_compilation
    for _ in range(times):
        fn(*args)
    wait_for_compilation()
    fn(*args)


# Same-access-pattern ceilings: every array is read, the first k are written back, with
# one add per stream, so the kernel moves the bytes of the optimizer it shadows and
# nothing else.  Each takes the same flat float32 arrays the optimizer touches.

@njit(parallel=True, error_model="numpy")
def copy_r2w1(w, g):                      # SGD: read w, g; write w           (12 B/elem)
    for i in prange(w.size):
        w[i] = w[i] + g[i]


@njit(parallel=True, error_model="numpy")
def copy_r3w2(w, g, m):                   # SGD-momentum: read w, g, m; write w, m  (20 B/elem)
    for i in prange(w.size):
        x = g[i]
        w[i] = w[i] + x
        m[i] = m[i] + x


@njit(parallel=True, error_model="numpy")
def copy_r4w3(w, g, m, v):                # Adam: read w, g, m, v; write w, m, v  (28 B/elem)
    for i in prange(w.size):
        x = g[i]
        w[i] = w[i] + x
        m[i] = m[i] + x
        v[i] = v[i] + x
