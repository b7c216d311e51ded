"""Child process of test_plan_properties.py: runs a batch of update cases and prints one
``OUTCOME <json>`` line per case as soon as it is done.

A case that crashes the interpreter leaves the lines of the cases before it, so the
parent can name the case that crashed.  Cases arrive on stdin as a Python literal.

Each outcome says whether the call raised (and what), whether every array was left
untouched when it raised, whether the given state has the structure the optimizer
itself would build (the oracle: then the update must succeed), and, for an untouched
state of the optimizer's own making, whether the result matches the optimizer's float64
NumPy ``step`` path.
"""
import ast
import json
import sys
import warnings

import ml_dtypes
import numpy as np

import mxopt_numba as mxo
from mxopt_numba.sparse import RowSparseArray, row_sparse_array

DTYPES = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "float32": np.float32, "float64": np.float64}
#: relative rounding of one store into the weight's dtype
ROUNDING = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7, "float32": 0.0, "float64": 0.0}


def leaves(x):
    if x is None:
        return []
    if isinstance(x, np.ndarray):
        return [x]
    if isinstance(x, dict):
        return [a for k in sorted(x, key=repr) for a in leaves(x[k])]
    if isinstance(x, (list, tuple)):
        return [a for item in x for a in leaves(item)]
    return []


def signature(state, shapes=True):
    """Nesting, leaf dtypes and shapes (or only sizes); tuples and lists alike."""
    if state is None:
        return None
    if isinstance(state, np.ndarray):
        return (state.dtype.str, state.shape if shapes else state.size)
    if isinstance(state, (tuple, list)):
        return ("seq",) + tuple(signature(s, shapes) for s in state)
    return ("object", type(state).__name__)


def snap(x):
    return [a.copy() for a in leaves(x)]


def same(before, x):
    now = leaves(x)
    return len(now) == len(before) and all(
        a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a.view(np.uint8), b.view(np.uint8))
        for a, b in zip(before, now))


def make_weight(case, rng, dtype):
    w = rng.standard_normal(case["shape"])
    if case.get("positive"):
        w = np.abs(w) + 0.1
    return w.astype(DTYPES[dtype])


def create(name, config, mp, fused=True):
    kwargs = dict(config)
    kwargs.setdefault("use_fused_step", fused)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mxo.optimizer.create(name, multi_precision=mp, **kwargs)


def mutate(state, how, weight, rng):
    """A state changed the way a user might get it wrong."""
    if how == "keep":
        return state
    if how == "none":
        return None
    if how == "drop_leaf":
        if isinstance(state, tuple) and state:
            return state[:-1] if len(state) > 2 else state[0]
        return None
    if how == "extra_leaf":
        extra = np.zeros(weight.shape, np.float32)
        if state is None:
            return (extra,)
        return (state + (extra,)) if isinstance(state, tuple) else (state, extra)
    if how == "add_master":
        return (weight.astype(np.float32), state)
    if how == "drop_master":
        return state[1] if isinstance(state, tuple) and len(state) == 2 else state
    arrays = leaves(state)
    if not arrays:
        return state
    pick = arrays[int(rng.integers(len(arrays)))]

    def replace(s):
        if s is pick:
            if how == "wrong_dtype":
                return s.astype(np.float64 if s.dtype != np.float64 else np.float16)
            return np.zeros(max(s.size - 1, 0) if s.size > 1 else s.size + 3, s.dtype)   # wrong_size
        if isinstance(s, tuple):
            return tuple(replace(x) for x in s)
        return s
    return replace(state)


def close_to_reference(case, weight, w0, ref):
    """The fused result against the float64 NumPy step path (one step)."""
    x, r = weight.astype(np.float64), ref.astype(np.float64)
    if not np.array_equal(np.isfinite(x), np.isfinite(r)):
        return False
    ok = np.isfinite(r)
    if not ok.any():
        return True
    w0 = w0.astype(np.float64)
    allowed = case.get("tolerance", 1.0) * (2e-6 * np.abs(r[ok]).max() + 5e-4 * np.abs(r - w0)[ok].max()) + 1e-30
    allowed = allowed + ROUNDING[case["dtype"]] * np.abs(r[ok])
    return bool(np.all(np.abs(x - r)[ok] <= allowed))


