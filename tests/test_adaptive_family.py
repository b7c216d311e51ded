"""AdaGrad, GroupAdaGrad, AdaDelta, RMSProp and Ftrl: what the generic catalog does not
cover.  First steps are checked against the closed forms of the spec's formulas (not
against our own ``step``), plus the state dtypes we choose where MXNet fails, the
row-wise GroupAdaGrad kernel, and the MXNet quirks we reproduce or fix."""
import math
import warnings

import ml_dtypes
import numpy as np
import pytest

import mxopt_numba as mxo
from mxopt_numba.kernels import _launch

BF16 = np.dtype(ml_dtypes.bfloat16)
FUSED = pytest.mark.parametrize("fused", [True, False], ids=["fused", "step"])


def one_step(name, w, g, fused=True, **kwargs):
    """Weight after one update (float64 arrays), and the state."""
    opt = mxo.optimizer.create(name, use_fused_step=fused, **kwargs)
    w = np.array(w, dtype=np.float64)
    state = opt.create_state_multi_precision(0, w)
    opt.update([0], [w], [np.array(g, dtype=np.float64)], [state])
    return w, state


def signed_data(rng, shape=(5, 9)):
    return rng.standard_normal(shape), rng.standard_normal(shape) * 2.0


# --------------------------------------------------------------------------- closed forms

@FUSED
def test_adagrad_first_step_closed_form(rng, fused):
    w0, g = signed_data(rng)
    lr, wd, eps, s = 0.3, 0.1, 1e-3, 0.5
    w, h = one_step("adagrad", w0, g, fused, learning_rate=lr, wd=wd, epsilon=eps, rescale_grad=s)
    gw = s * g + wd * w0
    np.testing.assert_allclose(h, gw ** 2, rtol=1e-14)
    np.testing.assert_allclose(w, w0 - lr * gw / (np.abs(gw) + eps), rtol=1e-13)


@FUSED
def test_groupadagrad_first_step_closed_form(rng, fused):
    w0, g = signed_data(rng)
    lr, eps, c = 0.2, 1e-4, 1.5
    w, h = one_step("groupadagrad", w0, g, fused, learning_rate=lr, epsilon=eps, clip_gradient=c)
    gc = np.clip(g, -c, c)
    hr = np.mean(gc ** 2, axis=1, keepdims=True)
    assert h.shape == (w0.shape[0], 1)
    np.testing.assert_allclose(h, hr, rtol=1e-14)
    np.testing.assert_allclose(w, w0 - lr * gc / (np.sqrt(hr) + eps), rtol=1e-13)


@FUSED
def test_adadelta_first_step_closed_form(rng, fused):
    w0, g = signed_data(rng)
    lr, wd, rho, eps = 0.5, 0.05, 0.7, 1e-4
    w, (acc_g, acc_d) = one_step("adadelta", w0, g, fused, learning_rate=lr, wd=wd, rho=rho, epsilon=eps)
    gw = g + wd * w0
    delta = math.sqrt(eps) / np.sqrt((1 - rho) * gw ** 2 + eps) * gw
    np.testing.assert_allclose(acc_g, (1 - rho) * gw ** 2, rtol=1e-14)
    np.testing.assert_allclose(acc_d, (1 - rho) * delta ** 2, rtol=1e-13)
    np.testing.assert_allclose(w, w0 - lr * delta, rtol=1e-13)


@FUSED
def test_rmsprop_first_step_closed_form(rng, fused):
    w0, g = signed_data(rng)
    lr, wd, rho, eps = 0.01, 0.02, 0.8, 1e-3
    w, var = one_step("rmsprop", w0, g, fused, learning_rate=lr, wd=wd, rho=rho, epsilon=eps)
    gw = g + wd * w0
    assert isinstance(var, np.ndarray)          # plain RMSProp keeps one array, not a tuple
    np.testing.assert_allclose(var, (1 - rho) * gw ** 2, rtol=1e-14)
    # epsilon outside the root (MXNet 2.x; 1.x had it inside)
    np.testing.assert_allclose(w, w0 - lr * gw / (math.sqrt(1 - rho) * np.abs(gw) + eps), rtol=1e-13)


