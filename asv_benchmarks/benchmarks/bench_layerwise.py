"""Layer-wise optimizers on the ResNet-50 parameter shapes, against a same-access-pattern
copy in the same run.

LAMB makes two passes over every tensor: pass 1 reads w, g, m, v and writes m, v (plus
the sums of squares of w and of the update direction); pass 2 reads w, m, v and writes w
(40 B/elem in fp32, against Adam's 28).  ``LAMBResNet50Ceiling`` moves exactly those
bytes with one add per stream; the ratio of the two rows is the figure of merit (goal:
the optimizer at >= 0.8x the copy's speed).
"""
import numpy as np
from numba import njit, prange

import mxopt_numba as mxo

from .common import DTYPES, resnet50_shapes, tensors, warm_up


@njit(parallel=True, error_model="numpy")
def copy_r4w2(w, g, m, v):                # LAMB pass 1: read w, g, m, v; write m, v  (24 B/elem)
    for i in prange(w.size):
        x = w[i]
        m[i] = m[i] + g[i]
        v[i] = v[i] + x


@njit(parallel=True, error_model="numpy")
def copy_r3w1(w, m, v):                   # LAMB pass 2: read w, m, v; write w        (16 B/elem)
    for i in prange(w.size):
        w[i] = w[i] + m[i] + v[i]


def _flat(n, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n, dtype=np.float32)


class LAMBResNet50:
    """LAMB fused_step over the 161 ResNet-50 tensors (25.6M elements) through the Updater."""
    params = [list(DTYPES), [4, float("inf")]]
    param_names = ["dtype", "aggregate_num"]
    timeout = 300

    def setup(self, dtype, aggregate_num):
        np_dtype, mp = DTYPES[dtype]
        shapes = resnet50_shapes()
        self.w, self.g = tensors(shapes, np_dtype)
        self.idx = list(range(len(shapes)))
        opt = mxo.optimizer.create("lamb", learning_rate=1e-3, wd=1e-4, multi_precision=mp,
                                   aggregate_num=aggregate_num)
        self.updater = mxo.optimizer.get_updater(opt)
        warm_up(self.time_step, dtype, aggregate_num)

    def time_step(self, dtype, aggregate_num):
        self.updater(self.idx, self.g, self.w)


class LAMBResNet50Ceiling:
    """The bytes of LAMB's two passes over 25.6M fp32 elements, one add per stream."""
    timeout = 300

    def setup(self):
        n = sum(int(np.prod(s)) for s in resnet50_shapes())
        self.w, self.g, self.m, self.v = (_flat(n, seed) for seed in range(4))
        warm_up(self.time_copy)

    def time_copy(self):
        copy_r4w2(self.w, self.g, self.m, self.v)
        copy_r3w1(self.w, self.m, self.v)


class LayerwiseResNet50:
    """LARS (momentum 0.9, names from the model) and LANS over the same shapes, fp32."""
    params = [["lars", "lans"]]
    param_names = ["optimizer"]
    timeout = 300

    def setup(self, name):
        from mxopt_numba import workloads
        shapes = resnet50_shapes()
        self.w, self.g = tensors(shapes)
        self.idx = list(range(len(shapes)))
        kwargs = {"aggregate_num": float("inf")}
        if name == "lars":
            names = [nm for nm, _ in workloads.named_shapes("resnet50")]
            kwargs.update(momentum=0.9, wd=1e-4, param_idx2name=dict(enumerate(names)))
        opt = mxo.optimizer.create(name, **kwargs)
        self.updater = mxo.optimizer.get_updater(opt)
        warm_up(self.time_step, name)

    def time_step(self, name):
        self.updater(self.idx, self.g, self.w)
