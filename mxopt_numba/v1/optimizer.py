"""MXNet 1.9.1's ``mxnet.optimizer``: 1.x names, constructors, defaults, update formulas
and state layouts, as thin subclasses of the 2.x optimizers.

Where 1.x only differs in defaults or argument names, a class here passes the 1.x values
to its 2.x parent.  Where the update formula differs, the 2.x parent's launch runs the
1.x rule of the same kernel module instead (``kernels/<rule>.py``: ``*_v1_*``, same
signature and table; ``rules_1x`` maps one to the other), on the CPU and on the GPU.

1.x facts kept here (MXNet 1.9.1):

* base class: ``aggregate_num`` 0 (the Updater calls one index at a time), and
  ``set_wd_mult`` gives weight decay 0 to every name in ``param_idx2name`` that ends
  neither in ``_weight`` nor in ``_gamma`` (LARS: only ``_weight`` keeps it);
* SGD, ccSGD, NAG, LARS keep the multi-precision state as ``(state, weight32)``;
* SGD/LARS aggregate 4 tensors (``MXNET_OPTIMIZER_AGGREGATION_SIZE``), LAMB 45;
* ``Test`` adds the rescaled gradient and does not count updates.

The library's documented fixes stay: ``clip_gradient`` 0 or None means no clipping,
schedulers keep their ``base_lr`` unless ``learning_rate`` is passed, gradients are never
modified, no cap on tensors per launch.
"""
import os

import numpy as np

from .. import registry as _registry_mod
from ..kernels import adadelta as _k_adadelta
from ..kernels import adagrad as _k_adagrad
from ..kernels import adam as _k_adam
from ..kernels import adamax as _k_adamax
from ..kernels import dcasgd as _k_dcasgd
from ..kernels import ftml as _k_ftml
from ..kernels import groupadagrad as _k_group
from ..kernels import nadam as _k_nadam
from ..kernels import nag as _k_nag
from ..kernels import rmsprop as _k_rmsprop
from ..kernels import testrule as _k_test
from ..optimizer import optimizer as _base
from ..optimizer import updater as _updater
from ..optimizer.adadelta import AdaDelta as _AdaDelta
from ..optimizer.adagrad import AdaGrad as _AdaGrad
from ..optimizer.adam import Adam as _Adam
from ..optimizer.adamax import Adamax as _Adamax
from ..optimizer.dcasgd import DCASGD as _DCASGD
from ..optimizer.ftml import FTML as _FTML
from ..optimizer.ftrl import Ftrl as _Ftrl
from ..optimizer.groupadagrad import GroupAdaGrad as _GroupAdaGrad
from ..optimizer.lamb import LAMB as _LAMB
from ..optimizer.lars import LARS as _LARS
from ..optimizer.lbsgd import LBSGD as _LBSGD
from ..optimizer.nadam import Nadam as _Nadam
from ..optimizer.nag import NAG as _NAG
from ..optimizer.rmsprop import RMSProp as _RMSProp
from ..optimizer.sgd import SGD as _SGD
from ..optimizer.sgld import SGLD as _SGLD
from ..optimizer.signum import Signum as _Signum
from ..optimizer.testrule import Test as _Test

__all__ = ["AdaDelta", "AdaGrad", "Adam", "Adamax", "DCASGD", "FTML", "Ftrl", "GroupAdaGrad", "LAMB",
           "LARS", "LBSGD", "NAG", "Nadam", "Optimizer", "RMSProp", "SGD", "SGLD", "Signum", "Test",
           "Updater", "ccSGD", "create", "get_updater", "register"]

_registry = _registry_mod.Registry(_base.Optimizer, "optimizer")


def _env_aggregate(default):
    return int(os.getenv("MXNET_OPTIMIZER_AGGREGATION_SIZE", str(default)))


def _no_2x_args(cls, kwargs):
    if "use_fused_step" in kwargs:
        raise TypeError("%s (MXNet 1.x) got an unexpected keyword argument 'use_fused_step'" % cls.__name__)
    return kwargs


# ---------------------------------------------------------------------- 1.x base behaviour

