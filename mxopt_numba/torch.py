"""PyTorch adapter: the library's optimizers as ``torch.optim.Optimizer`` subclasses.

    import torch
    import mxopt_numba.torch as mxt
    model = torch.nn.Linear(512, 10)
    opt = mxt.LAMB(model.parameters(), lr=1e-3, weight_decay=0.01)
    loss = model(torch.randn(32, 512)).square().mean()
    loss.backward()
    opt.step()                      # the weights are updated in place
    opt.zero_grad()

The step runs the library's Numba kernels on zero-copy NumPy views of the tensors (a
bfloat16 tensor is viewed as int16 and reinterpreted as ``ml_dtypes.bfloat16``), with one
:class:`~mxopt_numba.optimizer.Updater` per param group and ``aggregate_num=inf``: one
kernel launch per storage layout for all the tensors of a group.  The update rules are
the library's (MXNet's), not torch.optim's: ``mxt.Adam`` folds the bias correction into
the learning rate as MXNet does, ``mxt.AdamW`` is MXNet's AdamW, and so on; see the
docstrings of :mod:`mxopt_numba.optimizer`.

torch's hyperparameter names map onto the library's: ``lr`` -> ``learning_rate``,
``weight_decay`` -> ``wd``, ``betas`` -> ``beta1``/``beta2``, ``eps`` -> ``epsilon``;
``momentum`` and every other keyword of the rule keep their names.  ``lr``,
``weight_decay``, ``betas``, ``eps`` and ``momentum`` are read from each param group at
every step (so torch's ``lr_scheduler`` classes, including ``OneCycleLR``'s momentum
cycling, drive the optimizer); the other keywords are fixed when the group is added.
"""
from __future__ import annotations

import inspect
import math
import operator
from typing import Any, Callable, Iterable

import ml_dtypes
import numpy as np
import torch

from . import _namespace
from .optimizer import Optimizer as _LibOptimizer
from .optimizer import Updater as _Updater
from .optimizer import create as _create
from .sparse import RowSparseArray

__all__ = ["Optimizer"]

#: torch name -> library name of the hyperparameters read at every step
_TORCH_NAMES = {"lr": "learning_rate", "weight_decay": "wd", "eps": "epsilon"}

#: keys torch's lr schedulers add to param groups; not hyperparameters of a rule
_SCHEDULER_KEYS = {"initial_lr", "max_lr", "min_lr", "base_momentum", "max_momentum", "base_lr"}

#: torch keywords that have no meaning here (rather than silently ignored, they are refused)
_UNSUPPORTED = {"foreach", "fused", "capturable", "differentiable", "maximize", "amsgrad", "nesterov",
                "decoupled_weight_decay"}

_NUMPY_DTYPES = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64),
                 torch.float16: np.dtype(np.float16), torch.bfloat16: np.dtype(ml_dtypes.bfloat16)}

_STATE_FORMAT = "mxopt_numba.torch"


