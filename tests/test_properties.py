"""Property-based tests across optimizers, dtypes, shapes (0-size and 0-d included),
magnitudes and aggregation sizes.  The default profile is quick; set
HYPOTHESIS_PROFILE=ci for the long run."""
import ml_dtypes
import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import mxopt_numba as mxo
from cases import CASES

settings.register_profile("default", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(__import__("os").environ.get("HYPOTHESIS_PROFILE", "default"))

BY_NAME = {c.name: c for c in CASES}
NAMES = sorted(BY_NAME)
ROW_2D = {"groupadagrad"}          # needs 2-D weights

shapes_1d_or_more = st.one_of(
    st.tuples(st.integers(0, 40)),
    st.tuples(st.integers(1, 9), st.integers(0, 9)),
    st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 6)),
)


@st.composite
def problems(draw):
    name = draw(st.sampled_from(NAMES))
    case = BY_NAME[name]
    desc = draw(st.sampled_from(sorted(case.configs)))
    if name in ROW_2D:
        shapes = draw(st.lists(st.tuples(st.integers(1, 9), st.integers(1, 9)), min_size=1, max_size=4))
    else:
        shapes = draw(st.lists(st.one_of(st.just(()), shapes_1d_or_more), min_size=1, max_size=4))
    scale = 10.0 ** draw(st.integers(-6, 6))
    agg = draw(st.sampled_from([1, 2, 3, np.inf]))
    seed = draw(st.integers(0, 2**31 - 1))
    return case, case.configs[desc], shapes, scale, agg, seed


_F32_MAX = float(np.finfo(np.float32).max)


def _data(case, shapes, scale, seed, steps=3):
    rng = np.random.default_rng(seed)
    ws = []
    for s in shapes:
        w = rng.standard_normal(s) * scale
        ws.append(np.abs(w) + 0.1 * scale if case.positive_weights else w)
    gs = [[rng.standard_normal(s) * scale for s in shapes] for _ in range(steps)]
    return ws, gs


def _run(case, kwargs, ws, gs, dtype, fused, agg, mp=False):
    opt = mxo.optimizer.create(case.name, use_fused_step=fused, multi_precision=mp, **kwargs)
    opt.aggregate_num = agg
    u = mxo.optimizer.get_updater(opt)
    weights = [np.array(w, dtype=dtype) for w in ws]
    idx = list(range(len(weights)))
    mxo.random.seed(99)
    for step in gs:
        u(idx, [np.array(g, dtype=dtype) for g in step], weights)
    return weights, u


@given(problems())
def test_fused_matches_the_float64_step(problem):
    case, kwargs, shapes, scale, agg, seed = problem
    ws, gs = _data(case, shapes, scale, seed)
    ref, _ = _run(case, kwargs, ws, gs, np.float32 if case.reference_float32 else np.float64, False, np.inf)
    # the property is about results float32 can hold: where the float64 trajectory leaves
    # float32's range (DCASGD's cubic term on 1e6-scale data reaches 4e40), float32
    # overflows as it must, at a step that depends on rounding
    assume(all(np.all(np.abs(r[np.isfinite(r)]) < _F32_MAX / 16) for r in ref))
    got, _ = _run(case, kwargs, ws, gs, np.float32, True, agg)
    for x, r, w in zip(got, ref, ws):
        assert x.shape == r.shape and x.dtype == np.float32
        x, r = x.astype(np.float64), r.astype(np.float64)
        assert np.array_equal(np.isnan(x), np.isnan(r))
        ok = np.isfinite(r) & np.isfinite(x)
        assert np.array_equal(np.isfinite(x), np.isfinite(r))
        if ok.any():
            w32 = np.asarray(w, np.float32).astype(np.float64)
            allowed = case.tolerance_factor * (2e-6 * np.abs(r[ok]).max() + 5e-4 * np.abs(r - w32)[ok].max()) + 1e-30
            assert np.abs(x - r)[ok].max() <= allowed


@given(problems())
def test_aggregation_invariance(problem):
    case, kwargs, shapes, scale, agg, seed = problem
    ws, gs = _data(case, shapes, scale, seed)
    a, _ = _run(case, kwargs, ws, gs, np.float32, True, agg)
    b, _ = _run(case, kwargs, ws, gs, np.float32, True, 1)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@given(problems(), st.sampled_from([np.float16, ml_dtypes.bfloat16]))
def test_multi_precision_weight_is_the_rounded_master(problem, low):
    case, kwargs, shapes, scale, agg, seed = problem
    ws, gs = _data(case, shapes, min(scale, 1e3), seed)
    weights, u = _run(case, kwargs, ws, gs, low, True, agg, mp=True)
    for k, w in enumerate(weights):
        master = u.states[k][0]
        assert master.dtype == np.float32 and master.shape == w.shape
        with np.errstate(over="ignore"):      # a master beyond float16's range rounds to inf
            rounded = master.astype(low)
        np.testing.assert_array_equal(w.view(np.uint16), rounded.view(np.uint16))
