"""mxopt_numba.ndarray: MXNet's update operators, each against a float64 re-statement of
the operator's formula and against the optimizer class that runs the same rule."""
import math

import numpy as np
import pytest

import mxopt_numba as mxo
from mxopt_numba import ndarray as nd

RTOL = dict(rtol=2e-6, atol=2e-7)


def _data(shape=(4, 5), seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)


def _clip(x, c):
    return np.clip(x, -c, c) if c > 0 else x


def _g(grad, s, c):
    return _clip(s * grad.astype(np.float64), c)


# ---------------------------------------------------------------------- SGD family

@pytest.mark.parametrize("clip", [-1.0, 0.4])
def test_sgd_update(clip):
    w, g = _data()
    w64 = w.astype(np.float64)
    out = nd.sgd_update(w, g, lr=0.1, wd=0.05, rescale_grad=1.5, clip_gradient=clip)
    assert out is w
    np.testing.assert_allclose(w, w64 - 0.1 * (_g(g, 1.5, clip) + 0.05 * w64), **RTOL)


def test_sgd_update_out_leaves_weight():
    w, g = _data()
    before = w.copy()
    out = np.empty_like(w)
    res = nd.sgd_update(w, g, lr=0.1, out=out)
    assert res is out
    np.testing.assert_array_equal(w, before)
    np.testing.assert_allclose(out, before - 0.1 * g, **RTOL)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_mom_update_and_class(momentum):
    w, g = _data()
    mom = np.random.default_rng(5).standard_normal(w.shape).astype(np.float32)
    w64, m64 = w.astype(np.float64), mom.astype(np.float64)
    w_cls, m_cls = w.copy(), mom.copy()
    nd.sgd_mom_update(w, g, mom, lr=0.1, momentum=momentum, wd=0.01, rescale_grad=0.5, clip_gradient=0.3)
    m64 = momentum * m64 - 0.1 * (_g(g, 0.5, 0.3) + 0.01 * w64)
    np.testing.assert_allclose(mom, m64, **RTOL)
    np.testing.assert_allclose(w, w64 + m64, **RTOL)
    if momentum:
        opt = mxo.optimizer.SGD(learning_rate=0.1, momentum=momentum, wd=0.01, rescale_grad=0.5, clip_gradient=0.3)
        opt.update([0], [w_cls], [g], [m_cls])
        np.testing.assert_array_equal(w_cls, w)
        np.testing.assert_array_equal(m_cls, mom)


def test_sgd_lazy_row_sparse():
    w, _ = _data((6, 3))
    before = w.copy()
    mom = np.ones_like(w)
    rows = np.array([1, 4])
    data = np.full((2, 3), 0.5, np.float32)
    grad = mxo.sparse.row_sparse_array((data, rows), shape=(6, 3))
    nd.sgd_mom_update(w, grad, mom, lr=0.1, momentum=0.9, wd=0.1)
    m = 0.9 - 0.1 * (0.5 + 0.1 * before[rows].astype(np.float64))
    np.testing.assert_allclose(w[rows], before[rows] + m, **RTOL)
    keep = np.setdiff1d(np.arange(6), rows)
    np.testing.assert_array_equal(w[keep], before[keep])
    np.testing.assert_array_equal(mom[keep], 1.0)
    # standard update: every row decays
    w2 = before.copy()
    nd.sgd_update(w2, grad, lr=0.1, wd=0.1, lazy_update=False)
    dense = grad.todense().astype(np.float64)
    np.testing.assert_allclose(w2, before - 0.1 * (dense + 0.1 * before.astype(np.float64)), **RTOL)


