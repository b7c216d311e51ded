"""MXNet's optimizer update operators (``mx.nd.sgd_update`` and friends) on NumPy arrays.

Each operator updates its arrays in place (or writes the new weight into ``out``) by
running the fused path of the optimizer class with the same rule, so there is one copy
of every rule (``kernels/<rule>.py``).  Names, argument order and keyword defaults are
MXNet 2.x's; the multi-tensor operators take the arrays flattened in one sequence
(weight, gradient, states... per tensor) and per-tensor ``lrs``/``wds``.

Notation in the formulas: ``g' = clip(rescale_grad * grad)`` with clipping off for
``clip_gradient <= 0`` (MXNet's documented meaning; its kernels clip to 0 for exactly 0).
Row-sparse gradients (:func:`mxopt_numba.sparse.row_sparse_array`) are accepted where
MXNet accepts them; with ``lazy_update`` only their rows are touched.

Each function returns the updated weight (a list for the multi-tensor operators).
"""
import numpy as np

from ..optimizer.adagrad import AdaGrad as _AdaGrad
from ..optimizer.adam import Adam as _Adam
from ..optimizer.ftml import FTML as _FTML
from ..optimizer.ftrl import Ftrl as _Ftrl
from ..optimizer.lamb import LAMB as _LAMB
from ..optimizer.nag import NAG as _NAG
from ..optimizer.rmsprop import RMSProp as _RMSProp
from ..optimizer.sgd import SGD as _SGD
from ..optimizer.signum import Signum as _Signum
from . import contrib
from ..kernels import lamb as _k_lamb
from ._ops import clip_value, launch, per_tensor, run, scalar, split_data
from .contrib import multi_lamb_update, multi_lans_update, multi_mp_lamb_update, multi_mp_lans_update

__all__ = ["adagrad_update", "adam_update", "contrib", "ftml_update", "ftrl_update", "lamb_update_phase1",
           "lamb_update_phase2", "mp_lamb_update_phase1", "mp_lamb_update_phase2", "mp_nag_mom_update",
           "mp_sgd_mom_update", "mp_sgd_update", "multi_lamb_update", "multi_lans_update", "multi_mp_lamb_update",
           "multi_mp_lans_update",
           "multi_mp_sgd_mom_update", "multi_mp_sgd_update", "multi_sgd_mom_update",
           "multi_sgd_update", "nag_mom_update", "preloaded_multi_mp_sgd_mom_update",
           "preloaded_multi_mp_sgd_update", "preloaded_multi_sgd_mom_update", "preloaded_multi_sgd_update",
           "rmsprop_update", "rmspropalex_update", "sgd_mom_update", "sgd_update", "signsgd_update",
           "signum_update"]


# ---------------------------------------------------------------------- rule variants
# The optimizer classes skip the momentum kernels when momentum is 0 (their state is then
# None); the operators always get a momentum array and must update it.

def _momentum_state(self, index, weight):
    """The momentum operators always take a momentum array, whatever the momentum."""
    return np.zeros(weight.shape, dtype=weight.dtype)


class _SGDMomentum(_SGD):
    create_state = _momentum_state

    def fused_step(self, indices, weights, grads, states):
        from ..kernels import sgd as k
        self._launch(k.multi_sgd_mom_update_cpu, indices, weights, grads, states,
                     self._lr_array(indices), self._wd_array(indices),
                     (self.momentum, self.rescale_grad, self._clip_bound()), n_states=1)


class _NAGMomentum(_NAG):
    create_state = _momentum_state

    def fused_step(self, indices, weights, grads, states):
        from ..kernels import nag as k
        self._launch(k.multi_nag_mom_update_cpu, indices, weights, grads, states,
                     self._lr_array(indices), self._wd_array(indices),
                     (self.momentum, self.rescale_grad, self._clip_bound()), n_states=1)


class _SignumMomentum(_Signum):
    create_state = _momentum_state

    def fused_step(self, indices, weights, grads, states):
        from ..kernels import signum as k
        lrs, wds = self._lr_array(indices), self._wd_array(indices)
        self._launch(k.multi_signum_update_cpu, indices, weights, grads, states, lrs, wds,
                     (self.momentum, 1.0 - self.momentum, self.rescale_grad, self._clip_bound()),
                     coefs=1.0 - lrs * self.wd_lh)


