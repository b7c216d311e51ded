"""Trainer: applies an optimizer to a set of :class:`~mxopt_numba.Parameter` objects
(gluon's Trainer without gluon).

    import mxopt_numba as mxo
    params = {"fc_weight": mxo.Parameter("fc_weight", w), "fc_bias": mxo.Parameter("fc_bias", b)}
    trainer = mxo.Trainer(params, "sgd", {"learning_rate": 0.1, "momentum": 0.9})
    for x, y in batches:
        params["fc_weight"].grad[...] = ...      # gradient of the loss summed over the batch
        params["fc_bias"].grad[...] = ...
        trainer.step(len(x))                      # gradients are rescaled by 1 / batch size

Every step updates all parameters through **one** call of the
:class:`~mxopt_numba.optimizer.Updater` with the full lists, so the optimizer's
``aggregate_num`` decides how many tensors share a kernel launch (``numpy.inf``: one
launch per storage layout for the whole model, the Trainer's default for an optimizer
given by name).  The lists and the arrays in them are the same objects from
step to step, so the optimizer's launch plans are built once and reused.
"""
from __future__ import annotations

import math
import numbers
import os
import tempfile
import warnings
from typing import Any, Sequence

from . import _namespace
from . import _state_io
from . import random as _random
from .optimizer import Optimizer, create
from .optimizer.optimizer import state_leaves
from .optimizer.updater import Updater
from .parameter import Parameter
from .utils import clip_global_norm as _clip_global_norm

__all__ = ["Trainer", "StateFormatError"]

StateFormatError = _state_io.StateFormatError

_STATE_DICT_FORMAT = "mxopt_numba.Trainer"


