"""16-bit weights without a float32 master copy: ``multi_precision="kahan"`` (a 16-bit
compensation buffer) and ``multi_precision="stochastic"`` (stochastic rounding from the
counter-based generator), on every element-wise rule, CPU and simulated CUDA."""
import math
import warnings

import ml_dtypes
import numpy as np
import pytest

import mxopt_numba as mxo
from cases import CASES
from mxopt_numba._state_tree import state_leaves

BF16 = np.dtype(ml_dtypes.bfloat16)
MODES = ["kahan", "stochastic"]


def _updater(name="sgd", seed=11, **kwargs):
    opt = mxo.optimizer.create(name, **kwargs)
    opt.seed = seed
    return mxo.optimizer.get_updater(opt)


# --------------------------------------------------------------------------- API

def test_modes_and_mxnet_meanings():
    assert mxo.optimizer.create("sgd", multi_precision=True).multi_precision is True
    assert mxo.optimizer.create("sgd", multi_precision=False).multi_precision is False
    assert mxo.optimizer.create("sgd", multi_precision="Kahan").multi_precision == "kahan"
    assert mxo.optimizer.create("adam", multi_precision="stochastic").multi_precision == "stochastic"
    for bad in ("fp32", 1.5, [True]):
        with pytest.raises(ValueError, match="multi_precision"):
            mxo.optimizer.create("sgd", multi_precision=bad)


def test_state_layouts():
    w16 = np.ones(5, BF16)
    w32 = np.ones(5, np.float32)
    opt = mxo.optimizer.create("adam", multi_precision="kahan")
    comp, (m, v) = opt.create_state_multi_precision(0, w16)
    assert comp.dtype == BF16 and not comp.any() and m.shape == (5,)
    assert not isinstance(opt.create_state_multi_precision(0, w32)[0], tuple)   # float32: plain Adam state
    assert opt.pairs_state(w16) and not opt.uses_master(w16) and opt.compensates(w16)
    sr = mxo.optimizer.create("adam", multi_precision="stochastic")
    assert len(sr.create_state_multi_precision(0, w16)) == 2 and sr.rounds_stochastically(w16)
    assert not sr.pairs_state(w16)
    # a state made without the compensation is refused before anything is written
    kahan = mxo.optimizer.create("adam", multi_precision="kahan")
    before = w16.copy()
    with pytest.raises(ValueError, match="states\\[0\\]"):
        kahan.update([0], [w16], [w16.copy()], [mxo.optimizer.create("adam").create_state(0, w16)])
    assert np.array_equal(w16.view(np.uint16), before.view(np.uint16))


# --------------------------------------------------------------------------- long runs