@FUSED
def test_rmsprop_centered_two_steps_closed_form(rng, fused):
    w0, g1 = signed_data(rng)
    g2 = rng.standard_normal(w0.shape)
    lr, rho, mu, eps = 0.01, 0.9, 0.5, 1e-3
    opt = mxo.optimizer.create("rmsprop", use_fused_step=fused, centered=True, learning_rate=lr,
                               rho=rho, momentum=mu, epsilon=eps)
    w = w0.copy()
    state = opt.create_state(0, w)
    assert len(state) == 3                      # (mean, var, mom)
    a = v = m = np.zeros_like(w0)
    ref = w0.copy()
    for g in (g1, g2):
        opt.update([0], [w], [g], [state])
        a = rho * a + (1 - rho) * g
        v = rho * v + (1 - rho) * g ** 2
        m = mu * m - lr * g / np.sqrt(v - a ** 2 + eps)     # epsilon inside the root
        ref = ref + m
    for got, want in zip(state, (a, v, m)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(w, ref, rtol=1e-12)


@FUSED
def test_ftrl_first_step_closed_form(rng, fused):
    w0, g = signed_data(rng)
    lr, l1, beta, wd = 0.5, 0.3, 0.7, 0.2
    w, (z, n) = one_step("ftrl", w0, g, fused, learning_rate=lr, lamda1=l1, beta=beta, wd=wd)
    zz = g - np.abs(g) * w0 / lr
    np.testing.assert_allclose(n, g ** 2, rtol=1e-14)
    np.testing.assert_allclose(z, zz, rtol=1e-13)
    want = np.where(np.abs(zz) > l1, (np.sign(zz) * l1 - zz) / ((beta + np.abs(g)) / lr + wd), 0.0)
    np.testing.assert_allclose(w, want, rtol=1e-12)


@FUSED
def test_ftrl_recomputes_untouched_elements_and_l1_gives_exact_zeros(fused):
    w0 = np.array([[0.5, -2.0, 3.0], [1.0, 1.0, 1.0]])
    g = np.array([[0.0, 0.0, 0.0], [0.01, -0.005, 5.0]])
    w, (z, _) = one_step("ftrl", w0, g, fused, lamda1=0.1)      # lr 0.1
    np.testing.assert_array_equal(w[0], 0.0)       # no gradient: z stays 0, weight becomes 0
    np.testing.assert_allclose(z[1, :2], [-0.09, -0.055])
    assert w[1, 0] == 0.0 and w[1, 1] == 0.0       # |z| <= lamda1
    assert w[1, 2] != 0.0


# --------------------------------------------------------------------------- state dtypes

ALL = ["adagrad", "groupadagrad", "adadelta", "rmsprop", "ftrl"]


def _leaves(state):
    if isinstance(state, np.ndarray):
        return [state]
    return [x for s in state for x in _leaves(s)]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype, mp, want", [
    (np.float32, False, np.float32),
    (np.float64, False, np.float64),
    (np.float16, False, np.float32),
    (BF16, False, np.float32),
    (np.float16, True, np.float32),
    (BF16, True, np.float32),
], ids=["fp32", "fp64", "fp16", "bf16", "fp16-mp", "bf16-mp"])
def test_state_dtypes(name, dtype, mp, want):
    """float32 states as in MXNet, except float64 weights keep float64 states (MXNet fails
    there, as it does for float16 without multi_precision)."""
    kwargs = {"centered": True} if name == "rmsprop" else {}
    opt = mxo.optimizer.create(name, multi_precision=mp, **kwargs)
    w = np.ones((4, 3), dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        state = opt.create_state_multi_precision(0, w)
    if mp:
        master, state = state
        assert master.dtype == np.float32
    assert all(leaf.dtype == want for leaf in _leaves(state))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("low", [np.float16, BF16], ids=["fp16", "bf16"])
def test_low_precision_without_master_is_the_rounded_float32_step(name, low, rng):
    """One step on float16/bfloat16 weights (float32 states) equals the float32 step fed
    the same rounded inputs, rounded once."""
    w0, g = signed_data(rng, (6, 7))
    w_low, g_low = w0.astype(low), g.astype(low)
    w32 = w_low.astype(np.float32)
    opt_low, opt_32 = mxo.optimizer.create(name), mxo.optimizer.create(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        s_low = opt_low.create_state_multi_precision(0, w_low)
    s_32 = opt_32.create_state_multi_precision(0, w32)
    opt_low.update([0], [w_low], [g_low], [s_low])
    opt_32.update([0], [w32], [g_low.astype(np.float32)], [s_32])
    np.testing.assert_array_equal(w_low.view(np.uint16), w32.astype(low).view(np.uint16))
    for a, b in zip(_leaves(s_low), _leaves(s_32)):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- GroupAdaGrad

def test_groupadagrad_rejects_weight_decay_and_non_2d_weights():
    with pytest.raises(ValueError, match="wd"):
        mxo.optimizer.create("groupadagrad", wd=0.1)
    opt = mxo.optimizer.create("groupadagrad")
    for shape in [(7,), (2, 3, 4)]:
        with pytest.raises(ValueError, match="2-D"):
            opt.create_state(0, np.zeros(shape, np.float32))
    w = np.zeros((3, 4), np.float32)
    state = opt.create_state(0, w)
    with pytest.raises(ValueError, match="2-D"):
        opt.update([0], [np.zeros(12, np.float32)], [np.ones(12, np.float32)], [state])
    opt.wd = 0.01                                   # changed after construction
    for fused in (True, False):
        opt.use_fused_step = fused
        with pytest.raises(ValueError, match="wd"):
            opt.update([0], [w], [np.ones_like(w)], [state])


@pytest.mark.parametrize("shape", [(1, 3 * _launch.BLOCK + 17), (5, _launch.BLOCK - 3), (3, 1), (4, 0), (0, 5)],
                         ids=["row-over-3-blocks", "rows-straddle-blocks", "one-column", "no-columns", "no-rows"])
def test_groupadagrad_row_kernel_on_awkward_shapes(shape, rng):
    """Rows longer than a kernel block, rows straddling blocks, empty tensors: the
    float32 kernel equals a float64 reference (rounded), over three steps, next to a
    small tensor in the same launch."""
    lr, eps = 0.05, 1e-6
    small = rng.standard_normal((3, 5))
    w0 = rng.standard_normal(shape)
    ws = [small.astype(np.float32), w0.astype(np.float32)]
    opt = mxo.optimizer.create("groupadagrad", learning_rate=lr, epsilon=eps)
    states = [opt.create_state(i, w) for i, w in enumerate(ws)]
    ref_w, ref_h = w0.copy(), np.zeros((shape[0], 1))
    for _ in range(3):
        gs = [rng.standard_normal(small.shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)]
        opt.update([0, 1], ws, gs, states)
        g = gs[1].astype(np.float64)
        if shape[1]:
            ref_h += np.mean(g ** 2, axis=1, keepdims=True)
        ref_w -= lr * g / (np.sqrt(ref_h) + eps)
    assert states[1].shape == (shape[0], 1)
    np.testing.assert_allclose(states[1], ref_h, rtol=1e-6)
    np.testing.assert_allclose(ws[1], ref_w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(6, 4), (3, _launch.BLOCK + 5)], ids=["small", "rows-over-a-block"])
@pytest.mark.parametrize("name", ["adagrad", "groupadagrad"])
@pytest.mark.parametrize("dtype, mp", [(np.float32, False), (np.float16, True), (np.float64, False)],
                         ids=["fp32", "fp16-mp", "fp64"])
@FUSED
def test_row_sparse_gradient_updates_only_its_rows(name, shape, dtype, mp, fused, rng):
    """Without weight decay, MXNet's row-wise kernels touch only the listed rows; that is
    also exactly the dense update with zero rows, which we check bitwise."""
    w0 = rng.standard_normal(shape).astype(dtype)
    rows = np.array([0, shape[0] - 1])
    data = rng.standard_normal((2, shape[1])).astype(dtype)
    g = mxo.sparse.row_sparse_array((data, rows), shape=shape)
    results = []
    for grad in (g, g.todense()):
        opt = mxo.optimizer.create(name, use_fused_step=fused, multi_precision=mp)
        assert opt.sparse_updates_rows()
        w = w0.copy()
        state = opt.create_state_multi_precision(0, w)
        for _ in range(2):
            opt.update([0], [w], [grad], [state])
        results.append((w, state))
    (w, state), (w_dense, state_dense) = results
    np.testing.assert_array_equal(w, w_dense)
    for a, b in zip(_leaves(state), _leaves(state_dense)):
        np.testing.assert_array_equal(a, b)
    other = np.setdiff1d(np.arange(shape[0]), rows)
    np.testing.assert_array_equal(w[other], w0[other])
    assert (w[rows] != w0[rows]).any()


@FUSED
def test_adagrad_row_sparse_with_weight_decay_is_the_dense_update(fused, rng):
    """MXNet's row kernel refuses wd != 0 (its step path runs the dense rule): every row
    decays, as with a dense gradient holding zero rows."""
    w0 = rng.standard_normal((5, 3)).astype(np.float32)
    g = mxo.sparse.row_sparse_array((rng.standard_normal((1, 3)).astype(np.float32), np.array([2])),
                                    shape=(5, 3))
    out = []
    for grad in (g, g.todense()):
        opt = mxo.optimizer.create("adagrad", use_fused_step=fused, wd=0.1)
        assert not opt.sparse_updates_rows()
        w = w0.copy()
        opt.update([0], [w], [grad], [opt.create_state(0, w)])
        out.append(w)
    np.testing.assert_array_equal(out[0], out[1])
    assert (out[0] != w0).all()


# --------------------------------------------------------------------------- MXNet quirks

@pytest.mark.parametrize("name", ALL)
@FUSED
def test_clip_gradient_zero_means_no_clipping(name, fused, rng):
    """MXNet's dense AdaGrad/GroupAdaGrad (and every step path) clip to 0 with
    clip_gradient=0; here 0 means off everywhere, like MXNet's fused kernels."""
    w0, g = signed_data(rng)
    off, _ = one_step(name, w0, g, fused)
    zero, _ = one_step(name, w0, g, fused, clip_gradient=0.0)
    np.testing.assert_array_equal(zero, off)


@pytest.mark.parametrize("name", ALL)
@FUSED
def test_caller_gradient_is_not_modified(name, fused, rng):
    """MXNet's step paths (and its dense AdaGrad) scale and decay the caller's gradient
    in place; ours leave it alone."""
    w0, g = signed_data(rng)
    kwargs = {"rescale_grad": 0.5, "clip_gradient": 0.7}
    if name != "groupadagrad":
        kwargs["wd"] = 0.1
    g_copy = g.copy()
    one_step(name, w0, g, fused, **kwargs)
    np.testing.assert_array_equal(g, g_copy)


def test_adagrad_deprecated_eps_is_raised():
    with pytest.raises(DeprecationWarning, match="eps"):
        mxo.optimizer.AdaGrad(eps=1e-7)


@pytest.mark.parametrize("old", ["gamma1", "gamma2"])
def test_rmsprop_deprecated_gammas_are_raised(old):
    with pytest.raises(DeprecationWarning, match=old):
        mxo.optimizer.RMSProp(**{old: 0.95})


@pytest.mark.parametrize("centered", [False, True], ids=["plain", "centered"])
@FUSED
def test_rmsprop_clip_weights(centered, fused, rng):
    w0, g = signed_data(rng)
    w0 *= 3.0
    kwargs = dict(centered=centered, learning_rate=0.05)
    clipped, _ = one_step("rmsprop", w0, g, fused, clip_weights=0.5, **kwargs)
    free, _ = one_step("rmsprop", w0, g, fused, **kwargs)
    np.testing.assert_array_equal(clipped, np.clip(free, -0.5, 0.5))
    assert np.abs(free).max() > 0.5
    for off in (0.0, -1.0):                      # falsy or negative: no clipping (MXNet's kernel)
        w, _ = one_step("rmsprop", w0, g, fused, clip_weights=off, **kwargs)
        np.testing.assert_array_equal(w, free)


def test_rmsprop_plain_ignores_momentum(rng):
    w0, g = signed_data(rng)
    a, _ = one_step("rmsprop", w0, g, momentum=0.0)
    b, _ = one_step("rmsprop", w0, g, momentum=0.9)
    np.testing.assert_array_equal(a, b)


def test_default_hyperparameters_follow_mxnet_2():
    opt = mxo.optimizer.create
    assert (opt("adagrad").lr, opt("adagrad").epsilon) == (0.01, 1e-6)
    assert (opt("groupadagrad").lr, opt("groupadagrad").epsilon) == (0.01, 1e-6)
    d = opt("adadelta")
    assert (d.lr, d.rho, d.epsilon) == (1.0, 0.9, 1e-6)
    r = opt("rmsprop")
    assert (r.lr, r.rho, r.momentum, r.epsilon, r.centered, r.clip_weights) == (0.001, 0.9, 0.9, 1e-8, False, None)
    f = opt("ftrl")
    assert (f.lr, f.lamda1, f.beta) == (0.1, 0.01, 1.0)
    for name in ALL:
        assert opt(name).use_fused_step is True


@FUSED
def test_ftrl_row_sparse_gradient_on_a_dense_weight_recomputes_every_row(fused, rng):
    """MXNet runs its row-only Ftrl kernel only when the weight and states are row_sparse
    too; with a dense weight every row is recomputed from (z, n), so rows without gradient
    become 0 on the first step (golden trace opt.ftrl.sparse)."""
    w0 = rng.standard_normal((6, 3)).astype(np.float32)
    rows = np.array([1, 4])
    g = mxo.sparse.row_sparse_array((rng.standard_normal((2, 3)).astype(np.float32), rows), shape=(6, 3))
    out = []
    for grad in (g, g.todense()):
        opt = mxo.optimizer.create("ftrl", use_fused_step=fused, wd=0.01)
        assert not opt.sparse_updates_rows()
        w = w0.copy()
        opt.update([0], [w], [grad], [opt.create_state(0, w)])
        out.append(w)
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[0][[0, 2, 3, 5]], 0.0)