def run_state_case(case):
    rng = np.random.default_rng(case["seed"])
    w = make_weight(case, rng, case["dtype"])
    g = rng.standard_normal(case["shape"]).astype(w.dtype)
    w0 = w.copy()
    target = create(case["name"], case["config"], case["mp"])
    own_state = target.create_state_multi_precision(0, w.copy())
    expected, loose = signature(own_state), signature(own_state, shapes=False)
    src = case["source"]
    src_opt = create(src["name"], src["config"], src["mp"])
    src_w = make_weight(case, np.random.default_rng(case["seed"]), src["dtype"])
    out = {}
    if case["via"] == "flip":
        # a valid first step, then a hyperparameter that may change the state layout
        u = mxo.optimizer.get_updater(target)
        u(0, np.full(w.shape, 0.1, w.dtype), w)
        w0 = w.copy()
        attr = case["flip"] if hasattr(target, case["flip"]) else "multi_precision"
        old = getattr(target, attr)
        setattr(target, attr, (0.0 if old else 0.9) if attr == "momentum" else not old)
        own_state = target.create_state_multi_precision(0, w.copy())
        expected, loose = signature(own_state), signature(own_state, shapes=False)
        out["given"] = signature(u.states[0])
        out["given_loose"] = signature(u.states[0], shapes=False)
        before = snap(u.states)

        def call():
            u(0, g, w)

        def intact():
            return same([w0], [w]) and same(before, u.states)
        state_of = lambda: u.states.get(0)      # noqa: E731
    elif case["via"] == "set_states":
        src_u = mxo.optimizer.get_updater(src_opt)
        src_u(0, np.full(src_w.shape, 0.1, src_w.dtype), src_w)
        u = mxo.optimizer.get_updater(target)
        loaded = snap(src_u.states)
        blob = src_u.get_states()

        def call():
            u.set_states(blob)
            out["given"] = signature(u.states.get(0))
            out["given_loose"] = signature(u.states.get(0), shapes=False)
            u(0, g, w)

        def intact():
            return same([w0], [w]) and (not u.states or same(loaded, u.states))
        state_of = lambda: u.states.get(0)      # noqa: E731
    else:
        state = mutate(src_opt.create_state_multi_precision(0, src_w), case["mutation"], src_w, rng)
        out["given"] = signature(state)
        out["given_loose"] = signature(state, shapes=False)
        before = snap(state)
        if case["via"] == "updater":
            u = mxo.optimizer.get_updater(target)
            u.states[0] = state

            def call():
                u(0, g, w)
        else:
            def call():
                target.update(0, w, g, state)

        def intact():
            return same([w0], [w]) and same(before, state)
        state_of = lambda: state                # noqa: E731
    try:
        call()
        out["raised"], out["message"] = None, ""
    except Exception as exc:                    # noqa: BLE001 - the kind is what is reported
        out["raised"], out["message"] = type(exc).__name__, str(exc)
        out["intact"] = bool(intact())
    out["valid"] = out.get("given", "unset") == expected
    # same dtypes and sizes, other shapes: a layer may accept it (kernels see flat
    # memory) or refuse it; either is fine
    out["ambiguous"] = not out["valid"] and out.get("given_loose", "unset") == loose
    if out["raised"] is None:
        out["structure_kept"] = signature(state_of()) == expected
        own = (src == {"name": case["name"], "config": case["config"], "mp": case["mp"], "dtype": case["dtype"]}
               and case["via"] in ("update", "updater") and case["mutation"] == "keep")
        if own and not case.get("stochastic"):
            ref_opt = create(case["name"], case["config"], False, fused=False)
            wr = w0.astype(np.float64)
            ref_opt.update(0, wr, g.astype(np.float64), ref_opt.create_state(0, wr))
            out["matches_reference"] = close_to_reference(case, w, w0, wr)
    return out


def run_sparse_case(case):
    rng = np.random.default_rng(case["seed"])
    n_rows, width = case["rows"], case["width"]
    w = rng.standard_normal((n_rows, width)).astype(np.float32)
    w0 = w.copy()
    indices = case["indices"]
    data = rng.standard_normal((len(indices) + case["extra_rows"], width)).astype(np.float32)
    if case["index_type"] == "list":
        idx = list(indices)
    else:
        idx = np.array(indices, dtype=case["index_type"])
    opt = create(case["name"], case["config"], False)
    state = opt.create_state_multi_precision(0, w.copy())
    before = snap(state)
    out = {"valid": case["valid"]}

    def call():
        if case["build"] == "raw":
            grad = RowSparseArray(data, idx, (n_rows, width))
        else:
            grad = row_sparse_array((data, idx), shape=(n_rows, width))
        if case["set_after"] is not None:
            pos, value = case["set_after"]
            grad.indices[pos] = value
        if case["via"] == "updater":
            u = mxo.optimizer.get_updater(opt)
            u.states[0] = state
            u(0, grad, w)
        else:
            opt.update(0, w, grad, state)
    try:
        call()
        out["raised"], out["message"] = None, ""
    except Exception as exc:                    # noqa: BLE001
        out["raised"], out["message"] = type(exc).__name__, str(exc)
        out["intact"] = bool(same([w0], [w]) and same(before, state))
        return out
    out["structure_kept"] = True
    if case["valid"]:
        final = list(indices)
        if case["set_after"] is not None:
            final[case["set_after"][0]] = case["set_after"][1]
        ref_opt = create(case["name"], case["config"], False, fused=False)
        wr = w0.astype(np.float64)
        gr = row_sparse_array((data.astype(np.float64), np.array(final, np.int64)), shape=(n_rows, width))
        ref_opt.update(0, wr, gr, ref_opt.create_state(0, wr))
        out["matches_reference"] = close_to_reference({"dtype": "float32"}, w, w0, wr)
    return out


def main():
    cases = ast.literal_eval(sys.stdin.read())
    for k, case in enumerate(cases):
        runner = run_sparse_case if case["kind"] == "sparse" else run_state_case
        try:
            out = runner(case)
        except Exception as exc:                # noqa: BLE001 - a broken setup is reported, not hidden
            out = {"setup_error": "%s: %s" % (type(exc).__name__, exc)}
        out["case"] = k
        print("OUTCOME " + json.dumps(out, default=repr), flush=True)


if __name__ == "__main__":
    main()
