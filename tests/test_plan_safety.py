"""The launch-plan layer under hostile but fair use: mismatched states, raw row-sparse
gradients, aliasing tensors, states replaced behind the Updater's back, weights made
read-only, gradients kept alive, invalid numbers and indices.

The kernels turn every array into a raw address, so a state of the wrong layout or an
index out of range can crash the interpreter.  Those cases run in a child process: a
crash then fails one test instead of killing the run, and the child reports which
exception it saw and whether any array changed.
"""
import gc
import json
import math
import os
import subprocess
import sys
import textwrap
import tracemalloc
import weakref

import numpy as np
import pytest

import mxopt_numba as mxo
# --------------------------------------------------------------------------- child processes

_PRELUDE = '''
import json
import numpy as np
import ml_dtypes
import mxopt_numba as mxo
from mxopt_numba.sparse import RowSparseArray, row_sparse_array


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


def snap(x):
    return [a.copy() for a in leaves(x)]


def same(before, x):
    now = leaves(x)
    return len(now) == len(before) and all(
        a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a.view(np.uint8), b.view(np.uint8))
        for a, b in zip(before, now))


def extra():
    return True
'''

_EPILOGUE = '''
before = snap(watch)
try:
    result = call()
    outcome = {"raised": None, "message": ""}
except Exception as exc:
    outcome = {"raised": type(exc).__name__, "message": str(exc)}
outcome["intact"] = bool(same(before, watch) and extra())
outcome["finite"] = all(bool(np.isfinite(a.astype(np.float64)).all()) for a in leaves(watch))
if outcome["raised"] is None and "check" in globals():
    outcome["check"] = check()
print("OUTCOME " + json.dumps(outcome), flush=True)
'''


def _no_core_dump():
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass


def run_isolated(setup, timeout=120):
    """Run ``setup`` (which defines ``watch``, the arrays that must stay untouched, and
    ``call()``, the operation under test) in a fresh interpreter; return its report."""
    code = _PRELUDE + textwrap.dedent(setup) + _EPILOGUE
    env = dict(os.environ, OMP_WAIT_POLICY="passive")
    proc = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=env, preexec_fn=_no_core_dump if os.name == "posix" else None)
    assert proc.returncode == 0, ("child process died with exit status %d (a crash, not an exception)\n%s"
                                  % (proc.returncode, proc.stderr[-3000:]))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("OUTCOME ")]
    assert lines, "child printed no outcome:\n%s\n%s" % (proc.stdout[-2000:], proc.stderr[-2000:])
    return json.loads(lines[-1][len("OUTCOME "):])


def assert_refused(outcome, *words):
    """A TypeError or ValueError with a message, and nothing written."""
    assert outcome["raised"] in ("TypeError", "ValueError"), \
        "expected a TypeError or ValueError, got %s" % (outcome["raised"] or "no exception (silently accepted)")
    message = outcome["message"].lower()
    assert message.strip(), "the error has no message"
    if words:
        assert any(w in message for w in words), \
            "the message %r names none of %s" % (outcome["message"], words)
    assert outcome["intact"], "the weights or states were modified before the error"


# --------------------------------------------------------------------------- 1. mismatched states

_N = 64
_SETUP_ONE = '''
w = np.linspace(-1, 1, %d).astype(np.float32)
g = np.full(w.shape, 0.25, np.float32)
''' % _N

