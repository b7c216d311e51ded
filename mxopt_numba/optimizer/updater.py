"""The Updater: keeps one state per parameter index and feeds the optimizer whole chunks
of tensors, so that one kernel launch updates up to ``aggregate_num`` of them."""
from __future__ import annotations

import collections
import math
import operator
from typing import Any, Sequence, Union

import numpy as np

from .. import _device, _state_io
from .optimizer import Optimizer, _registry, state_leaves

__all__ = ["Updater", "get_updater"]

#: a parameter index: an int, or a name
Index = Union[int, str]

_SKIP_ATTRS = {"param_dict", "_plans", "_active", "_all_index_update_counts", "_index_update_count",
               "norm_reducer"}


class _Chunk:
    __slots__ = ("indices", "positions", "states")


class Updater:
    """Calls ``optimizer.update_multi_precision`` on lists of tensors.

    ``updater(index, grad, weight)`` takes one index or lists (note: gradient before
    weight, as in MXNet).  Tensors are grouped by dtype and precision and cut into chunks
    of ``optimizer.aggregate_num``; each chunk is one call (one kernel launch per storage
    layout).  States are created on first sight of an index and kept in ``states``.
    """

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError("Updater needs an Optimizer, got %s" % type(optimizer).__name__)
        self.optimizer = optimizer
        self.states = {}
        self.states_synced = {}
        self._version = 0
        self._chunks = collections.OrderedDict()

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
        key = (tuple(indices), opt.aggregate_num)
        entry = self._chunks.get(key)
        if entry is None or entry[0] != self._version or not all(map(operator.is_, weights, entry[1])):
            indices = [i.decode() if isinstance(i, bytes) else i for i in indices]
            entry = (self._version, list(weights), self._plan_chunks(indices, weights))
            self._chunks[key] = entry
            if len(self._chunks) > 4096:
                self._chunks.popitem(last=False)
            entry = self._chunks[key]
        for chunk in entry[2]:
            if chunk.positions is None:
                opt.update_multi_precision(chunk.indices, weights, grads, chunk.states)
            else:
                pick = operator.itemgetter(*chunk.positions)
                ws, gs = pick(weights), pick(grads)
                if len(chunk.positions) == 1:
                    ws, gs = (ws,), (gs,)
                opt.update_multi_precision(chunk.indices, list(ws), list(gs), chunk.states)

    def _plan_chunks(self, indices, weights):
        if len(set(indices)) != len(indices):
            raise ValueError("indices must be unique within one call, got %r" % (indices,))
        opt = self.optimizer
        for i, w in zip(indices, weights):
            if i not in self.states:
                self.states[i] = opt.create_state_multi_precision(i, w)
                self.states_synced[i] = True
                self._version += 1
        n = opt.aggregate_num
        size = len(indices) if math.isinf(n) else max(1, int(n))
        if math.isinf(n):
            groups = [list(range(len(indices)))]
        else:
            by_kind = collections.OrderedDict()
            for k, w in enumerate(weights):
                dtype = _device.dtype_of(w) if _device.is_device_array(w) else np.asarray(w).dtype
                by_kind.setdefault((dtype.str, opt.uses_master(w) if hasattr(w, "dtype") else False),
                                   []).append(k)
            groups = list(by_kind.values())
        chunks = []
        for members in groups:
            for start in range(0, len(members), size):
                part = members[start:start + size]
                chunk = _Chunk()
                chunk.indices = [indices[k] for k in part]
                chunk.states = [self.states[indices[k]] for k in part]
                chunk.positions = None if part == list(range(len(indices))) else tuple(part)
                chunks.append(chunk)
        return chunks

    # ------------------------------------------------------------------ save / load
    def get_states(self, dump_optimizer: bool = False) -> bytes:
        """Bytes holding every state (and, with ``dump_optimizer``, the optimizer's
        settings and update counts); no pickle inside."""
        payload = {"states": self.states}
        if dump_optimizer:
            payload["optimizer"] = optimizer_config(self.optimizer)
        return _state_io.dumps("updater", payload)

    def set_states(self, states: bytes) -> None:
        """Restore what :meth:`get_states` returned (a new optimizer too if it was dumped)."""
        payload = _state_io.loads(states, "updater", factories=_scheduler_factories())
        if not isinstance(payload, dict) or not isinstance(payload.get("states"), dict):
            raise _state_io.StateFormatError("updater state data has no 'states' table")
        new_states = payload["states"]
        for index, state in new_states.items():
            for leaf in state_leaves(state):
                if not isinstance(leaf, np.ndarray):
                    raise _state_io.StateFormatError("state of index %r holds a %s" % (index, type(leaf).__name__))
        optimizer = self.optimizer
        if "optimizer" in payload:
            optimizer = optimizer_from_config(payload["optimizer"])
            optimizer.param_dict = self.optimizer.param_dict
        self.optimizer = optimizer
        self.states = new_states
        self.states_synced = dict.fromkeys(new_states, False)
        self._version += 1
        self._chunks.clear()


def get_updater(optimizer: Optimizer) -> Updater:
    """An :class:`Updater` for ``optimizer``."""
    return Updater(optimizer)


def optimizer_config(opt):
    """JSON-able description of an optimizer: class, attributes, update counts."""
    attrs = {}
    for name, value in opt.__dict__.items():
        if name in _SKIP_ATTRS:
            continue
        attrs[name] = value
    counts = {dev: dict(c) for dev, c in opt._all_index_update_counts.items()}
    return {"class": type(opt).__name__, "attrs": attrs, "counts": counts}


def optimizer_from_config(config):
    try:
        cls = _registry.get(config["class"])
        attrs, counts = config["attrs"], config["counts"]
    except (KeyError, TypeError, ValueError) as exc:
        raise _state_io.StateFormatError("saved optimizer settings are unusable: %s" % exc) from None
    if cls.__name__ != config["class"] or not isinstance(attrs, dict) or not isinstance(counts, dict):
        raise _state_io.StateFormatError("saved optimizer class %r does not match the registry"
                                         % (config["class"],))
    opt = cls.__new__(cls)
    opt.__dict__.update(attrs)
    opt.param_dict = {}
    opt._plans = collections.OrderedDict()
    opt._active = None
    opt._all_index_update_counts = {}
    for dev, table in counts.items():
        opt._set_current_device(dev)
        for index, value in table.items():
            opt._index_update_count[index] = int(value)
    opt._set_current_device(0)
    return opt


def _scheduler_factories():
    from .. import lr_scheduler

    def factory(cls):
        def make(state):
            sched = cls.__new__(cls)
            sched.load_state_dict(state)
            return sched
        return make
    return {name: factory(getattr(lr_scheduler, name)) for name in
            ("LRScheduler", "FactorScheduler", "MultiFactorScheduler", "PolyScheduler", "CosineScheduler")
            if hasattr(lr_scheduler, name)}
