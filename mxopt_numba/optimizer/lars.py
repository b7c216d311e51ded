"""LARS: SGD with a layer-wise trust ratio."""
import numpy as np

from ..kernels import norms as norm_kernels
from ..kernels import sgd as sgd_kernels
from .. import _device
from . import _plan
from ._shared import l2norm, launch_sums
from .optimizer import DefaultValue, Optimizer, check_non_negative, register

__all__ = ["LARS"]

#: names ending like this keep their learning rate (MXNet's rule)
_NO_TRUST_SUFFIXES = ("gamma", "beta", "bias")


@register
class LARS(Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al., 2017) on top of SGD, MXNet 2.x rule::

        for each tensor whose name (param_idx2name, else str(index)) does not end
        in 'gamma', 'beta' or 'bias':
            ratio = eta * ||w|| / (||rescale_grad * g|| + wd * ||w|| + epsilon)
                    if ||w|| > 0 and ||rescale_grad * g|| > 0, else 1
            lr    = lr * ratio
        g' = clip(rescale_grad * g) + wd * w
        momentum == 0:   w <- w - lr * g'
        momentum  > 0:   m <- momentum * m - lr * g';  w <- w + m

    The norms use the rescaled gradient before clipping (and the fp32 master copy under
    multi-precision); the momentum buffer holds ``-lr * g'`` sums, as in MXNet's SGD.

    Differences from MXNet: ``clip_gradient=0`` means no clipping, like every other
    optimizer here (MXNet's LARS passes 0 to its kernel, which zeroes the gradient); any
    number of tensors per launch (MXNet's aggregated kernels crash above 60); under
    multi-precision the norm of ``w`` comes from the fp32 master (MXNet reads the fp16
    weight).  Note that names are only known through ``param_idx2name``: without it, every
    tensor, bias included, gets the trust ratio (as in MXNet under gluon).

    Parameters
    ----------
    learning_rate : float, default 0.1
    momentum : float, default 0.0
    eta : float, default 0.001
        LARS coefficient.
    epsilon : float, default 1e-8
    lazy_update : bool, default False
        With a row_sparse gradient, update only the listed rows (the trust ratio still
        comes from the whole weight and gradient, as in MXNet).
    use_fused_step : bool, default True
    aggregate_num : int, default 1
    **kwargs : see :class:`Optimizer`.
    """

    layerwise = True

    fused_by_default = True

    def __init__(self, learning_rate=DefaultValue(0.1), momentum=0.0, eta=0.001, epsilon=1e-8,
                 lazy_update=False, use_fused_step=True, aggregate_num=1, **kwargs):
        super().__init__(learning_rate=learning_rate, use_fused_step=use_fused_step,
                         aggregate_num=aggregate_num, **kwargs)
        self.momentum = check_non_negative("momentum", momentum)
        self.eta = check_non_negative("eta", eta)
        self.epsilon = check_non_negative("epsilon", epsilon)
        self.lazy_update = bool(lazy_update)

    def create_state(self, index, weight):
        if self.momentum == 0.0:
            return None
        return np.zeros(weight.shape, dtype=weight.dtype)

    # ------------------------------------------------------------------ trust ratio
    def _uses_trust(self, indices):
        """True for each tensor whose name does not end in gamma, beta or bias."""
        names = self.idx2name
        return np.fromiter((not (names[i] if i in names else str(i)).endswith(_NO_TRUST_SUFFIXES)
                            for i in indices), dtype=bool, count=len(indices))

    def _ratios(self, use, w_norm, g_norm, wds):
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = self.eta * w_norm / (g_norm + wds * w_norm + self.epsilon)
        return np.where(use & (w_norm > 0) & (g_norm > 0), ratio, 1.0)

    def _row_ratios(self, plan):
        """Trust ratios of a lazy row-sparse plan, from the whole tensors (its kernels see
        only the listed rows); a row_sparse gradient's norm is the norm of its rows."""
        use = self._uses_trust(plan.indices)
        w_norm = np.array([l2norm(_host(w if m is None else m)) for w, _, m, *_ in plan.sources])
        g_norm = np.array([l2norm(_host(g.data) * self.rescale_grad) for _, g, *_ in plan.sources])
        return self._ratios(use, w_norm, g_norm, self._wd_array(plan.indices))

    # ------------------------------------------------------------------ update paths
    def step(self, indices, weights, grads, states):
        self._sgd_step(indices, weights, grads, states, None)

    def _step_rows(self, plan, step=None):
        given = dict(zip(plan.indices, self._row_ratios(plan).tolist()))
        super()._step_rows(plan, lambda i, w, g, s: self._sgd_step(i, w, g, s, [given[i[0]]]))

    def _sgd_step(self, indices, weights, grads, states, given):
        """SGD with each tensor's learning rate scaled by its trust ratio (``given``, or
        computed from the tensors themselves)."""
        use = self._uses_trust(indices)
        lrs, wds = self._lr_array(indices).tolist(), self._wd_array(indices).tolist()
        for k, (weight, grad, mom) in enumerate(zip(weights, grads, states)):
            lr, wd = lrs[k], wds[k]
            if given is not None:
                lr = lr * given[k]
            elif use[k]:
                w_norm = l2norm(weight)
                g_norm = l2norm(grad * self.rescale_grad)
                lr = lr * float(self._ratios(True, w_norm, g_norm, wd))
            g = self._coupled(grad, weight, wd)
            if mom is None:
                weight -= lr * g
            else:
                mom *= self.momentum
                mom -= lr * g
                weight += mom

    def fused_step(self, indices, weights, grads, states):
        lrs, wds = self._lr_array(indices), self._wd_array(indices)
        lrs = lrs * self._trust_ratios(indices, weights, grads, states, lrs, wds)
        if self.momentum == 0.0:
            self._launch(sgd_kernels.multi_sgd_update_cpu, indices, weights, grads, states, lrs, wds,
                         (self.rescale_grad, self._clip_bound()), n_states=0)
        else:
            self._launch(sgd_kernels.multi_sgd_mom_update_cpu, indices, weights, grads, states, lrs,
                         wds, (self._momentum_now(), self.rescale_grad, self._clip_bound()), n_states=1)

    def _trust_ratios(self, indices, weights, grads, states, lrs, wds):
        """Each tensor's trust ratio (1 where it gets none): from the whole tensors of a lazy
        row-sparse update, else from one reduction over the chunk."""
        plan = _plan.plan_of(weights)
        if plan is not None and plan.rows:
            return self._row_ratios(plan)
        use = self._uses_trust(indices)
        if not use.any():
            return np.ones(len(indices))
        sums = launch_sums(self, norm_kernels.multi_sum_sq_cpu, indices, weights, grads, states,
                           lrs, wds, (abs(self.rescale_grad),))
        return self._ratios(use, np.sqrt(sums[:, 0]), np.sqrt(sums[:, 1]), wds)

    def _momentum_now(self):
        """The momentum of this step's kernel (MXNet 1.x rescales it when lr changes)."""
        return self.momentum


def _host(a):
    return a if isinstance(a, np.ndarray) else _device.to_host(a)