class _V1:
    """What every 1.x optimizer shares (placed before the 2.x parent in the MRO)."""

    opt_registry = _registry._classes

    #: name suffixes that keep their weight decay under ``param_idx2name``
    _decayed_suffixes = ("_weight", "_gamma")

    @staticmethod
    def register(klass):
        return _registry.register(klass)

    @staticmethod
    def create_optimizer(name, **kwargs):
        return _registry.create(name, **kwargs)

    def set_wd_mult(self, args_wd_mult):
        """As in 2.x, but first every named parameter not ending in ``_weight`` or
        ``_gamma`` gets weight decay 0 (MXNet 1.x's rule for biases and betas)."""
        table = {n: 0.0 for n in self.idx2name.values()
                 if not (isinstance(n, str) and n.endswith(self._decayed_suffixes))}
        table.update(self._mults_from_sym("__wd_mult__"))
        table.update(_base._mult_dict("args_wd_mult", args_wd_mult))
        self.wd_mult = table

    def _set_current_context(self, device_id):
        """MXNet 1.x's name of ``_set_current_device``."""
        self._set_current_device(device_id)


class _StateFirstMP:
    """1.x SGD, NAG and LARS keep ``(state, weight32)``; the 2.x kernels read
    ``(weight32, state)``, so the pair is handed over swapped (one cached tuple per state,
    so the launch plans stay cached)."""

    def create_state_multi_precision(self, index, weight):
        state = super().create_state_multi_precision(index, weight)
        if self.uses_master(weight):
            master, inner = state
            return (inner, master)
        return state

    def _swapped(self, state):
        cache = self.__dict__.setdefault("_mp_swapped", {})
        hit = cache.get(id(state))
        if hit is not None and hit[0] is state:
            return hit[1]
        pair = (state[1], state[0])
        if len(cache) > 65536:
            cache.clear()
        cache[id(state)] = (state, pair)
        return pair

    def update_multi_precision(self, indices, weights, grads, states):
        if _base._is_index(indices):
            if self.uses_master(weights):
                states = self._swapped(states)
        else:
            states = [self._swapped(s) if self.uses_master(w) else s for w, s in zip(weights, states)]
        return super().update_multi_precision(indices, weights, grads, states)

    def __getstate__(self):
        ret = super().__getstate__()
        ret.pop("_mp_swapped", None)
        return ret


class _Rules1x:
    """Where the 2.x parent launches a kernel whose rule changed in 2.x, launch the 1.x
    rule instead: same module, same signature and table, ``*_v1_*`` in the name."""

    #: 2.x kernel -> 1.x kernel
    rules_1x = {}

    def _launch(self, kernel, *args, **kwargs):
        return super()._launch(self.rules_1x.get(kernel, kernel), *args, **kwargs)


# ---------------------------------------------------------------------- the base class

class Optimizer(_V1, _base.Optimizer):
    """MXNet 1.x base class: ``Optimizer(rescale_grad=1.0, param_idx2name=None, wd=0.0,
    clip_gradient=None, learning_rate=None, lr_scheduler=None, sym=None,
    begin_num_update=0, multi_precision=False, param_dict=None)``.

    Subclass it the 1.x way (``create_state`` and ``update(index, weight, grad, state)``,
    registered with :func:`register`); ``aggregate_num`` is 0, so the Updater calls
    ``update`` one index at a time.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("aggregate_num", 0)
        super().__init__(**_no_2x_args(type(self), kwargs))


register = _registry.register


def create(name, **kwargs):
    """Create a 1.x optimizer by registered name (case-insensitive)."""
    return _registry.create(name, **kwargs)


# ---------------------------------------------------------------------- SGD family

@register
class SGD(_V1, _StateFirstMP, _SGD):
    """MXNet 1.x SGD: ``SGD(momentum=0.0, lazy_update=True, **kwargs)``, learning rate
    0.01 unless given, 4 tensors per launch, multi-precision state ``(mom, weight32)``.
    Same rule as :class:`mxopt_numba.optimizer.SGD`."""

    def __init__(self, momentum=0.0, lazy_update=True, **kwargs):
        kwargs = _no_2x_args(type(self), kwargs)
        kwargs.setdefault("learning_rate", None)
        kwargs.setdefault("aggregate_num", _env_aggregate(4))
        super().__init__(momentum=momentum, lazy_update=lazy_update, **kwargs)


@register
class ccSGD(SGD):  # noqa: N801  (MXNet's registered name)
    """MXNet 1.x's deprecated alias of :class:`SGD`."""


