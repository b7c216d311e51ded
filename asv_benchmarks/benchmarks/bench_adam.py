"""Adam on one 16M tensor, on the ResNet-50 parameter shapes (161 tensors, 25.6M
elements; ``common.resnet50_shapes``) and on 2000 x 512 tensors, each beside a copy
kernel with Adam's access pattern (read w, g, m, v; write w, m, v: 28 B/elem in fp32)
measured in the same run.  Figures of merit: ``AdamWorkload / AdamCeiling`` (goal
>= 0.9x), float16-mp against float32 (goal within 10 %), and the 2000 x 512 step
(goal < 1 ms)."""
import numpy as np

import mxopt_numba as mxo

from .common import DTYPES, ONE_TENSOR, SMALL_TENSORS, copy_r4w3, resnet50_shapes, tensors, warm_up

WORKLOADS = {
    "one16m": lambda: [(ONE_TENSOR,)],
    "resnet50": resnet50_shapes,
    "small2000x512": lambda: [(SMALL_TENSORS[1],)] * SMALL_TENSORS[0],
}


class AdamWorkload:
    params = [list(WORKLOADS), list(DTYPES)]
    param_names = ["workload", "dtype"]
    timeout = 300

    def setup(self, workload, dtype):
        np_dtype, mp = DTYPES[dtype]
        shapes = WORKLOADS[workload]()
        self.w, self.g = tensors(shapes, np_dtype)
        self.idx = list(range(len(shapes)))
        opt = mxo.optimizer.create("adam", learning_rate=1e-3, wd=1e-4, multi_precision=mp,
                                   aggregate_num=np.inf)
        self.updater = mxo.optimizer.get_updater(opt)
        warm_up(self.time_step, workload, dtype)

    def time_step(self, workload, dtype):
        self.updater(self.idx, self.g, self.w)


class AdamCeiling:
    """The bytes of one Adam step on the same tensors, one add per stream."""
    params = [list(WORKLOADS)]
    param_names = ["workload"]
    timeout = 300

    def setup(self, workload):
        shapes = WORKLOADS[workload]()
        flat = int(sum(np.prod(s) for s in shapes))
        # one flat buffer per stream: the copy sees the same bytes as the optimizer
        (self.w, self.m), (self.g, self.v) = tensors([(flat,)] * 2)
        warm_up(self.time_copy, workload)

    def time_copy(self, workload):
        copy_r4w3(self.w, self.g, self.m, self.v)
