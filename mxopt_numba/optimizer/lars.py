"""LARS: SGD with a layer-wise trust ratio; also home of ``launch_sums``, the phase-1
launcher the layer-wise optimizers (LARS, LAMB, LANS, LBSGD) share."""
import numpy as np

from ..kernels import norms as norm_kernels
from ..kernels import sgd as sgd_kernels
from ..sparse import RowSparseArray
from .optimizer import DefaultValue, Optimizer, _as_lists, _real, register

__all__ = ["LARS"]

#: names ending like this keep their learning rate (MXNet's rule)
_NO_TRUST_SUFFIXES = ("gamma", "beta", "bias")


def launch_sums(opt, kernel, indices, weights, grads, states, lrs, wds, scalars=(), coefs=None,
                n_states=None):
    """Run a reduction kernel over the chunk (one call per storage layout, usually one) and
    return its per-tensor float64 sums as an array with one row per tensor.

    Same arguments as :meth:`Optimizer._launch`, which scatters each launch's rows back
    into call order.
    """
    plan = opt._active
    if plan is None or plan.indices is not indices:
        plan = opt._plan(indices, weights, grads, states)
    if plan.slots is None:
        # a row plan (lazy row_sparse update) addresses rows: its sums would not be norms
        raise RuntimeError("per-tensor sums need whole tensors, not the rows of a lazy update")
    sums = opt._launch(kernel, indices, weights, grads, states, lrs, wds, scalars, coefs, n_states)
    if sums is None:
        sums = np.zeros((len(weights), 2), dtype=np.float64)
    # under sharded distributed training a tensor's sums are partial: add them up across
    # processes (every process calls this the same number of times)
    reducer = opt.norm_reducer
    return sums if reducer is None else reducer(sums)


def l2norm(x):
    """``||x||`` accumulated in float64 (the kernels' precision, whatever ``x``'s dtype)."""
    return np.sqrt(np.sum(np.square(x, dtype=np.float64)))


def trust_ratios(r1, r2):
    """``r1 / r2`` where both are non-zero, else 1 (MXNet's LAMB/LANS kernels; NaN stays NaN)."""
    ok = (r1 != 0) & (r2 != 0)
    return np.where(ok, r1 / np.where(ok, r2, 1.0), 1.0)


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

    fused_by_default = True

    def __init__(self, learning_rate=DefaultValue(0.1), momentum=0.0, eta=0.001, epsilon=1e-8,
                 lazy_update=False, use_fused_step=True, aggregate_num=1, **kwargs):
        super().__init__(learning_rate=learning_rate, use_fused_step=use_fused_step,
                         aggregate_num=aggregate_num, **kwargs)
        self.momentum = _non_negative("momentum", momentum)
        self.eta = _non_negative("eta", eta)
        self.epsilon = _non_negative("epsilon", epsilon)
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

    def _whole_tensor_ratios(self, indices, weights, grads, states):
        """Trust ratios from whole tensors, for lazy updates (whose kernels see only the
        listed rows); a row_sparse gradient's norm is the norm of its rows."""
        checked = self._validated(weights, grads, states)
        use = self._uses_trust(indices)
        w_norm = np.array([l2norm(w if m is None else m) for w, _, m, _ in checked])
        g_norm = np.array([l2norm((g.data if isinstance(g, RowSparseArray) else g) * self.rescale_grad)
                           for _, g, _, _ in checked])
        ratios = self._ratios(use, w_norm, g_norm, self._wd_array(indices))
        return dict(zip(indices, ratios.tolist()))

    def _given_ratios(self, indices):
        ratios = self.__dict__.get("_lazy_ratios")
        if ratios is None:
            return None
        return np.array([ratios[i] for i in indices], dtype=np.float64)

    # ------------------------------------------------------------------ update paths
    def update(self, indices, weights, grads, states):
        """As :meth:`Optimizer.update`; a lazy update of row_sparse gradients takes its
        trust ratios from the whole tensors first."""
        if self.sparse_updates_rows():
            idx, ws, gs, ss = _as_lists(indices, weights, grads, states)
            if any(isinstance(g, RowSparseArray) for g in gs):
                self._lazy_ratios = self._whole_tensor_ratios(idx, ws, gs, ss)
                try:
                    return super().update(indices, weights, grads, states)
                finally:
                    del self._lazy_ratios
        return super().update(indices, weights, grads, states)

    def step(self, indices, weights, grads, states):
        use = self._uses_trust(indices)
        lrs, wds = self._lr_array(indices).tolist(), self._wd_array(indices).tolist()
        given = self._given_ratios(indices)
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
        use = self._uses_trust(indices)
        given = self._given_ratios(indices)
        if given is not None:
            lrs = lrs * given
        elif use.any():
            sums = launch_sums(self, norm_kernels.multi_sum_sq_cpu, indices, weights, grads, states,
                               lrs, wds, (abs(self.rescale_grad),))
            lrs = lrs * self._ratios(use, np.sqrt(sums[:, 0]), np.sqrt(sums[:, 1]), wds)
        if self.momentum == 0.0:
            self._launch(sgd_kernels.multi_sgd_update_cpu, indices, weights, grads, states, lrs, wds,
                         (self.rescale_grad, self._clip_bound()), n_states=0)
        else:
            self._launch(sgd_kernels.multi_sgd_mom_update_cpu, indices, weights, grads, states, lrs,
                         wds, (self.momentum, self.rescale_grad, self._clip_bound()), n_states=1)


def _non_negative(name, value):
    value = _real(name, value)
    if not value >= 0.0:
        raise ValueError("%s must be >= 0, got %r" % (name, value))
    return value