@pytest.mark.parametrize("momentum", [None, 0.9])
def test_mp_sgd_updates(momentum):
    rng = np.random.default_rng(2)
    w32 = rng.standard_normal(8).astype(np.float32)
    w = w32.astype(np.float16)
    g = rng.standard_normal(8).astype(np.float16)
    ref = w32.astype(np.float64)
    gg = g.astype(np.float64)
    if momentum is None:
        nd.mp_sgd_update(w, g, w32, lr=0.1, wd=0.01)
        ref = ref - 0.1 * (gg + 0.01 * ref)
    else:
        mom = np.zeros(8, np.float32)
        nd.mp_sgd_mom_update(w, g, mom, w32, lr=0.1, momentum=momentum, wd=0.01)
        step = -0.1 * (gg + 0.01 * ref)            # momentum starts at 0
        ref = ref + step
        np.testing.assert_allclose(mom, step, **RTOL)
    np.testing.assert_allclose(w32, ref, **RTOL)
    np.testing.assert_array_equal(w, w32.astype(np.float16))


def _tensors(n=3, seed=4, dtype=np.float32):
    rng = np.random.default_rng(seed)
    shapes = [(3, 4), (7,), (2, 2, 2)][:n]
    return [rng.standard_normal(s).astype(dtype) for s in shapes], [rng.standard_normal(s).astype(dtype)
                                                                     for s in shapes]


def test_multi_sgd_update_and_preloaded():
    ws, gs = _tensors()
    lrs, wds = [0.1, 0.2, 0.05], [0.0, 0.01, 0.1]
    refs = [w.astype(np.float64) - lr * (g.astype(np.float64) + wd * w.astype(np.float64))
            for w, g, lr, wd in zip(ws, gs, lrs, wds)]
    ws2 = [w.copy() for w in ws]
    data = [a for pair in zip(ws, gs) for a in pair]
    outs = nd.multi_sgd_update(*data, lrs=lrs, wds=wds, num_weights=3)
    assert len(outs) == 3 and all(o is w for o, w in zip(outs, ws))
    for w, r in zip(ws, refs):
        np.testing.assert_allclose(w, r, **RTOL)
    data2 = [a for pair in zip(ws2, gs) for a in pair] + [np.array(lrs, np.float32), np.array(wds, np.float32)]
    nd.preloaded_multi_sgd_update(*data2, num_weights=3)
    for w, r in zip(ws2, refs):
        np.testing.assert_allclose(w, r, rtol=1e-6, atol=1e-7)       # lrs read as float32 arrays


def test_multi_sgd_mom_and_mp_variants():
    ws, gs = _tensors()
    lrs, wds = [0.1, 0.2, 0.05], [0.0, 0.01, 0.1]
    moms = [np.zeros_like(w) for w in ws]
    nd.multi_sgd_mom_update(*[a for t in zip(ws, gs, moms) for a in t], lrs=lrs, wds=wds, momentum=0.9)
    w16 = [w.astype(np.float16) for w in ws]
    w32 = [w.astype(np.float32) for w in w16]
    start = [w.astype(np.float64) for w in w32]
    g16 = [g.astype(np.float16) for g in gs]
    moms32 = [np.zeros(w.shape, np.float32) for w in ws]
    nd.multi_mp_sgd_mom_update(*[a for t in zip(w16, g16, moms32, w32) for a in t], lrs=lrs, wds=wds,
                               momentum=0.9)
    for k in range(3):
        m = -lrs[k] * (g16[k].astype(np.float64) + wds[k] * start[k])
        np.testing.assert_allclose(moms32[k], m, **RTOL)
        np.testing.assert_allclose(w32[k], start[k] + m, **RTOL)
        np.testing.assert_array_equal(w16[k], w32[k].astype(np.float16))
    w16b = [w.astype(np.float16) for w in ws]
    w32b = [w.astype(np.float32) for w in w16b]
    nd.multi_mp_sgd_update(*[a for t in zip(w16b, g16, w32b) for a in t], lrs=lrs, wds=wds)
    for k in range(3):
        np.testing.assert_allclose(w32b[k], start[k] - lrs[k] * (g16[k].astype(np.float64) + wds[k] * start[k]),
                                   **RTOL)
    with pytest.raises(ValueError, match="3 arrays per weight"):
        nd.multi_sgd_mom_update(ws[0], gs[0], lrs=[0.1], wds=[0.0])


