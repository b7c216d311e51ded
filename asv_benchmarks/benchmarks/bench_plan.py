"""The launch-plan layer: what an update costs around the kernel.

* ``FreshGradients``: the usual NumPy loop makes new gradient arrays every step
  (``grads = [x.T @ d ...]``); against the same step with the arrays reused.  Goal: fresh
  at most 2x reused on 2000 x 512 tensors.
* ``ManyTensorsOneEach``: SGD through the Updater with ``aggregate_num=1`` (one launch per
  tensor) on 4096 and 6000 tensors of 64 elements.  Goal: time linear in the count
  (6000 at most 1.6x 4096).
* ``Bookkeeping``: Adam on 2000 x 512 through the Updater against ``AdamCeiling``'s copy
  of the same bytes in one flat launch (``bench_adam``).  Goal: at least 0.5 of it.
"""
import numpy as np

import mxopt_numba as mxo

from .common import SMALL_TENSORS, resnet50_shapes, tensors, warm_up

SHAPES = {
    "small2000x512": lambda: [(SMALL_TENSORS[1],)] * SMALL_TENSORS[0],
    "resnet50": resnet50_shapes,
}


class FreshGradients:
    params = [list(SHAPES), ["sgd-momentum", "adam"], ["reused", "fresh"]]
    param_names = ["workload", "optimizer", "gradients"]
    timeout = 300

    def setup(self, workload, optimizer, gradients):
        shapes = SHAPES[workload]()
        self.w, self.g = tensors(shapes)
        self.idx = list(range(len(shapes)))
        name, kw = ("sgd", {"momentum": 0.9}) if optimizer == "sgd-momentum" else ("adam", {})
        opt = mxo.optimizer.create(name, learning_rate=1e-3, aggregate_num=np.inf, **kw)
        self.updater = mxo.optimizer.get_updater(opt)
        # fresh arrays are made outside the timed call, as a backward pass would make them
        self.pool = [[g.copy() for g in self.g] for _ in range(4)] if gradients == "fresh" else None
        self.turn = 0
        warm_up(self.time_step, workload, optimizer, gradients, times=3)

    def time_step(self, workload, optimizer, gradients):
        if self.pool is None:
            self.updater(self.idx, self.g, self.w)
        else:
            self.turn = (self.turn + 1) % len(self.pool)
            self.updater(self.idx, list(self.pool[self.turn]), self.w)


class ManyTensorsOneEach:
    params = [[4096, 6000]]
    param_names = ["tensors"]
    timeout = 300

    def setup(self, n):
        self.w, self.g = tensors([(64,)] * n)
        self.idx = list(range(n))
        opt = mxo.optimizer.create("sgd", learning_rate=1e-3, momentum=0.9, aggregate_num=1)
        self.updater = mxo.optimizer.get_updater(opt)
        warm_up(self.time_step, n, times=3)

    def time_step(self, n):
        self.updater(self.idx, self.g, self.w)


class Bookkeeping:
    """Adam on 2000 x 512 through the Updater; compare with ``AdamCeiling.time_copy``
    ('small2000x512')."""
    timeout = 300

    def setup(self):
        shapes = SHAPES["small2000x512"]()
        self.w, self.g = tensors(shapes)
        self.idx = list(range(len(shapes)))
        opt = mxo.optimizer.create("adam", learning_rate=1e-3, aggregate_num=np.inf)
        self.updater = mxo.optimizer.get_updater(opt)
        warm_up(self.time_step, times=3)

    def time_step(self):
        self.updater(self.idx, self.g, self.w)