class _AdamUncorrected(_Adam):
    # the operator's lr is used as given (the optimizer folds the bias correction into it)
    def _corrected_lrs(self, indices):
        return self._lr_array(indices)


def _sgd(momentum, lazy_update, rescale_grad, clip_gradient, mp, lr=1.0, wd=1.0):
    cls = _SGD if momentum is None else _SGDMomentum
    return cls(learning_rate=scalar("lr", lr), wd=scalar("wd", wd), momentum=momentum or 0.0,
               lazy_update=bool(lazy_update), rescale_grad=scalar("rescale_grad", rescale_grad),
               clip_gradient=clip_value(clip_gradient), multi_precision=mp)


# ---------------------------------------------------------------------- SGD

def sgd_update(weight, grad, lr, wd=0.0, rescale_grad=1.0, clip_gradient=-1.0, lazy_update=True, out=None):
    """SGD step: ``weight <- weight - lr * (g' + wd * weight)``.

    With a row_sparse ``grad`` and ``lazy_update``, only the listed rows change (their
    weight decay included); otherwise every row decays."""
    opt = _sgd(None, lazy_update, rescale_grad, clip_gradient, False, lr, wd)
    return run(opt, [weight], [grad], [None], out)[0]


def sgd_mom_update(weight, grad, mom, lr, momentum=0.0, wd=0.0, rescale_grad=1.0, clip_gradient=-1.0,
                   lazy_update=True, out=None):
    """SGD with momentum: ``mom <- momentum * mom - lr * (g' + wd * weight)``;
    ``weight <- weight + mom``.  Lazy row_sparse updates touch the listed rows only."""
    opt = _sgd(momentum, lazy_update, rescale_grad, clip_gradient, False, lr, wd)
    return run(opt, [weight], [grad], [mom], out)[0]


def mp_sgd_update(weight, grad, weight32, lr, wd=0.0, rescale_grad=1.0, clip_gradient=-1.0,
                  lazy_update=True, out=None):
    """Multi-precision SGD: the rule of :func:`sgd_update` on the float32 master
    ``weight32`` (gradient read in its own dtype), then ``weight <- weight32`` rounded."""
    opt = _sgd(None, lazy_update, rescale_grad, clip_gradient, True, lr, wd)
    return run(opt, [weight], [grad], [(weight32, None)], out)[0]


def mp_sgd_mom_update(weight, grad, mom, weight32, lr, momentum=0.0, wd=0.0, rescale_grad=1.0,
                      clip_gradient=-1.0, lazy_update=True, out=None):
    """Multi-precision SGD with momentum: :func:`sgd_mom_update` on the float32 master
    ``weight32`` and float32 ``mom``, then ``weight <- weight32`` rounded."""
    opt = _sgd(momentum, lazy_update, rescale_grad, clip_gradient, True, lr, wd)
    return run(opt, [weight], [grad], [(weight32, mom)], out)[0]


def _multi_sgd(data, per, lrs, wds, momentum, rescale_grad, clip_gradient, num_weights, out, name):
    groups = split_data(data, per, num_weights, name)
    mp = per in (3, 4) and (per == 4 or momentum is None)
    opt = per_tensor(_sgd(momentum, False, rescale_grad, clip_gradient, mp), lrs, wds, len(groups))
    weights = [g[0] for g in groups]
    grads = [g[1] for g in groups]
    if momentum is None:
        states = [(g[2], None) for g in groups] if mp else [None] * len(groups)
    else:
        states = [(g[3], g[2]) for g in groups] if mp else [g[2] for g in groups]
    return run(opt, weights, grads, states, out)


def multi_sgd_update(*data, lrs, wds, rescale_grad=1.0, clip_gradient=-1.0, num_weights=None, out=None):
    """:func:`sgd_update` on many tensors in one launch; ``data`` is ``weight_0, grad_0,
    weight_1, grad_1, ...`` and tensor ``i`` uses ``lrs[i]``, ``wds[i]``."""
    return _multi_sgd(data, 2, lrs, wds, None, rescale_grad, clip_gradient, num_weights, out,
                      "multi_sgd_update")


