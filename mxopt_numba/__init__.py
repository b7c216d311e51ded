"""mxopt_numba: MXNet's optimization API (optimizers, lr schedulers, initializers,
Updater) on NumPy arrays, with the update rules compiled by Numba.

    import mxopt_numba as mxo
    opt = mxo.optimizer.create("sgd", learning_rate=0.1, momentum=0.9)
    updater = mxo.optimizer.get_updater(opt)
    updater(0, grad, weight)          # weight is updated in place
"""
from . import lr_scheduler, optimizer, random, sparse

__version__ = "0.1.0"

__all__ = ["lr_scheduler", "optimizer", "random", "sparse"]