@pytest.mark.parametrize("dtype", [BF16, np.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "step"])
def test_ten_thousand_tiny_updates(dtype, fused, rng):
    """Every update is 1/20 to 1/160 of a 16-bit ulp.  Plain 16-bit weights stall; Kahan
    tracks the float32 trajectory (each step can lose at most half an ulp of the
    compensation, itself at most half an ulp of the weight: N * 2**-(p+1) weight ulps in
    all, p the significand bits); stochastic rounding stays within 5 standard deviations of
    its random walk; the float32 master within one rounding."""
    n, steps, lr = 64, 10_000, 1e-3
    w0 = (1.0 + rng.uniform(0, 1, n)).astype(dtype)
    grads = -(0.1 * (1 + rng.uniform(0, 1, n))).astype(np.float32).astype(dtype)
    g32 = grads.astype(np.float32)
    traj = w0.astype(np.float32)
    for _ in range(steps):
        traj -= np.float32(lr) * g32          # the float32 trajectory, as SGD computes it
    traj = traj.astype(np.float64)
    out = {}
    for mode in (False, "kahan", "stochastic", True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            updater = _updater("sgd", learning_rate=lr, multi_precision=mode, use_fused_step=fused)
            w = w0.copy()
            for _ in range(steps):
                updater(0, grads, w)
        out[mode] = (w.astype(np.float64), updater.states[0])
    ulp_end = np.abs(np.spacing(traj.astype(dtype)).astype(np.float64))
    ulp_start = np.abs(np.spacing(w0).astype(np.float64))
    bits = 8 if dtype == BF16 else 11
    assert np.all(np.abs(traj - w0.astype(np.float64)) >= 20 * ulp_start), "the run must move many ulps"
    assert np.array_equal(out[False][0], w0.astype(np.float64)), "plain 16-bit weights were expected to stall"
    kahan = out["kahan"][0]
    assert np.all(np.abs(kahan - traj) <= (steps * 2.0 ** -(bits + 1) + 1) * ulp_end)
    assert np.all(np.abs(out[True][0] - traj) <= 0.5 * ulp_end)
    # stochastic rounding: a step rounds up with probability p = update / ulp, variance
    # p (1 - p) ulp**2 per step
    p = np.max(np.abs(lr * g32.astype(np.float64)) / ulp_start)
    sd = math.sqrt(steps * p) * ulp_end
    sr = out["stochastic"][0]
    assert np.all(np.abs(sr - traj) <= 5 * sd + ulp_end)
    assert abs(np.mean((sr - traj) / sd)) <= 5 / math.sqrt(n)


# --------------------------------------------------------------------------- unbiasedness

@pytest.mark.parametrize("dtype", [BF16, np.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "step"])
def test_stochastic_rounding_is_unbiased(dtype, fused):
    """One update lands every element a known fraction of an ulp above a 16-bit number:
    the mean of the rounded results equals the exact value within 5 standard errors, and
    the fraction rounded up equals the fraction of the ulp."""
    n = 200_000
    base = np.full(n, 1.5, dtype)
    ulp = float(np.spacing(np.array(1.5, dtype)).astype(np.float64))
    results = []
    for frac in (0.1, 0.5, 0.8125):
        w = base.copy()
        updater = _updater("sgd", learning_rate=1.0, multi_precision="stochastic", use_fused_step=fused)
        grad = np.full(n, -frac * ulp, np.float32).astype(dtype)
        exact = 1.5 + float(grad.astype(np.float64)[0]) * -1.0
        updater(0, grad, w)
        got = w.astype(np.float64)
        assert set(np.unique(got)) <= {1.5, 1.5 + ulp}
        p = (exact - 1.5) / ulp
        up = np.mean(got > 1.5)
        assert abs(up - p) / math.sqrt(p * (1 - p) / n) < 5, (frac, up, p)
        results.append(got)
    # the draws differ between elements and between steps
    w = base.copy()
    updater = _updater("sgd", learning_rate=1.0, multi_precision="stochastic", use_fused_step=fused)
    g = np.full(n, -0.5 * ulp, np.float32).astype(dtype)
    updater(0, g, w)
    first = w > 1.5
    w[...] = base
    updater(0, g, w)
    second = w > 1.5
    agree = np.mean(first == second)
    assert abs(agree - 0.5) / math.sqrt(0.25 / n) < 5


def test_stochastic_rounding_negative_values_and_subnormals():
    """Symmetric for negative values; float16 subnormals round between their neighbours."""
    from mxopt_numba.optimizer.optimizer import stochastic_round_np
    rng = np.random.default_rng(2)
    n = 100_000
    for dtype, x in ((BF16, -1.2345), (np.float16, -1.2345), (np.float16, 3.1e-6)):
        vals = np.full(n, x, np.float32)
        rnd = rng.integers(0, 1 << 16, n).astype(np.uint64)
        out = stochastic_round_np(vals, rnd, dtype).astype(np.float64)
        lo, hi = np.unique(out)[[0, -1]]
        assert lo <= np.float32(x) <= hi and len(np.unique(out)) <= 2
        p = (float(np.float32(x)) - lo) / (hi - lo)
        assert abs(np.mean(out == hi) - p) / math.sqrt(p * (1 - p) / n) < 5


# --------------------------------------------------------------------------- every rule

def _elementwise_cases():
    out = []
    for case in CASES:
        cls = mxo.optimizer.Optimizer.opt_registry[case.name]
        if not cls.elementwise or case.name == "groupadagrad":
            continue
        desc, kwargs = next(iter(case.configs.items()))
        out.append(pytest.param(case, kwargs, id=case.name))
    return out


def _run(name, kwargs, mode, dtype, fused, steps=3, shapes=((7,), (3, 5), (41,))):
    rng = np.random.default_rng(4)
    w = [(np.abs(rng.standard_normal(s)) + 0.1).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(steps)]
    mxo.random.seed(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        updater = _updater(name, multi_precision=mode, use_fused_step=fused, aggregate_num=np.inf, **kwargs)
        for gs in grads:
            updater(list(range(len(w))), gs, w)
    return w, updater


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case, kwargs", _elementwise_cases())
def test_every_elementwise_rule_fused_matches_step(case, kwargs, mode):
    """The kernels' store_weight and the NumPy step path store the same 16-bit weights
    (and compensations) from the same float32 values."""
    fused, f_up = _run(case.name, kwargs, mode, BF16, True)
    step, s_up = _run(case.name, kwargs, mode, BF16, False)
    for k, (a, b) in enumerate(zip(fused, step)):
        assert np.isfinite(a.astype(np.float32)).all()
        # kernels and NumPy may differ in the last float32 bit of the rule's arithmetic
        # (fused reductions); the 16-bit results then agree to one 16-bit ulp
        np.testing.assert_array_max_ulp(a.astype(np.float32), b.astype(np.float32), maxulp=1 << 16)
        if mode == "kahan":
            ca, cb = f_up.states[k][0], s_up.states[k][0]
            pa = a.astype(np.float64) + ca.astype(np.float64)
            pb = b.astype(np.float64) + cb.astype(np.float64)
            np.testing.assert_allclose(pa, pb, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- save / load

@pytest.mark.parametrize("mode", MODES)
def test_save_and_resume(mode, rng):
    shapes = [(6, 5), (11,)]
    w0 = [rng.standard_normal(s).astype(BF16) for s in shapes]
    grads = [[rng.standard_normal(s).astype(BF16) for s in shapes] for _ in range(5)]
    idx = list(range(len(shapes)))

    def fresh():
        return _updater("adam", learning_rate=0.01, multi_precision=mode)
    straight = [w.copy() for w in w0]
    up = fresh()
    for gs in grads:
        up(idx, gs, straight)
    part = [w.copy() for w in w0]
    up = fresh()
    for gs in grads[:3]:
        up(idx, gs, part)
    blob = up.get_states(dump_optimizer=True)
    restored = mxo.optimizer.get_updater(mxo.optimizer.create("adam"))
    restored.set_states(blob)
    assert restored.optimizer.multi_precision == mode and restored.optimizer.seed == 11
    if mode == "kahan":
        assert all(up.states[k][0].dtype == BF16 for k in idx)
        assert any(np.any(restored.states[k][0].astype(np.float32)) for k in idx)
    for gs in grads[3:]:
        restored(idx, gs, part)
    for a, b in zip(part, straight):
        assert np.array_equal(a.view(np.uint16), b.view(np.uint16))


# --------------------------------------------------------------------------- CUDA twins

def _cuda():
    try:
        from numba import cuda
        return cuda if cuda.is_available() else None
    except Exception:
        return None


@pytest.mark.gpu
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [BF16, np.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("name, kwargs", [("sgd", {"momentum": 0.9}), ("adam", {}), ("sgld", {}),
                                          ("rmsprop", {"centered": True})])
def test_cuda_twin_same_bits(name, kwargs, dtype, mode, monkeypatch):
    cuda = _cuda()
    if cuda is None:
        pytest.skip("no CUDA device and NUMBA_ENABLE_CUDASIM is not set")
    from mxopt_numba.kernels.gpu._common import SIMULATOR
    from mxopt_numba.optimizer import _gpu_launch
    monkeypatch.setattr(_gpu_launch.config, "threads_per_block", 8)
    monkeypatch.setattr(_gpu_launch.config, "max_blocks", 2)
    monkeypatch.setattr(_gpu_launch.config, "block_elements", 6)     # blocks that start inside a quad
    rng = np.random.default_rng(8)
    shapes = [(13,), (3, 7)]
    w0 = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(3)]

    def run(put, host):
        ws = [put(w.copy()) for w in w0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            updater = _updater(name, learning_rate=0.01, multi_precision=mode, **kwargs)
            for gs in grads:
                updater([0, 1], [put(g) for g in gs], ws)
        return [host(w) for w in ws], [[host(x) for x in state_leaves(updater.states[k])] for k in (0, 1)]
    ref_w, ref_s = run(lambda a: a, lambda a: a)
    got_w, got_s = run(cuda.to_device, lambda a: a.copy_to_host())
    for x, r in zip(got_w + sum(got_s, []), ref_w + sum(ref_s, [])):
        if SIMULATOR:
            assert np.array_equal(np.asarray(x).view(np.uint8), np.asarray(r).view(np.uint8))
        else:
            np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(r, np.float64), rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "step"])
@pytest.mark.parametrize("dtype", [BF16, np.float16], ids=["bf16", "fp16"])
def test_stochastic_rounding_of_row_sparse_updates_keeps_element_positions(dtype, fused, rng):
    """A lazy update of rows 2 and 5 draws the same rounding bits as the dense update
    whose gradient is zero elsewhere (unchanged rows round exactly); updates of about
    half an ulp, so that the draws decide."""
    from mxopt_numba.sparse import row_sparse_array
    w0 = rng.standard_normal((9, 7)).astype(dtype)
    rows = np.array([2, 5])
    data = (rng.standard_normal((2, 7)) * 1e-3).astype(dtype)
    dense = np.zeros((9, 7), dtype)
    dense[rows] = data
    out = []
    for grad in (row_sparse_array((data, rows), shape=(9, 7)), dense):
        w = w0.copy()
        _updater("sgd", learning_rate=3.0, multi_precision="stochastic", lazy_update=True,
                 use_fused_step=fused)(0, grad, w)
        out.append(w)
    assert np.array_equal(out[0].view(np.uint16), out[1].view(np.uint16))
    assert not np.array_equal(out[0][rows].view(np.uint16), w0[rows].view(np.uint16))