def multi_sgd_mom_update(*data, lrs, wds, momentum=0.0, rescale_grad=1.0, clip_gradient=-1.0,
                         num_weights=None, out=None):
    """:func:`sgd_mom_update` on many tensors; ``data`` is ``weight, grad, mom`` per tensor."""
    return _multi_sgd(data, 3, lrs, wds, momentum, rescale_grad, clip_gradient, num_weights, out,
                      "multi_sgd_mom_update")


def multi_mp_sgd_update(*data, lrs, wds, rescale_grad=1.0, clip_gradient=-1.0, num_weights=None, out=None):
    """:func:`mp_sgd_update` on many tensors; ``data`` is ``weight, grad, weight32`` per
    tensor."""
    return _multi_sgd(data, 3, lrs, wds, None, rescale_grad, clip_gradient, num_weights, out,
                      "multi_mp_sgd_update")


def multi_mp_sgd_mom_update(*data, lrs, wds, momentum=0.0, rescale_grad=1.0, clip_gradient=-1.0,
                            num_weights=None, out=None):
    """:func:`mp_sgd_mom_update` on many tensors; ``data`` is ``weight, grad, mom,
    weight32`` per tensor."""
    return _multi_sgd(data, 4, lrs, wds, momentum, rescale_grad, clip_gradient, num_weights, out,
                      "multi_mp_sgd_mom_update")


def _preloaded(data, per, momentum, rescale_grad, clip_gradient, num_weights, out, name):
    if len(data) < 2:
        raise ValueError("%s needs the arrays of lrs and wds as its last two inputs" % name)
    *arrays, lrs, wds = data
    return _multi_sgd(arrays, per, lrs, wds, momentum, rescale_grad, clip_gradient, num_weights, out, name)


def preloaded_multi_sgd_update(*data, rescale_grad=1.0, clip_gradient=-1.0, num_weights=None, out=None):
    """:func:`multi_sgd_update` with the learning rates and weight decays given as the last
    two arrays of ``data`` (``..., lrs, wds``)."""
    return _preloaded(data, 2, None, rescale_grad, clip_gradient, num_weights, out,
                      "preloaded_multi_sgd_update")


def preloaded_multi_sgd_mom_update(*data, momentum=0.0, rescale_grad=1.0, clip_gradient=-1.0,
                                   num_weights=None, out=None):
    """:func:`multi_sgd_mom_update` with ``lrs`` and ``wds`` as the last two arrays."""
    return _preloaded(data, 3, momentum, rescale_grad, clip_gradient, num_weights, out,
                      "preloaded_multi_sgd_mom_update")


def preloaded_multi_mp_sgd_update(*data, rescale_grad=1.0, clip_gradient=-1.0, num_weights=None, out=None):
    """:func:`multi_mp_sgd_update` with ``lrs`` and ``wds`` as the last two arrays."""
    return _preloaded(data, 3, None, rescale_grad, clip_gradient, num_weights, out,
                      "preloaded_multi_mp_sgd_update")


def preloaded_multi_mp_sgd_mom_update(*data, momentum=0.0, rescale_grad=1.0, clip_gradient=-1.0,
                                      num_weights=None, out=None):
    """:func:`multi_mp_sgd_mom_update` with ``lrs`` and ``wds`` as the last two arrays."""
    return _preloaded(data, 4, momentum, rescale_grad, clip_gradient, num_weights, out,
                      "preloaded_multi_mp_sgd_mom_update")


# ---------------------------------------------------------------------- NAG, Signum

def _nag(momentum, wd, lr, rescale_grad, clip_gradient, mp):
    return _NAGMomentum(learning_rate=scalar("lr", lr), wd=scalar("wd", wd),
                        momentum=scalar("momentum", momentum),
                        rescale_grad=scalar("rescale_grad", rescale_grad),
                        clip_gradient=clip_value(clip_gradient), multi_precision=mp)