class Trainer:
    """Updates parameters with an optimizer.

    Parameters
    ----------
    params : dict or list of Parameter
        A dict ``name -> Parameter`` (ordered by sorted key, as MXNet does) or a list
        (kept in order).  Parameter ``k`` of that order has index ``k`` in the optimizer;
        a Parameter object given twice (shared weights) is updated once.
    optimizer : str or mxopt_numba.optimizer.Optimizer
        A registered name (``'sgd'``, ``'adam'``, ...) or an instance.
    optimizer_params : dict or sequence of (key, value) pairs, optional
        Keyword arguments of the optimizer when it is given by name; must be empty when
        an instance is given.
    communicator : object, optional
        For data-parallel training: an object whose ``allreduce(arrays)`` replaces every
        array of the list, in place, by its sum over all workers.  Then pass the global
        batch size to :meth:`step`.  None (one process): :meth:`allreduce_grads` does
        nothing.
    clip_global_norm : float, optional
        Clip the joint L2 norm of the *rescaled* gradients (the gradients times
        ``rescale_grad / batch_size``, what the update rule sees) to this value: at every
        :meth:`step` / :meth:`update`, after the all-reduce and before the update, the
        gradient buffers of the parameters about to be updated are scaled in place by
        :func:`mxopt_numba.utils.clip_global_norm` with ``max_norm = clip_global_norm /
        (rescale_grad / batch_size)``.  The optimizer's own element-wise
        ``clip_gradient`` applies afterwards.  The norm measured (of the rescaled
        gradients, before clipping) is kept in :attr:`last_grad_norm`.  None: no clipping.

    Notes
    -----
    The Trainer hands the optimizer ``param_dict`` (index -> Parameter: ``lr_mult`` and
    ``wd_mult`` are read at every step) and ``param_idx2name`` (index -> parameter name,
    for name-keyed multipliers and name rules such as LARS's bias/gamma/beta exclusion;
    MXNet's gluon Trainer left it empty).

    An optimizer given by name gets ``aggregate_num=numpy.inf`` (one kernel launch per
    storage layout for the whole model) unless ``optimizer_params`` sets
    ``aggregate_num``; an optimizer instance keeps its own setting.  The results are
    bitwise the same for every ``aggregate_num``: each tensor's update, and each tensor's
    norm in the layer-wise rules, is computed by the same code whichever tensors share
    its launch.  Only the number of launches (the Python overhead per step) changes.
    """

    def __init__(self, params: dict[str, Parameter] | Sequence[Parameter], optimizer: str | Optimizer,
                 optimizer_params: dict[str, Any] | Sequence[tuple[str, Any]] | None = None, *,
                 communicator: Any = None, clip_global_norm: float | None = None) -> None:
        self._params = _collect(params)
        self._param_dict = dict(enumerate(self._params))
        self._idx2name = {i: p.name for i, p in enumerate(self._params)}
        kwargs = _as_kwargs(optimizer_params)
        for key in ("param_dict", "param_idx2name"):
            if key in kwargs:
                raise ValueError("optimizer_params must not set %r: the Trainer fills it from params" % key)
        if isinstance(optimizer, Optimizer):
            if kwargs:
                raise ValueError("optimizer_params (%s) cannot be applied to an optimizer instance; "
                                 "set them when creating %s, or pass the optimizer by name"
                                 % (", ".join(sorted(kwargs)), type(optimizer).__name__))
        elif isinstance(optimizer, str):
            kwargs.setdefault("aggregate_num", math.inf)
            optimizer = create(optimizer, param_dict=self._param_dict,
                               param_idx2name=dict(self._idx2name), **kwargs)
        else:
            raise TypeError("optimizer must be a registered name or an Optimizer instance, got %s"
                            % type(optimizer).__name__)
        self._attach(optimizer)
        self._scale = optimizer.rescale_grad
        self._updater = Updater(optimizer)
        self._communicator = communicator
        self._lists = None
        if clip_global_norm is not None and (
                isinstance(clip_global_norm, bool) or not isinstance(clip_global_norm, numbers.Real)
                or not math.isfinite(clip_global_norm) or clip_global_norm <= 0):
            raise ValueError("clip_global_norm must be None or a positive finite number, got %r"
                             % (clip_global_norm,))
        self._clip_global_norm = None if clip_global_norm is None else float(clip_global_norm)
        #: global L2 norm of the rescaled gradients measured at the last step (before
        #: clipping); None until a step ran with ``clip_global_norm`` set
        self.last_grad_norm = None

    # ------------------------------------------------------------------ attributes
    @property
    def optimizer(self) -> Optimizer:
        return self._updater.optimizer

    @property
    def params(self) -> list[Parameter]:
        """The parameters in index order."""
        return list(self._params)

    @property
    def param_dict(self) -> dict[int, Parameter]:
        """index -> Parameter (the dict the optimizer reads multipliers from)."""
        return self._param_dict

    @property
    def param_idx2name(self) -> dict[int, str]:
        return dict(self._idx2name)

    @property
    def learning_rate(self) -> float:
        return self.optimizer.learning_rate

    def set_learning_rate(self, lr: float) -> None:
        """Set the optimizer's learning rate (``UserWarning`` raised when it has an
        lr_scheduler, as in MXNet)."""
        self.optimizer.set_learning_rate(lr)

    def _attach(self, optimizer):
        optimizer.param_dict = self._param_dict
        optimizer.idx2name = {**optimizer.idx2name, **self._idx2name}

    # ------------------------------------------------------------------ training
    def step(self, batch_size: float, ignore_stale_grad: bool = False) -> None:
        """One optimization step: rescale gradients by ``1 / batch_size``, all-reduce them
        (data-parallel runs), update every parameter.

        Raises ``UserWarning`` (as an exception, like MXNet) when a parameter's gradient
        was not written since the last step (see :mod:`mxopt_numba.parameter` for what
        counts as written), unless ``ignore_stale_grad`` is true; then such parameters
        are skipped.  Parameters with ``grad_req='null'`` are never updated.
        """
        self._set_rescale(batch_size)
        self.allreduce_grads()
        self._update(ignore_stale_grad)

    def update(self, batch_size: float, ignore_stale_grad: bool = False) -> None:
        """:meth:`step` without :meth:`allreduce_grads` (call that yourself first, e.g. to
        clip the reduced gradients in between)."""
        self._set_rescale(batch_size)
        self._update(ignore_stale_grad)

    def allreduce_grads(self) -> None:
        """Sum the gradients over all workers: nothing to do in one process.

        The hook for data-parallel training: with a ``communicator`` its
        ``allreduce(grads)`` is called with every gradient buffer; subclasses may
        override this method instead.
        """
        if self._communicator is None:
            return
        self._communicator.allreduce([p._grad for p in self._params if p._grad is not None])

    def zero_grad(self) -> None:
        """Set every gradient buffer to 0 (for ``grad_req='add'``)."""
        for p in self._params:
            p.zero_grad()

    def _set_rescale(self, batch_size):
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Real) \
                or not math.isfinite(batch_size) or batch_size <= 0:
            raise ValueError("batch_size must be a positive number, got %r" % (batch_size,))
        self.optimizer.rescale_grad = self._scale / batch_size

    def _full_lists(self):
        """``(indices, weights, grads, params)`` of every parameter with a gradient; the
        same list objects while no parameter changed its arrays or grad_req."""
        lists = self._lists
        if lists is not None and all(p._data is d and p._grad is g
                                     for p, (d, g) in zip(self._params, lists[4])):
            return lists
        active = [(i, p) for i, p in enumerate(self._params) if p._grad is not None]
        lists = ([i for i, _ in active], [p._data for _, p in active], [p._grad for _, p in active],
                 [p for _, p in active], [(p._data, p._grad) for p in self._params])
        self._lists = lists
        return lists

    def _update(self, ignore_stale_grad):
        indices, weights, grads, params, _ = self._full_lists()
        if not all(p._fresh for p in params):
            stale = [p.name for p in params if not p._fresh]
            if not ignore_stale_grad:
                shown = ", ".join(repr(n) for n in stale[:8]) + (", ..." if len(stale) > 8 else "")
                raise UserWarning(
                    "Gradient of %d parameter(s) (%s) was not written since the last step. A "
                    "gradient counts as written once param.grad was read or assigned, or "
                    "param.set_grad()/param.mark_fresh() was called. If the model uses only some "
                    "parameters on purpose, call step(..., ignore_stale_grad=True) to skip the "
                    "stale ones." % (len(stale), shown))
            keep = [k for k, p in enumerate(params) if p._fresh]
            if not keep:
                return
            indices = [indices[k] for k in keep]
            weights = [weights[k] for k in keep]
            grads = [grads[k] for k in keep]
            params = [params[k] for k in keep]
        if not indices:
            return
        if self._clip_global_norm is not None:
            self._clip(grads)
        self._updater(indices, grads, weights)
        for p in params:
            p._fresh = False

    def _clip(self, grads):
        scale = self.optimizer.rescale_grad
        if scale == 0:
            self.last_grad_norm = 0.0
            return
        raw = _clip_global_norm(grads, self._clip_global_norm / abs(scale))
        self.last_grad_norm = raw * abs(scale)

    # ------------------------------------------------------------------ save / load
    def save_states(self, fname: str | os.PathLike[str]) -> None:
        """Write the optimizer's states and settings (update counts, scheduler, the
        library's random stream) to ``fname``, atomically: a temporary file in the same
        folder, then a rename, so an interrupted save never leaves a truncated file
        behind.  When ``fname`` is a symbolic link, its target is replaced and the link
        stays.  No pickle inside.

        Raises ``TypeError``, before touching the file, when the optimizer holds
        something a checkpoint could not restore (a learning-rate scheduler that is not
        an :class:`~mxopt_numba.lr_scheduler.LRScheduler`, or whose class or attributes
        cannot be saved)."""
        _atomic_write(fname, self._updater.get_states(dump_optimizer=True))

    def load_states(self, fname: str | os.PathLike[str]) -> None:
        """Restore what :meth:`save_states` wrote.

        The optimizer saved in the file (class, hyperparameters, update counts,
        scheduler) replaces the current one, as in MXNet; ``param_dict`` and the
        parameter names are attached again.  Raises
        :class:`~mxopt_numba._state_io.StateFormatError` (a ``ValueError``) for a
        corrupted file, or one whose states do not fit these parameters; the Trainer is
        unchanged then.
        """
        with open(fname, "rb") as f:
            data = f.read()
        updater = Updater(self.optimizer)
        try:
            generator = updater._load(data)
        except StateFormatError as exc:
            raise StateFormatError("%s: %s" % (os.fspath(fname), exc)) from None
        self._check_states(updater, fname)
        self._attach(updater.optimizer)
        self._updater = updater
        if generator is not None:
            _random._use(generator)

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's states and settings, in memory: what :meth:`save_states` writes.

        Returns ``{"format": "mxopt_numba.Trainer", "version": 1, "states": bytes}``; the
        bytes are the file contents :meth:`save_states` would write (no pickle inside), an
        independent copy that later steps do not change.
        """
        return {"format": _STATE_DICT_FORMAT, "version": 1,
                "states": self._updater.get_states(dump_optimizer=True)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (or ``{"states": <bytes of a file
        written by save_states>}``), with the checks of :meth:`load_states`; the Trainer is
        unchanged when they fail."""
        if not isinstance(state_dict, dict) or not isinstance(state_dict.get("states"), (bytes, bytearray)):
            raise StateFormatError("state_dict must be a dict returned by Trainer.state_dict(), got %s"
                                   % (type(state_dict).__name__ if not isinstance(state_dict, dict)
                                      else "a dict without 'states' bytes"))
        if state_dict.get("format", _STATE_DICT_FORMAT) != _STATE_DICT_FORMAT or \
                state_dict.get("version", 1) != 1:
            raise StateFormatError("state_dict has format %r version %r; expected %r version 1"
                                   % (state_dict.get("format"), state_dict.get("version"), _STATE_DICT_FORMAT))
        updater = Updater(self.optimizer)
        try:
            updater.set_states(bytes(state_dict["states"]))
        except StateFormatError as exc:
            raise StateFormatError("state_dict: %s" % exc) from None
        self._check_states(updater, "state_dict")
        self._attach(updater.optimizer)
        self._updater = updater

    def _check_states(self, updater, fname):
        opt = updater.optimizer
        n = len(self._params)
        for index, state in updater.states.items():
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
                raise StateFormatError("%s holds optimizer states for parameter index %r, but this "
                                       "Trainer has %d parameters (indices 0..%d)"
                                       % (os.fspath(fname), index, n, n - 1))
            param = self._params[index]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected = opt.create_state_multi_precision(index, param._data)
            problem = _compare_state(state, expected)
            if problem:
                raise StateFormatError("%s: optimizer state of parameter %d (%r, shape %s, dtype %s) "
                                       "does not fit: %s" % (os.fspath(fname), index, param.name,
                                                             param.shape, param.dtype, problem))