def _rule_keywords(cls):
    """Every keyword the rule's constructor chain accepts."""
    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self":
                names.add(p.name)
    return names


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    """A zero-copy NumPy view of a CPU tensor (bfloat16 through its int16 bits)."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def _from_numpy(a: np.ndarray) -> torch.Tensor:
    """A CPU tensor holding a copy of ``a`` (bfloat16 through its int16 bits)."""
    a = np.array(a, copy=True, order="C")
    if a.dtype == np.dtype(ml_dtypes.bfloat16):
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


class _Group:
    """The library's optimizer and Updater of one param group, and the views of its
    tensors (rebuilt only when a tensor's storage changes)."""

    __slots__ = ("opt", "updater", "params", "wkeys", "wviews", "gsrc", "gviews", "fixed", "device", "last")

    def __init__(self, opt, params):
        self.opt = opt
        self.updater = _Updater(opt)
        self.params = params
        self.wkeys = [None] * len(params)
        self.wviews = [None] * len(params)
        self.gsrc = [None] * len(params)
        self.gviews = [None] * len(params)
        self.fixed = None
        self.device = None
        #: (data pointers, gradient tensors, lists) of the last step: a step whose tensors
        #: are all the same reuses the lists, so the Updater's plans are reused as well
        self.last = None

    def forget_grads(self):
        """Drop the views of the gradients (they keep the gradients' memory alive)."""
        self.gsrc = [None] * len(self.params)
        self.gviews = [None] * len(self.params)
        self.last = None


class Optimizer(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` running one of the library's update rules.

    Parameters
    ----------
    params : iterable of Tensor or of dict
        Parameters, or param groups (dicts with a ``params`` entry and per-group
        hyperparameters), as for any torch optimizer.  Every parameter must be a
        contiguous float32, float64, float16 or bfloat16 tensor; all on the CPU, or all on
        one CUDA device.
    optimizer : str
        A registered optimizer name (``'adamw'``, ``'lamb'``, ``'sgd'``, ...).
    **hyperparameters
        The rule's keywords under torch's names (``lr``, ``weight_decay``, ``betas``,
        ``eps``, ``momentum``) or the library's (``beta1``, ``lazy_update``,
        ``multi_precision``, ``clip_gradient``, ...).  Defaults are the rule's own.

    Notes
    -----
    * ``multi_precision=True`` keeps a float32 master copy of each float16/bfloat16
      parameter; the parameter holds the master rounded to its dtype after every step,
      and :meth:`state_dict` carries the master copies.
    * Parameters whose ``.grad`` is None are skipped (their update counts do not move).
    * Sparse gradients (``torch.sparse_coo``, e.g. from ``nn.Embedding(sparse=True)``)
      become row-sparse gradients; with ``lazy_update=True`` (rules that have it) only
      the rows they touch are updated.
    * CUDA tensors are handed to the library's CUDA kernels through
      ``__cuda_array_interface__`` (needs the ``gpu`` extra); bfloat16 CUDA tensors are
      not supported.
    * Each param group's tensors are updated by one kernel launch per storage layout.
    """

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], optimizer: str = "adamw",
                 **hyperparameters: Any) -> None:
        if not isinstance(optimizer, str):
            raise TypeError("optimizer must be a registered optimizer name, got %s" % type(optimizer).__name__)
        cls = _LibOptimizer.opt_registry.get(optimizer.lower())
        if cls is None:
            # the registry's own message lists the choices
            _create(optimizer)
        self._rule = optimizer.lower()
        self._keywords = _rule_keywords(cls)
        self._groups = []
        defaults = self._defaults(hyperparameters)
        super().__init__(params, defaults)

    # ------------------------------------------------------------------ hyperparameters
    def _library_kwargs(self, hp, where):
        """torch-named hyperparameters -> the rule's keywords (scheduler keys dropped)."""
        out = {}
        for key, value in hp.items():
            if key == "params" or key in _SCHEDULER_KEYS:
                continue
            if key in _UNSUPPORTED:
                raise TypeError("%s: %r is a torch.optim option without a counterpart in the %r rule"
                                % (where, key, self._rule))
            if key == "betas":
                try:
                    beta1, beta2 = value
                except (TypeError, ValueError):
                    raise ValueError("%s: betas must be a pair (beta1, beta2), got %r" % (where, value)) from None
                pairs = [("beta1", beta1), ("beta2", beta2)]
            else:
                pairs = [(_TORCH_NAMES.get(key, key), value)]
            for name, v in pairs:
                if name not in self._keywords or name in ("param_dict", "param_idx2name", "sym",
                                                           "lr_scheduler", "aggregate_num"):
                    raise TypeError("%s: the %r rule has no hyperparameter %r" % (where, self._rule, key))
                if name in out:
                    raise ValueError("%s: %r is given twice (under torch's and the library's name)"
                                     % (where, name))
                out[name] = float(v) if isinstance(v, torch.Tensor) else v
        return out

    def _defaults(self, hyperparameters):
        kwargs = self._library_kwargs(hyperparameters, "%s hyperparameters" % self._rule)
        probe = _create(self._rule, **kwargs)
        defaults = {"lr": float(probe.lr), "weight_decay": float(probe.wd)}
        if hasattr(probe, "beta1") and hasattr(probe, "beta2"):
            defaults["betas"] = (float(probe.beta1), float(probe.beta2))
        if hasattr(probe, "epsilon"):
            defaults["eps"] = float(probe.epsilon)
        if hasattr(probe, "momentum"):
            defaults["momentum"] = float(probe.momentum)
        defaults["multi_precision"] = bool(probe.multi_precision)
        for key, value in kwargs.items():
            if key not in ("learning_rate", "wd", "beta1", "beta2", "epsilon", "momentum", "multi_precision"):
                defaults[key] = value
        return defaults

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group (torch semantics: missing hyperparameters take the
        defaults); it gets its own instance of the rule."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            self._groups.append(self._make_group(group, len(self.param_groups) - 1))
        except BaseException:
            self.param_groups.pop()
            raise

    def _make_group(self, group, position):
        where = "param group %d" % position
        for k, p in enumerate(group["params"]):
            if p.dtype not in _NUMPY_DTYPES:
                raise TypeError("%s, parameter %d: dtype %s is not supported; expected float32, float64, "
                                "float16 or bfloat16" % (where, k, p.dtype))
            if p.layout != torch.strided or not p.is_contiguous():
                raise ValueError("%s, parameter %d (shape %s): parameters must be contiguous dense "
                                 "tensors; call .contiguous() on it before wrapping it in nn.Parameter"
                                 % (where, k, tuple(p.shape)))
        devices = {p.device for p in group["params"]}
        for g in self._groups:
            devices |= {p.device for p in g.params}
        if len(devices) > 1:
            raise ValueError("%s: all parameters must be on one device, got %s"
                             % (where, ", ".join(sorted(str(d) for d in devices))))
        for d in devices:
            if d.type not in ("cpu", "cuda"):
                raise ValueError("%s: parameters on device %s are not supported (cpu or cuda)" % (where, d))
            if d.type == "cuda" and any(p.dtype == torch.bfloat16 for p in group["params"]):
                raise TypeError("%s: bfloat16 CUDA tensors have no __cuda_array_interface__; use "
                                "float16 or float32 parameters on the GPU" % where)
        kwargs = self._library_kwargs(group, where)
        opt = _create(self._rule, aggregate_num=math.inf, **kwargs)
        out = _Group(opt, group["params"])
        out.fixed = {k: v for k, v in kwargs.items()
                     if k not in ("learning_rate", "wd", "beta1", "beta2", "epsilon", "momentum")}
        out.device = next(iter(devices)).type if devices else "cpu"
        return out

    def _sync(self, group, g):
        """Copy the hyperparameters torch code may change between steps into the rule."""
        opt = g.opt
        lr = group["lr"]
        opt.lr = float(lr)
        opt.wd = float(group["weight_decay"])
        if "betas" in group:
            opt.beta1, opt.beta2 = float(group["betas"][0]), float(group["betas"][1])
        if "eps" in group:
            opt.epsilon = float(group["eps"])
        if "momentum" in group and hasattr(opt, "momentum"):
            m = float(group["momentum"])
            if (m == 0) != (opt.momentum == 0) and g.updater.states:
                raise ValueError("momentum of a param group changed between zero and non-zero after "
                                 "the first step; the momentum buffers exist only for non-zero values")
            opt.momentum = m

    # ------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; returns ``closure()`` if given
        (evaluated first, with gradients enabled)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group, g in zip(self.param_groups, self._groups):
            if group["params"] is not g.params:
                g.params = group["params"]
                g.wkeys = [None] * len(g.params)
                g.wviews = [None] * len(g.params)
                g.forget_grads()
            self._sync(group, g)
            indices, weights, grads = self._collect(g)
            if indices:
                g.updater(indices, grads, weights)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """torch's ``zero_grad``; with ``set_to_none`` the optimizer also lets go of its
        views of the old gradients, so that their memory is freed before the next
        backward pass."""
        super().zero_grad(set_to_none=set_to_none)
        if set_to_none:
            for g in self._groups:
                g.forget_grads()

    def _collect(self, g):
        params = g.params
        ptrs = [p.data_ptr() for p in params]
        grads_now = [p.grad for p in params]
        last = g.last
        if last is not None and ptrs == last[0] and all(map(operator.is_, grads_now, last[1])):
            return last[2]
        lists = self._collect_slow(g)
        g.last = (ptrs, grads_now, lists)
        return lists

    def _collect_slow(self, g):
        cuda = g.device == "cuda"
        indices, weights, grads = [], [], []
        wkeys, wviews, gsrc, gviews = g.wkeys, g.wviews, g.gsrc, g.gviews
        for k, p in enumerate(g.params):
            grad = p.grad
            if grad is None:
                continue
            key = p.data_ptr()
            if wkeys[k] != key:
                self._check_param(p, k)
                wviews[k] = p.detach() if cuda else _to_numpy(p)
                wkeys[k] = key
                gsrc[k] = None
            if gsrc[k] is not grad:
                gviews[k] = self._grad_view(p, grad, k, cuda)
                gsrc[k] = grad
            indices.append(k)
            weights.append(wviews[k])
            grads.append(gviews[k])
        return indices, weights, grads

    @staticmethod
    def _check_param(p, k):
        if not p.is_contiguous():
            raise ValueError("parameter %d (shape %s) is no longer contiguous" % (k, tuple(p.shape)))

    def _grad_view(self, p, grad, k, cuda):
        if grad.layout == torch.sparse_coo:
            if cuda:
                raise TypeError("parameter %d: sparse CUDA gradients are not supported" % k)
            grad = grad.coalesce()
            rows = grad.indices()
            if rows.shape[0] != 1:
                raise ValueError("parameter %d: a sparse gradient must be sparse along the first dimension "
                                 "only (as nn.Embedding(sparse=True) makes it), got sparse_dim %d"
                                 % (k, rows.shape[0]))
            values = grad.values()
            if values.dtype != p.dtype:
                values = values.to(p.dtype)
            return RowSparseArray(_to_numpy(values.contiguous()), rows[0].numpy().astype(np.int64),
                                  tuple(p.shape))
        if grad.layout != torch.strided:
            raise TypeError("parameter %d: gradients of layout %s are not supported" % (k, grad.layout))
        if grad.device != p.device:
            raise ValueError("parameter %d is on %s but its gradient is on %s" % (k, p.device, grad.device))
        if not grad.is_contiguous():
            grad = grad.contiguous()
        return grad.detach() if cuda else _to_numpy(grad)

    # ------------------------------------------------------------------ state dict
    def state_dict(self) -> dict[str, Any]:
        """``{"state": {id: {...}}, "param_groups": [...]}`` with tensors and plain values
        only (``torch.load(weights_only=True)`` reads it back).

        Parameters are numbered in group order, as torch does.  A parameter's entry holds
        ``step`` (its update count), ``master`` (the float32 master copy, under
        multi-precision) and ``state`` (the rule's state arrays, a list of tensors).  All
        tensors are copies.
        """
        state, groups, next_id = {}, [], 0
        for group, g in zip(self.param_groups, self._groups):
            ids = list(range(next_id, next_id + len(group["params"])))
            next_id += len(ids)
            packed = {k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items() if k != "params"}
            packed["params"] = ids
            groups.append(packed)
            counts = g.opt._index_update_count
            for k, pid in enumerate(ids):
                if k not in g.updater.states:
                    continue
                s = g.updater.states[k]
                entry = {"step": int(counts[k]) if k in counts else 0}
                weight = self._weight_of(g, k)
                if g.opt.uses_master(weight):
                    master, inner = s
                    entry["master"] = self._export(master)
                    s = inner
                entry["state"] = [self._export(a) for a in _leaves(s)]
                state[pid] = entry
        return {"format": _STATE_FORMAT, "rule": self._rule, "state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; the groups must hold parameters of
        the same shapes (their hyperparameters are taken from ``state_dict``)."""
        if not isinstance(state_dict, dict) or state_dict.get("format") != _STATE_FORMAT:
            raise ValueError("state_dict is not one written by mxopt_numba.torch.Optimizer.state_dict()")
        if state_dict.get("rule") != self._rule:
            raise ValueError("state_dict was written by the %r rule; this optimizer runs %r"
                             % (state_dict.get("rule"), self._rule))
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("state_dict has %d param groups, this optimizer %d"
                             % (len(saved_groups), len(self.param_groups)))
        for k, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError("param group %d: state_dict has %d parameters, this optimizer %d"
                                 % (k, len(saved["params"]), len(group["params"])))
        new_groups = []
        for k, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            merged = {key: (tuple(v) if key == "betas" else v) for key, v in saved.items() if key != "params"}
            merged["params"] = group["params"]
            g = self._make_group(merged, k)
            self._sync(merged, g)
            for i, pid in enumerate(saved["params"]):
                entry = state_dict["state"].get(pid)
                if entry is None:
                    continue
                self._restore(g, i, entry, "param group %d, parameter %d" % (k, i))
            new_groups.append((merged, g))
        for k, (merged, g) in enumerate(new_groups):
            self.param_groups[k].clear()
            self.param_groups[k].update(merged)
            g.params = self.param_groups[k]["params"]
        self._groups = [g for _, g in new_groups]

    def _restore(self, g, i, entry, where):
        p = g.params[i]
        weight = p.detach() if g.device == "cuda" else _to_numpy(p)
        opt = g.opt
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fresh = opt.create_state_multi_precision(i, weight)
        inner = fresh
        if opt.uses_master(weight):
            if "master" not in entry:
                raise ValueError("%s: the state has no float32 master copy but multi_precision is on" % where)
            master, inner = fresh
            self._import(master, entry["master"], where + " master")
        elif "master" in entry:
            raise ValueError("%s: the state holds a master copy but the parameter keeps none" % where)
        leaves = _leaves(inner)
        saved = entry.get("state", [])
        if len(saved) != len(leaves):
            raise ValueError("%s: %d state tensors saved, the rule keeps %d" % (where, len(saved), len(leaves)))
        for n, (dst, src) in enumerate(zip(leaves, saved)):
            self._import(dst, src, "%s state %d" % (where, n))
        g.updater.states[i] = fresh
        g.updater.states_synced[i] = True
        step = int(entry.get("step", 0))
        opt._index_update_count[i] = step
        opt.num_update = max(opt.num_update, step)

    @staticmethod
    def _export(a):
        if isinstance(a, np.ndarray):
            return _from_numpy(a)
        return torch.as_tensor(a, device="cuda").clone()      # a CUDA state array

    @staticmethod
    def _import(dst, src, where):
        if not isinstance(src, torch.Tensor):
            raise ValueError("%s: expected a tensor, got %s" % (where, type(src).__name__))
        if tuple(src.shape) != tuple(dst.shape):
            raise ValueError("%s: shape %s, expected %s" % (where, tuple(src.shape), tuple(dst.shape)))
        if isinstance(dst, np.ndarray):
            if _NUMPY_DTYPES.get(src.dtype) != dst.dtype:
                raise ValueError("%s: dtype %s, expected %s" % (where, src.dtype, dst.dtype))
            dst[...] = _to_numpy(src.cpu().contiguous())
        else:
            torch.as_tensor(dst, device="cuda").copy_(src)

    @staticmethod
    def _weight_of(g, k):
        p = g.params[k]
        return p.detach() if g.device == "cuda" else _to_numpy(p)


def _leaves(state):
    if state is None:
        return []
    if isinstance(state, (tuple, list)):
        out = []
        for s in state:
            out += _leaves(s)
        return out
    return [state]


def _convenience(rule_name, cls_name):
    def __init__(self, params, **hyperparameters):
        Optimizer.__init__(self, params, optimizer=rule_name, **hyperparameters)
    doc = ("``mxopt_numba.torch.Optimizer(params, optimizer=%r, **hyperparameters)``: the "
           "library's :class:`mxopt_numba.optimizer.%s` rule as a torch optimizer." % (rule_name, cls_name))
    return type(cls_name, (Optimizer,), {"__init__": __init__, "__doc__": doc, "__module__": __name__})


#: registered names left out of the convenience classes: the test-suite rule and a
#: deprecated alias
_NOT_OFFERED = ("test", "ccsgd")


def _public_rules():
    out = {}
    for name, cls in sorted(_LibOptimizer.opt_registry.items()):
        if name not in _NOT_OFFERED and cls.__name__ not in out:
            out[cls.__name__] = name
    return out


for _cls_name, _rule_name in _public_rules().items():
    globals()[_cls_name] = _convenience(_rule_name, _cls_name)
    __all__.append(_cls_name)
del _cls_name, _rule_name

__dir__ = _namespace.public_dir(__name__)