def nag_mom_update(weight, grad, mom, lr, momentum=0.0, wd=0.0, rescale_grad=1.0, clip_gradient=-1.0,
                   out=None):
    """Nesterov momentum (MXNet 2.x): with ``gw = g' + wd * weight`` (the weight before
    the step), ``mom <- momentum * mom - lr * gw``;
    ``weight <- weight + momentum * mom - lr * gw``."""
    return run(_nag(momentum, wd, lr, rescale_grad, clip_gradient, False), [weight], [grad], [mom], out)[0]


def mp_nag_mom_update(weight, grad, mom, weight32, lr, momentum=0.0, wd=0.0, rescale_grad=1.0,
                      clip_gradient=-1.0, out=None):
    """:func:`nag_mom_update` on the float32 master ``weight32``, then the rounded copy."""
    return run(_nag(momentum, wd, lr, rescale_grad, clip_gradient, True), [weight], [grad],
               [(weight32, mom)], out)[0]


def signsgd_update(weight, grad, lr, wd=0.0, rescale_grad=1.0, clip_gradient=-1.0, out=None):
    """signSGD: ``weight <- (1 - lr * wd) * weight - lr * sign(grad)`` (rescaling and
    clipping cannot change the sign and are ignored, as in MXNet)."""
    opt = _Signum(learning_rate=scalar("lr", lr), wd=scalar("wd", wd), momentum=0.0,
                  rescale_grad=scalar("rescale_grad", rescale_grad), clip_gradient=clip_value(clip_gradient))
    return run(opt, [weight], [grad], [None], out)[0]


def signum_update(weight, grad, mom, lr, momentum=0.0, wd=0.0, rescale_grad=1.0, clip_gradient=-1.0,
                  wd_lh=0.0, out=None):
    """Signum: ``mom <- momentum * mom - (1 - momentum) * (g' + wd * weight)``;
    ``weight <- (1 - lr * wd_lh) * weight + lr * sign(mom)``."""
    opt = _SignumMomentum(learning_rate=scalar("lr", lr), wd=scalar("wd", wd),
                          momentum=scalar("momentum", momentum),
                          wd_lh=scalar("wd_lh", wd_lh), rescale_grad=scalar("rescale_grad", rescale_grad),
                          clip_gradient=clip_value(clip_gradient))
    return run(opt, [weight], [grad], [mom], out)[0]


# ---------------------------------------------------------------------- adaptive rules

def adam_update(weight, grad, mean, var, lr, beta1=0.9, beta2=0.999, epsilon=1e-8, wd=0.0, rescale_grad=1.0,
                clip_gradient=-1.0, lazy_update=True, out=None):
    """Adam step without bias correction (callers fold it into ``lr``), MXNet 2.x:
    ``gw = g' + wd * weight``; ``mean <- beta1 * mean + (1 - beta1) * gw``;
    ``var <- beta2 * var + (1 - beta2) * gw^2``;
    ``weight <- weight - lr * mean / (sqrt(var) + epsilon)``.
    Lazy row_sparse updates touch the listed rows only."""
    opt = _AdamUncorrected(learning_rate=scalar("lr", lr), wd=scalar("wd", wd), beta1=beta1, beta2=beta2,
                           epsilon=epsilon, lazy_update=bool(lazy_update),
                           rescale_grad=scalar("rescale_grad", rescale_grad),
                           clip_gradient=clip_value(clip_gradient))
    return run(opt, [weight], [grad], [(mean, var)], out)[0]


def rmsprop_update(weight, grad, n, lr, rho=0.95, epsilon=1e-8, wd=0.0, rescale_grad=1.0, clip_gradient=-1.0,
                   clip_weights=-1.0, out=None):
    """RMSProp (MXNet 2.x): ``gw = g' + wd * weight``; ``n <- rho * n + (1 - rho) * gw^2``;
    ``weight <- weight - lr * gw / (sqrt(n) + epsilon)``, then clipped to
    ``[-clip_weights, clip_weights]`` when ``clip_weights > 0``."""
    opt = _RMSProp(learning_rate=scalar("lr", lr), wd=scalar("wd", wd), rho=rho, epsilon=epsilon,
                   centered=False, clip_weights=scalar("clip_weights", clip_weights),
                   rescale_grad=scalar("rescale_grad", rescale_grad),
                   clip_gradient=clip_value(clip_gradient))
    return run(opt, [weight], [grad], [n], out)[0]


