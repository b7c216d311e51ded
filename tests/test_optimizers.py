"""Generic tests run for every optimizer in the catalog (tests/opt_cases).

The reference is each optimizer's own NumPy ``step`` run in float64 (itself pinned to
MXNet's traces by test_golden.py); the kernels are checked against it, against
themselves across aggregation sizes, precisions and a save/load in the middle of a run.
"""
import ml_dtypes
import numpy as np
import pytest

import mxopt_numba as mxo
from cases import config_params, error_params

BF16 = np.dtype(ml_dtypes.bfloat16)


def make_data(case, steps, seed=7):
    rng = np.random.default_rng(seed)
    weights = []
    for shape in case.shapes:
        w = rng.standard_normal(shape)
        weights.append(np.abs(w) + 0.1 if case.positive_weights else w)
    grads = [[rng.standard_normal(shape) * (1.0 + 0.5 * k) for k, shape in enumerate(case.shapes)]
             for _ in range(steps)]
    return weights, grads


def run(case, kwargs, dtype=np.float32, steps=None, fused=True, multi_precision=False,
        aggregate_num=np.inf, grad_dtype=None, stop_after=None, seed=7):
    """Run ``steps`` updates through an Updater; return (weights, updater, snapshots)."""
    steps = case.steps if steps is None else steps
    w0, grads = make_data(case, steps, seed)
    weights = [w.astype(dtype) for w in w0]
    opt = mxo.optimizer.create(case.name, use_fused_step=fused, multi_precision=multi_precision,
                               **kwargs)
    opt.aggregate_num = aggregate_num
    updater = mxo.optimizer.get_updater(opt)
    mxo.random.seed(1234)
    snapshots = []
    for t in range(steps if stop_after is None else stop_after):
        gs = [g.astype(grad_dtype or dtype) for g in grads[t]]
        updater(list(range(len(weights))), gs, weights)
        snapshots.append([w.copy() for w in weights])
    return weights, updater, snapshots


def assert_close_to_reference(got, ref, w0, factor):
    """Within float32 rounding at the weight's scale plus 0.05 % of the distance moved."""
    for k, (x, r, w) in enumerate(zip(got, ref, w0)):
        x, r = x.astype(np.float64), r.astype(np.float64)
        assert np.array_equal(np.isnan(x), np.isnan(r)), "tensor %d: NaN pattern" % k
        ok = np.isfinite(r)
        scale = np.abs(r[ok]).max() if ok.any() else 0.0
        moved = np.abs(r - w)[ok].max() if ok.any() else 0.0
        allowed = factor * (2e-6 * scale + 5e-4 * moved)
        err = np.abs(x - r)[ok].max() if ok.any() else 0.0
        assert err <= allowed, "tensor %d: max error %.3g > %.3g (moved %.3g)" % (k, err, allowed, moved)


@pytest.mark.parametrize("case, kwargs", config_params())
def test_fused_float32_matches_float64_step(case, kwargs):
    got, _, _ = run(case, kwargs, np.float32, fused=True)
    ref_dtype = np.float32 if case.reference_float32 else np.float64
    ref, _, _ = run(case, kwargs, ref_dtype, fused=False)
    w0, _ = make_data(case, 0)
    assert_close_to_reference(got, ref, w0, case.tolerance_factor)