@register
class NAG(_V1, _Rules1x, _StateFirstMP, _NAG):
    """MXNet 1.x NAG: ``NAG(momentum=0.0, **kwargs)``, learning rate 0.01 unless given,
    multi-precision state ``(mom, weight32)``.  1.x updates the weight before the momentum,
    whose decay term then reads the new weight::

        g' = clip(rescale_grad * g);  m1 = momentum * m
        w_new = w - m1 + (momentum + 1) * (m1 - lr * (g' + wd * w))
        m    <- m1 - lr * (g' + wd * w_new)

    Without momentum it is plain SGD."""

    rules_1x = {_k_nag.multi_nag_mom_update_cpu: _k_nag.multi_nag_v1_mom_update_cpu}

    def __init__(self, momentum=0.0, **kwargs):
        kwargs = _no_2x_args(type(self), kwargs)
        kwargs.setdefault("learning_rate", None)
        kwargs.setdefault("aggregate_num", 0)
        super().__init__(momentum=momentum, **kwargs)


@register
class LARS(_V1, _StateFirstMP, _LARS):
    """MXNet 1.x LARS: ``LARS(momentum=0.0, lazy_update=True, eta=0.001, eps=0,
    momentum_correction=True, **kwargs)``.

    Differences from 2.x: ``eps`` (default 0) instead of ``epsilon``; only names ending in
    ``_weight`` keep their weight decay under ``param_idx2name``; with
    ``momentum_correction`` the momentum is scaled by ``lr_now / lr_before`` whenever the
    base learning rate changed between two calls (one optimizer-wide pair, as in MXNet);
    multi-precision state ``(mom, weight32)``; 4 tensors per launch."""

    _decayed_suffixes = ("_weight",)

    def __init__(self, momentum=0.0, lazy_update=True, eta=0.001, eps=0, momentum_correction=True,
                 **kwargs):
        kwargs = _no_2x_args(type(self), kwargs)
        kwargs.setdefault("learning_rate", None)
        kwargs.setdefault("aggregate_num", _env_aggregate(4))
        self.momentum_correction = bool(momentum_correction)
        self.last_lr = None
        self.cur_lr = None
        super().__init__(momentum=momentum, lazy_update=lazy_update, eta=eta, epsilon=eps, **kwargs)

    @property
    def eps(self):
        return self.epsilon

    @eps.setter
    def eps(self, value):
        self.epsilon = value

    def _lr_array(self, indices):
        lrs = super()._lr_array(indices)
        # MXNet 1.x remembers the base rate of the previous call and of this one
        if self.cur_lr is not None:
            self.last_lr = self.cur_lr
        lr = self._base_lr()
        if self.cur_lr is None:
            self.last_lr = lr
        self.cur_lr = lr
        return lrs

    def _momentum_now(self):
        # MXNet 1.x's momentum correction: the momentum follows the change of the base rate
        if self.momentum_correction and self.last_lr:
            return self.momentum * (self.cur_lr / self.last_lr)
        return self.momentum


@register
class LBSGD(_V1, _LBSGD):
    """MXNet 1.x large-batch SGD (the same class as :class:`mxopt_numba.optimizer.LBSGD`,
    which exists only in 1.x)."""

    def __init__(self, *args, **kwargs):
        kwargs = _no_2x_args(type(self), kwargs)
        kwargs.setdefault("aggregate_num", 0)
        super().__init__(*args, **kwargs)


@register
class Signum(_V1, _Signum):
    """MXNet 1.x Signum: ``Signum(learning_rate=0.01, momentum=0.9, wd_lh=0.0, **kwargs)``
    (same rule as 2.x)."""

    def __init__(self, learning_rate=_base.DefaultValue(0.01), momentum=0.9, wd_lh=0.0, **kwargs):
        kwargs = _no_2x_args(type(self), kwargs)
        kwargs.setdefault("aggregate_num", 0)
        super().__init__(learning_rate=learning_rate, momentum=momentum, wd_lh=wd_lh, **kwargs)


@register
class SGLD(_V1, _SGLD):
    """MXNet 1.x SGLD: learning rate 0.01 unless given (same rule as 2.x)."""

    def __init__(self, **kwargs):
        kwargs = _no_2x_args(type(self), kwargs)
        kwargs.setdefault("learning_rate", None)
        kwargs.setdefault("aggregate_num", 0)
        super().__init__(**kwargs)


