"""Learning-rate schedulers with MXNet 2.0.0b1 semantics.

Every scheduler is a *stateful* callable ``sched(num_update) -> lr``. The optimizer calls it
with its ``num_update`` (the largest per-index update count) each time it needs a learning
rate. Factor and MultiFactor schedulers decay ``base_lr`` in place and never undo a decay
when called with a smaller ``num_update`` later; Poly and Cosine schedulers store the last
value they computed in ``base_lr`` and return it for every ``num_update > max_update``.

Warm-up (all classes): for ``num_update < warmup_steps`` the scheduler returns

* ``warmup_mode='linear'``:   ``warmup_begin_lr + (warmup_final_lr - warmup_begin_lr) * n / warmup_steps``
* ``warmup_mode='constant'``: ``warmup_begin_lr``

where ``warmup_final_lr`` is ``base_lr`` *as given to the constructor*. An optimizer that
later overwrites ``base_lr`` (MXNet's optimizers do, with their own learning rate) therefore
does not change the warm-up ramp, nor the Poly/Cosine curves, which start from
``base_lr_orig``, also captured at construction.

Differences from MXNet, all in error handling only:

* checks MXNet made with ``assert`` raise ``TypeError`` / ``ValueError`` with a message naming
  the parameter, the value received and what was expected;
* ``PolyScheduler`` / ``CosineScheduler`` with ``warmup_steps == max_update`` raise
  ``ValueError`` in the constructor (MXNet raised ``ZeroDivisionError`` at the first call with
  ``num_update == max_update``);
* ``get_warmup_lr(n)`` with ``n >= warmup_steps`` raises ``ValueError``.

``state_dict()`` / ``load_state_dict(d)`` save and restore a scheduler as a plain dict of
JSON-compatible values (no pickle needed); :func:`from_state_dict` rebuilds one from such a
dict.

Your own schedulers.  Subclass :class:`LRScheduler` and implement ``__call__``; optimizer
checkpoints (``Trainer.save_states``, ``Updater.get_states(dump_optimizer=True)``) then
store the class as ``"module:QualName"`` next to its ``state_dict()``.  The default
``state_dict`` of a subclass stores every instance attribute, which works when they hold
numbers, strings, None, lists, tuples, dicts with string keys and other schedulers;
override ``state_dict``/``load_state_dict`` for anything else.  Saving refuses, before
writing anything, a scheduler that could not be restored (a plain function, a class
defined inside a function, an attribute of another type).  Loading never imports a
module: import the module that defines the class before loading the checkpoint.
"""
from __future__ import annotations

import logging
import math
import numbers
import sys
from typing import Any, Sequence

from . import _namespace, _state_io
from ._state_io import StateFormatError

__all__ = [
    "LRScheduler",
    "FactorScheduler",
    "MultiFactorScheduler",
    "PolyScheduler",
    "CosineScheduler",
    "from_state_dict",
]

_log = logging.getLogger(__name__)

_WARMUP_MODES = ("linear", "constant")


# --------------------------------------------------------------------------- helpers
def _is_int(value):
    """True for Python and numpy integers, False for bools and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _require_int(cls_name, name, value):
    if not _is_int(value):
        raise TypeError("%s: %s must be an int, got %r (%s)"
                        % (cls_name, name, value, type(value).__name__))
    return int(value)


def _require_real(cls_name, name, value):
    if not _is_real(value):
        raise TypeError("%s: %s must be a real number, got %r (%s)"
                        % (cls_name, name, value, type(value).__name__))
    return value


def _plain(value):
    """Convert a state value to a JSON-compatible Python object."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    raise TypeError("cannot store %r (%s) in a scheduler state dict"
                    % (value, type(value).__name__))


