"""GroupAdaGrad: AdaGrad with one accumulator per row of a 2-D weight (MXNet contrib)."""
import numpy as np

from ..kernels import groupadagrad as kernels
from .optimizer import DefaultValue, Optimizer, check_positive, register, state_float_dtype

__all__ = ["GroupAdaGrad"]


def _check_2d(weight):
    if np.ndim(weight) != 2:
        raise ValueError("GroupAdaGrad updates 2-D weights only (one history value per row), "
                         "got a weight of shape %s" % (np.shape(weight),))


@register
class GroupAdaGrad(Optimizer):
    """AdaGrad with the history shared by each row (MXNet 2.x ``contrib`` rule)::

        g'   = clip(rescale_grad * g)
        h[r] <- h[r] + mean over columns c of g'[r, c]^2
        w    <- w - lr * g' / (sqrt(h[r]) + epsilon)

    Meant for embeddings: one adaptive rate per row.  The weight must be 2-D and weight
    decay is not supported (``wd`` must be 0: a ValueError at construction, and at
    update time if it was changed since).  Epsilon sits outside the root (MXNet 1.x put
    it inside).

    The history has shape ``(rows, 1)`` and is float32 whatever the weight's dtype, as
    in MXNet, except for float64 weights, which keep a float64 history.  MXNet itself
    fails for float64 weights and for float16 weights without ``multi_precision``; here
    float64 runs end to end in float64 and float16/bfloat16 weights without a master
    copy are computed in float32 and rounded once.

    Row-sparse gradients update only the listed rows (MXNet's row-wise kernel; the
    other rows would not move anyway), at a cost proportional to the listed rows.
    ``clip_gradient`` None or <= 0
    means no clipping (MXNet's dense path clips every gradient to 0 with
    ``clip_gradient=0``).

    Parameters
    ----------
    learning_rate : float, default 0.01
    epsilon : float, default 1e-6
        Must be > 0.
    use_fused_step : bool, default True
    **kwargs : see :class:`Optimizer` (``wd`` must stay 0).
    """

    fused_by_default = True
    sparse_rows_only = True

    def __init__(self, learning_rate=DefaultValue(0.01), epsilon=1e-6, use_fused_step=True, **kwargs):
        super().__init__(learning_rate=learning_rate, use_fused_step=use_fused_step, **kwargs)
        self.epsilon = check_positive("epsilon", epsilon)
        self._check_wd()

    def _check_wd(self):
        if self.wd != 0.0:
            raise ValueError("GroupAdaGrad does not support weight decay: wd must be 0, got %r" % self.wd)

    def create_state(self, index, weight):
        _check_2d(weight)
        return np.zeros((weight.shape[0], 1), dtype=state_float_dtype(weight))

    def _leaf_size(self, weight, position):
        _check_2d(weight)
        return weight.shape[0]

    def step(self, indices, weights, grads, states):
        self._check_wd()
        for lr, weight, grad, history in zip(self._lr_array(indices), weights, grads, states):
            _check_2d(weight)
            g = self._rescaled(grad)
            # float64 mean, rounded once into the history (as the kernel does)
            history += np.mean(np.square(g), axis=1, keepdims=True, dtype=np.float64)
            weight -= lr * (g / (np.sqrt(history) + self.epsilon))

    def fused_step(self, indices, weights, grads, states):
        self._check_wd()
        cols = np.array([w.shape[1] for w in weights], dtype=np.int64)
        coefs = np.stack([cols // kernels.COLS_SPLIT, cols % kernels.COLS_SPLIT, cols], axis=1)
        self._launch(kernels.multi_group_adagrad_update_cpu, indices, weights, grads, states,
                     self._lr_array(indices), self._wd_array(indices),
                     (self.epsilon, self.rescale_grad, self._clip_bound()), coefs=coefs)
