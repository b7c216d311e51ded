"""The PyTorch adapter (``mxopt_numba.torch.AdamW``) against ``torch.optim.AdamW`` with
``fused=True`` and with ``foreach=True``, on the ResNet-50 parameter shapes and on
2000 x 512 tensors, float32, gradients already in place (the step alone is timed).
Figures of merit, from one run: ``fused / adapter`` (goal >= 1.0 on ResNet-50) and
``fused / adapter`` on 2000 x 512 (goal >= 10).  Skipped when torch is not installed."""
import numpy as np

from .common import SMALL_TENSORS, resnet50_shapes, tensors, warm_up

WORKLOADS = {
    "resnet50": resnet50_shapes,
    "small2000x512": lambda: [(SMALL_TENSORS[1],)] * SMALL_TENSORS[0],
}

IMPLEMENTATIONS = ("adapter", "torch-fused", "torch-foreach")


class TorchAdamWStep:
    params = [list(WORKLOADS), list(IMPLEMENTATIONS)]
    param_names = ["workload", "implementation"]
    timeout = 300

    def setup(self, workload, implementation):
        try:
            import torch
        except ImportError:
            raise NotImplementedError("torch is not installed") from None
        shapes = WORKLOADS[workload]()
        weights, grads = tensors(shapes, np.float32)
        params = []
        for w, g in zip(weights, grads):
            p = torch.nn.Parameter(torch.from_numpy(w))
            p.grad = torch.from_numpy(g)
            params.append(p)
        kwargs = {"lr": 1e-3, "weight_decay": 1e-4}
        if implementation == "adapter":
            from mxopt_numba import torch as mxt
            self.opt = mxt.AdamW(params, **kwargs)
        elif implementation == "torch-fused":
            self.opt = torch.optim.AdamW(params, fused=True, **kwargs)
        else:
            self.opt = torch.optim.AdamW(params, foreach=True, **kwargs)
        warm_up(self.time_step, workload, implementation)

    def time_step(self, workload, implementation):
        self.opt.step()
