"""Layer-wise optimizers (LARS, LAMB, LANS, LBSGD): the chunk-wide reduction, closed forms,
MXNet quirks we reproduce and MXNet bugs we fix."""
import math
import warnings

import ml_dtypes
import numpy as np
import pytest

import mxopt_numba as mxo
from mxopt_numba.kernels import _launch as launch
from mxopt_numba.kernels import norms
from mxopt_numba.optimizer.optimizer import state_leaves

BF16 = np.dtype(ml_dtypes.bfloat16)
SIZES = (1, 7, 1000, launch.BLOCK + 3, 3 * launch.BLOCK - 1)


def _table(arrays_per_tensor):
    ptrs = np.array([[launch.address(a) for a in row] for row in arrays_per_tensor], dtype=np.int64)
    blocks = launch.block_table([row[0].size for row in arrays_per_tensor])
    return blocks, ptrs


def _sum_sq(kernel, weights, grads, masters=None, grad_scale=1.0):
    rows = [(w, g, w if masters is None else masters[k]) for k, (w, g) in enumerate(zip(weights, grads))]
    blocks, ptrs = _table(rows)
    n = len(weights)
    master_fmt = None if masters is None else launch.storage_format(np.float32)
    ct = launch.compute_dtype(weights[0].dtype)
    return kernel(blocks, ptrs, np.zeros(n, ct), np.zeros(n, ct), np.zeros((n, 1), ct),
                  launch.storage_format(weights[0].dtype), launch.storage_format(grads[0].dtype),
                  master_fmt, launch.storage_format(np.float32), ct(grad_scale))


def _data(dtype, seed=0):
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal(n).astype(dtype) for n in SIZES]
    gs = [rng.standard_normal(n).astype(dtype) for n in SIZES]
    return ws, gs


# --------------------------------------------------------------------------- the reduction

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, BF16], ids=str)
def test_sum_sq_matches_float64_numpy(dtype):
    ws, gs = _data(dtype)
    sums = _sum_sq(norms.multi_sum_sq_cpu, ws, gs, grad_scale=-0.5)
    for k, (w, g) in enumerate(zip(ws, gs)):
        w64 = w.astype(np.float64)
        g64 = (g.astype(np.float64) * -0.5).astype(launch.compute_dtype(dtype)).astype(np.float64)
        np.testing.assert_allclose(sums[k], [np.sum(w64 * w64), np.sum(g64 * g64)], rtol=1e-12)


def test_sum_sq_reads_the_master_copy():
    ws, gs = _data(np.float16)
    masters = [w.astype(np.float32) + np.float32(0.25) for w in ws]
    sums = _sum_sq(norms.multi_sum_sq_cpu, ws, gs, masters=masters)
    for k, m in enumerate(masters):
        assert sums[k, 0] == pytest.approx(np.sum(m.astype(np.float64) ** 2), rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16], ids=str)
def test_sum_sq_of_a_tensor_does_not_depend_on_its_chunk_or_the_thread_count(dtype):
    """Bitwise: alone or with others, parallel kernel or its single-threaded twin."""
    ws, gs = _data(dtype, seed=5)
    together = _sum_sq(norms.multi_sum_sq_cpu, ws, gs)
    serial = _sum_sq(norms.multi_sum_sq_cpu.serial, ws, gs)
    np.testing.assert_array_equal(together, serial)
    for k in range(len(ws)):
        alone = _sum_sq(norms.multi_sum_sq_cpu, [ws[k]], [gs[k]])
        np.testing.assert_array_equal(alone[0], together[k])


def test_empty_tensor_has_zero_sums():
    sums = _sum_sq(norms.multi_sum_sq_cpu, [np.zeros(0, np.float32), np.ones(3, np.float32)],
                   [np.zeros(0, np.float32), np.ones(3, np.float32)])
    np.testing.assert_array_equal(sums, [[0, 0], [3, 3]])