# ---------------------------------------------------------------------- NAG, Signum

@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_nag_mom_update(momentum):
    w, g = _data()
    mom = np.full_like(w, 0.2)
    w64, m64 = w.astype(np.float64), mom.astype(np.float64)
    nd.nag_mom_update(w, g, mom, lr=0.1, momentum=momentum, wd=0.05)
    gw = g.astype(np.float64) + 0.05 * w64
    m64 = momentum * m64 - 0.1 * gw
    np.testing.assert_allclose(mom, m64, **RTOL)
    np.testing.assert_allclose(w, w64 + momentum * m64 - 0.1 * gw, **RTOL)


def test_mp_nag_mom_update():
    rng = np.random.default_rng(8)
    w32 = rng.standard_normal(6).astype(np.float32)
    w, g = w32.astype(np.float16), rng.standard_normal(6).astype(np.float16)
    mom = np.zeros(6, np.float32)
    ref = w32.astype(np.float64)
    nd.mp_nag_mom_update(w, g, mom, w32, lr=0.1, momentum=0.9)
    gw = g.astype(np.float64)
    np.testing.assert_allclose(w32, ref + 0.9 * (-0.1 * gw) - 0.1 * gw, **RTOL)
    np.testing.assert_array_equal(w, w32.astype(np.float16))


def test_signsgd_and_signum():
    w, g = _data()
    w64 = w.astype(np.float64)
    w1 = w.copy()
    nd.signsgd_update(w1, g, lr=0.1, wd=0.05)
    np.testing.assert_allclose(w1, (1 - 0.1 * 0.05) * w64 - 0.1 * np.sign(g), **RTOL)
    mom = np.full_like(w, 0.1)
    nd.signum_update(w, g, mom, lr=0.1, momentum=0.9, wd=0.05, wd_lh=0.01)
    m = 0.9 * 0.1 - 0.1 * (g.astype(np.float64) + 0.05 * w64)
    np.testing.assert_allclose(mom, m, **RTOL)
    np.testing.assert_allclose(w, (1 - 0.1 * 0.01) * w64 + 0.1 * np.sign(m), **RTOL)


# ---------------------------------------------------------------------- adaptive rules

def test_adam_update_without_bias_correction():
    w, g = _data()
    mean, var = np.full_like(w, 0.1), np.full_like(w, 0.2)
    w64 = w.astype(np.float64)
    nd.adam_update(w, g, mean, var, lr=0.01, wd=0.1, rescale_grad=2.0, clip_gradient=1.0)
    gw = _g(g, 2.0, 1.0) + 0.1 * w64
    m = 0.9 * 0.1 + 0.1 * gw
    v = 0.999 * 0.2 + 0.001 * gw * gw
    np.testing.assert_allclose(mean, m, **RTOL)
    np.testing.assert_allclose(var, v, **RTOL)
    np.testing.assert_allclose(w, w64 - 0.01 * m / (np.sqrt(v) + 1e-8), **RTOL)


def test_adam_update_matches_the_optimizer_with_folded_correction():
    w, g = _data()
    w_op, states = w.copy(), (np.zeros_like(w), np.zeros_like(w))
    opt = mxo.optimizer.Adam(learning_rate=0.01)
    st = opt.create_state(0, w)
    for t in range(1, 4):
        opt.update([0], [w], [g], [st])
        lr_t = 0.01 * math.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        nd.adam_update(w_op, g, *states, lr=lr_t)
        np.testing.assert_allclose(w_op, w, rtol=1e-6, atol=1e-7)


