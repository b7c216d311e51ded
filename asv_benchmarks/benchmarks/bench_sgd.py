"""SGD: one large tensor and many small ones, against a same-pattern copy and NumPy."""
import numpy as np

import mxopt_numba as mxo

from .common import DTYPES, ONE_TENSOR, SMALL_TENSORS, copy_r2w1, copy_r3w2, tensors, warm_up


class SGDOneTensor:
    """fused_step on 16M elements through the Updater."""
    params = [[0.0, 0.9], list(DTYPES)]
    param_names = ["momentum", "dtype"]
    timeout = 120

    def setup(self, momentum, dtype):
        np_dtype, mp = DTYPES[dtype]
        (self.w,), (self.g,) = tensors([(ONE_TENSOR,)], np_dtype)
        opt = mxo.optimizer.create("sgd", learning_rate=0.01, momentum=momentum, wd=1e-4,
                                   multi_precision=mp)
        self.updater = mxo.optimizer.get_updater(opt)
        warm_up(self.time_step, momentum, dtype)

    def time_step(self, momentum, dtype):
        self.updater(0, self.g, self.w)


class SGDOneTensorCeiling:
    """Copy kernels moving the bytes of SGD (12 B/elem) and SGD-momentum (20 B/elem)."""
    params = [[0.0, 0.9]]
    param_names = ["momentum"]

    def setup(self, momentum):
        (self.w, self.m), (self.g, _) = tensors([(ONE_TENSOR,)] * 2)
        warm_up(self.time_copy, momentum)

    def time_copy(self, momentum):
        if momentum:
            copy_r3w2(self.w, self.g, self.m)
        else:
            copy_r2w1(self.w, self.g)


class SGDMomentumNumPy:
    """The same SGD-momentum step written with NumPy ``out=`` ufuncs (one thread)."""

    def setup(self):
        (self.w, self.m), (self.g, self.tmp) = tensors([(ONE_TENSOR,)] * 2)
        self.m[:] = 0
        warm_up(self.time_step)

    def time_step(self):
        w, g, m, tmp = self.w, self.g, self.m, self.tmp
        np.multiply(w, 1e-4, out=tmp)
        tmp += g
        tmp *= 0.01
        m *= 0.9
        m -= tmp
        w += m


class SGDManySmall:
    """2000 tensors of 512 elements through one Updater call per step."""
    params = [[1, 4, 60, float("inf")], [0.0, 0.9]]
    param_names = ["aggregate_num", "momentum"]
    timeout = 120

    def setup(self, aggregate_num, momentum):
        n, size = SMALL_TENSORS
        self.w, self.g = tensors([(size,)] * n)
        self.idx = list(range(n))
        opt = mxo.optimizer.create("sgd", learning_rate=0.01, momentum=momentum, wd=1e-4,
                                   aggregate_num=aggregate_num)
        self.updater = mxo.optimizer.get_updater(opt)
        warm_up(self.time_step, aggregate_num, momentum)

    def time_step(self, aggregate_num, momentum):
        self.updater(self.idx, self.g, self.w)

    def track_launches_per_step(self, aggregate_num, momentum):
        n = SMALL_TENSORS[0]
        return 1 if aggregate_num == float("inf") else -(-n // int(aggregate_num))
    track_launches_per_step.unit = "launches"