MISMATCHED_STATES = {
    "adam-none": _SETUP_ONE + '''
opt = mxo.optimizer.create("adam")
watch = [w]
def call():
    opt.update(0, w, g, None)
''',
    "adam-one-leaf": _SETUP_ONE + '''
opt = mxo.optimizer.create("adam")
state = (np.zeros_like(w),)
watch = [w, state]
def call():
    opt.update(0, w, g, state)
''',
    "rmsprop-none": _SETUP_ONE + '''
opt = mxo.optimizer.create("rmsprop")
watch = [w]
def call():
    opt.update(0, w, g, None)
''',
    "nadam-none": _SETUP_ONE + '''
opt = mxo.optimizer.create("nadam")
watch = [w]
def call():
    opt.update(0, w, g, None)
''',
    "adagrad-none": _SETUP_ONE + '''
opt = mxo.optimizer.create("adagrad")
watch = [w]
def call():
    opt.update(0, w, g, None)
''',
    "ftrl-one-leaf": _SETUP_ONE + '''
opt = mxo.optimizer.create("ftrl")
state = (np.zeros_like(w),)
watch = [w, state]
def call():
    opt.update(0, w, g, state)
''',
    "set-states-sgd-momentum-into-adam": _SETUP_ONE + '''
src = mxo.optimizer.get_updater(mxo.optimizer.create("sgd", momentum=0.9))
src(0, g, w.copy())
loaded = snap(src.states)
u = mxo.optimizer.get_updater(mxo.optimizer.create("adam"))
watch = [w]
def extra():        # whatever set_states accepted is untouched as well
    return not u.states or same(loaded, u.states)
def call():
    u.set_states(src.get_states())
    u(0, g, w)
''',
    "set-states-float32-adam-into-multi-precision": '''
w = np.linspace(-1, 1, %d).astype(np.float16)
g = np.full(w.shape, 0.25, np.float16)
src = mxo.optimizer.get_updater(mxo.optimizer.create("adam"))
src(0, g.astype(np.float32), w.astype(np.float32))
loaded = snap(src.states)
u = mxo.optimizer.get_updater(mxo.optimizer.create("adam", multi_precision=True))
watch = [w]
def extra():
    return not u.states or same(loaded, u.states)
def call():
    u.set_states(src.get_states())
    u(0, g, w)
''' % _N,
    "set-states-rmsprop-into-centered": _SETUP_ONE + '''
src = mxo.optimizer.get_updater(mxo.optimizer.create("rmsprop"))
src(0, g, w.copy())
loaded = snap(src.states)
u = mxo.optimizer.get_updater(mxo.optimizer.create("rmsprop", centered=True))
watch = [w]
def extra():
    return not u.states or same(loaded, u.states)
def call():
    u.set_states(src.get_states())
    u(0, g, w)
''',
    "weight-recast-float32-to-float16": _SETUP_ONE + '''
u = mxo.optimizer.get_updater(mxo.optimizer.create("adam", multi_precision=True))
u(0, g, w)
w16, g16 = w.astype(np.float16), g.astype(np.float16)
watch = [w16, u.states]
def call():
    u(0, g16, w16)
''',
    "nag-momentum-switched-on": _SETUP_ONE + '''
opt = mxo.optimizer.create("nag", momentum=0.0)
u = mxo.optimizer.get_updater(opt)
u(0, g, w)
opt.momentum = 0.9
watch = [w, u.states]
def call():
    u(0, g, w)
''',
    "signum-momentum-switched-on": _SETUP_ONE + '''
opt = mxo.optimizer.create("signum", momentum=0.0)
u = mxo.optimizer.get_updater(opt)
u(0, g, w)
opt.momentum = 0.9
watch = [w, u.states]
def call():
    u(0, g, w)
''',
    "rmsprop-centered-switched-on": _SETUP_ONE + '''
opt = mxo.optimizer.create("rmsprop")
u = mxo.optimizer.get_updater(opt)
u(0, g, w)
opt.centered = True
watch = [w, u.states]
def call():
    u(0, g, w)
''',
    # no crash here: the float32 master copy would be read as Adam's mean
    "adam-multi-precision-switched-off": '''
w = np.linspace(-1, 1, %d).astype(np.float16)
g = np.full(w.shape, 0.25, np.float16)
opt = mxo.optimizer.create("adam", multi_precision=True)
u = mxo.optimizer.get_updater(opt)
u(0, g, w)
u(0, g, w)
opt.multi_precision = False
watch = [w, u.states]
def call():
    u(0, g, w)
''' % _N,
}