def test_adam_lazy_rows():
    w, _ = _data((5, 2))
    before = w.copy()
    mean, var = np.zeros_like(w), np.zeros_like(w)
    grad = mxo.sparse.row_sparse_array((np.ones((1, 2), np.float32), [3]), shape=(5, 2))
    nd.adam_update(w, grad, mean, var, lr=0.01, wd=0.1)
    np.testing.assert_array_equal(np.delete(w, 3, axis=0), np.delete(before, 3, axis=0))
    gw = 1.0 + 0.1 * before[3].astype(np.float64)
    m, v = 0.1 * gw, 0.001 * gw * gw
    np.testing.assert_allclose(w[3], before[3] - 0.01 * m / (np.sqrt(v) + 1e-8), **RTOL)


def test_rmsprop_updates():
    w, g = _data()
    w64 = w.astype(np.float64)
    n = np.full_like(w, 0.3)
    w1 = w.copy()
    nd.rmsprop_update(w1, g, n, lr=0.01, rho=0.9, wd=0.01, clip_weights=0.5)
    gw = g.astype(np.float64) + 0.01 * w64
    v = 0.9 * 0.3 + 0.1 * gw * gw
    np.testing.assert_allclose(n, v, **RTOL)
    np.testing.assert_allclose(w1, np.clip(w64 - 0.01 * gw / (np.sqrt(v) + 1e-8), -0.5, 0.5), **RTOL)
    a, sq, d = np.full_like(w, 0.1), np.full_like(w, 0.5), np.zeros_like(w)
    nd.rmspropalex_update(w, g, a, sq, d, lr=0.01, rho=0.9, momentum=0.8)
    gw = g.astype(np.float64)
    a64 = 0.9 * 0.1 + 0.1 * gw
    s64 = 0.9 * 0.5 + 0.1 * gw * gw
    d64 = -0.01 * gw / np.sqrt(s64 - a64 ** 2 + 1e-8)
    np.testing.assert_allclose(a, a64, **RTOL)
    np.testing.assert_allclose(sq, s64, **RTOL)
    np.testing.assert_allclose(w, w64 + d64, rtol=1e-5, atol=1e-7)


