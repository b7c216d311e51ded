"""Replays the MXNet golden traces in tests/golden through the public API.

Tolerances (per tensor and step, as documented in tests/golden/README.md): r = MXNet's
weights, p = MXNet's weights before the step, w0 = initial weights, d = |ours - r|:
float32 d <= max(1e-5 * max(|r|, |p|, 0.1 S), 1e-3 * max(|r - w0|, 0.1 U)); float64 the
same with 1e-8 / 1e-4; float16 within 2 ulps (multi_precision) or 8 ulps (without).
"""
import fnmatch
import json
import math
import types
import zlib
from pathlib import Path

import numpy as np

import mxopt_numba as mxo

GOLDEN = Path(__file__).parent / "golden"


def load_manifest(name):
    with open(GOLDEN / name) as f:
        return json.load(f)


def deviation_for(case_id):
    with open(GOLDEN / "deviations.json") as f:
        for dev in json.load(f):
            if fnmatch.fnmatchcase(case_id, dev["pattern"]):
                return dev["why"]
    return None


def _inf(x):
    return isinstance(x, float) and math.isinf(x)


def build_optimizer(case, mod=mxo):
    """The case's optimizer from ``mod`` (``mxopt_numba``, or ``mxopt_numba.v1`` for the
    MXNet 1.9.1 traces)."""
    kwargs = dict(case["kwargs"])
    sched = kwargs.pop("lr_scheduler", None)
    if sched is not None:
        kwargs["lr_scheduler"] = getattr(mod.lr_scheduler, sched["class"])(**sched["kwargs"])
    if _inf(kwargs.get("aggregate_num")):
        kwargs["aggregate_num"] = np.inf
    if case.get("param_idx2name"):
        kwargs["param_idx2name"] = {int(k): v for k, v in case["param_idx2name"]}
    if case.get("param_dict"):
        kwargs["param_dict"] = {int(k): types.SimpleNamespace(**v) for k, v in case["param_dict"]}
    opt = mod.optimizer.create(case["name"], multi_precision=case["multi_precision"], **kwargs)
    if case.get("lr_mult"):
        opt.set_lr_mult(dict((k, v) for k, v in case["lr_mult"]))
    if case.get("wd_mult"):
        opt.set_wd_mult(dict((k, v) for k, v in case["wd_mult"]))
    if case.get("aggregate_num") is not None:
        opt.aggregate_num = np.inf if _inf(case["aggregate_num"]) else case["aggregate_num"]
    return opt


def grads_at(arrays, case, t):
    out = []
    for i, shape in enumerate(case["shapes"]):
        if case["sparse"]:
            out.append(mxo.sparse.row_sparse_array(
                (np.array(arrays["g%d_%d_values" % (t, i)]), np.array(arrays["g%d_%d_indices" % (t, i)])),
                shape=tuple(shape)))
        else:
            out.append(np.array(arrays["g%d_%d" % (t, i)]))
    return out


def run_case(case, arrays, legacy_scalar=False, mod=mxo):
    """Yield (t, weights after step t, num_update)."""
    n = len(case["shapes"])
    opt = build_optimizer(case, mod)
    weights = [np.array(arrays["w0_%d" % i]) for i in range(n)]
    api = case["api"]
    updater = mod.optimizer.get_updater(opt) if api.startswith("updater") else None
    states = {}
    for t in range(1, case["steps"] + 1):
        grads = grads_at(arrays, case, t)
        if api == "updater":
            for i in range(n):
                updater(i, grads[i], weights[i])
        elif api == "updater_list":
            updater(list(range(n)), grads, weights)
        else:
            for i in range(n):
                if i not in states:
                    states[i] = opt.create_state_multi_precision(i, weights[i])
            if api == "direct_list":
                opt.update_multi_precision(list(range(n)), weights, grads, [states[i] for i in range(n)])
            elif api == "direct_scalar" or (api == "direct" and legacy_scalar):
                for i in range(n):
                    opt.update_multi_precision(i, weights[i], grads[i], states[i])
            else:
                for i in range(n):
                    opt.update_multi_precision([i], [weights[i]], [grads[i]], [states[i]])
        yield t, [w.copy() for w in weights], opt.num_update


def weight_error(x, r, p, w0, dtype, mp):
    """Score <= 1 means within tolerance; NaN/inf must sit where MXNet has them."""
    x, r, p, w0 = (np.asarray(a, dtype=np.float64) for a in (x, r, p, w0))
    finite = np.isfinite(r)
    if ((np.isnan(r) != np.isnan(x)) | (np.isinf(r) & (x != r)) | (finite & ~np.isfinite(x))).any():
        return math.inf
    if not finite.any():
        return 0.0
    d = np.abs(x - r)[finite]
    s = np.maximum(np.abs(r), np.where(np.isfinite(p), np.abs(p), 0.0))[finite]
    if dtype == "float16":
        ulp = np.spacing(np.maximum(s, 6.104e-05).astype(np.float16)).astype(np.float64)
        return float((d / ulp).max() / (2.0 if mp else 8.0))
    rel_w, rel_u = (1e-8, 1e-4) if dtype == "float64" else (1e-5, 1e-3)
    a = np.where(np.isfinite(w0), np.abs(r - w0), 0.0)[finite]
    tiny = np.finfo(np.float64 if dtype == "float64" else np.float32).tiny
    allowed = np.maximum(rel_w * np.maximum(s, max(0.1 * s.max(), tiny)), rel_u * np.maximum(a, 0.1 * a.max()))
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.where(allowed > 0, d / allowed, np.where(d > 0, np.inf, 0.0)).max())


def seed_of(case):
    return case.get("seed", zlib.crc32((case.get("input_id") or case["id"]).encode()) & 0x7FFFFFFF)