# --------------------------------------------------------------------------- base class
class LRScheduler:
    """Base class of the learning-rate schedulers.

    Parameters
    ----------
    base_lr : float, default 0.01
        Learning rate after warm-up. Also stored as ``warmup_final_lr``, the value the
        warm-up ramps to, captured here once.
    warmup_steps : int, default 0
        Number of updates ``n = 0 .. warmup_steps - 1`` that return the warm-up value.
    warmup_begin_lr : float, default 0
        Learning rate at ``n = 0``; must not exceed ``base_lr``.
    warmup_mode : {'linear', 'constant'}, default 'linear'
        ``linear``:   ``lr(n) = warmup_begin_lr + (warmup_final_lr - warmup_begin_lr) * n / warmup_steps``;
        ``constant``: ``lr(n) = warmup_begin_lr``.

    Subclasses implement ``__call__(num_update)``; the base class itself is abstract and
    raises ``NotImplementedError`` when called.
    """

    #: attributes saved by :meth:`state_dict`, in order (subclasses extend it)
    _state_fields = ("base_lr", "warmup_steps", "warmup_begin_lr", "warmup_final_lr",
                     "warmup_mode")

    def __init__(self, base_lr: float = 0.01, warmup_steps: int = 0, warmup_begin_lr: float = 0,
                 warmup_mode: str = "linear") -> None:
        name = type(self).__name__
        _require_real(name, "base_lr", base_lr)
        warmup_steps = _require_int(name, "warmup_steps", warmup_steps)
        _require_real(name, "warmup_begin_lr", warmup_begin_lr)
        if warmup_steps < 0:
            raise ValueError("%s: warmup_steps must be >= 0, got %r" % (name, warmup_steps))
        if warmup_begin_lr > base_lr:
            raise ValueError("%s: warmup_begin_lr must be <= base_lr (the warm-up ramps up to "
                             "base_lr), got warmup_begin_lr=%r > base_lr=%r"
                             % (name, warmup_begin_lr, base_lr))
        if warmup_mode not in _WARMUP_MODES:
            raise ValueError("%s: warmup_mode must be 'linear' or 'constant', got %r"
                             % (name, warmup_mode))
        self.base_lr = base_lr
        self.warmup_steps = warmup_steps
        self.warmup_begin_lr = warmup_begin_lr
        self.warmup_final_lr = base_lr
        self.warmup_mode = warmup_mode

    def get_warmup_lr(self, num_update: int) -> float:
        """Warm-up learning rate for ``num_update < warmup_steps``."""
        if not num_update < self.warmup_steps:
            raise ValueError("%s.get_warmup_lr: num_update must be < warmup_steps=%r, got %r"
                             % (type(self).__name__, self.warmup_steps, num_update))
        if self.warmup_mode == "linear":
            rise = (self.warmup_final_lr - self.warmup_begin_lr) * float(num_update) \
                / float(self.warmup_steps)
            return self.warmup_begin_lr + rise
        if self.warmup_mode == "constant":
            return self.warmup_begin_lr
        raise ValueError("%s: warmup_mode must be 'linear' or 'constant', got %r"
                         % (type(self).__name__, self.warmup_mode))

    def __call__(self, num_update: int) -> float:
        """Return the learning rate for update number ``num_update``."""
        raise NotImplementedError("%s does not implement __call__; use one of its subclasses "
                                  "(FactorScheduler, MultiFactorScheduler, PolyScheduler, "
                                  "CosineScheduler)" % type(self).__name__)

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """The scheduler's configuration and mutable state as a JSON-compatible dict.

        For the classes of this module the dict holds ``"class"`` (the class name) and one
        entry per attribute of ``_state_fields`` (``base_lr``, ``count``, ``cur_step_ind``,
        ...). Loading it into a scheduler of the same class with :meth:`load_state_dict`
        (or rebuilding one with :func:`from_state_dict`) gives a scheduler that returns
        exactly the same values.

        For a subclass defined elsewhere the dict holds ``"class"`` and ``"attrs"``, every
        instance attribute in a tagged JSON form (tuples, dicts and nested schedulers
        keep their type).  ``TypeError`` names the first attribute that has no such form;
        override this method and :meth:`load_state_dict` to store such values yourself.
        """
        name = type(self).__name__
        if not _builtin(type(self)):
            attrs = getattr(self, "__dict__", None)
            if attrs is None:
                raise TypeError("%s has no instance __dict__ (__slots__?), so the default "
                                "state_dict cannot see its state; override state_dict() and "
                                "load_state_dict()" % name)
            return {"class": name,
                    "attrs": {k: _encode_attr(v, "%s.%s" % (name, k)) for k, v in attrs.items()}}
        d = {"class": name}
        for key in self._state_fields:
            d[key] = _plain(getattr(self, key))
        return d

    def load_state_dict(self, state: dict[str, Any]) -> LRScheduler:
        """Restore what :meth:`state_dict` returned (in place; returns ``self``)."""
        if not isinstance(state, dict):
            raise TypeError("%s.load_state_dict: state must be a dict, got %s"
                            % (type(self).__name__, type(state).__name__))
        cls_name = state.get("class", type(self).__name__)
        if cls_name != type(self).__name__:
            raise ValueError("%s.load_state_dict: state is for class %r, expected %r"
                             % (type(self).__name__, cls_name, type(self).__name__))
        if not _builtin(type(self)):
            attrs = state.get("attrs")
            if set(state) - {"class"} != {"attrs"} or not isinstance(attrs, dict):
                raise ValueError("%s.load_state_dict: expected the keys 'class' and 'attrs' (what "
                                 "state_dict() of a subclass returns), got %s"
                                 % (type(self).__name__, sorted(map(str, state))))
            where = type(self).__name__ + ".%s"
            values = {}
            for k, v in attrs.items():
                if not isinstance(k, str):
                    raise ValueError("%s.load_state_dict: attribute names must be str, got %r"
                                     % (type(self).__name__, k))
                values[k] = _decode_attr(v, where % k)
            vars(self).update(values)
            return self
        fields = set(self._state_fields)
        unknown = sorted(k for k in state if k != "class" and k not in fields)
        if unknown:
            raise ValueError("%s.load_state_dict: unknown keys %s (expected %s)"
                             % (type(self).__name__, unknown, list(self._state_fields)))
        missing = [k for k in self._state_fields if k not in state]
        if missing:
            raise ValueError("%s.load_state_dict: missing keys %s"
                             % (type(self).__name__, missing))
        if state["warmup_mode"] not in _WARMUP_MODES:
            raise ValueError("%s.load_state_dict: warmup_mode must be 'linear' or 'constant', "
                             "got %r" % (type(self).__name__, state["warmup_mode"]))
        for key in self._state_fields:
            value = state[key]
            setattr(self, key, list(value) if isinstance(value, (list, tuple)) else value)
        return self

    def __repr__(self):
        items = ", ".join("%s=%r" % (k, getattr(self, k)) for k in self._state_fields)
        return "%s(%s)" % (type(self).__name__, items)


