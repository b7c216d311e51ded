"""NAG, Signum/signSGD, SGLD, DCASGD, Test and FTML: what the generic catalog does not
cover.  Several steps are checked against the spec's formulas written out here (not
against our own ``step``), plus the MXNet 2.0.0b1 behaviours we reproduce (NAG's decay
term, signSGD ignoring rescale and clip, Test never clipping, DCASGD with momentum) and
the SGLD noise contract."""
import warnings

import ml_dtypes
import numpy as np
import pytest

import mxopt_numba as mxo

BF16 = np.dtype(ml_dtypes.bfloat16)
FUSED = pytest.mark.parametrize("fused", [True, False], ids=["fused", "step"])


def run_steps(name, w0, grads, fused=True, dtype=np.float64, **kwargs):
    """Weights (list) and states after feeding ``grads[t]`` (lists of arrays) in turn."""
    opt = mxo.optimizer.create(name, use_fused_step=fused, **kwargs)
    ws = [np.array(w, dtype=dtype) for w in w0]
    states = [opt.create_state_multi_precision(i, w) for i, w in enumerate(ws)]
    idx = list(range(len(ws)))
    for gs in grads:
        opt.update(idx, ws, [np.array(g, dtype=dtype) for g in gs], states)
    return ws, states, opt


def signed_data(rng, steps=3, shapes=((5, 9), (7,))):
    w0 = [rng.standard_normal(s) for s in shapes]
    grads = [[rng.standard_normal(s) * 2.0 for s in shapes] for _ in range(steps)]
    return w0, grads


# --------------------------------------------------------------------------- defaults

@pytest.mark.parametrize("name, lr", [("nag", 0.1), ("signum", 0.01), ("sgld", 0.1),
                                      ("dcasgd", 0.1), ("test", 0.01), ("ftml", 0.0025)])
def test_defaults_and_scheduler_base_lr_kept(name, lr):
    opt = mxo.optimizer.create(name)
    assert opt.learning_rate == lr
    assert opt.use_fused_step is True
    sched = mxo.lr_scheduler.FactorScheduler(step=10, base_lr=0.7)
    assert mxo.optimizer.create(name, lr_scheduler=sched).learning_rate == 0.7
    assert sched.base_lr == 0.7


def test_default_hyperparameters():
    nag, signum, dcasgd, ftml = (mxo.optimizer.create(n) for n in ("nag", "signum", "dcasgd", "ftml"))
    assert nag.momentum == 0.9
    assert (signum.momentum, signum.wd_lh) == (0.9, 0.0)
    assert (dcasgd.momentum, dcasgd.lamda) == (0.0, 0.04)
    assert (ftml.beta1, ftml.beta2, ftml.epsilon) == (0.6, 0.999, 1e-8)


# --------------------------------------------------------------------------- NAG