@pytest.mark.parametrize("case", sorted(MISMATCHED_STATES))
def test_state_that_does_not_match_the_rule_is_refused(case):
    """Item 1: each rule checks the state structure (leaf count, dtypes, master copy
    present exactly with multi-precision) against what create_state would build."""
    outcome = run_isolated(MISMATCHED_STATES[case])
    assert_refused(outcome, "state", "multi_precision", "master", "momentum", "centered")


# --------------------------------------------------------------------------- 2. raw row-sparse gradients

_SPARSE_SETUP = '''
w = np.linspace(-1, 1, 40).astype(np.float32).reshape(8, 5)
opt = mxo.optimizer.create(%r, **%r)
state = opt.create_state_multi_precision(0, w)
watch = [w, state]
'''

#: how each optimizer reads a row-sparse gradient: row kernels (lazy) or a dense copy
SPARSE_OPTIMIZERS = {
    "sgd-lazy": ("sgd", {"lazy_update": True, "momentum": 0.9}),
    "adagrad-rows": ("adagrad", {}),
    "adam-standard": ("adam", {"lazy_update": False}),
}

BAD_RAW_SPARSE = {
    "index-far-out-of-range": "RowSparseArray(np.ones((1, 5), np.float32), np.array([10**7]), (8, 5))",
    "negative-index": "RowSparseArray(np.ones((1, 5), np.float32), np.array([-5]), (8, 5))",
    "five-indices-one-row": "RowSparseArray(np.ones((1, 5), np.float32), np.arange(5), (8, 5))",
    "unsorted": "RowSparseArray(np.ones((2, 5), np.float32), np.array([6, 2]), (8, 5))",
    "duplicate": "RowSparseArray(np.ones((2, 5), np.float32), np.array([3, 3]), (8, 5))",
    "int32-out-of-range": "RowSparseArray(np.ones((1, 5), np.float32), np.array([10**7], np.int32), (8, 5))",
    "wrong-row-width": "RowSparseArray(np.ones((1, 3), np.float32), np.array([1]), (8, 3))",
    "fractional-index": "RowSparseArray(np.ones((1, 5), np.float32), [1.5], (8, 5))",
}


def _sparse_case(optimizer, make_grad, then=""):
    name, kwargs = SPARSE_OPTIMIZERS[optimizer]
    return _SPARSE_SETUP % (name, kwargs) + '''
def call():
    grad = %s
    %s
    opt.update(0, w, grad, state)
''' % (make_grad, then or "pass")


@pytest.mark.parametrize("optimizer", sorted(SPARSE_OPTIMIZERS))
@pytest.mark.parametrize("case", sorted(BAD_RAW_SPARSE))
def test_raw_row_sparse_gradient_is_validated(case, optimizer):
    """Item 2: ``RowSparseArray(data, indices, shape)`` built directly is checked like
    ``row_sparse_array``: nothing reaches a kernel with an index outside the rows."""
    outcome = run_isolated(_sparse_case(optimizer, BAD_RAW_SPARSE[case]))
    assert_refused(outcome, "indices", "data", "shape")


MUTATED_SPARSE = {
    "index-set-out-of-range": "grad.indices[0] = 10**7",
    "index-set-negative": "grad.indices[0] = -5",
    "indices-reassigned-unsorted": "grad.indices = np.array([6, 2])",
    "data-reassigned-short": "grad.data = grad.data[:1]",
}


@pytest.mark.parametrize("optimizer", sorted(SPARSE_OPTIMIZERS))
@pytest.mark.parametrize("case", sorted(MUTATED_SPARSE))
def test_row_sparse_gradient_changed_after_construction_is_validated(case, optimizer):
    """Item 2: the attributes stay mutable, so a valid gradient broken afterwards must
    still be refused before the update."""
    make = "row_sparse_array((np.ones((2, 5), np.float32), np.array([2, 6])), shape=(8, 5))"
    outcome = run_isolated(_sparse_case(optimizer, make, MUTATED_SPARSE[case]))
    assert_refused(outcome, "indices", "data", "shape")


@pytest.mark.parametrize("indices", ["np.array([1, 6], np.int32)", "[1, 6]", "(1, 6)", "np.array([1, 6], np.uint16)"],
                         ids=["int32", "list", "tuple", "uint16"])