@pytest.mark.parametrize("name, passes", [("lars", 2), ("lamb", 2), ("lans", 3), ("lbsgd", 2)])
def test_each_pass_is_one_launch_for_the_whole_chunk(monkeypatch, name, passes):
    calls = []
    real_run = launch.run

    def counting_run(kernel, n_elements, *args):
        calls.append(kernel)
        return real_run(kernel, n_elements, *args)

    monkeypatch.setattr(launch, "run", counting_run)
    kwargs = {"warmup_strategy": "lars"} if name == "lbsgd" else {}
    opt = mxo.optimizer.create(name, aggregate_num=np.inf, **kwargs)
    updater = mxo.optimizer.get_updater(opt)
    rng = np.random.default_rng(0)
    shapes = [(7,), (3, 5), (300, 301)] * 30
    weights = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    updater(list(range(len(shapes))), grads, weights)
    assert len(calls) == passes


# --------------------------------------------------------------------------- helpers

def _run(name, weights, grads_per_step, indices=None, aggregate_num=None, **kwargs):
    opt = mxo.optimizer.create(name, **kwargs)
    if aggregate_num is not None:
        opt.aggregate_num = aggregate_num
    updater = mxo.optimizer.get_updater(opt)
    indices = list(range(len(weights))) if indices is None else indices
    for grads in grads_per_step:
        updater(indices, grads, weights)
    return opt, updater