def rmspropalex_update(weight, grad, n, g, delta, lr, rho=0.95, momentum=0.9, epsilon=1e-8, wd=0.0,
                       rescale_grad=1.0, clip_gradient=-1.0, clip_weights=-1.0, out=None):
    """Centered RMSProp (Graves), MXNet 2.x binding: ``n`` is the running mean of ``gw``,
    ``g`` the running mean of ``gw^2``:
    ``n <- rho * n + (1 - rho) * gw``; ``g <- rho * g + (1 - rho) * gw^2``;
    ``delta <- momentum * delta - lr * gw / sqrt(g - n^2 + epsilon)``;
    ``weight <- weight + delta`` (then ``clip_weights`` as in :func:`rmsprop_update`)."""
    opt = _RMSProp(learning_rate=scalar("lr", lr), wd=scalar("wd", wd), rho=rho, momentum=momentum,
                   epsilon=epsilon, centered=True, clip_weights=scalar("clip_weights", clip_weights),
                   rescale_grad=scalar("rescale_grad", rescale_grad), clip_gradient=clip_value(clip_gradient))
    return run(opt, [weight], [grad], [(n, g, delta)], out)[0]


def ftrl_update(weight, grad, z, n, lr, lamda1=0.01, beta=1.0, wd=0.0, rescale_grad=1.0, clip_gradient=-1.0,
                out=None):
    """FTRL-proximal: ``sigma = (sqrt(n + g'^2) - sqrt(n)) / lr``;
    ``z <- z + g' - sigma * weight``; ``n <- n + g'^2``;
    ``weight <- -sign(z) * max(|z| - lamda1, 0) / ((beta + sqrt(n)) / lr + wd)``."""
    opt = _Ftrl(learning_rate=scalar("lr", lr), wd=scalar("wd", wd), lamda1=lamda1, beta=beta,
                rescale_grad=scalar("rescale_grad", rescale_grad), clip_gradient=clip_value(clip_gradient))
    return run(opt, [weight], [grad], [(z, n)], out)[0]


def ftml_update(weight, grad, d, v, z, lr, t, beta1=0.6, beta2=0.999, epsilon=1e-8, wd=0.0, rescale_grad=1.0,
                clip_grad=-1.0, out=None):
    """FTML at step ``t``: ``gw = g' + wd * weight``; ``v <- beta2 * v + (1 - beta2) * gw^2``;
    ``d_t = (1 - beta1^t) / lr * (sqrt(v / (1 - beta2^t)) + epsilon)``;
    ``z <- beta1 * z + (1 - beta1) * gw - (d_t - beta1 * d) * weight``; ``d <- d_t``;
    ``weight <- -z / d_t``."""
    t = int(t)
    if t < 1:
        raise ValueError("t must be the step number, >= 1, got %r" % t)
    opt = _FTML(learning_rate=scalar("lr", lr), wd=scalar("wd", wd), beta1=beta1, beta2=beta2,
                epsilon=epsilon, begin_num_update=t - 1, rescale_grad=scalar("rescale_grad", rescale_grad),
                clip_gradient=clip_value(clip_grad))
    return run(opt, [weight], [grad], [(d, v, z)], out)[0]


def adagrad_update(weight, grad, history, lr, epsilon=1e-7, wd=0.0, rescale_grad=1.0, clip_gradient=-1.0,
                   out=None):
    """AdaGrad (MXNet 2.x): ``gw = g' + wd * weight``; ``history <- history + gw^2``;
    ``weight <- weight - lr * gw / (sqrt(history) + epsilon)``.  With a row_sparse
    ``grad`` and ``wd`` 0 only the listed rows are touched (MXNet's sparse kernel)."""
    opt = _AdaGrad(learning_rate=scalar("lr", lr), wd=scalar("wd", wd), epsilon=epsilon,
                   rescale_grad=scalar("rescale_grad", rescale_grad), clip_gradient=clip_value(clip_gradient))
    return run(opt, [weight], [grad], [history], out)[0]


# ---------------------------------------------------------------------- LAMB in two phases

