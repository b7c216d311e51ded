"""16-bit weights: float32 master copy (multi_precision=True) against Kahan-compensated
updates and stochastic rounding (no master copy), and plain round-to-nearest."""
import ml_dtypes
import numpy as np

import mxopt_numba as mxo

from .common import ONE_TENSOR, tensors, warm_up

MODES = {"master": True, "kahan": "kahan", "stochastic": "stochastic", "nearest": False}


class LowPrecisionOneTensor:
    """fused_step on 16M bfloat16 / float16 elements through the Updater."""
    params = [["sgd", "adam"], ["bfloat16", "float16"], list(MODES)]
    param_names = ["optimizer", "dtype", "mode"]
    timeout = 180

    def setup(self, optimizer, dtype, mode):
        np_dtype = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(np.float16)
        (self.w,), (self.g,) = tensors([(ONE_TENSOR,)], np_dtype)
        kwargs = {"momentum": 0.9} if optimizer == "sgd" else {}
        opt = mxo.optimizer.create(optimizer, learning_rate=1e-3, wd=1e-4, multi_precision=MODES[mode], **kwargs)
        opt.seed = 7
        self.updater = mxo.optimizer.get_updater(opt)
        warm_up(self.time_step, optimizer, dtype, mode)

    def time_step(self, optimizer, dtype, mode):
        self.updater(0, self.g, self.w)