@register
class DCASGD(_V1, _Rules1x, _DCASGD):
    """MXNet 1.x DCASGD: ``DCASGD(momentum=0.0, lamda=0.04, **kwargs)``, learning rate
    0.01 unless given.  The delay compensation uses the gradient without weight decay::

        g' = clip(rescale_grad * g)
        d  = g' + wd * w + lamda * g'^2 * (w - w_prev)
        m  = -lr * d   (momentum > 0: m <- momentum * m - lr * d);  w_prev <- w;  w <- w + m

    (MXNet 1.9.1 fails with momentum > 0; here it runs the formula above.)"""

    rules_1x = {_k_dcasgd.multi_dcasgd_update_cpu: _k_dcasgd.multi_dcasgd_v1_update_cpu,
                _k_dcasgd.multi_dcasgd_mom_update_cpu: _k_dcasgd.multi_dcasgd_v1_mom_update_cpu}

    def __init__(self, momentum=0.0, lamda=0.04, **kwargs):
        kwargs = _no_2x_args(type(self), kwargs)
        kwargs.setdefault("learning_rate", None)
        kwargs.setdefault("aggregate_num", 0)
        super().__init__(momentum=momentum, lamda=lamda, **kwargs)


@register
class LAMB(_V1, _LAMB):
    """MXNet 1.x LAMB: 45 tensors per launch (``MXNET_OPTIMIZER_AGGREGATION_SIZE``,
    clamped to [1, 45]) and moments in the weight's dtype; same rule as 2.x."""

    def __init__(self, learning_rate=_base.DefaultValue(0.001), beta1=0.9, beta2=0.999, epsilon=1e-6,
                 lower_bound=None, upper_bound=None, bias_correction=True, **kwargs):
        kwargs = _no_2x_args(type(self), kwargs)
        kwargs.setdefault("aggregate_num", max(1, min(45, _env_aggregate(45))))
        super().__init__(learning_rate=learning_rate, beta1=beta1, beta2=beta2, epsilon=epsilon,
                         lower_bound=lower_bound, upper_bound=upper_bound,
                         bias_correction=bias_correction, **kwargs)

    def create_state(self, index, weight):
        return (np.zeros(weight.shape, dtype=weight.dtype), np.zeros(weight.shape, dtype=weight.dtype))


# ---------------------------------------------------------------------- adaptive family

@register
class Adam(_V1, _Rules1x, _Adam):
    """MXNet 1.x Adam: ``lazy_update=True`` by default and ``g' = clip(rescale_grad * g +
    wd * w)``; otherwise the 2.x rule."""

    rules_1x = {_k_adam.multi_adam_update_cpu: _k_adam.multi_adam_v1_update_cpu}

    def __init__(self, learning_rate=_base.DefaultValue(0.001), beta1=0.9, beta2=0.999, epsilon=1e-8,
                 lazy_update=True, **kwargs):
        kwargs = _no_2x_args(type(self), kwargs)
        kwargs.setdefault("aggregate_num", 0)
        super().__init__(learning_rate=learning_rate, beta1=beta1, beta2=beta2, epsilon=epsilon,
                         lazy_update=lazy_update, **kwargs)


@register
class FTML(_V1, _Rules1x, _FTML):
    """MXNet 1.x FTML: learning rate 0.01 unless given and ``g' = clip(rescale_grad * g +
    wd * w)``; otherwise the 2.x rule."""

    rules_1x = {_k_ftml.multi_ftml_update_cpu: _k_ftml.multi_ftml_v1_update_cpu}

    def __init__(self, beta1=0.6, beta2=0.999, epsilon=1e-8, **kwargs):
        kwargs = _no_2x_args(type(self), kwargs)
        kwargs.setdefault("learning_rate", None)
        kwargs.setdefault("aggregate_num", 0)
        super().__init__(beta1=beta1, beta2=beta2, epsilon=epsilon, **kwargs)


@register
class Adamax(_V1, _Rules1x, _Adamax):
    """MXNet 1.x Adamax: no epsilon (``w <- w - lr / (1 - beta1^t) * m / u``, so a zero
    ``u`` gives inf or NaN as in MXNet) and ``g' = clip(rescale_grad * g + wd * w)``."""

    rules_1x = {_k_adamax.multi_adamax_update_cpu: _k_adamax.multi_adamax_v1_update_cpu}

    def __init__(self, learning_rate=_base.DefaultValue(0.002), beta1=0.9, beta2=0.999, **kwargs):
        kwargs = _no_2x_args(type(self), kwargs)
        kwargs.setdefault("aggregate_num", 0)
        super().__init__(learning_rate=learning_rate, beta1=beta1, beta2=beta2, **kwargs)
        self.epsilon = 0.0