def _lamb_phase1(weight, grad, mean, var, weight32, beta1, beta2, epsilon, t, bias_correction, wd,
                 rescale_grad, clip_gradient, out):
    t = int(t)
    if t < 1:
        raise ValueError("t must be the step number, >= 1, got %r" % t)
    opt = _LAMB(learning_rate=1.0, wd=scalar("wd", wd), beta1=beta1, beta2=beta2, epsilon=epsilon,
                bias_correction=bool(bias_correction), rescale_grad=scalar("rescale_grad", rescale_grad),
                clip_gradient=clip_value(clip_gradient), multi_precision=weight32 is not None)
    opt._index_update_count[0] = t
    r = np.empty(weight.shape, dtype=mean.dtype) if out is None else out
    inner = (mean, var, r)
    state = inner if weight32 is None else (weight32, inner)
    scalars = (opt.beta1, 1.0 - opt.beta1, opt.beta2, 1.0 - opt.beta2, opt.epsilon, opt.rescale_grad,
               opt._clip_bound())
    launch(opt, _k_lamb.multi_lamb_direction_cpu, [weight], [grad], [state], scalars,
           opt._bias_corrections([0]), n_states=3)
    return r


def lamb_update_phase1(weight, grad, mean, var, beta1=0.9, beta2=0.999, epsilon=1e-6, t=1,
                       bias_correction=True, wd=0.0, rescale_grad=1.0, clip_gradient=-1.0, out=None):
    """LAMB, first half: ``mean <- beta1 * mean + (1 - beta1) * g'``;
    ``var <- beta2 * var + (1 - beta2) * g'^2``; returns (or writes into ``out``)
    ``r = mean_hat / (sqrt(var_hat) + epsilon) + wd * weight`` with
    ``mean_hat = mean / (1 - beta1^t)``, ``var_hat = var / (1 - beta2^t)`` when
    ``bias_correction`` (else the moments themselves).  The weight is not changed."""
    return _lamb_phase1(weight, grad, mean, var, None, beta1, beta2, epsilon, t, bias_correction, wd,
                        rescale_grad, clip_gradient, out)


def mp_lamb_update_phase1(weight, grad, mean, var, weight32, beta1=0.9, beta2=0.999, epsilon=1e-6, t=1,
                          bias_correction=True, wd=0.0, rescale_grad=1.0, clip_gradient=-1.0, out=None):
    """:func:`lamb_update_phase1` with the float32 master ``weight32`` in the decay term."""
    return _lamb_phase1(weight, grad, mean, var, weight32, beta1, beta2, epsilon, t, bias_correction, wd,
                        rescale_grad, clip_gradient, out)


def _lamb_phase2(weight, g, r1, r2, weight32, lr, lower_bound, upper_bound, out):
    lower, upper = scalar("lower_bound", lower_bound), scalar("upper_bound", upper_bound)
    opt = _LAMB(learning_rate=scalar("lr", lr), lower_bound=lower if lower > 0 else None,
                upper_bound=upper if upper > 0 else None, multi_precision=weight32 is not None)
    trust = opt._trust(np.array([scalar("r1", r1)]), np.array([scalar("r2", r2)]))
    state = None if weight32 is None else (weight32, None)
    return launch(opt, _k_lamb.multi_lamb_apply_cpu, [weight], [g], [state], n_states=0,
                  lrs=opt._lr_array([0]) * trust, out=out)[0]


def lamb_update_phase2(weight, g, r1, r2, lr, lower_bound=-1.0, upper_bound=-1.0, out=None):
    """LAMB, second half: ``r1`` (the weight's norm) is raised to ``lower_bound`` and
    lowered to ``upper_bound`` when those are > 0; ``weight <- weight - lr * (r1 / r2 if
    both are non-zero else 1) * g``, with ``g`` from :func:`lamb_update_phase1` and
    ``r2 = ||g||``."""
    return _lamb_phase2(weight, g, r1, r2, None, lr, lower_bound, upper_bound, out)


def mp_lamb_update_phase2(weight, g, r1, r2, weight32, lr, lower_bound=-1.0, upper_bound=-1.0, out=None):
    """:func:`lamb_update_phase2` on the float32 master ``weight32``, then the rounded copy."""
    return _lamb_phase2(weight, g, r1, r2, weight32, lr, lower_bound, upper_bound, out)