# ---------------------------------------------------------------------- helpers
def _collect(params):
    if isinstance(params, Parameter):
        raise ValueError("params must be a dict or a list of Parameters, got a single Parameter; "
                         "wrap it in a list")
    if isinstance(params, dict):
        try:
            keys = sorted(params)
        except TypeError:
            raise ValueError("params dict keys must be sortable (names), got %r" % list(params)[:5]) from None
        items = [params[k] for k in keys]
    elif isinstance(params, (list, tuple)):
        items = list(params)
    else:
        raise ValueError("params must be a dict of name -> Parameter or a list of Parameters, got %s"
                         % type(params).__name__)
    out, seen = [], set()
    for p in items:
        if not isinstance(p, Parameter):
            raise ValueError("params must hold Parameter objects, got %s" % type(p).__name__)
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def _as_kwargs(optimizer_params):
    if optimizer_params is None:
        return {}
    if isinstance(optimizer_params, dict):
        items = list(optimizer_params.items())
    elif isinstance(optimizer_params, (list, tuple)):
        items = []
        for pair in optimizer_params:
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                raise ValueError("optimizer_params must be a dict or a sequence of (key, value) pairs; "
                                 "got the entry %r" % (pair,))
            items.append(tuple(pair))
    else:
        raise TypeError("optimizer_params must be a dict or a sequence of (key, value) pairs, got %s"
                        % type(optimizer_params).__name__)
    out = {}
    for key, value in items:
        if not isinstance(key, str):
            raise TypeError("optimizer_params keys must be str, got %r" % (key,))
        if key in out:
            raise ValueError("optimizer_params sets %r twice" % key)
        out[key] = value
    return out