# --------------------------------------------------------------------------- Factor
class FactorScheduler(LRScheduler):
    """Multiply the learning rate by ``factor`` every ``step`` updates.

    For a fresh scheduler and ``n >= max(1, warmup_steps)``::

        lr(n) = max(base_lr * factor ** floor((n - 1) / step), stop_factor_lr)

    i.e. the first reduction happens at ``n = step + 1`` (MXNet's behaviour; its docstring
    says ``floor(n / step)``). Counting starts at 0, not at ``warmup_steps``. Before that,
    ``n < warmup_steps`` gives the warm-up value and leaves the state untouched.

    The state is ``count`` (the update at which the last reduction was counted) and the
    decayed ``base_lr``: each call with ``n > count + step`` advances ``count`` by ``step``
    and multiplies ``base_lr`` by ``factor`` (floored at ``stop_factor_lr``) as many times as
    needed. Calling with a smaller ``n`` later does not restore the learning rate.

    Parameters
    ----------
    step : int (>= 1)
        Updates between two reductions.
    factor : float (<= 1), default 1
        Multiplier applied at each reduction.
    stop_factor_lr : float, default 1e-8
        Lower bound of the decayed learning rate.
    base_lr, warmup_steps, warmup_begin_lr, warmup_mode
        See :class:`LRScheduler`.
    """

    _state_fields = LRScheduler._state_fields + ("step", "factor", "stop_factor_lr", "count")

    def __init__(self, step: int, factor: float = 1, stop_factor_lr: float = 1e-8,
                 base_lr: float = 0.01, warmup_steps: int = 0, warmup_begin_lr: float = 0,
                 warmup_mode: str = "linear") -> None:
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        name = type(self).__name__
        _require_real(name, "step", step)
        _require_real(name, "factor", factor)
        _require_real(name, "stop_factor_lr", stop_factor_lr)
        if step < 1:
            raise ValueError("%s: step must be >= 1 (updates between two lr reductions), "
                             "got %r" % (name, step))
        if factor > 1.0:
            raise ValueError("%s: factor must be <= 1 (it reduces the lr), got %r"
                             % (name, factor))
        self.step = step
        self.factor = factor
        self.stop_factor_lr = stop_factor_lr
        self.count = 0

    def __call__(self, num_update: int) -> float:
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)
        while num_update > self.count + self.step:
            self.count += self.step
            self.base_lr *= self.factor
            if self.base_lr < self.stop_factor_lr:
                self.base_lr = self.stop_factor_lr
                _log.info("Update[%d]: learning rate reached stop_factor_lr %0.5e; it stays "
                          "there", num_update, self.base_lr)
            else:
                _log.info("Update[%d]: learning rate now %0.5e", num_update, self.base_lr)
        return self.base_lr