def _signed(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


# --------------------------------------------------------------------------- LARS

def test_lars_trust_ratio_closed_form_and_excluded_names():
    w0 = [_signed((4, 5), 1), _signed((5,), 2), _signed((3,), 3)]
    g = [_signed((4, 5), 4), _signed((5,), 5), _signed((3,), 6)]
    names = {0: "fc_weight", 1: "fc_bias", 2: "bn_gamma"}
    lr, wd, eta, eps, s = 0.1, 0.01, 0.002, 1e-8, 0.5
    for fused in (True, False):
        weights = [w.copy() for w in w0]
        _run("lars", weights, [[x.copy() for x in g]], learning_rate=lr, wd=wd, eta=eta,
             epsilon=eps, rescale_grad=s, param_idx2name=names, use_fused_step=fused)
        wn, gn = np.linalg.norm(w0[0]), np.linalg.norm(s * g[0])
        ratio = eta * wn / (gn + wd * wn + eps)
        np.testing.assert_allclose(weights[0], w0[0] - lr * ratio * (s * g[0] + wd * w0[0]), rtol=1e-12)
        for k in (1, 2):   # bias and gamma: plain SGD
            np.testing.assert_allclose(weights[k], w0[k] - lr * (s * g[k] + wd * w0[k]), rtol=1e-12)


def test_lars_without_names_scales_every_tensor_by_index_name():
    """No param_idx2name: names are str(index), so nothing is excluded (MXNet under gluon)."""
    w0, g = _signed((6,), 1), _signed((6,), 2)
    weights = [w0.copy()]
    _run("lars", weights, [[g.copy()]], learning_rate=0.1)
    ratio = 0.001 * np.linalg.norm(w0) / (np.linalg.norm(g) + 1e-8)
    np.testing.assert_allclose(weights[0], w0 - 0.1 * ratio * g, rtol=1e-12)


def test_lars_norm_uses_the_unclipped_gradient():
    w0, g = _signed((50,), 1), 3 * _signed((50,), 2)
    weights = [w0.copy()]
    _run("lars", weights, [[g.copy()]], learning_rate=1.0, clip_gradient=0.1)
    ratio = 0.001 * np.linalg.norm(w0) / (np.linalg.norm(g) + 1e-8)
    np.testing.assert_allclose(weights[0], w0 - ratio * np.clip(g, -0.1, 0.1), rtol=1e-12)


def test_lars_zero_weight_keeps_the_learning_rate():
    weights = [np.zeros(4), _signed((4,), 1)]
    g = [np.ones(4), np.zeros(4)]
    _run("lars", weights, [g], learning_rate=0.5)
    np.testing.assert_array_equal(weights[0], -0.5 * np.ones(4))


def test_lars_clip_gradient_zero_means_no_clipping():
    """Deviation: MXNet's LARS passes clip_gradient=0 to its kernel (gradient zeroed)."""
    w0, g = _signed((8,), 1), _signed((8,), 2)
    a, b = [w0.copy()], [w0.copy()]
    _run("lars", a, [[g.copy()]], clip_gradient=0.0)
    _run("lars", b, [[g.copy()]])
    np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.parametrize("name", ["sgd", "lars"])
def test_more_than_60_tensors_in_one_launch(name):
    """MXNet's multi-tensor SGD/LARS kernels crash (SIGSEGV) above 60 tensors per call."""
    shapes = [(3 + k % 5, 2) for k in range(150)]
    w0 = [_signed(s, k).astype(np.float32) for k, s in enumerate(shapes)]
    g = [[_signed(s, 1000 + k).astype(np.float32) for k, s in enumerate(shapes)] for _ in range(2)]
    results = []
    for n in (1, np.inf):
        weights = [w.copy() for w in w0]
        _run(name, weights, [[x.copy() for x in step] for step in g], aggregate_num=n, momentum=0.9)
        results.append(weights)
    for x, y in zip(*results):
        np.testing.assert_array_equal(x, y)


def test_lars_states_from_other_settings_are_refused():
    opt = mxo.optimizer.create("lars")
    w = np.ones(3, np.float32)
    state = opt.create_state(0, w)          # None: momentum is 0
    opt.momentum = 0.9
    with pytest.raises(ValueError, match="does not fit LARS"):
        opt.update([0], [w], [np.ones(3, np.float32)], [state])


# --------------------------------------------------------------------------- LAMB

def test_lamb_first_step_closed_form():
    """t = 1: m^ = g, v^ = g^2, so r = g / (|g| + eps) + wd * w."""
    w0, g = _signed((30,), 1), _signed((30,), 2)
    lr, wd, eps = 0.01, 0.1, 1e-6
    for fused in (True, False):
        weights = [w0.copy()]
        _run("lamb", weights, [[g.copy()]], learning_rate=lr, wd=wd, use_fused_step=fused)
        r = g / (np.abs(g) + eps) + wd * w0
        np.testing.assert_allclose(weights[0], w0 - lr * np.linalg.norm(w0) / np.linalg.norm(r) * r,
                                   rtol=1e-10)


@pytest.mark.parametrize("aggregate_num", [1, 4, np.inf])
def test_lamb_counts_each_step_once(aggregate_num):
    """MXNet counts twice per step when aggregate_num <= 1 (bias correction and schedules
    at double speed); here every path counts once."""
    weights = [_signed((5,), k) for k in range(3)]
    opt, _ = _run("lamb", weights, [[_signed((5,), 10 + k) for k in range(3)]] * 3,
                  aggregate_num=aggregate_num)
    assert opt.num_update == 3
    assert dict(opt._index_update_count) == {0: 3, 1: 3, 2: 3}


@pytest.mark.parametrize("aggregate_num", [1, 4])
def test_lamb_multi_precision_updates_the_master_without_aggregation(aggregate_num):
    """MXNet's non-aggregated multi-precision LAMB never writes the fp32 master copy, so
    every step restarts from the initial weight; here the master moves every step."""
    w0 = _signed((40,), 1).astype(np.float16)
    weights = [w0.copy()]
    _, updater = _run("lamb", weights, [[_signed((40,), 2).astype(np.float16)]] * 3,
                      aggregate_num=aggregate_num, multi_precision=True, learning_rate=0.05)
    w32 = [w0.astype(np.float32)]
    _run("lamb", w32, [[_signed((40,), 2).astype(np.float16).astype(np.float32)]] * 3,
         learning_rate=0.05)
    np.testing.assert_array_equal(updater.states[0][0], w32[0])
    np.testing.assert_array_equal(weights[0], w32[0].astype(np.float16))


def test_lamb_bounds_of_zero_are_ignored():
    """MXNet's fused kernel ignores falsy bounds (its step path would clamp r1 to 0)."""
    w0, g = _signed((9,), 1), _signed((9,), 2)
    a, b = [w0.copy()], [w0.copy()]
    _run("lamb", a, [[g.copy()]], lower_bound=0.0, upper_bound=0.0)
    _run("lamb", b, [[g.copy()]])
    np.testing.assert_array_equal(a[0], b[0])


def test_lamb_bounds_clamp_the_weight_norm():
    w0, g = _signed((9,), 1), _signed((9,), 2)
    ref = [w0.copy()]
    _run("lamb", ref, [[g.copy()]], learning_rate=0.1)
    r = (w0 - ref[0]) / (0.1 * np.linalg.norm(w0))      # direction / ||r||
    for lower, upper, r1 in [(10.0, None, 10.0), (None, 0.5, 0.5), (10.0, 0.5, 0.5)]:
        weights = [w0.copy()]
        _run("lamb", weights, [[g.copy()]], learning_rate=0.1, lower_bound=lower, upper_bound=upper)
        np.testing.assert_allclose(weights[0], w0 - 0.1 * r1 * r, rtol=1e-10)


def test_lamb_trust_ratio_is_one_for_a_zero_weight():
    weights = [np.zeros(6)]
    g = _signed((6,), 3)
    _run("lamb", weights, [[g]], learning_rate=0.1)
    np.testing.assert_allclose(weights[0], -0.1 * g / (np.abs(g) + 1e-6), rtol=1e-12)


@pytest.mark.parametrize("name", ["lamb", "lans"])
@pytest.mark.parametrize("dtype, state_dtype", [(np.float16, np.float32), (BF16, np.float32),
                                                (np.float32, np.float32), (np.float64, np.float64)],
                         ids=["fp16", "bf16", "fp32", "fp64"])
def test_lamb_lans_state_dtypes(name, dtype, state_dtype):
    opt = mxo.optimizer.create(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = opt.create_state_multi_precision(0, np.zeros(3, dtype))
    assert [leaf.dtype for leaf in state_leaves(state)] == [state_dtype] * 2


@pytest.mark.parametrize("name", ["lamb", "lans"])
def test_no_cap_on_tensors_per_launch(name):
    """MXNet asserts aggregate_num <= 45 for LAMB and LANS; numpy.inf is accepted here."""
    opt = mxo.optimizer.create(name, aggregate_num=np.inf)
    assert math.isinf(opt.aggregate_num)
    weights = [_signed((4,), k).astype(np.float32) for k in range(100)]
    _run(name, weights, [[_signed((4,), 500 + k).astype(np.float32) for k in range(100)]],
         aggregate_num=np.inf)
    assert all(np.isfinite(w).all() for w in weights)


# --------------------------------------------------------------------------- LANS

def test_lans_closed_form_one_step():
    w0, g = _signed((20,), 1), _signed((20,), 2)
    lr, wd, b1, eps = 0.01, 0.1, 0.9, 1e-6
    for fused in (True, False):
        weights = [w0.copy()]
        _run("lans", weights, [[g.copy()]], learning_rate=lr, wd=wd, use_fused_step=fused)
        gn = g / np.linalg.norm(g)
        d = np.abs(gn) + eps                       # sqrt(v^) + eps at t = 1
        rm = gn / d + wd * w0                      # m^ = g^ at t = 1
        rg = gn / d + wd * w0
        r1 = np.linalg.norm(w0)
        expected = w0 - lr * (b1 * r1 / np.linalg.norm(rm) * rm + (1 - b1) * r1 / np.linalg.norm(rg) * rg)
        np.testing.assert_allclose(weights[0], expected, rtol=1e-10)


def test_lans_ignores_the_scale_of_the_gradient():
    w0, g = _signed((20,), 1), _signed((20,), 2)
    a, b = [w0.copy()], [w0.copy()]
    _run("lans", a, [[g.copy()]] * 2)
    _run("lans", b, [[g * 1000.0]] * 2)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-12)


@pytest.mark.parametrize("fused", [True, False])
def test_lans_zero_gradient_gives_nan_like_mxnet(fused):
    weights = [np.ones(4, np.float32)]
    with np.errstate(invalid="ignore", divide="ignore"):
        _run("lans", weights, [[np.zeros(4, np.float32)]], use_fused_step=fused)
    assert np.isnan(weights[0]).all()


def test_lans_second_half_uses_the_weight_before_the_step():
    """MXNet's LANS step path takes the second half from the half-updated weight; both of
    our paths follow the fused kernel (visible with large lr * wd)."""
    w0, g = _signed((10,), 1), _signed((10,), 2)
    a, b = [w0.copy()], [w0.copy()]
    _run("lans", a, [[g.copy()]], learning_rate=0.5, wd=0.5)
    _run("lans", b, [[g.copy()]], learning_rate=0.5, wd=0.5, use_fused_step=False)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-12)


