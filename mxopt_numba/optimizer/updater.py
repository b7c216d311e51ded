"""The Updater: keeps one state per parameter index and feeds the optimizer whole chunks
of tensors, so that one kernel launch updates up to ``aggregate_num`` of them."""
from __future__ import annotations

import collections
import math
import numbers
import operator
from typing import Any, Sequence, Union

import numpy as np

from .. import _device, _state_io
from .. import random as _random
from .._state_tree import state_leaves
from . import _headers, _plan
from .optimizer import Optimizer, _registry, _user_update_kind

__all__ = ["Updater", "get_updater"]

#: a parameter index: an int, or a name
Index = Union[int, str]

_SKIP_ATTRS = {"param_dict", "_plans", "_all_index_update_counts", "_index_update_count",
               "norm_reducer", "_mp_swapped"}


class _StateTable(dict):
    """``Updater.states``: a dict that records every change (replacing, adding or deleting
    a state), so cached chunks never run with a state the user has replaced."""

    __slots__ = ("version",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.version = 0

    def _changed(self):
        self.version += 1

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self._changed()

    def __delitem__(self, key):
        super().__delitem__(key)
        self._changed()

    def _mutator(name):   # noqa: N805 - builds the methods below
        method = getattr(dict, name)

        def call(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            finally:
                self._changed()
        call.__name__ = name
        return call

    update = _mutator("update")
    pop = _mutator("pop")
    popitem = _mutator("popitem")
    clear = _mutator("clear")
    setdefault = _mutator("setdefault")
    __ior__ = _mutator("__ior__")
    del _mutator


class _Chunk:
    """Tensors of one update call: their indices, states, positions in the caller's lists
    and the launch plan kept for the next step."""

    __slots__ = ("indices", "positions", "states", "plan")

    def get(self, key):
        return self.plan

    def put(self, key, plan):
        self.plan = plan


class _Entry:
    __slots__ = ("version", "weights", "weight_ids", "chunks", "nbytes")


class Updater:
    """Calls ``optimizer.update_multi_precision`` on lists of tensors.

    ``updater(index, grad, weight)`` takes one index or lists (note: gradient before
    weight, as in MXNet).  Tensors are grouped by dtype and precision and cut into chunks
    of ``optimizer.aggregate_num``; each chunk is one call (one kernel launch per storage
    layout) with its own launch plan.  States are created on first sight of an index and
    kept in ``states``; replacing, adding or deleting one there takes effect at the next
    call.
    """

    #: where a saved optimizer's class is looked up by name (mxopt_numba.v1 has its own)
    optimizer_registry = _registry

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError("Updater needs an Optimizer, got %s" % type(optimizer).__name__)
        self.optimizer = optimizer
        self.states = {}
        self.states_synced = {}

    @property
    def states(self):
        return self._states

    @states.setter
    def states(self, value):
        if not isinstance(value, dict):
            raise TypeError("Updater.states must be a dict of index -> state, got %s" % type(value).__name__)
        self._states = _StateTable(value)
        self._chunks = _plan.PlanCache()
        self._last = None       # (indices, aggregate_num, class, key, entry) of the last call

    @property
    def aggregate_updates(self):
        return self.optimizer.aggregate_num > 1

    def __call__(self, index: Index | Sequence[Index], grad: Any, weight: Any) -> None:
        if isinstance(index, (list, tuple)):
            indices, grads, weights = list(index), grad, weight
            if not isinstance(grads, (list, tuple)) or not isinstance(weights, (list, tuple)):
                raise TypeError("grad and weight must be lists when index is a list")
            if not (len(grads) == len(indices) == len(weights)):
                raise ValueError("index, grad and weight lists differ in length: %d, %d, %d"
                                 % (len(indices), len(grads), len(weights)))
        else:
            indices, grads, weights = [index], [grad], [weight]
        opt = self.optimizer
        opt._set_current_device(0)
        last = self._last
        if last is not None and last[0] == indices and last[1] == opt.aggregate_num and last[2] is type(opt):
            key, entry = last[3], last[4]       # a training loop: the same indices as last time
        else:
            key = (tuple(indices), opt.aggregate_num, type(opt))
            entry = self._chunks.get(key)
        new = entry is None or entry.version != self._states.version or not _headers.holds(weights, entry.weight_ids)
        if new:
            indices = [i.decode() if isinstance(i, bytes) else i for i in indices]
            entry = self._new_entry(indices, weights)
        # the chunk keeps its own plan unless the update entry points were replaced
        direct = (type(opt).update is Optimizer.update
                  and type(opt).update_multi_precision is Optimizer.update_multi_precision
                  and "update" not in opt.__dict__ and "update_multi_precision" not in opt.__dict__
                  and _user_update_kind(type(opt)) is None)
        for chunk in entry.chunks:
            if chunk.positions is None:
                ws, gs = weights, grads
            else:
                pick = operator.itemgetter(*chunk.positions)
                ws, gs = pick(weights), pick(grads)
                ws, gs = (list(ws), list(gs)) if len(chunk.positions) > 1 else ([ws], [gs])
            if direct:
                # the weights were checked against the entry above; the states are the chunk's
                opt._run_update(chunk, chunk.indices, list(ws), list(gs), chunk.states, verified=not new)
            else:
                opt.update_multi_precision(chunk.indices, list(ws), list(gs), chunk.states)
        if new:      # cached once its plans exist, so the cache counts their bytes
            entry.nbytes = 256 + 120 * len(indices) + sum(c.plan.nbytes for c in entry.chunks if c.plan is not None)
            self._chunks.put(key, entry)
        self._last = (indices, opt.aggregate_num, type(opt), key, entry)

    def _new_entry(self, indices, weights):
        _plan.check_unique(tuple(indices))
        opt = self.optimizer
        for i in indices:
            if isinstance(i, bool) or not isinstance(i, (numbers.Integral, str)):
                raise TypeError("indices must be ints or strings, got %r (%s)" % (i, type(i).__name__))
        for i, w in zip(indices, weights):
            if i not in self._states:
                self._states[i] = opt.create_state_multi_precision(i, w)
                self.states_synced[i] = True
        _check_disjoint_call(indices, weights, [self._states[i] for i in indices])
        n = opt.aggregate_num
        size = len(indices) if math.isinf(n) else max(1, int(n))
        if math.isinf(n):
            groups = [list(range(len(indices)))]
        else:
            by_kind = collections.OrderedDict()
            for k, w in enumerate(weights):
                dtype = _device.dtype_of(w)
                by_kind.setdefault((dtype.str, opt.uses_master(w)), []).append(k)
            groups = list(by_kind.values())
        entry = _Entry()
        entry.version = self._states.version
        entry.weights = list(weights)        # kept, so that their ids name them
        entry.weight_ids = _headers.ids_of(entry.weights)
        entry.chunks = []
        for members in groups:
            for start in range(0, len(members), size):
                part = members[start:start + size]
                chunk = _Chunk()
                chunk.indices = [indices[k] for k in part]
                chunk.states = [self._states[indices[k]] for k in part]
                chunk.positions = None if part == list(range(len(indices))) else tuple(part)
                chunk.plan = None
                entry.chunks.append(chunk)
        return entry

    # ------------------------------------------------------------------ save / load
    def get_states(self, dump_optimizer: bool = False) -> bytes:
        """Bytes holding every state (and, with ``dump_optimizer``, the optimizer's
        settings and update counts, its learning-rate scheduler and the position of the
        library's random stream, so that SGLD resumes exactly); no pickle inside.

        Raises ``TypeError`` when something cannot be stored so that it loads again (a
        scheduler that is not an :class:`~mxopt_numba.lr_scheduler.LRScheduler`, one
        whose class cannot be found by name, an attribute with no saved form)."""
        payload = {"states": self.states}
        if dump_optimizer:
            payload["optimizer"] = optimizer_config(self.optimizer)
            payload["rng"] = _random.get_state()
        return _state_io.dumps("updater", payload, encode_object=_encode_object)

    def set_states(self, states: bytes) -> None:
        """Restore what :meth:`get_states` returned (a new optimizer too if it was dumped,
        and then the library's random stream)."""
        generator = self._load(states)
        if generator is not None:
            _random._use(generator)

    def _load(self, states):
        """:meth:`set_states` except the random stream, which it returns (or None) for
        the caller to install once everything else was accepted."""
        payload = _state_io.loads(states, "updater", decode_object=_decode_object)
        if not isinstance(payload, dict) or not isinstance(payload.get("states"), dict):
            raise _state_io.StateFormatError("updater state data has no 'states' table")
        new_states = payload["states"]
        for index, state in new_states.items():
            for leaf in state_leaves(state):
                if not isinstance(leaf, np.ndarray):
                    raise _state_io.StateFormatError("state of index %r holds a %s" % (index, type(leaf).__name__))
        generator = None
        if "rng" in payload:
            try:
                generator = _random._from_state(payload["rng"])
            except ValueError as exc:
                raise _state_io.StateFormatError(str(exc)) from None
        optimizer = self.optimizer
        if "optimizer" in payload:
            optimizer = optimizer_from_config(payload["optimizer"], self.optimizer_registry)
            optimizer.param_dict = self.optimizer.param_dict
        self.optimizer = optimizer
        self.states = new_states
        self.states_synced = dict.fromkeys(new_states, False)
        return generator


def get_updater(optimizer: Optimizer) -> Updater:
    """An :class:`Updater` for ``optimizer``."""
    return Updater(optimizer)


def optimizer_config(opt):
    """JSON-able description of an optimizer: class, attributes, update counts.

    Raises ``TypeError`` for a learning-rate scheduler that a state file could not
    restore (see :mod:`mxopt_numba.lr_scheduler`)."""
    attrs = {}
    for name, value in opt.__dict__.items():
        if name in _SKIP_ATTRS:
            continue
        attrs[name] = value
    sched = attrs.get("lr_scheduler")
    if sched is not None:
        from .. import lr_scheduler
        if not isinstance(sched, lr_scheduler.LRScheduler):
            raise TypeError(
                "cannot save the optimizer: its lr_scheduler is a %s (%r), not an "
                "mxopt_numba.lr_scheduler.LRScheduler, so a checkpoint could not restore it; "
                "subclass LRScheduler and implement __call__ (its attributes are saved by the "
                "default state_dict)" % (type(sched).__name__, sched))
    counts = {dev: dict(c) for dev, c in opt._all_index_update_counts.items()}
    return {"class": type(opt).__name__, "attrs": attrs, "counts": counts}


def optimizer_from_config(config, registry=_registry):
    try:
        cls = registry.get(config["class"])
        attrs, counts = config["attrs"], config["counts"]
    except (KeyError, TypeError, ValueError) as exc:
        raise _state_io.StateFormatError("saved optimizer settings are unusable: %s" % exc) from None
    if cls.__name__ != config["class"] or not isinstance(attrs, dict) or not isinstance(counts, dict):
        raise _state_io.StateFormatError("saved optimizer class %r does not match the registry"
                                         % (config["class"],))
    opt = cls.__new__(cls)
    opt.__dict__.update(attrs)
    opt.param_dict = {}
    opt._plans = _plan.PlanCache()
    opt._all_index_update_counts = {}
    for dev, table in counts.items():
        opt._set_current_device(dev)
        for index, value in table.items():
            opt._index_update_count[index] = int(value)
    opt._set_current_device(0)
    return opt


def _encode_object(value, where):
    from .. import lr_scheduler
    return lr_scheduler._to_checkpoint(value, where)


def _check_disjoint_call(indices, weights, states):
    """One Updater call may be cut into several update calls, which must still not share
    memory between the tensors they write (the same weight under two indices would be
    updated twice)."""
    if not all(isinstance(w, np.ndarray) for w in weights):
        return            # device calls: each chunk checks its own arrays
    arrays, names = [], []
    for k, (w, s) in enumerate(zip(weights, states)):
        arrays.append(w)
        names.append("weights[%d] (index %r)" % (k, indices[k]))
        for p, leaf in enumerate(state_leaves(s)):
            if isinstance(leaf, np.ndarray):
                arrays.append(leaf)
                names.append("states of index %r, leaf %d" % (indices[k], p))
    _plan.check_disjoint(_plan.HOST, arrays, names)


def _decode_object(path, state):
    from .. import lr_scheduler
    return lr_scheduler._from_checkpoint(path, state)