# --------------------------------------------------------------------------- MultiFactor
class MultiFactorScheduler(LRScheduler):
    """Multiply the learning rate by ``factor`` when passing each update number in ``step``.

    For ``n >= warmup_steps``::

        lr(n) = base_lr * factor ** k,    k = #{s in step : n > s}

    with a strict ``>`` (MXNet's behaviour; its docstring says ``>=``): the reduction for
    ``s`` first shows at ``n = s + 1``. ``n < warmup_steps`` gives the warm-up value and
    leaves the state untouched.

    The state is the cursor ``cur_step_ind`` (number of steps passed so far), ``count`` (the
    last step passed) and the decayed ``base_lr``. Calling with a smaller ``n`` later does
    not restore the learning rate.

    Parameters
    ----------
    step : list of int
        Non-empty, strictly increasing, every entry >= 1. A tuple is rejected, as MXNet did.
    factor : float (<= 1), default 1
        Multiplier applied at each step passed.
    base_lr, warmup_steps, warmup_begin_lr, warmup_mode
        See :class:`LRScheduler`.
    """

    _state_fields = LRScheduler._state_fields + ("step", "factor", "count", "cur_step_ind")

    def __init__(self, step: Sequence[int], factor: float = 1, base_lr: float = 0.01,
                 warmup_steps: int = 0, warmup_begin_lr: float = 0,
                 warmup_mode: str = "linear") -> None:
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        name = type(self).__name__
        if not isinstance(step, list):
            raise TypeError("%s: step must be a list of update numbers, got %r (%s)"
                            % (name, step, type(step).__name__))
        if len(step) < 1:
            raise ValueError("%s: step must be a non-empty list, got []" % name)
        for i, s in enumerate(step):
            _require_real(name, "step[%d]" % i, s)
            if s < 1:
                raise ValueError("%s: every entry of step must be >= 1, got step[%d]=%r in %r"
                                 % (name, i, s, step))
            if i > 0 and s <= step[i - 1]:
                raise ValueError("%s: step must be strictly increasing, got step[%d]=%r <= "
                                 "step[%d]=%r in %r" % (name, i, s, i - 1, step[i - 1], step))
        _require_real(name, "factor", factor)
        if factor > 1.0:
            raise ValueError("%s: factor must be <= 1 (it reduces the lr), got %r"
                             % (name, factor))
        self.step = list(step)
        self.factor = factor
        self.count = 0
        self.cur_step_ind = 0

    def __call__(self, num_update: int) -> float:
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)
        while self.cur_step_ind < len(self.step) and num_update > self.step[self.cur_step_ind]:
            self.count = self.step[self.cur_step_ind]
            self.cur_step_ind += 1
            self.base_lr *= self.factor
            _log.info("Update[%d]: learning rate now %0.5e", num_update, self.base_lr)
        return self.base_lr