def test_ftrl_update():
    w, g = _data()
    z, n = np.full_like(w, 0.02), np.full_like(w, 0.5)
    w64, lr = w.astype(np.float64), 0.1
    gc = g.astype(np.float64)
    nd.ftrl_update(w, g, z, n, lr=lr, lamda1=0.01, beta=1.0, wd=0.1)
    sigma = (np.sqrt(0.5 + gc * gc) - np.sqrt(0.5)) / lr
    z64 = 0.02 + gc - sigma * w64
    n64 = 0.5 + gc * gc
    np.testing.assert_allclose(z, z64, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(n, n64, **RTOL)
    want = -np.sign(z64) * np.maximum(np.abs(z64) - 0.01, 0) / ((1.0 + np.sqrt(n64)) / lr + 0.1)
    np.testing.assert_allclose(w, want, rtol=1e-5, atol=1e-6)


def test_ftml_update_step_t():
    w, g = _data()
    d, v, z = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    w64 = w.astype(np.float64)
    for t in (1, 2):
        gw = g.astype(np.float64) + 0.01 * w64
        v64 = 0.999 * v.astype(np.float64) + 0.001 * gw * gw
        d_t = (1 - 0.6 ** t) / 0.05 * (np.sqrt(v64 / (1 - 0.999 ** t)) + 1e-8)
        z64 = 0.6 * z.astype(np.float64) + 0.4 * gw - (d_t - 0.6 * d.astype(np.float64)) * w64
        nd.ftml_update(w, g, d, v, z, lr=0.05, t=t, wd=0.01)
        w64 = -z64 / d_t
        np.testing.assert_allclose(w, w64, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- contrib: AdamW

def test_adamw_update_and_skip():
    w, g = _data()
    mean, var = np.zeros_like(w), np.zeros_like(w)
    w64 = w.astype(np.float64)
    nd.contrib.adamw_update(w, g, mean, var, rescale_grad=np.array([0.5], np.float32), lr=0.5, eta=0.02, wd=0.1)
    gc = 0.5 * g.astype(np.float64)
    m, v = 0.1 * gc, 0.001 * gc * gc
    np.testing.assert_allclose(w, w64 - 0.02 * (0.5 * m / (np.sqrt(v) + 1e-8) + 0.1 * w64), rtol=1e-5, atol=1e-7)
    frozen = w.copy(), mean.copy()
    nd.contrib.adamw_update(w, g, mean, var, rescale_grad=np.inf, lr=1.0, eta=0.02)
    np.testing.assert_array_equal(w, frozen[0])
    np.testing.assert_array_equal(mean, frozen[1])


def test_multi_mp_adamw_update():
    ws, gs = _tensors(2)
    w16 = [w.astype(np.float16) for w in ws]
    w32 = [w.astype(np.float32) for w in w16]
    g16 = [g.astype(np.float16) for g in gs]
    ms = [np.zeros(w.shape, np.float32) for w in ws]
    vs = [np.zeros(w.shape, np.float32) for w in ws]
    start = [w.astype(np.float64) for w in w32]
    nd.contrib.multi_mp_adamw_update(w16, g16, ms, vs, w32, rescale_grad=1.0, lrs=[1.0, 1.0], wds=[0.0, 0.1],
                                     etas=[0.01, 0.02])
    for k, (eta, wd) in enumerate([(0.01, 0.0), (0.02, 0.1)]):
        gc = g16[k].astype(np.float64)
        m, v = 0.1 * gc, 0.001 * gc * gc
        np.testing.assert_allclose(w32[k], start[k] - eta * (m / (np.sqrt(v) + 1e-8) + wd * start[k]),
                                   rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(w16[k], w32[k].astype(np.float16))


def test_multi_adamw_update_takes_lists():
    ws, gs = _tensors(2)
    ms = [np.zeros_like(w) for w in ws]
    vs = [np.zeros_like(w) for w in ws]
    start = [w.astype(np.float64) for w in ws]
    nd.contrib.multi_adamw_update(ws, gs, ms, vs, 1.0, lrs=[1.0, 2.0], wds=[0.1, 0.0], etas=[0.01, 0.02])
    for k, (lr, eta, wd) in enumerate([(1.0, 0.01, 0.1), (2.0, 0.02, 0.0)]):
        gc = gs[k].astype(np.float64)
        m, v = 0.1 * gc, 0.001 * gc * gc
        np.testing.assert_allclose(ws[k], start[k] - eta * (lr * m / (np.sqrt(v) + 1e-8) + wd * start[k]),
                                   rtol=1e-5, atol=1e-7)


def _adabelief_ref(w, g, m, v, s, lr, eta, wd, clip=-1.0, b1=0.9, b2=0.999, eps=1e-8):
    gw = _clip(s * g + wd * w, clip)
    m = b1 * m + (1 - b1) * gw
    v = b2 * v + (1 - b2) * (gw - m) ** 2 + eps
    return w - eta * lr * m / (np.sqrt(v) + eps), m, v


def test_adabelief_updates():
    w, g = _data()
    mean, var = np.zeros_like(w), np.zeros_like(w)
    w64 = w.astype(np.float64)
    nd.contrib.adabelief_update(w, g, mean, var, rescale_grad=2.0, lr=0.5, eta=0.02, wd=0.1, clip_gradient=1.0)
    want, m, v = _adabelief_ref(w64, g.astype(np.float64), 0.0, 0.0, 2.0, 0.5, 0.02, 0.1, 1.0)
    np.testing.assert_allclose(mean, m, **RTOL)
    np.testing.assert_allclose(var, v, rtol=1e-5)
    np.testing.assert_allclose(w, want, rtol=1e-5, atol=1e-7)
    ws, gs = _tensors(2)
    w16 = [x.astype(np.float16) for x in ws]
    w32 = [x.astype(np.float32) for x in w16]
    start = [x.astype(np.float64) for x in w32]
    g16 = [x.astype(np.float16) for x in gs]
    ms = [np.zeros(x.shape, np.float32) for x in ws]
    vs = [np.zeros(x.shape, np.float32) for x in ws]
    nd.contrib.multi_mp_adabelief_update(w16, g16, ms, vs, w32, 1.0, lrs=[1.0, 1.0], wds=[0.0, 0.05],
                                         etas=[0.01, 0.03])
    for k, (eta, wd) in enumerate([(0.01, 0.0), (0.03, 0.05)]):
        want = _adabelief_ref(start[k], g16[k].astype(np.float64), 0.0, 0.0, 1.0, 1.0, eta, wd)[0]
        np.testing.assert_allclose(w32[k], want, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(w16[k], w32[k].astype(np.float16))


def _lamb_ref(w, g, m, v, t, lr, wd, b1=0.9, b2=0.999, eps=1e-6, lower=None, upper=None, bias=True):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    mh, vh = (m / (1 - b1 ** t), v / (1 - b2 ** t)) if bias else (m, v)
    r = mh / (np.sqrt(vh) + eps) + wd * w
    r1 = np.linalg.norm(w)
    if lower is not None:
        r1 = max(r1, lower)
    if upper is not None:
        r1 = min(r1, upper)
    r2 = np.linalg.norm(r)
    trust = r1 / r2 if r1 > 0 and r2 > 0 else 1.0
    return w - lr * trust * r, m, v


@pytest.mark.parametrize("mp", [False, True])
def test_multi_lamb_update(mp):
    ws, gs = _tensors(3)
    steps, lrs, wds = [1, 3, 2], [0.01, 0.02, 0.005], [0.0, 0.1, 0.01]
    ms = [np.full(w.shape, 0.01, np.float32) for w in ws]
    vs = [np.full(w.shape, 0.02, np.float32) for w in ws]
    refs = []
    for k in range(3):
        refs.append(_lamb_ref(ws[k].astype(np.float64), gs[k].astype(np.float64), 0.01, 0.02, steps[k], lrs[k],
                              wds[k], upper=3.0))
    if mp:
        w16 = [w.astype(np.float16) for w in ws]
        nd.multi_mp_lamb_update(w16, gs, ms, vs, ws, steps, lrs, wds, upper_bound=3.0)
    else:
        nd.multi_lamb_update(ws, gs, ms, vs, steps, lrs, wds, upper_bound=3.0)
    for k in range(3):
        np.testing.assert_allclose(ws[k], refs[k][0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ms[k], refs[k][1], **RTOL)
        np.testing.assert_allclose(vs[k], refs[k][2], rtol=1e-5)
        if mp:
            np.testing.assert_array_equal(w16[k], ws[k].astype(np.float16))


def test_multi_lans_update_matches_the_optimizer():
    ws, gs = _tensors(2)
    ws_opt = [w.copy() for w in ws]
    opt = mxo.optimizer.LANS(learning_rate=0.01, wd=0.05)
    states = [opt.create_state(i, w) for i, w in enumerate(ws_opt)]
    ms = [np.zeros(w.shape, np.float32) for w in ws]
    vs = [np.zeros(w.shape, np.float32) for w in ws]
    for t in (1, 2):
        opt.update([0, 1], ws_opt, gs, states)
        nd.multi_lans_update(ws, gs, ms, vs, [t, t], [0.01, 0.01], [0.05, 0.05])
        for k in range(2):
            np.testing.assert_allclose(ws[k], ws_opt[k], rtol=1e-6, atol=1e-7)
    # float64 re-statement of the first step of tensor 0 (fresh moments)
    w0, g0 = _tensors(1)
    w, g = w0[0], g0[0]
    w64, g64 = w.astype(np.float64), g.astype(np.float64)
    nd.multi_lans_update([w], [g], [np.zeros_like(w)], [np.zeros_like(w)], [1], [0.01], [0.05])
    gh = g64 / np.linalg.norm(g64)
    m, v = 0.1 * gh / 0.1, 0.001 * gh * gh / 0.001
    d = np.sqrt(v) + 1e-6
    rm, rg = m / d + 0.05 * w64, gh / d + 0.05 * w64
    r1 = np.linalg.norm(w64)
    want = w64 - 0.01 * (0.9 * r1 / np.linalg.norm(rm) * rm + 0.1 * r1 / np.linalg.norm(rg) * rg)
    np.testing.assert_allclose(w, want, rtol=1e-5, atol=1e-6)


def test_adagrad_and_group_adagrad_updates():
    w, g = _data()
    h = np.full_like(w, 0.1)
    w64 = w.astype(np.float64)
    nd.adagrad_update(w, g, h, lr=0.1, wd=0.01, epsilon=1e-7)
    gw = g.astype(np.float64) + 0.01 * w64
    h64 = 0.1 + gw * gw
    np.testing.assert_allclose(h, h64, **RTOL)
    np.testing.assert_allclose(w, w64 - 0.1 * gw / (np.sqrt(h64) + 1e-7), **RTOL)
    # row_sparse, wd 0: the listed rows only
    w, _ = _data((5, 3))
    before = w.copy()
    h = np.zeros_like(w)
    grad = mxo.sparse.row_sparse_array((np.ones((1, 3), np.float32), [2]), shape=(5, 3))
    nd.adagrad_update(w, grad, h, lr=0.1)
    np.testing.assert_array_equal(np.delete(w, 2, axis=0), np.delete(before, 2, axis=0))
    np.testing.assert_allclose(w[2], before[2] - 0.1 / (1 + 1e-7), **RTOL)
    w, g = _data((4, 6))
    hist = np.zeros((4, 1), np.float32)
    w64 = w.astype(np.float64)
    nd.contrib.group_adagrad_update(w, g, hist, lr=0.1, epsilon=1e-5)
    h64 = np.mean(g.astype(np.float64) ** 2, axis=1, keepdims=True)
    np.testing.assert_allclose(hist, h64, **RTOL)
    np.testing.assert_allclose(w, w64 - 0.1 * g / (np.sqrt(h64) + 1e-5), **RTOL)


@pytest.mark.parametrize("mp", [False, True])
def test_lamb_two_phases(mp):
    w, g = _data(seed=9)
    w64, g64 = w.astype(np.float64), g.astype(np.float64)
    mean, var = np.full_like(w, 0.01), np.full_like(w, 0.02)
    want, m, v = _lamb_ref(w64, g64, 0.01, 0.02, 3, 0.01, 0.1, upper=2.0)
    if mp:
        w16 = w.astype(np.float16)
        w32 = w16.astype(np.float32)
        w64 = w32.astype(np.float64)
        want, m, v = _lamb_ref(w64, g64, 0.01, 0.02, 3, 0.01, 0.1, upper=2.0)
        r = nd.mp_lamb_update_phase1(w16, g, mean, var, w32, t=3, wd=0.1)
    else:
        r = nd.lamb_update_phase1(w, g, mean, var, t=3, wd=0.1)
    mh, vh = m / (1 - 0.9 ** 3), v / (1 - 0.999 ** 3)
    np.testing.assert_allclose(mean, m, **RTOL)
    np.testing.assert_allclose(r, mh / (np.sqrt(vh) + 1e-6) + 0.1 * w64, rtol=1e-5, atol=1e-6)
    r1, r2 = np.linalg.norm(w64), np.linalg.norm(r.astype(np.float64))
    if mp:
        nd.mp_lamb_update_phase2(w16, r, r1, r2, w32, lr=0.01, upper_bound=2.0)
        np.testing.assert_allclose(w32, want, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(w16, w32.astype(np.float16))
    else:
        nd.lamb_update_phase2(w, r, np.array([r1], np.float32), np.array([r2], np.float32), lr=0.01,
                              upper_bound=2.0)
        np.testing.assert_allclose(w, want, rtol=1e-5, atol=1e-6)