@register
class Nadam(_V1, _Rules1x, _Nadam):
    """MXNet 1.x Nadam: ``g' = clip(rescale_grad * g + wd * w)``; otherwise the 2.x rule
    (including the library's per-parameter momentum schedule)."""

    rules_1x = {_k_nadam.multi_nadam_update_cpu: _k_nadam.multi_nadam_v1_update_cpu}

    def __init__(self, learning_rate=_base.DefaultValue(0.001), beta1=0.9, beta2=0.999, epsilon=1e-8,
                 schedule_decay=0.004, **kwargs):
        kwargs = _no_2x_args(type(self), kwargs)
        kwargs.setdefault("aggregate_num", 0)
        super().__init__(learning_rate=learning_rate, beta1=beta1, beta2=beta2, epsilon=epsilon,
                         schedule_decay=schedule_decay, **kwargs)


@register
class AdaGrad(_V1, _Rules1x, _AdaGrad):
    """MXNet 1.x AdaGrad: ``AdaGrad(eps=1e-7, **kwargs)``, learning rate 0.01 unless given::

        g' = clip(rescale_grad * g)
        h <- h + g'^2
        w <- w - lr * (g' / sqrt(h + eps) + wd * w)

    (epsilon inside the root, weight decay outside the adaptive part).  The history is
    float32 (float64 for float64 weights)."""

    rules_1x = {_k_adagrad.multi_adagrad_update_cpu: _k_adagrad.multi_adagrad_v1_update_cpu}

    def __init__(self, eps=1e-7, **kwargs):
        kwargs = _no_2x_args(type(self), kwargs)
        kwargs.setdefault("learning_rate", None)
        kwargs.setdefault("aggregate_num", 0)
        super().__init__(epsilon=eps, **kwargs)

    @property
    def float_stable_eps(self):
        return self.epsilon


@register
class GroupAdaGrad(_V1, _Rules1x, _GroupAdaGrad):
    """MXNet 1.x GroupAdaGrad: ``GroupAdaGrad(eps=1e-5, **kwargs)``, epsilon inside the
    root: ``w <- w - lr * g' / sqrt(h_row + eps)``."""

    rules_1x = {_k_group.multi_group_adagrad_update_cpu: _k_group.multi_group_adagrad_v1_update_cpu}

    def __init__(self, eps=1e-5, **kwargs):
        kwargs = _no_2x_args(type(self), kwargs)
        kwargs.setdefault("learning_rate", None)
        kwargs.setdefault("aggregate_num", 0)
        super().__init__(epsilon=eps, **kwargs)

    @property
    def float_stable_eps(self):
        return self.epsilon


@register
class RMSProp(_V1, _Rules1x, _RMSProp):
    """MXNet 1.x RMSProp: ``RMSProp(learning_rate=0.001, gamma1=0.9, gamma2=0.9,
    epsilon=1e-8, centered=False, clip_weights=None, **kwargs)``::

        g' = clip(rescale_grad * g + wd * w)
        plain:     n <- (1 - gamma1) g'^2 + gamma1 n;   w <- w - lr g' / sqrt(n + epsilon)
        centered:  n <- (1 - gamma1) g'^2 + gamma1 n;   a <- (1 - gamma1) g' + gamma1 a
                   d <- gamma2 d - lr g' / sqrt(n - a^2 + epsilon);   w <- w + d
        then, if clip_weights: w <- clip(w, -clip_weights, clip_weights)

    States (float32, float64 for float64 weights): plain ``(n,)``, centered ``(n, a, d)``."""

    rules_1x = {
        _k_rmsprop.multi_rmsprop_update_cpu: _k_rmsprop.multi_rmsprop_v1_update_cpu,
        _k_rmsprop.multi_rmsprop_centered_update_cpu: _k_rmsprop.multi_rmsprop_v1_centered_update_cpu}

    def __init__(self, learning_rate=_base.DefaultValue(0.001), gamma1=0.9, gamma2=0.9, epsilon=1e-8,
                 centered=False, clip_weights=None, **kwargs):
        kwargs = _no_2x_args(type(self), kwargs)
        kwargs.setdefault("aggregate_num", 0)
        super().__init__(learning_rate=learning_rate, rho=gamma1, momentum=gamma2, epsilon=epsilon,
                         centered=centered, clip_weights=clip_weights, **kwargs)

    gamma1 = property(lambda self: self.rho, lambda self, v: setattr(self, "rho", v))
    gamma2 = property(lambda self: self.momentum, lambda self, v: setattr(self, "momentum", v))

    def create_state(self, index, weight):
        state = super().create_state(index, weight)
        return state if self.centered else (state,)