def test_raw_row_sparse_gradient_with_int32_or_list_indices_updates_correctly(indices):
    """Item 2: int32 and list indices are accepted (today: a raw OverflowError or
    TypeError).  Reference: plain SGD in float64 on the dense gradient."""
    outcome = run_isolated('''
w = np.linspace(-1, 1, 40).astype(np.float32).reshape(8, 5)
data = np.arange(10, dtype=np.float32).reshape(2, 5) / 10
opt = mxo.optimizer.create("sgd", learning_rate=0.5, lazy_update=True)
dense = np.zeros((8, 5))
dense[[1, 6]] = data
expected = w.astype(np.float64) - 0.5 * dense
watch = []
def call():
    grad = RowSparseArray(data, %s, (8, 5))
    assert grad.indices.dtype == np.int64
    opt.update(0, w, grad, None)
def check():
    return bool(np.allclose(w, expected, rtol=1e-6, atol=1e-7))
''' % indices)
    assert outcome["raised"] is None, "%s: %s" % (outcome["raised"], outcome["message"])
    assert outcome["check"], "the update differs from the float64 reference"


# --------------------------------------------------------------------------- 3. aliasing tensors

def _adam_states(opt, weights):
    return [opt.create_state_multi_precision(k, w) for k, w in enumerate(weights)]


def _assert_refused_in_process(fn, arrays, *words):
    before = [a.copy() for a in arrays]
    with pytest.raises((TypeError, ValueError)) as info:
        fn()
    message = str(info.value).lower()
    assert any(w in message for w in words), "the message %r names none of %s" % (str(info.value), words)
    for a, b in zip(arrays, before):
        np.testing.assert_array_equal(a, b)


def test_same_weight_under_two_indices_in_one_call_is_refused():
    """Item 3: two threads would update the same memory at once and lose updates."""
    w = np.linspace(-1, 1, 4096).astype(np.float32)
    g = np.full(w.shape, 0.5, np.float32)
    opt = mxo.optimizer.create("adam", aggregate_num=np.inf)
    states = _adam_states(opt, [w, w])
    _assert_refused_in_process(lambda: opt.update([0, 1], [w, w], [g, g], states), [w],
                               "overlap", "same", "alias", "twice", "share", "memory")
    up = mxo.optimizer.get_updater(mxo.optimizer.create("sgd", momentum=0.9, aggregate_num=np.inf))
    _assert_refused_in_process(lambda: up([0, 1], [g, g], [w, w]), [w],
                               "overlap", "same", "alias", "twice", "share", "memory")


def test_weights_overlapping_in_memory_are_refused():
    """Item 3: two views of one buffer that share elements."""
    buf = np.linspace(-1, 1, 100).astype(np.float32)
    w0, w1 = buf[:60], buf[40:]
    g0, g1 = np.ones(60, np.float32), np.ones(60, np.float32)
    opt = mxo.optimizer.create("sgd", momentum=0.9, aggregate_num=np.inf)
    states = [opt.create_state(0, w0), opt.create_state(1, w1)]
    _assert_refused_in_process(lambda: opt.update([0, 1], [w0, w1], [g0, g1], states), [buf],
                               "overlap", "alias", "share", "memory")
    up = mxo.optimizer.get_updater(mxo.optimizer.create("adam", aggregate_num=np.inf))
    _assert_refused_in_process(lambda: up([0, 1], [g0, g1], [w0, w1]), [buf], "overlap", "alias", "share", "memory")


def test_weights_overlapping_in_separate_chunks_are_refused():
    """Item 3: one Updater call cut into chunks of one tensor still runs as one call."""
    buf = np.linspace(-1, 1, 100).astype(np.float32)
    w0, w1 = buf[:60], buf[40:]
    g = np.ones(60, np.float32)
    up = mxo.optimizer.get_updater(mxo.optimizer.create("sgd", momentum=0.9, aggregate_num=1))
    _assert_refused_in_process(lambda: up([0, 1], [g, g.copy()], [w0, w1]), [buf], "overlap", "alias", "share", "memory")