# --------------------------------------------------------------------------- Poly / Cosine
class _DecayToMax(LRScheduler):
    """Shared part of Poly and Cosine: a curve from ``base_lr_orig`` to ``final_lr``."""

    _state_fields = LRScheduler._state_fields + ("max_update", "final_lr", "base_lr_orig",
                                                 "max_steps")

    def __init__(self, max_update, base_lr, final_lr, warmup_steps, warmup_begin_lr,
                 warmup_mode):
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        name = type(self).__name__
        max_update = _require_int(name, "max_update", max_update)
        if max_update < 1:
            raise ValueError("%s: max_update must be >= 1 (total number of updates), got %r"
                             % (name, max_update))
        if self.warmup_steps == max_update:
            raise ValueError("%s: warmup_steps must differ from max_update (the decay would "
                             "last 0 updates), got warmup_steps=max_update=%r"
                             % (name, max_update))
        _require_real(name, "final_lr", final_lr)
        self.max_update = max_update
        self.final_lr = final_lr
        self.base_lr_orig = self.base_lr
        self.max_steps = max_update - self.warmup_steps

    def _curve(self, num_update):
        raise NotImplementedError

    def __call__(self, num_update: int) -> float:
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)
        if num_update <= self.max_update:
            self.base_lr = self._curve(num_update)
        return self.base_lr


class PolyScheduler(_DecayToMax):
    """Polynomial decay from ``base_lr`` to ``final_lr`` over ``max_update`` updates.

    For ``warmup_steps <= n <= max_update``::

        lr(n) = final_lr + (base_lr_orig - final_lr) * (1 - (n - warmup_steps) / max_steps) ** pwr

    with ``max_steps = max_update - warmup_steps`` and ``base_lr_orig`` the constructor's
    ``base_lr``. The value is stored in ``base_lr``; for ``n > max_update`` the scheduler
    returns that stored value, i.e. the last in-range value computed (``final_lr`` only if it
    was called at exactly ``max_update``; the original ``base_lr`` if it was never called in
    range). ``n < warmup_steps`` gives the warm-up value.

    Parameters
    ----------
    max_update : int (>= 1)
        Update number at which the curve reaches ``final_lr``. Must differ from
        ``warmup_steps``.
    base_lr : float, default 0.01
    pwr : float, default 2
        Exponent of the curve (stored as ``power``).
    final_lr : float, default 0
    warmup_steps, warmup_begin_lr, warmup_mode
        See :class:`LRScheduler`.
    """

    _state_fields = _DecayToMax._state_fields + ("power",)

    def __init__(self, max_update: int, base_lr: float = 0.01, pwr: float = 2, final_lr: float = 0,
                 warmup_steps: int = 0, warmup_begin_lr: float = 0,
                 warmup_mode: str = "linear") -> None:
        super().__init__(max_update, base_lr, final_lr, warmup_steps, warmup_begin_lr,
                         warmup_mode)
        _require_real(type(self).__name__, "pwr", pwr)
        self.power = pwr

    @property
    def pwr(self):
        """Alias of ``power`` (the constructor's argument name)."""
        return self.power

    @pwr.setter
    def pwr(self, value):
        self.power = value

    def _curve(self, num_update):
        frac = float(num_update - self.warmup_steps) / float(self.max_steps)
        return self.final_lr + (self.base_lr_orig - self.final_lr) * pow(1 - frac, self.power)