@FUSED
def test_nag_rule_uses_the_old_weight_in_both_decay_terms(rng, fused):
    w0, grads = signed_data(rng)
    lr, mu, wd, c, s = 0.2, 0.7, 0.1, 1.5, 0.8
    got, states, _ = run_steps("nag", w0, grads, fused, learning_rate=lr, momentum=mu, wd=wd,
                               clip_gradient=c, rescale_grad=s)
    for i, w in enumerate(w0):
        w, m = w.copy(), np.zeros_like(w)
        for gs in grads:
            gw = np.clip(s * gs[i], -c, c) + wd * w
            m = mu * m - lr * gw
            w = w + mu * m - lr * gw
        np.testing.assert_allclose(got[i], w, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(states[i], m, rtol=1e-13, atol=1e-15)


def test_nag_differs_from_the_1_9_in_place_kernel_when_wd_is_on(rng):
    """1.9 decayed the momentum with the already-updated weight; 2.0.0b1 does not."""
    w0, g = rng.standard_normal(20), rng.standard_normal(20)
    lr, mu, wd = 0.1, 0.9, 0.1
    (w,), _, _ = run_steps("nag", [w0], [[g], [g]], learning_rate=lr, momentum=mu, wd=wd)
    v19, m = w0.copy(), np.zeros(20)
    for _ in range(2):
        new = v19 + mu * (mu * m - lr * (g + wd * v19)) - lr * (g + wd * v19)
        m = mu * m - lr * (g + wd * new)
        v19 = new
    assert np.abs(w - v19).max() > 1e-4


@FUSED
def test_nag_without_momentum_is_sgd(rng, fused):
    w0, grads = signed_data(rng)
    kw = dict(learning_rate=0.3, wd=0.05, clip_gradient=1.0, rescale_grad=0.5)
    got, states, _ = run_steps("nag", w0, grads, fused, momentum=0.0, **kw)
    ref, _, _ = run_steps("sgd", w0, grads, fused, momentum=0.0, **kw)
    assert states == [None, None]
    for x, r in zip(got, ref):
        np.testing.assert_array_equal(x, r)


# --------------------------------------------------------------------------- Signum

@FUSED
def test_signum_rule_with_coupled_wd_and_decoupled_wd_lh(rng, fused):
    w0, grads = signed_data(rng)
    lr, mu, wd, wd_lh, c, s = 0.05, 0.6, 0.1, 0.3, 1.2, 0.7
    got, states, _ = run_steps("signum", w0, grads, fused, learning_rate=lr, momentum=mu, wd=wd,
                               wd_lh=wd_lh, clip_gradient=c, rescale_grad=s)
    for i, w in enumerate(w0):
        w, m = w.copy(), np.zeros_like(w)
        for gs in grads:
            m = mu * m - (1 - mu) * (np.clip(s * gs[i], -c, c) + wd * w)
            w = (1 - lr * wd_lh) * w + lr * np.sign(m)
        np.testing.assert_allclose(got[i], w, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(states[i], m, rtol=1e-13, atol=1e-15)


@FUSED
@pytest.mark.parametrize("rescale, clip", [(1.0, None), (0.01, None), (-3.0, None), (2.0, 1e-3),
                                           (-0.5, 0.2)])
def test_signsgd_uses_the_sign_of_the_raw_gradient(rng, fused, rescale, clip):
    """rescale_grad (even negative) and clip_gradient have no effect, as in MXNet."""
    w0, grads = signed_data(rng)
    lr, wd, wd_lh = 0.05, 0.1, 0.3
    got, states, _ = run_steps("signum", w0, grads, fused, learning_rate=lr, momentum=0.0, wd=wd,
                               wd_lh=wd_lh, rescale_grad=rescale, clip_gradient=clip)
    assert states == [None, None]
    for i, w in enumerate(w0):
        w = w.copy()
        for gs in grads:
            w = (1 - lr * (wd + wd_lh)) * w - lr * np.sign(gs[i])
        np.testing.assert_allclose(got[i], w, rtol=1e-13, atol=1e-15)


@FUSED
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sign_of_zero_is_zero_and_nan_stays_nan(fused, momentum):
    w0 = np.array([1.0, -2.0, 0.5, 3.0], dtype=np.float32)
    g = np.array([0.0, 0.0, np.nan, 1.0], dtype=np.float32)
    (w,), _, _ = run_steps("signum", [w0], [[g]], fused, dtype=np.float32, momentum=momentum,
                           learning_rate=0.1)
    np.testing.assert_array_equal(w[:2], w0[:2])          # zero gradient: no move, no decay
    assert np.isnan(w[2])
    assert w[3] == np.float32(2.9)


def test_signum_float16_master_follows_the_float32_run_exactly(rng):
    """Sign rules amplify rounding: the fp16 paths must follow the float32 kernel on the
    same (rounded) inputs exactly, not approximately."""
    w0, grads = signed_data(rng)
    w16 = [w.astype(np.float16) for w in w0]
    g16 = [[g.astype(np.float16) for g in gs] for gs in grads]
    ref, _, _ = run_steps("signum", w16, g16, dtype=np.float32, momentum=0.5, wd=0.01)
    mp, states, _ = run_steps("signum", w16, g16, dtype=np.float16, momentum=0.5, wd=0.01,
                              multi_precision=True)
    for x, st, r in zip(mp, states, ref):
        np.testing.assert_array_equal(st[0], r)
        np.testing.assert_array_equal(x, r.astype(np.float16))


# --------------------------------------------------------------------------- SGLD

def _sgld_run(fused, seed, ws, grads, aggregate_num=np.inf, **kwargs):
    opt = mxo.optimizer.create("sgld", use_fused_step=fused, **kwargs)
    opt.aggregate_num = aggregate_num
    updater = mxo.optimizer.get_updater(opt)
    ws = [w.copy() for w in ws]
    mxo.random.seed(seed)
    for gs in grads:
        updater(list(range(len(ws))), [g.astype(w.dtype) for g, w in zip(gs, ws)], ws)
    return ws


@pytest.mark.parametrize("mp", [True, False], ids=["mp", "no-mp"])
def test_sgld_step_and_fused_draw_the_same_noise_in_a_mixed_dtype_call(rng, mp):
    """One call with float32, float16, float64 and bfloat16 tensors: the step path runs
    the low-precision ones first, yet consumes the noise in call order like the kernel."""
    shapes = [(6, 5), (40,), (3, 7), (9,)]
    dtypes = [np.float32, np.float16, np.float64, BF16]
    ws = [rng.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes)]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(3)]
    kw = dict(wd=0.02, clip_gradient=1.0, multi_precision=mp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)     # float16 without multi_precision
        fused = _sgld_run(True, 5, ws, grads, **kw)
        step = _sgld_run(False, 5, ws, grads, **kw)
    np.testing.assert_allclose(fused[0], step[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_max_ulp(fused[1], step[1], maxulp=1)
    np.testing.assert_allclose(fused[2], step[2], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(fused[3].astype(np.float32), step[3].astype(np.float32), rtol=1e-2,
                               atol=1e-2)


@FUSED
def test_sgld_noise_has_std_sqrt_lr_and_follows_the_seed(fused):
    n, lr = 200_000, 0.04
    w0 = [np.zeros(n)]
    zero = [[np.zeros(n)]]
    a = _sgld_run(fused, 11, w0, zero, learning_rate=lr)[0]
    b = _sgld_run(fused, 11, w0, zero, learning_rate=lr)[0]
    c = _sgld_run(fused, 12, w0, zero, learning_rate=lr)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert abs(a.mean()) < 5 * np.sqrt(lr / n)
    assert abs(a.std() / np.sqrt(lr) - 1) < 5 / np.sqrt(2 * n)


def test_sgld_noise_does_not_replay_numpy_default_rng_of_the_same_seed():
    """Data drawn with numpy.random.default_rng(n) must not reappear as the noise after
    mxopt_numba.random.seed(n) (the golden traces draw their weights exactly so)."""
    n = 50_000
    noise = _sgld_run(True, 3, [np.zeros(n)], [[np.zeros(n)]], learning_rate=1.0)[0]
    data = np.random.default_rng(3).standard_normal(n)
    assert abs(np.corrcoef(noise, data)[0, 1]) < 5 / np.sqrt(n)


def test_sgld_aggregation_and_per_index_calls_draw_the_same_stream(rng):
    ws = [rng.standard_normal(s) for s in [(4, 4), (33,), (2, 3)]]
    grads = [[rng.standard_normal(w.shape) for w in ws] for _ in range(2)]
    ref = _sgld_run(True, 9, ws, grads, aggregate_num=np.inf)
    for fused, agg in [(True, 1), (True, 2), (False, 1), (False, np.inf)]:
        for x, r in zip(_sgld_run(fused, 9, ws, grads, aggregate_num=agg), ref):
            np.testing.assert_allclose(x, r, rtol=1e-13, atol=1e-15)


@FUSED
def test_sgld_deterministic_part(rng, fused):
    """Noise removed (same seed, once with a zero gradient), the update is -lr/2 * g'."""
    w0, grads = signed_data(rng, steps=1)
    kw = dict(learning_rate=0.2, wd=0.1, clip_gradient=1.5, rescale_grad=0.5)
    with_g = _sgld_run(fused, 4, w0, grads, **kw)
    zero_g = _sgld_run(fused, 4, w0, [[np.zeros_like(g) for g in grads[0]]], **kw)
    for a, b, w, g in zip(with_g, zero_g, w0, grads[0]):
        np.testing.assert_allclose(a - b, -0.1 * np.clip(0.5 * g, -1.5, 1.5), rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------- DCASGD

@FUSED
@pytest.mark.parametrize("momentum", [0.0, 0.8])
def test_dcasgd_rule_and_state(rng, fused, momentum):
    w0, grads = signed_data(rng)
    lr, wd, lamda, c, s = 0.1, 0.05, 0.3, 1.5, 0.9
    got, states, _ = run_steps("dcasgd", w0, grads, fused, learning_rate=lr, momentum=momentum,
                               wd=wd, lamda=lamda, clip_gradient=c, rescale_grad=s)
    for i, w in enumerate(w0):
        w, prev, m = w.copy(), w.copy(), np.zeros_like(w)
        for gs in grads:
            gw = np.clip(s * gs[i], -c, c) + wd * w
            m = momentum * m - lr * (gw + lamda * gw * gw * (w - prev))
            prev, w = w, w + m
        mom, prev_state = states[i]
        np.testing.assert_allclose(got[i], w, rtol=1e-13, atol=1e-15)
        np.testing.assert_array_equal(prev_state, prev)
        if momentum == 0.0:
            assert mom is None
        else:
            np.testing.assert_allclose(mom, m, rtol=1e-13, atol=1e-15)


def test_dcasgd_momentum_on_a_one_element_weight():
    """MXNet 1.9 raised here (truth value of an array); 2.x and we update normally."""
    (w,), ((mom, prev),), _ = run_steps("dcasgd", [np.array([0.5])], [[np.array([2.0])]],
                                        momentum=0.9, learning_rate=0.1)
    assert w[0] == pytest.approx(0.5 - 0.1 * 2.0)
    assert mom[0] == pytest.approx(-0.2) and prev[0] == 0.5


def test_dcasgd_multi_precision_keeps_the_previous_master():
    w16 = np.array([0.1, 0.2, 0.3], dtype=np.float16)
    opt = mxo.optimizer.create("dcasgd", multi_precision=True, momentum=0.5)
    master, (mom, prev) = opt.create_state_multi_precision(0, w16)
    assert master.dtype == mom.dtype == prev.dtype == np.float32
    before = master.copy()
    opt.update([0], [w16], [np.ones(3, np.float16)], [(master, (mom, prev))])
    np.testing.assert_array_equal(prev, before)


# --------------------------------------------------------------------------- Test

@FUSED
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_test_optimizer_never_clips_and_keeps_its_zero_state(rng, fused, dtype):
    w0, grads = signed_data(rng)
    lr, wd, s = 0.1, 0.05, 3.0
    got, states, _ = run_steps("test", w0, grads, fused, dtype=dtype, learning_rate=lr, wd=wd,
                               rescale_grad=s, clip_gradient=0.01)
    for i, w in enumerate(w0):
        w = w.copy()
        for gs in grads:
            w = w - lr * (s * gs[i] + wd * w)
        tol = 1e-6 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(got[i], w, rtol=tol, atol=tol)
        assert states[i].dtype == np.float32 and states[i].shape == w.shape
        assert not states[i].any()


def test_test_optimizer_state_with_multi_precision():
    opt = mxo.optimizer.create("test", multi_precision=True)
    master, state = opt.create_state_multi_precision(0, np.zeros((2, 3), np.float16))
    assert master.dtype == state.dtype == np.float32 and state.shape == (2, 3)


# --------------------------------------------------------------------------- FTML

def _ftml_reference(w, grads, lr, b1, b2, eps, wd=0.0, c=None, s=1.0, t0=0):
    d, v, z = (np.zeros_like(w) for _ in range(3))
    w = w.copy()
    for k, g in enumerate(grads, start=t0 + 1):
        gw = (np.clip(s * g, -c, c) if c else s * g) + wd * w
        v = b2 * v + (1 - b2) * gw * gw
        d_t = (1 - b1 ** k) / lr * (np.sqrt(v / (1 - b2 ** k)) + eps)
        z = b1 * z + (1 - b1) * gw - (d_t - b1 * d) * w
        d, w = d_t, -z / d_t
    return w, (d, v, z)


@FUSED
def test_ftml_rule_over_several_steps(rng, fused):
    w0, grads = signed_data(rng, steps=4)
    kw = dict(learning_rate=0.01, beta1=0.5, beta2=0.9, epsilon=1e-6, wd=0.05, clip_gradient=1.5,
              rescale_grad=0.8)
    got, states, _ = run_steps("ftml", w0, grads, fused, **kw)
    for i, w in enumerate(w0):
        ref, ref_state = _ftml_reference(w, [gs[i] for gs in grads], 0.01, 0.5, 0.9, 1e-6, 0.05,
                                         1.5, 0.8)
        np.testing.assert_allclose(got[i], ref, rtol=1e-11, atol=1e-13)
        for x, r in zip(states[i], ref_state):
            np.testing.assert_allclose(x, r, rtol=1e-11, atol=1e-13)


@FUSED
def test_ftml_bias_corrections_follow_each_tensor_count(rng, fused):
    """Tensor 0 has been updated twice before, tensor 1 never: one aggregated call must
    use t = 3 for the first and t = 1 (plus begin_num_update) for the second."""
    w0, grads = signed_data(rng, steps=3)
    opt = mxo.optimizer.create("ftml", use_fused_step=fused, begin_num_update=2, learning_rate=0.01)
    ws = [w.copy() for w in w0]
    states = [opt.create_state(i, w) for i, w in enumerate(ws)]
    for gs in grads[:2]:
        opt.update([0], [ws[0]], [gs[0]], [states[0]])
    opt.update([0, 1], ws, grads[2], states)
    assert opt._index_update_count[0] == 5 and opt._index_update_count[1] == 3
    ref0, _ = _ftml_reference(w0[0], [gs[0] for gs in grads], 0.01, 0.6, 0.999, 1e-8, t0=2)
    ref1, _ = _ftml_reference(w0[1], [grads[2][1]], 0.01, 0.6, 0.999, 1e-8, t0=2)
    np.testing.assert_allclose(ws[0], ref0, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(ws[1], ref1, rtol=1e-11, atol=1e-13)


# --------------------------------------------------------------------------- common

@pytest.mark.parametrize("name, kwargs", [
    ("nag", {"wd": 0.1}), ("signum", {"wd": 0.1}), ("signum", {"momentum": 0.0, "wd_lh": 0.1}),
    ("sgld", {"wd": 0.1}), ("dcasgd", {"momentum": 0.9, "wd": 0.1}), ("test", {"wd": 0.1}),
    ("ftml", {"wd": 0.1})])
@FUSED
def test_the_callers_gradient_is_left_alone(rng, name, kwargs, fused):
    w, g = rng.standard_normal(10), rng.standard_normal(10)
    g_before = g.copy()
    opt = mxo.optimizer.create(name, use_fused_step=fused, rescale_grad=0.5, clip_gradient=0.3,
                               **kwargs)
    opt.update([0], [w], [g], [opt.create_state(0, w)])
    np.testing.assert_array_equal(g, g_before)