def _compare_state(got, expected, where="state"):
    """Why ``got`` cannot stand for ``expected`` (a freshly created state), or None."""
    if expected is None or got is None:
        if (expected is None) != (got is None) and (state_leaves(got) or state_leaves(expected)):
            return "%s is %s, expected %s" % (where, _describe(got), _describe(expected))
        return None
    if hasattr(expected, "shape"):
        if not hasattr(got, "shape"):
            return "%s is %s, expected an array" % (where, _describe(got))
        if got.shape != expected.shape or got.dtype != expected.dtype:
            return "%s has shape %s and dtype %s, expected shape %s and dtype %s" % (
                where, got.shape, got.dtype, expected.shape, expected.dtype)
        return None
    if not isinstance(got, (tuple, list)) or len(got) != len(expected):
        return "%s is %s, expected %s" % (where, _describe(got), _describe(expected))
    for k, (g, e) in enumerate(zip(got, expected)):
        problem = _compare_state(g, e, "%s[%d]" % (where, k))
        if problem:
            return problem
    return None


def _describe(x):
    if x is None:
        return "None"
    if hasattr(x, "shape"):
        return "an array of shape %s" % (x.shape,)
    if isinstance(x, (tuple, list)):
        return "a %s of %d entries" % (type(x).__name__, len(x))
    return "a %s" % type(x).__name__


def _atomic_write(fname, data):
    # The temporary file goes beside the final target, not beside a symlink to it, so
    # that the rename replaces the target's contents and the link stays a link (and the
    # rename never crosses filesystems).
    path = os.path.realpath(os.fspath(fname))
    directory, base = os.path.split(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".%s." % base, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            mode = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


__dir__ = _namespace.public_dir(__name__)