class CosineScheduler(_DecayToMax):
    """Cosine decay from ``base_lr`` to ``final_lr`` over ``max_update`` updates.

    For ``warmup_steps <= n <= max_update``::

        lr(n) = final_lr + (base_lr_orig - final_lr) * (1 + cos(pi * (n - warmup_steps) / max_steps)) / 2

    with ``max_steps = max_update - warmup_steps`` and ``base_lr_orig`` the constructor's
    ``base_lr``. The value is stored in ``base_lr``; for ``n > max_update`` the scheduler
    returns that stored value, i.e. the last in-range value computed (``final_lr`` only if it
    was called at exactly ``max_update``; the original ``base_lr`` if it was never called in
    range). ``n < warmup_steps`` gives the warm-up value.

    Parameters
    ----------
    max_update : int (>= 1)
        Update number at which the curve reaches ``final_lr``. Must differ from
        ``warmup_steps``.
    base_lr : float, default 0.01
    final_lr : float, default 0
    warmup_steps, warmup_begin_lr, warmup_mode
        See :class:`LRScheduler`.
    """

    def __init__(self, max_update: int, base_lr: float = 0.01, final_lr: float = 0,
                 warmup_steps: int = 0, warmup_begin_lr: float = 0,
                 warmup_mode: str = "linear") -> None:
        super().__init__(max_update, base_lr, final_lr, warmup_steps, warmup_begin_lr,
                         warmup_mode)

    def _curve(self, num_update):
        angle = math.pi * (num_update - self.warmup_steps) / self.max_steps
        return self.final_lr + (self.base_lr_orig - self.final_lr) * (1 + math.cos(angle)) / 2


# --------------------------------------------------------------------------- rebuild
_CLASSES = {c.__name__: c for c in (LRScheduler, FactorScheduler, MultiFactorScheduler,
                                    PolyScheduler, CosineScheduler)}


def _builtin(cls):
    """True for the classes of this module, whose state_dict has a fixed field list."""
    return _CLASSES.get(cls.__name__) is cls


def from_state_dict(state: dict[str, Any]) -> LRScheduler:
    """Build a scheduler from a dict returned by ``state_dict()`` (class taken from it)."""
    if not isinstance(state, dict):
        raise TypeError("from_state_dict: state must be a dict, got %s" % type(state).__name__)
    cls_name = state.get("class")
    cls = _CLASSES.get(cls_name)
    if cls is None:
        raise ValueError("from_state_dict: state['class'] must be one of %s, got %r"
                         % (sorted(_CLASSES), cls_name))
    obj = cls.__new__(cls)
    return obj.load_state_dict(state)


# --------------------------------------------------------------------------- checkpoints
def _class_path(cls):
    return "%s:%s" % (cls.__module__, cls.__qualname__)


def _resolve(path):
    """The LRScheduler subclass named ``"module:QualName"``.

    Only modules already in ``sys.modules`` are searched, through their ``__dict__``
    (no import, no module ``__getattr__``): a state file names a class, it never decides
    which code gets loaded."""
    if not isinstance(path, str) or path.count(":") != 1:
        raise StateFormatError("a scheduler class must be named 'module:QualName', got %r" % (path,))
    module_name, qualname = path.split(":")
    module = sys.modules.get(module_name)
    if module is None:
        raise StateFormatError(
            "the checkpoint holds a learning-rate scheduler of class %r, but module %r is not "
            "imported; import it (the module that defines %s) before loading: loading never "
            "imports modules itself" % (path, module_name, qualname))
    obj = module
    for part in qualname.split("."):
        namespace = getattr(obj, "__dict__", None)
        obj = namespace.get(part) if namespace is not None else None
        if obj is None:
            break
    if not (isinstance(obj, type) and issubclass(obj, LRScheduler)):
        raise StateFormatError(
            "the checkpoint holds a learning-rate scheduler of class %r, but module %r has no "
            "LRScheduler subclass %r; import the module that defines it (under that name) "
            "before loading" % (path, module_name, qualname))
    return obj


