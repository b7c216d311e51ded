"""SGLD with in-kernel noise (counter-based generator) against the copy kernel that moves
the same bytes (read w, g; write w: 12 B/elem in float32)."""
import mxopt_numba as mxo

from .common import DTYPES, ONE_TENSOR, copy_r2w1, resnet50_shapes, tensors, warm_up


class SGLDOneTensor:
    """fused_step on 16M elements through the Updater."""
    params = [list(DTYPES)]
    param_names = ["dtype"]
    timeout = 120

    def setup(self, dtype):
        np_dtype, mp = DTYPES[dtype]
        (self.w,), (self.g,) = tensors([(ONE_TENSOR,)], np_dtype)
        opt = mxo.optimizer.create("sgld", learning_rate=0.01, wd=1e-4, multi_precision=mp, seed=7)
        self.updater = mxo.optimizer.get_updater(opt)
        warm_up(self.time_step, dtype)

    def time_step(self, dtype):
        self.updater(0, self.g, self.w)


class SGLDOneTensorCeiling:
    """The same-pattern copy of float32 SGLD (12 B/elem)."""

    def setup(self):
        (self.w,), (self.g,) = tensors([(ONE_TENSOR,)])
        warm_up(self.time_copy)

    def time_copy(self):
        copy_r2w1(self.w, self.g)


class SGLDResNet50:
    """ResNet-50's 161 parameter tensors (25.6M elements) in one Updater call."""
    timeout = 180

    def setup(self):
        self.w, self.g = tensors(resnet50_shapes())
        self.idx = list(range(len(self.w)))
        opt = mxo.optimizer.create("sgld", learning_rate=0.01, wd=1e-4, aggregate_num=float("inf"), seed=7)
        self.updater = mxo.optimizer.get_updater(opt)
        warm_up(self.time_step)

    def time_step(self):
        self.updater(self.idx, self.g, self.w)