# --------------------------------------------------------------------------- LBSGD

def test_lbsgd_reads_lr_before_counting():
    """Per-index calls: index 0 at step t sees scheduler(t - 1), as in MXNet 1.x."""
    sched = mxo.lr_scheduler.FactorScheduler(step=1, factor=0.5, base_lr=0.1)
    w0, g = _signed((3,), 1), _signed((3,), 2)
    weights = [w0.copy()]
    opt = mxo.optimizer.create("lbsgd", lr_scheduler=sched)
    updater = mxo.optimizer.get_updater(opt)
    expected = w0.copy()
    for t in range(1, 5):
        lr = sched(t - 1)
        updater(0, g, weights[0])
        expected = expected - lr * g
        np.testing.assert_allclose(weights[0], expected, rtol=1e-12)


@pytest.mark.parametrize("fused", [True, False])
def test_lbsgd_accumulates_over_batch_scale(fused):
    w0 = _signed((6,), 1)
    grads = [_signed((6,), 10 + k) for k in range(6)]
    weights = [w0.copy()]
    opt = mxo.optimizer.create("lbsgd", batch_scale=3, warmup_epochs=0, learning_rate=0.1,
                               use_fused_step=fused)
    updater = mxo.optimizer.get_updater(opt)
    expected = w0.copy()
    for k, g in enumerate(grads):
        updater(0, g, weights[0])
        if k % 3 == 2:      # the call count reaches a multiple of batch_scale
            expected = expected - 0.1 * 3 * np.mean(grads[k - 2:k + 1], axis=0)   # mult = batch_scale
        np.testing.assert_allclose(weights[0], expected, rtol=1e-12)
    cum, mom = updater.states[0]
    assert mom is None and not cum.any()