@pytest.mark.parametrize("case, kwargs", config_params())
def test_float64_fused_matches_step(case, kwargs):
    if not case.float64:
        pytest.skip("%s keeps float32 states" % case.name)
    got, _, _ = run(case, kwargs, np.float64, fused=True)
    ref, _, _ = run(case, kwargs, np.float64, fused=False)
    for x, r in zip(got, ref):
        np.testing.assert_allclose(x, r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("low", [np.float16, BF16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("case, kwargs", config_params())
def test_multi_precision_master_is_the_float32_run(case, kwargs, low):
    """The master copy follows exactly the float32 run fed the same (rounded) inputs, and
    the low-precision weight is the rounded master after every step."""
    steps = case.steps
    w0, grads = make_data(case, steps)
    w_low = [w.astype(low) for w in w0]
    w_32 = [w.astype(np.float32) for w in w_low]
    opt_low = mxo.optimizer.create(case.name, multi_precision=True, **kwargs)
    opt_32 = mxo.optimizer.create(case.name, **kwargs)
    u_low, u_32 = mxo.optimizer.get_updater(opt_low), mxo.optimizer.get_updater(opt_32)
    idx = list(range(len(w0)))
    for t in range(steps):
        g_low = [g.astype(low) for g in grads[t]]
        mxo.random.seed(t)
        u_low(idx, g_low, w_low)
        mxo.random.seed(t)
        u_32(idx, [g.astype(np.float32) for g in g_low], w_32)
        for i in idx:
            master = u_low.states[i][0]
            assert master.dtype == np.float32
            np.testing.assert_array_equal(master, w_32[i], err_msg="master of tensor %d, step %d" % (i, t))
            np.testing.assert_array_equal(w_low[i].view(np.uint16), master.astype(low).view(np.uint16))


@pytest.mark.parametrize("case, kwargs", config_params())
def test_float16_without_multi_precision_rounds_once(case, kwargs):
    """fp16 weights without a master: computed in float32, rounded once per step; the
    kernel and the step path agree to 1 ulp on every step from the same start."""
    if not case.float16_plain:
        pytest.skip("%s needs multi_precision for float16" % case.name)
    w0, grads = make_data(case, 1)
    with pytest.warns(UserWarning, match="multi_precision"):
        fused, _, _ = run(case, kwargs, np.float16, steps=1, fused=True)
    with pytest.warns(UserWarning, match="multi_precision"):
        step, _, _ = run(case, kwargs, np.float16, steps=1, fused=False)
    for x, r in zip(fused, step):
        np.testing.assert_array_max_ulp(x, r, maxulp=1)


@pytest.mark.parametrize("dtype, mp", [(np.float32, False), (np.float16, True), (np.float64, False)],
                         ids=["fp32", "fp16-mp", "fp64"])
@pytest.mark.parametrize("case, kwargs", config_params())
def test_aggregation_does_not_change_results(case, kwargs, dtype, mp):
    if dtype == np.float64 and not case.float64:
        pytest.skip("%s keeps float32 states" % case.name)
    results = [run(case, kwargs, dtype, multi_precision=mp, aggregate_num=n)[0] for n in (1, 4, np.inf)]
    for other in results[1:]:
        for x, r in zip(other, results[0]):
            np.testing.assert_array_equal(x, r)


@pytest.mark.parametrize("case, kwargs", config_params())
def test_save_load_mid_run_gives_the_same_trajectory(case, kwargs):
    full, _, _ = run(case, kwargs, np.float32, steps=5)
    w0, grads = make_data(case, 5)
    weights = [w.astype(np.float32) for w in w0]
    opt = mxo.optimizer.create(case.name, **kwargs)
    updater = mxo.optimizer.get_updater(opt)
    idx = list(range(len(weights)))
    mxo.random.seed(1234)
    for t in range(3):
        updater(idx, [g.astype(np.float32) for g in grads[t]], weights)
    blob = updater.get_states(dump_optimizer=True)
    fresh = mxo.optimizer.get_updater(mxo.optimizer.create(case.name))
    fresh.set_states(blob)
    assert type(fresh.optimizer) is type(opt)
    assert fresh.optimizer.num_update == opt.num_update
    for t in range(3, 5):
        fresh(idx, [g.astype(np.float32) for g in grads[t]], weights)
    if case.stochastic:
        return
    for x, r in zip(weights, full):
        np.testing.assert_array_equal(x, r)


@pytest.mark.parametrize("case, kwargs, exc, match", error_params())
def test_invalid_hyperparameters_raise(case, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        mxo.optimizer.create(case.name, **kwargs)