def _restore(cls, state, path):
    obj = cls.__new__(cls)
    try:
        obj.load_state_dict(state)
    except StateFormatError:
        raise
    except Exception as exc:    # user code: whatever it raises, the file does not fit it
        raise StateFormatError("cannot restore the learning-rate scheduler %r: %s: %s"
                               % (path, type(exc).__name__, exc)) from None
    return obj


def _checked_path(sched, where):
    """``"module:QualName"`` of ``sched``'s class, after checking it resolves back to it."""
    cls = type(sched)
    path = _class_path(cls)
    try:
        found = _resolve(path)
    except StateFormatError:
        found = None
    if found is not cls:
        raise TypeError("cannot save %s: its class %s cannot be found again as %r (defined "
                        "inside a function, or replaced under that name), so the checkpoint "
                        "could not be loaded; define the class at the top level of a module"
                        % (where, cls.__qualname__, path))
    return path


def _encode_attr(value, where):
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, list):
        return [_encode_attr(v, "%s[%d]" % (where, i)) for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {"$tuple": [_encode_attr(v, "%s[%d]" % (where, i)) for i, v in enumerate(value)]}
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError("cannot save %s: dict keys must be str, got %r" % (where, k))
            out[k] = _encode_attr(v, "%s[%r]" % (where, k))
        return {"$dict": out}
    if isinstance(value, LRScheduler):
        return {"$scheduler": _checked_path(value, where), "state": value.state_dict()}
    raise TypeError("cannot save %s: it holds a %s (%r); a scheduler's state may hold only "
                    "numbers, strings, None, lists, tuples, dicts with str keys and other "
                    "LRSchedulers; override state_dict() and load_state_dict() to store it "
                    "another way" % (where, type(value).__name__, value))


def _decode_attr(value, where):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_decode_attr(v, where) for v in value]
    if isinstance(value, dict):
        if set(value) == {"$tuple"} and isinstance(value["$tuple"], list):
            return tuple(_decode_attr(v, where) for v in value["$tuple"])
        if set(value) == {"$dict"} and isinstance(value["$dict"], dict):
            return {k: _decode_attr(v, where) for k, v in value["$dict"].items()}
        if set(value) == {"$scheduler", "state"}:
            path = value["$scheduler"]
            return _restore(_resolve(path), value["state"], path)
    raise StateFormatError("%s: unexpected saved value %r" % (where, value))


def _to_checkpoint(value, where):
    """``(class path, state)`` of a scheduler for a state file; ``TypeError`` (before
    anything is written) when the file could not give it back."""
    if not isinstance(value, LRScheduler):
        raise TypeError("cannot save %s: it is a %s, and a checkpoint can hold only "
                        "mxopt_numba.lr_scheduler.LRScheduler objects besides numbers, strings "
                        "and arrays; for a schedule, subclass LRScheduler and implement "
                        "__call__" % (where, type(value).__name__))
    path = _checked_path(value, where)
    state = value.state_dict()
    # A dry run through the file format: what state_dict gave must load into a fresh
    # instance, or saving would write a checkpoint that cannot be loaded.
    try:
        blob = _state_io.dumps("lr_scheduler", state, encode_object=_to_checkpoint)
        _restore(type(value), _state_io.loads(blob, "lr_scheduler", decode_object=_from_checkpoint), path)
    except StateFormatError as exc:
        raise TypeError("cannot save %s: its state_dict() does not load back (%s); fix "
                        "%s.state_dict/load_state_dict" % (where, exc, type(value).__qualname__)) from None
    return path, state


def _from_checkpoint(path, state):
    """Inverse of :func:`_to_checkpoint`."""
    return _restore(_resolve(path), state, path)


__dir__ = _namespace.public_dir(__name__)