def test_lbsgd_accumulated_gradient_is_a_copy():
    """MXNet keeps a reference to the caller's first gradient; a reused buffer then
    counts the last gradient twice.  Here the sum is right."""
    w0 = np.zeros(3)
    buf = np.empty(3)
    weights = [w0.copy()]
    opt = mxo.optimizer.create("lbsgd", batch_scale=2, warmup_epochs=0, learning_rate=1.0)
    updater = mxo.optimizer.get_updater(opt)
    for value in (1.0, 3.0):
        buf[:] = value
        updater(0, buf, weights[0])
    np.testing.assert_allclose(weights[0], -2.0 * np.full(3, 2.0))     # mult 2 x mean 2


@pytest.mark.parametrize("strategy, mult", [
    ("linear", lambda n, N, M: 1 + (M - 1) * n / N),
    ("power2", lambda n, N, M: 1 + (M - 1) * n * n / (N * N)),
    ("sqrt", lambda n, N, M: 1 + (M - 1) * math.sqrt(n / N)),
])
def test_lbsgd_warmup_multipliers(strategy, mult):
    opt = mxo.optimizer.create("lbsgd", warmup_strategy=strategy, batch_scale=4, warmup_epochs=2,
                               updates_per_epoch=5)
    n = np.arange(0.0, 14.0)
    expected = [4.0 if k >= 10 else mult(k, 10, 4.0) for k in n]
    np.testing.assert_allclose(opt._warmup(n), expected, rtol=1e-15)


def test_lbsgd_short_warmup_and_unknown_strategy():
    opt = mxo.optimizer.create("lbsgd", batch_scale=4, warmup_epochs=1, updates_per_epoch=1)
    np.testing.assert_array_equal(opt._warmup(np.array([0.0, 1.0, 2.0])), [1.0, 4.0, 4.0])
    with pytest.warns(UserWarning, match="warmup_strategy"):
        opt = mxo.optimizer.create("lbsgd", warmup_strategy="cosine", batch_scale=4)
    np.testing.assert_array_equal(opt._warmup(np.array([1.0, 500.0])), [1.0, 4.0])


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("wd, mult", [(0.01, None), (0.0, 100.0)], ids=["ratio", "clipped"])
def test_lbsgd_lars_multiplier(fused, wd, mult):
    """sqrt(sum(w^2) / (sum(g^2) + wd sum(w^2) + 1e-18)), clipped to [0.01, 100]."""
    w0, g = _signed((10,), 1), 1e-4 * _signed((10,), 2)
    weights = [w0.copy()]
    _run("lbsgd", weights, [[g.copy()]], warmup_strategy="lars", wd=wd, learning_rate=0.1,
         use_fused_step=fused)
    if mult is None:
        sw, sg = np.sum(w0 * w0), np.sum(g * g)
        mult = math.sqrt(sw / (sg + wd * sw + 1e-18))
        assert 0.01 < mult < 100
    np.testing.assert_allclose(weights[0], w0 - 0.1 * mult * (g + wd * w0), rtol=1e-12)


