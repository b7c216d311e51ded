"""A named weight with its gradient buffer and per-parameter multipliers.

:class:`Parameter` is what a :class:`~mxopt_numba.Trainer` updates: plain NumPy arrays
(``data`` and ``grad``), updated in place, plus the settings MXNet's gluon kept on a
parameter (``lr_mult``, ``wd_mult``, ``grad_req``).

Gradient freshness.  MXNet's Trainer refuses to step while a parameter's gradient was not
written since the last step (usually a parameter the model forgot to use).  There is no
autograd here, so the rule is about *access*: a gradient counts as fresh once, since the
last step, the code

* read or assigned ``param.grad`` (``param.grad[...] = g``, ``np.dot(a, b,
  out=param.grad)``, ``param.grad = g`` all do), or
* called :meth:`Parameter.set_grad` or :meth:`Parameter.mark_fresh`.

The Trainer marks every gradient it used as stale again after the update.
:meth:`Parameter.zero_grad` clears the buffer without making it fresh.  Code that keeps
its own reference to the buffer (``g = p.grad`` once, then writes into ``g`` every
iteration) calls ``p.mark_fresh()`` after writing, or steps with
``ignore_stale_grad=True``.
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from . import _namespace
from .kernels import _launch

__all__ = ["Parameter"]

_GRAD_REQS = ("write", "add", "null")


def _real(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError("%s must be a real number, got %r" % (name, value))
    return float(value)


class Parameter:
    """A weight array, its gradient buffer and its per-parameter multipliers.

    Parameters
    ----------
    name : str
        The name; initializers pick the method from its suffix (``*_weight``,
        ``*_bias`` -> zeros, ``*_gamma`` -> ones, ...) and name-based optimizer rules
        (LARS skips ``*_bias``/``*_gamma``/``*_beta``) read it through the Trainer.
    data : numpy.ndarray
        The weight (float16, bfloat16, float32 or float64, C-contiguous, writeable).
        It is kept, not copied: the Trainer updates this very array in place.
    grad : numpy.ndarray, optional
        Gradient buffer of the same shape; zeros of the weight's dtype when not given.
        Not allocated for ``grad_req='null'``.
    lr_mult, wd_mult : float
        Multipliers of the learning rate and of the weight decay; read at every step,
        so changing them later takes effect at the next step.
    grad_req : {'write', 'add', 'null'}
        ``'write'``: :meth:`set_grad` overwrites the buffer; ``'add'``: it accumulates
        (call :meth:`zero_grad` yourself after a step); ``'null'``: no gradient, the
        Trainer never updates this parameter.

    See the module docstring for when a gradient counts as fresh.
    """

    def __init__(self, name: str, data: np.ndarray, grad: np.ndarray | None = None, lr_mult: float = 1.0,
                 wd_mult: float = 1.0, grad_req: str = "write") -> None:
        if not isinstance(name, str) or not name:
            raise TypeError("Parameter name must be a non-empty str, got %r" % (name,))
        self._name = name
        self._data = self._check_data(data)
        self.lr_mult = lr_mult
        self.wd_mult = wd_mult
        if grad_req not in _GRAD_REQS:
            raise ValueError("Parameter %r: grad_req must be one of %s, got %r"
                             % (name, ", ".join(map(repr, _GRAD_REQS)), grad_req))
        self._grad_req = grad_req
        self._fresh = False
        if grad is None:
            self._grad = None if grad_req == "null" else np.zeros_like(self._data)
        else:
            if grad_req == "null":
                raise ValueError("Parameter %r: a gradient buffer was given with grad_req='null'" % name)
            self._grad = self._check_grad(grad)

    # ------------------------------------------------------------------ validation
    def _check_data(self, data):
        if not isinstance(data, np.ndarray):
            raise TypeError("Parameter %r: data must be a numpy array, got %s"
                            % (self._name, type(data).__name__))
        if not _launch.supported(data.dtype):
            raise TypeError("Parameter %r: data has dtype %s; expected float16, bfloat16, float32 "
                            "or float64" % (self._name, data.dtype))
        if not data.flags.c_contiguous or not data.flags.writeable:
            raise ValueError("Parameter %r: data must be a writeable C-contiguous array (it is "
                             "updated in place); pass numpy.ascontiguousarray(data)" % self._name)
        return data

    def _check_grad(self, grad):
        if not isinstance(grad, np.ndarray):
            raise TypeError("Parameter %r: grad must be a numpy array, got %s"
                            % (self._name, type(grad).__name__))
        if grad.shape != self._data.shape:
            raise ValueError("Parameter %r: grad has shape %s but data has shape %s"
                             % (self._name, grad.shape, self._data.shape))
        if not _launch.supported(grad.dtype):
            raise TypeError("Parameter %r: grad has dtype %s; expected float16, bfloat16, float32 "
                            "or float64" % (self._name, grad.dtype))
        if not grad.flags.c_contiguous or not grad.flags.writeable:
            raise ValueError("Parameter %r: grad must be a writeable C-contiguous array" % self._name)
        if grad.size and np.may_share_memory(grad, self._data):
            raise ValueError("Parameter %r: grad shares memory with data" % self._name)
        return grad

    # ------------------------------------------------------------------ attributes
    @property
    def name(self) -> str:
        return self._name

    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    @property
    def lr_mult(self) -> float:
        return self._lr_mult

    @lr_mult.setter
    def lr_mult(self, value: float) -> None:
        self._lr_mult = _real("Parameter %r: lr_mult" % self._name, value)

    @property
    def wd_mult(self) -> float:
        return self._wd_mult

    @wd_mult.setter
    def wd_mult(self, value: float) -> None:
        self._wd_mult = _real("Parameter %r: wd_mult" % self._name, value)

    @property
    def grad_req(self) -> str:
        return self._grad_req

    @grad_req.setter
    def grad_req(self, req: str) -> None:
        if req not in _GRAD_REQS:
            raise ValueError("Parameter %r: grad_req must be one of %s, got %r"
                             % (self._name, ", ".join(map(repr, _GRAD_REQS)), req))
        if req == "null":
            self._grad = None
        elif self._grad is None:
            self._grad = np.zeros_like(self._data)
        self._grad_req = req
        self._fresh = False

    @property
    def data(self) -> np.ndarray:
        """The weight array (the Trainer updates this object in place)."""
        return self._data

    @data.setter
    def data(self, value: np.ndarray) -> None:
        self.set_data(value)

    def set_data(self, value: np.ndarray) -> None:
        """Copy ``value`` into the weight array (same object, so cached plans stay valid)."""
        value = self._incoming(value, self._data, "new data")
        np.copyto(self._data, value, casting="same_kind")

    def _incoming(self, value, buffer, what):
        """``value`` as an array that fits ``buffer``; errors name the parameter."""
        try:
            value = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise TypeError("Parameter %r: %s must be an array of real numbers of shape %s, "
                            "got %s (%s)" % (self._name, what, buffer.shape,
                                             type(value).__name__, exc)) from None
        if value.shape != buffer.shape:
            raise ValueError("Parameter %r: %s has shape %s, expected %s"
                             % (self._name, what, value.shape, buffer.shape))
        if not np.can_cast(value.dtype, buffer.dtype, "same_kind"):
            raise TypeError("Parameter %r: %s has dtype %s, expected real numbers (a float, "
                            "integer or bool array) to store in its %s buffer"
                            % (self._name, what, value.dtype, buffer.dtype))
        return value

    @property
    def grad(self) -> np.ndarray | None:
        """The gradient buffer; reading it counts as writing a new gradient (see module doc)."""
        if self._grad is None:
            raise RuntimeError("Parameter %r has grad_req='null': it has no gradient" % self._name)
        self._fresh = True
        return self._grad

    @grad.setter
    def grad(self, value: np.ndarray) -> None:
        if self._grad is None:
            raise RuntimeError("Parameter %r has grad_req='null': it has no gradient" % self._name)
        if value is not self._grad:
            self._copy_into_grad(value, add=False)
        self._fresh = True

    def _copy_into_grad(self, value, add):
        value = self._incoming(value, self._grad, "gradient")
        if add:
            np.add(self._grad, value, out=self._grad, casting="same_kind")
        else:
            np.copyto(self._grad, value, casting="same_kind")

    # ------------------------------------------------------------------ gradient helpers
    def set_grad(self, value: np.ndarray) -> None:
        """Store a new gradient as a backward pass would: overwrite for
        ``grad_req='write'``, accumulate for ``'add'``; marks it fresh."""
        if self._grad is None:
            raise RuntimeError("Parameter %r has grad_req='null': it has no gradient" % self._name)
        self._copy_into_grad(value, add=self._grad_req == "add")
        self._fresh = True

    def mark_fresh(self) -> None:
        """Declare that the gradient buffer holds a new gradient (after writing into a
        reference to it that you kept)."""
        self._fresh = True

    def zero_grad(self) -> None:
        """Set the gradient buffer to 0 (does not make it fresh)."""
        if self._grad is not None:
            self._grad.fill(0)

    @property
    def fresh_grad(self) -> bool:
        """True when a new gradient was written since the last step."""
        return self._fresh

    # ------------------------------------------------------------------ initialization
    def initialize(self, init: Any = None, attrs: dict[str, Any] | None = None) -> None:
        """Fill ``data`` through an initializer, dispatched on the parameter's name.

        ``init`` is an :class:`~mxopt_numba.initializer.Initializer`, a registered name
        or a ``dumps()`` string; None means ``Uniform()`` (gluon's default).  Names
        ending in ``bias`` get zeros, ``gamma`` ones, etc. (``attrs={'__init__': ...}``
        forces an initializer whatever the name).  Returns ``self``.
        """
        from . import initializer as _init
        init = _init.Uniform() if init is None else _init.create(init)
        init(_init.InitDesc(self._name, attrs=attrs), self._data)
        return self

    def __repr__(self):
        return "Parameter(%r, shape=%s, dtype=%s, lr_mult=%r, wd_mult=%r, grad_req=%r)" % (
            self._name, self._data.shape, self._data.dtype, self._lr_mult, self._wd_mult, self._grad_req)


__dir__ = _namespace.public_dir(__name__)
