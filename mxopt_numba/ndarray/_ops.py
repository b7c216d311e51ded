"""Shared plumbing of the update operators: each call builds a throw-away optimizer of
the rule it names, with the operator's hyperparameters (per-tensor ``lrs``/``wds`` as
multipliers), and runs that optimizer's fused path on the given arrays.  No update rule
lives here."""
import math
import numbers

import numpy as np

from ..optimizer.optimizer import Optimizer

__all__ = ["clip_value", "launch", "per_tensor", "run", "scalar", "split_data"]


def scalar(name, value):
    """``value`` as a float (a one-element array is accepted, as MXNet's NDArray)."""
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError("%s must be a number or a one-element array, got shape %s" % (name, value.shape))
        value = value.reshape(-1)[0].item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError("%s must be a real number, got %r" % (name, value))
    return float(value)


def per_tensor(opt, lrs, wds, n):
    """Give tensor ``i`` (index ``i``) learning rate ``lrs[i]`` and weight decay ``wds[i]``
    through the multipliers of an optimizer built with ``learning_rate=1`` and ``wd=1``."""
    lrs = [scalar("lrs[%d]" % i, v) for i, v in enumerate(np.asarray(lrs, dtype=np.float64).reshape(-1))]
    wds = [scalar("wds[%d]" % i, v) for i, v in enumerate(np.asarray(wds, dtype=np.float64).reshape(-1))]
    if len(lrs) != n or len(wds) != n:
        raise ValueError("lrs and wds need one value per weight (%d), got %d and %d"
                         % (n, len(lrs), len(wds)))
    opt.set_lr_mult(dict(enumerate(lrs)))
    opt.set_wd_mult(dict(enumerate(wds)))
    return opt


def split_data(data, per, num_weights, name):
    """MXNet's flattened multi-tensor inputs: ``per`` arrays per weight, in order."""
    if num_weights is None:
        num_weights = len(data) // per
    if len(data) != per * num_weights:
        raise ValueError("%s expects %d arrays per weight (%d weights), got %d arrays"
                         % (name, per, num_weights, len(data)))
    return [tuple(data[k * per:(k + 1) * per]) for k in range(num_weights)]


def _target(weight, out, k=0):
    """The array updated in place: ``weight`` itself, or ``out`` filled from it first."""
    if out is None or out is weight:
        return weight
    if not isinstance(out, np.ndarray) or out.shape != weight.shape or out.dtype != weight.dtype:
        raise ValueError("out[%d] must be an array of the weight's shape %s and dtype %s"
                         % (k, weight.shape, weight.dtype))
    out[...] = weight
    return out


def run(opt, weights, grads, states, out=None):
    """Update ``weights`` (or ``out``) through ``opt``; returns the updated arrays."""
    if not isinstance(opt, Optimizer):
        raise TypeError("internal: not an optimizer")
    outs = out if isinstance(out, (list, tuple)) else [out] * len(weights)
    if len(outs) != len(weights):
        raise ValueError("out has %d arrays for %d weights" % (len(outs), len(weights)))
    targets = [_target(w, o, k) for k, (w, o) in enumerate(zip(weights, outs))]
    opt.update(list(range(len(targets))), targets, list(grads), list(states))
    return targets


def clip_value(value):
    """MXNet's operators take -1 for "no clipping"; the optimizers take None."""
    value = scalar("clip_gradient", value)
    return None if not value > 0 or math.isinf(value) else value


def launch(opt, kernel, weights, grads, states, scalars=(), coefs=None, n_states=None, lrs=None, out=None):
    """One launch of ``kernel`` through ``opt`` on tensors 0..n-1 (for operators that stop
    or start half-way through a rule); returns the updated arrays."""
    outs = out if isinstance(out, (list, tuple)) else [out] * len(weights)
    targets = [_target(w, o, k) for k, (w, o) in enumerate(zip(weights, outs))]
    indices = list(range(len(targets)))
    lrs = opt._lr_array(indices) if lrs is None else lrs
    opt._launch(kernel, indices, targets, list(grads), list(states), lrs, opt._wd_array(indices), scalars, coefs,
                n_states)
    return targets