@pytest.mark.parametrize("batch_scale", [1, 2])
def test_lbsgd_row_sparse_gradient_updates_only_its_rows(batch_scale):
    """MXNet 1.x LBSGD calls sgd_update with its default lazy_update=True."""
    w0 = _signed((6, 3), 1)
    weights = [w0.copy()]
    opt = mxo.optimizer.create("lbsgd", wd=0.1, momentum=0.9, batch_scale=batch_scale,
                               warmup_epochs=0)
    updater = mxo.optimizer.get_updater(opt)
    rows = np.array([1, 4])
    for _ in range(batch_scale):
        g = mxo.sparse.row_sparse_array((_signed((2, 3), 2), rows), shape=(6, 3))
        updater(0, g, weights[0])
    untouched = [0, 2, 3, 5]
    np.testing.assert_array_equal(weights[0][untouched], w0[untouched])
    assert not np.allclose(weights[0][rows], w0[rows])
    mom = updater.states[0] if batch_scale == 1 else updater.states[0][1]
    assert not mom[untouched].any() and mom[rows].any()


def test_lbsgd_state_layout():
    w = np.zeros(3, np.float16)
    assert mxo.optimizer.create("lbsgd").create_state(0, w) is None
    cum, mom = mxo.optimizer.create("lbsgd", batch_scale=2, momentum=0.9).create_state(0, w)
    assert cum.dtype == mom.dtype == np.float16
    opt = mxo.optimizer.create("lbsgd", batch_scale=2, multi_precision=True)
    master, (cum, mom) = opt.create_state_multi_precision(0, w)
    assert master.dtype == cum.dtype == np.float32 and mom is None


@pytest.mark.parametrize("fused", [True, False])
def test_lars_lazy_update_rows_only_with_whole_tensor_ratio(fused):
    """lazy_update: only the listed rows move, by the ratio of the whole weight and gradient."""
    w0 = _signed((8, 3), 1)
    rows = np.array([2, 5])
    data = _signed((2, 3), 2)
    weights = [w0.copy()]
    opt = mxo.optimizer.create("lars", lazy_update=True, wd=0.1, learning_rate=0.5, use_fused_step=fused)
    opt.update(0, weights[0], mxo.sparse.row_sparse_array((data, rows), shape=(8, 3)), None)
    wn, gn = np.linalg.norm(w0), np.linalg.norm(data)
    ratio = 0.001 * wn / (gn + 0.1 * wn + 1e-8)
    expected = w0.copy()
    expected[rows] = w0[rows] - 0.5 * ratio * (data + 0.1 * w0[rows])
    np.testing.assert_allclose(weights[0], expected, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=str)
@pytest.mark.parametrize("name, kwargs", [("lars", {"momentum": 0.9}), ("lamb", {"wd": 0.01}),
                                          ("lans", {}), ("lbsgd", {"warmup_strategy": "lars"})])
def test_threaded_and_single_threaded_launches_agree(name, kwargs, dtype):
    """A small tensor runs single-threaded alone and multi-threaded next to a big one; its
    result must not depend on which (the generic aggregation test stays below the
    threading threshold)."""
    shapes = [(7,), (3 * launch.SERIAL_BELOW + 11,), (3, 5)]
    w0 = [_signed(s, k).astype(dtype) for k, s in enumerate(shapes)]
    grads = [[_signed(s, 100 * t + k).astype(dtype) for k, s in enumerate(shapes)] for t in range(2)]
    results = []
    for n in (1, np.inf):
        weights = [w.copy() for w in w0]
        _run(name, weights, grads, aggregate_num=n, **kwargs)
        results.append(weights)
    for x, y in zip(*results):
        np.testing.assert_array_equal(x, y)