@pytest.mark.parametrize("offset", [1, 10, -10])
def test_gradient_partly_overlapping_its_weight_is_refused(offset):
    """Item 3: today only a gradient starting at the weight's own address is caught."""
    buf = np.linspace(-1, 1, 100).astype(np.float32)
    w = buf[20:80]
    g = buf[20 + offset:80 + offset]
    opt = mxo.optimizer.create("adam")
    state = opt.create_state(0, w)
    _assert_refused_in_process(lambda: opt.update(0, w, g, state), [buf], "overlap", "alias", "share", "memory", "weight")


def test_gradient_overlapping_another_weight_is_refused():
    buf = np.linspace(-1, 1, 100).astype(np.float32)
    w0, w1 = buf[:50], buf[50:]
    g0, g1 = buf[50:], np.ones(50, np.float32)      # g0 is w1's memory
    opt = mxo.optimizer.create("sgd", aggregate_num=np.inf)
    _assert_refused_in_process(lambda: opt.update([0, 1], [w0, w1], [g0, g1], [None, None]), [buf],
                               "overlap", "alias", "share", "memory")


# --------------------------------------------------------------------------- 4. states replaced in the Updater

_LR, _MOM = 0.1, 0.9


def _momentum_step(w, g, mom):
    """SGD with momentum in float64: mom <- momentum * mom - lr * g; w <- w + mom."""
    mom = _MOM * mom - _LR * g
    return w + mom, mom


def _sgd_updater(aggregate_num=1):
    return mxo.optimizer.get_updater(mxo.optimizer.create("sgd", learning_rate=_LR, momentum=_MOM,
                                                          aggregate_num=aggregate_num))


def _two_steps(u, n=3):
    rng = np.random.default_rng(5)
    ws = [rng.standard_normal(32).astype(np.float32) for _ in range(n)]
    gs = [rng.standard_normal(32).astype(np.float32) for _ in range(n)]
    for _ in range(2):
        u(list(range(n)), gs, ws)
    return ws, gs