@register
class AdaDelta(_V1, _Rules1x, _AdaDelta):
    """MXNet 1.x AdaDelta: ``AdaDelta(rho=0.9, epsilon=1e-5, **kwargs)``, no learning
    rate, weight decay outside the statistics::

        g' = clip(rescale_grad * g)
        acc_g     <- rho * acc_g + (1 - rho) * g'^2
        delta      = sqrt(acc_delta + epsilon) / sqrt(acc_g + epsilon) * g'
        acc_delta <- rho * acc_delta + (1 - rho) * delta^2
        w         <- w - (delta + wd * w)"""

    rules_1x = {_k_adadelta.multi_adadelta_update_cpu: _k_adadelta.multi_adadelta_v1_update_cpu}

    def __init__(self, rho=0.9, epsilon=1e-5, **kwargs):
        kwargs = _no_2x_args(type(self), kwargs)
        kwargs.setdefault("learning_rate", None)
        kwargs.setdefault("aggregate_num", 0)
        super().__init__(rho=rho, epsilon=epsilon, **kwargs)


@register
class Ftrl(_V1, _Ftrl):
    """MXNet 1.x Ftrl: ``Ftrl(lamda1=0.01, learning_rate=0.1, beta=1, **kwargs)``; an
    attached scheduler keeps its own ``base_lr`` (1.x sets the rate after the base class).
    Same rule as 2.x."""

    def __init__(self, lamda1=0.01, learning_rate=0.1, beta=1, **kwargs):
        kwargs = _no_2x_args(type(self), kwargs)
        kwargs.setdefault("aggregate_num", 0)
        has_sched = kwargs.get("lr_scheduler") is not None
        super().__init__(learning_rate=None if has_sched else learning_rate, lamda1=lamda1, beta=beta,
                         **kwargs)
        if has_sched:
            self.lr = float(learning_rate)


@register
class Test(_V1, _Test):
    """MXNet 1.x's test optimizer: ``w <- w + rescale_grad * g`` and ``state <- w`` (no
    learning rate, weight decay or clipping), and it does not count updates."""

    def __init__(self, **kwargs):
        kwargs = _no_2x_args(type(self), kwargs)
        kwargs.setdefault("aggregate_num", 0)
        super().__init__(**kwargs)

    def update(self, indices, weights, grads, states):
        indices, weights, grads, states = _base._as_lists(indices, weights, grads, states)
        zeros = np.zeros(len(indices))
        self._launch(_k_test.multi_testrule_v1_update_cpu, indices, weights, grads, states, zeros, zeros,
                     (self.rescale_grad, -1.0), n_states=1)


# ---------------------------------------------------------------------- Updater

class Updater(_updater.Updater):
    """MXNet 1.x Updater: aggregates when ``aggregate_num > 0`` (SGD, LARS, LAMB by
    default: chunks of ``aggregate_num`` tensors of one dtype per call); otherwise it calls
    ``update_multi_precision(index, weight, grad, state)`` once per index with scalars, as
    1.x optimizers written for one tensor expect.  Saved optimizers are looked up among
    the 1.x classes."""

    optimizer_registry = _registry

    @property
    def aggregate_updates(self):
        return self.optimizer.aggregate_num > 0

    def __call__(self, index, grad, weight):
        if self.aggregate_updates:
            return super().__call__(index, grad, weight)
        if isinstance(index, (list, tuple)):
            if not isinstance(grad, (list, tuple)) or not isinstance(weight, (list, tuple)):
                raise TypeError("grad and weight must be lists when index is a list")
            if not len(index) == len(grad) == len(weight):
                raise ValueError("index, grad and weight lists differ in length: %d, %d, %d"
                                 % (len(index), len(grad), len(weight)))
            items = zip(index, grad, weight)
        else:
            items = ((index, grad, weight),)
        opt = self.optimizer
        opt._set_current_device(0)
        for i, g, w in items:
            if isinstance(i, bytes):
                i = i.decode()
            if i not in self.states:
                self.states[i] = opt.create_state_multi_precision(i, w)
                self.states_synced[i] = True
            opt.update_multi_precision(i, w, g, self.states[i])


def get_updater(optimizer):
    """An :class:`Updater` for ``optimizer``."""
    return Updater(optimizer)