@pytest.mark.parametrize("aggregate_num", [1, np.inf], ids=["agg1", "agg-inf"])
def test_replacing_a_state_after_two_steps_takes_effect(aggregate_num):
    """Item 4: the chunk cache must not keep the old arrays."""
    u = _sgd_updater(aggregate_num)
    ws, gs = _two_steps(u)
    old = u.states[1]
    old_before = old.copy()
    new = np.linspace(-0.5, 0.5, 32).astype(np.float32)
    w_before, new_before = ws[1].astype(np.float64), new.astype(np.float64)
    u.states[1] = new
    u([0, 1, 2], gs, ws)
    exp_w, exp_mom = _momentum_step(w_before, gs[1].astype(np.float64), new_before)
    np.testing.assert_allclose(new, exp_mom, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ws[1], exp_w, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(old, old_before)       # the replaced array is left alone
    assert u.states[1] is new


@pytest.mark.parametrize("aggregate_num", [1, np.inf], ids=["agg1", "agg-inf"])
def test_deleting_a_state_after_two_steps_starts_a_fresh_one(aggregate_num):
    u = _sgd_updater(aggregate_num)
    ws, gs = _two_steps(u)
    old = u.states[0]
    old_before = old.copy()
    w_before = ws[0].astype(np.float64)
    del u.states[0]
    u([0, 1, 2], gs, ws)
    exp_w, exp_mom = _momentum_step(w_before, gs[0].astype(np.float64), np.zeros(32))
    np.testing.assert_allclose(ws[0], exp_w, rtol=1e-6, atol=1e-7)
    assert u.states[0] is not old
    np.testing.assert_allclose(u.states[0], exp_mom, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(old, old_before)


def test_adding_a_state_for_an_index_takes_effect():
    """Item 4: a state put in for an index (after deleting its old one) is the one used."""
    u = _sgd_updater(np.inf)
    ws, gs = _two_steps(u)
    del u.states[2]
    u([0, 1], gs[:2], ws[:2])
    added = np.full(32, 0.25, np.float32)
    u.states[2] = added
    w_before = ws[2].astype(np.float64)
    u([0, 1, 2], gs, ws)
    exp_w, exp_mom = _momentum_step(w_before, gs[2].astype(np.float64), np.full(32, 0.25))
    np.testing.assert_allclose(added, exp_mom, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ws[2], exp_w, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- 5. read-only weights

def test_weight_made_read_only_after_the_first_step_is_refused():
    """Item 5: a reused plan still checks that every weight is writeable."""
    rng = np.random.default_rng(6)
    w = rng.standard_normal(256).astype(np.float32)
    g = rng.standard_normal(256).astype(np.float32)
    opt = mxo.optimizer.create("adam")
    state = opt.create_state(0, w)
    opt.update([0], [w], [g], [state])
    w.flags.writeable = False
    _assert_refused_in_process(lambda: opt.update([0], [w], [g], [state]), [w], "read-only", "writeable", "weight")


@pytest.mark.parametrize("aggregate_num", [1, np.inf], ids=["agg1", "agg-inf"])
def test_weight_made_read_only_after_the_first_step_is_refused_by_the_updater(aggregate_num):
    rng = np.random.default_rng(7)
    ws = [rng.standard_normal(64).astype(np.float32) for _ in range(3)]
    gs = [rng.standard_normal(64).astype(np.float32) for _ in range(3)]
    u = mxo.optimizer.get_updater(mxo.optimizer.create("sgd", momentum=0.9, aggregate_num=aggregate_num))
    u([0, 1, 2], gs, ws)
    ws[2].flags.writeable = False
    _assert_refused_in_process(lambda: u([0, 1, 2], gs, ws), [ws[2]], "read-only", "writeable", "weight")


# --------------------------------------------------------------------------- 6. gradients kept alive

@pytest.mark.parametrize("path", ["optimizer", "updater"])
@pytest.mark.parametrize("aggregate_num", [1, np.inf], ids=["agg1", "agg-inf"])
def test_no_reference_to_the_callers_gradients_survives_a_step(path, aggregate_num):
    """Item 6: with fresh gradient arrays every step (the normal NumPy loop), no step
    may keep an earlier step's gradients alive."""
    rng = np.random.default_rng(8)
    ws = [rng.standard_normal(100).astype(np.float32) for _ in range(4)]
    opt = mxo.optimizer.create("adam", aggregate_num=aggregate_num)
    u = mxo.optimizer.get_updater(opt)
    states = _adam_states(opt, ws)
    refs = []
    for step in range(3):
        gs = [rng.standard_normal(100).astype(np.float32) for _ in ws]
        refs.append([weakref.ref(g) for g in gs])
        if path == "updater":
            u([0, 1, 2, 3], gs, ws)
        else:
            opt.update([0, 1, 2, 3], ws, gs, states)
        del gs
        gc.collect()
        alive = [(s, k) for s, row in enumerate(refs) for k, r in enumerate(row) if r() is not None]
        assert not alive, "after step %d, gradients (step, position) %s are still referenced" % (step, alive)


def test_no_reference_to_a_row_sparse_gradient_survives_a_step():
    rng = np.random.default_rng(9)
    w = rng.standard_normal((20, 4)).astype(np.float32)
    u = mxo.optimizer.get_updater(mxo.optimizer.create("sgd", momentum=0.9, lazy_update=True))
    for _ in range(2):
        g = mxo.sparse.row_sparse_array((rng.standard_normal((3, 4)).astype(np.float32), [1, 5, 9]),
                                        shape=(20, 4))
        refs = [weakref.ref(g), weakref.ref(g.data), weakref.ref(g.indices)]
        u(0, g, w)
        del g
        gc.collect()
        assert all(r() is None for r in refs)


def test_plan_cache_does_not_grow_with_random_index_subsets():
    """Item 6: random subsets of indices each step make a new plan each step; what the
    caches hold must stay bounded in bytes (the gradients passed between steps 100 and
    300 total 80 MB)."""
    rng = np.random.default_rng(10)
    n_tensors, per_step, size = 200, 50, 2048
    ws = [rng.standard_normal(size).astype(np.float32) for _ in range(n_tensors)]
    u = mxo.optimizer.get_updater(mxo.optimizer.create("adam", aggregate_num=np.inf))
    u(list(range(n_tensors)), [np.zeros(size, np.float32) for _ in ws], ws)   # every state exists
    tracemalloc.start()
    try:
        for step in range(1, 301):
            idx = sorted(rng.choice(n_tensors, size=per_step, replace=False).tolist())
            gs = [np.full(size, 0.01, np.float32) for _ in idx]
            u(idx, gs, [ws[i] for i in idx])
            del gs
            if step == 100:
                gc.collect()
                at_100 = tracemalloc.get_traced_memory()[0]
        gc.collect()
        at_300 = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    growth = at_300 - at_100
    assert growth < 2 * 2**20, "memory held grew by %.1f MB between step 100 and step 300" % (growth / 2**20)


# --------------------------------------------------------------------------- 8. invalid numbers and indices

NON_FINITE = [math.nan, math.inf, -math.inf]
_IDS = ["nan", "inf", "-inf"]


@pytest.mark.parametrize("value", NON_FINITE, ids=_IDS)
def test_non_finite_learning_rate_is_refused(value):
    with pytest.raises(ValueError, match="learning_rate"):
        mxo.optimizer.create("sgd", learning_rate=value)


@pytest.mark.parametrize("value", NON_FINITE, ids=_IDS)
def test_non_finite_learning_rate_is_refused_by_set_learning_rate(value):
    opt = mxo.optimizer.create("adam", learning_rate=0.01)
    with pytest.raises(ValueError, match="learning_rate"):
        opt.set_learning_rate(value)
    assert opt.learning_rate == 0.01


@pytest.mark.parametrize("value", NON_FINITE, ids=_IDS)
def test_non_finite_wd_is_refused(value):
    with pytest.raises(ValueError, match="wd"):
        mxo.optimizer.create("sgd", wd=value)


@pytest.mark.parametrize("setter", ["set_lr_mult", "set_wd_mult"])
@pytest.mark.parametrize("value", NON_FINITE, ids=_IDS)
def test_non_finite_multiplier_is_refused(setter, value):
    opt = mxo.optimizer.create("sgd", param_idx2name={0: "fc_weight"})
    with pytest.raises(ValueError, match="mult"):
        getattr(opt, setter)({0: 2.0, "fc_weight": value})


BAD_INDICES = [0.5, None]


def _one_tensor():
    w = np.linspace(-1, 1, 16).astype(np.float32)
    return w, np.full(16, 0.5, np.float32)


@pytest.mark.parametrize("index", BAD_INDICES, ids=["half", "none"])
@pytest.mark.parametrize("as_list", [False, True], ids=["scalar", "list"])
def test_invalid_index_is_refused_by_update(index, as_list):
    w, g = _one_tensor()
    opt = mxo.optimizer.create("sgd", momentum=0.9)
    state = opt.create_state(0, w)
    if as_list:
        call = lambda: opt.update([index], [w], [g], [state])       # noqa: E731
    else:
        call = lambda: opt.update(index, w, g, state)               # noqa: E731
    _assert_refused_in_process(call, [w, state], "index", "indices")
    assert repr(index) in str(pytest.raises((TypeError, ValueError), call).value)


@pytest.mark.parametrize("index", BAD_INDICES, ids=["half", "none"])
@pytest.mark.parametrize("as_list", [False, True], ids=["scalar", "list"])
def test_invalid_index_is_refused_by_the_updater(index, as_list):
    w, g = _one_tensor()
    u = mxo.optimizer.get_updater(mxo.optimizer.create("sgd", momentum=0.9))
    if as_list:
        call = lambda: u([index], [g], [w])      # noqa: E731
    else:
        call = lambda: u(index, g, w)            # noqa: E731
    _assert_refused_in_process(call, [w], "index", "indices")
    assert repr(index) in str(pytest.raises((TypeError, ValueError), call).value)
    assert index not in u.states

