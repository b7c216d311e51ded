"""mxopt_numba.v1: MXNet 1.9.1's optimizer API.

The 1.9.1 traces in tests/golden-1.9 are replayed through ``mxopt_numba.v1``; the 1.x
rules are also checked against float64 re-statements of MXNet 1.9.1's formulas in the
cases the traces do not reach (weight decay together with clipping, momentum with weight
decay, multi-precision layouts, the Updater's call forms, save and load).
"""
import json
import math
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

import mxopt_numba as mxo
import mxopt_numba.v1 as mx1
from replay import deviation_for, run_case, seed_of, weight_error

GOLDEN19 = Path(__file__).parent / "golden-1.9"
MANIFEST = json.loads((GOLDEN19 / "manifest.json").read_text())


def _cases(kind):
    return [pytest.param(c, id=c["id"]) for c in MANIFEST["cases"] if c["kind"] == kind]


# ---------------------------------------------------------------------- the 1.9.1 traces

@pytest.mark.parametrize("case", _cases("optimizer"))
def test_optimizer_trace_1_9(case):
    if case["status"] != "ok":
        pytest.skip("MXNet 1.9.1 itself raised here: %s" % (case.get("error") or "")[:80])
    why = deviation_for(case["id"])
    if why:
        pytest.skip("intended deviation from MXNet: " + why)
    arrays = np.load(GOLDEN19 / case["file"])
    mx1.random.seed(seed_of(case))
    steps = list(run_case(case, arrays, legacy_scalar=True, mod=mx1))
    if case["name"] == "sgld":
        _check_sgld(case, arrays, steps)
        return
    for t, weights, num_update in steps:
        for i, w in enumerate(weights):
            score = weight_error(w, arrays["w%d_%d" % (t, i)], arrays["w%d_%d" % (t - 1, i)],
                                 arrays["w0_%d" % i], case["dtype"], case["multi_precision"])
            assert score <= 1.0, "step %d tensor %d: error %.3g x tolerance" % (t, i, score)
        assert num_update == int(arrays["num_update"][t - 1]), "num_update after step %d" % t


LBSGD_DIR = Path(__file__).parent / "golden" / "lbsgd"


@pytest.mark.parametrize("case", [pytest.param(c, id=c["id"]) for c in
                                  json.loads((LBSGD_DIR / "manifest.json").read_text())["cases"]])
def test_lbsgd_trace_1_9(case):
    """LBSGD exists only in 1.x; its 1.9.1 traces through v1 (including the 1.x wd_mult
    name rule, which the 2.x namespace does not apply)."""
    if case["status"] != "ok" or (case.get("sparse") or {}).get("weight_stype", "default") != "default":
        pytest.skip("MXNet raised, or row_sparse weights")
    arrays = np.load(LBSGD_DIR / case["file"])
    for t, weights, num_update in run_case(case, arrays, legacy_scalar=True, mod=mx1):
        for i, w in enumerate(weights):
            score = weight_error(w, arrays["w%d_%d" % (t, i)], arrays["w%d_%d" % (t - 1, i)],
                                 arrays["w0_%d" % i], case["dtype"], case["multi_precision"])
            assert score <= 1.0, "step %d tensor %d: error %.3g x tolerance" % (t, i, score)
        assert num_update == int(arrays["num_update"][t - 1])


def _check_sgld(case, arrays, steps):
    n = len(case["shapes"])
    prev = [arrays["w0_%d" % i].astype(np.float64) for i in range(n)]
    d, g = [], []
    for t, weights, _ in steps:
        for i, w in enumerate(weights):
            ours = w.astype(np.float64) - prev[i]
            theirs = arrays["w%d_%d" % (t, i)].astype(np.float64) - arrays["w%d_%d" % (t - 1, i)]
            d.append((ours - theirs).ravel())
            g.append(arrays["g%d_%d" % (t, i)].astype(np.float64).ravel())
            prev[i] = w.astype(np.float64)
    d, g = np.concatenate(d), np.concatenate(g)
    m = d.size
    assert abs(d.mean()) / (d.std() / math.sqrt(m)) <= 5
    assert abs(np.corrcoef(d, g)[0, 1]) * math.sqrt(m) <= 5


@pytest.mark.parametrize("case", _cases("lr_scheduler"))
def test_scheduler_trace_1_9(case):
    cls = getattr(mx1.lr_scheduler, case["name"])
    kw = dict(case["kwargs"])
    if case["id"].endswith("err_step_not_list") and isinstance(kw.get("step"), list):
        kw["step"] = tuple(kw["step"])
    if case["status"] == "expected_error":
        with pytest.raises(Exception):
            cls(**kw)
        return
    arrays = np.load(GOLDEN19 / case["file"])
    s = cls(**kw)
    np.testing.assert_allclose([s(int(k)) for k in arrays["num_update"]], arrays["lr"], rtol=1e-12)
    s = cls(**kw)
    np.testing.assert_allclose([s(int(k)) for k in arrays["nonmono_queries"]], arrays["nonmono_lr"],
                               rtol=1e-12)


# ---------------------------------------------------------------------- float64 re-statements
# One function per 1.x rule: (w, g, state dict, t, lr, wd, hyper) -> new w, in float64.

def _clip(x, c):
    return x if not c else np.clip(x, -c, c)


def ref_adam(w, g, s, t, lr, wd, h):
    gw = _clip(h["rescale_grad"] * g + wd * w, h.get("clip_gradient"))
    s["m"] = h["beta1"] * s.get("m", 0) + (1 - h["beta1"]) * gw
    s["v"] = h["beta2"] * s.get("v", 0) + (1 - h["beta2"]) * gw * gw
    lr_t = lr * math.sqrt(1 - h["beta2"] ** t) / (1 - h["beta1"] ** t)
    return w - lr_t * s["m"] / (np.sqrt(s["v"]) + h["epsilon"])


def ref_adamax(w, g, s, t, lr, wd, h):
    gw = _clip(h["rescale_grad"] * g + wd * w, h.get("clip_gradient"))
    s["m"] = h["beta1"] * s.get("m", 0) + (1 - h["beta1"]) * gw
    s["u"] = np.maximum(h["beta2"] * s.get("u", 0), np.abs(gw))
    return w - lr / (1 - h["beta1"] ** t) * s["m"] / s["u"]


def ref_ftml(w, g, s, t, lr, wd, h):
    b1, b2 = h["beta1"], h["beta2"]
    gw = _clip(h["rescale_grad"] * g + wd * w, h.get("clip_gradient"))
    s["v"] = b2 * s.get("v", 0) + (1 - b2) * gw * gw
    d_t = (1 - b1 ** t) / lr * (np.sqrt(s["v"] / (1 - b2 ** t)) + h["epsilon"])
    s["z"] = b1 * s.get("z", 0) + (1 - b1) * gw - (d_t - b1 * s.get("d", 0)) * w
    s["d"] = d_t
    return -s["z"] / d_t


def ref_nadam(w, g, s, t, lr, wd, h):
    b1, b2, sd = h["beta1"], h["beta2"], h["schedule_decay"]
    gw = _clip(h["rescale_grad"] * g + wd * w, h.get("clip_gradient"))
    mu_t = b1 * (1 - 0.5 * 0.96 ** (t * sd))
    mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * sd))
    s["M"] = s.get("M", 1.0) * mu_t
    m_next = s["M"] * mu_next
    s["m"] = b1 * s.get("m", 0) + (1 - b1) * gw
    s["v"] = b2 * s.get("v", 0) + (1 - b2) * gw * gw
    m_bar = (1 - mu_t) * gw / (1 - s["M"]) + mu_next * s["m"] / (1 - m_next)
    return w - lr * m_bar / (np.sqrt(s["v"] / (1 - b2 ** t)) + h["epsilon"])


def ref_rmsprop(w, g, s, t, lr, wd, h):
    g1, eps = h["gamma1"], h["epsilon"]
    gw = _clip(h["rescale_grad"] * g + wd * w, h.get("clip_gradient"))
    s["n"] = (1 - g1) * gw * gw + g1 * s.get("n", 0)
    if h.get("centered"):
        s["a"] = (1 - g1) * gw + g1 * s.get("a", 0)
        s["d"] = h["gamma2"] * s.get("d", 0) - lr * gw / np.sqrt(s["n"] - s["a"] ** 2 + eps)
        w = w + s["d"]
    else:
        w = w - lr * gw / np.sqrt(s["n"] + eps)
    return _clip(w, h.get("clip_weights"))


def ref_adagrad(w, g, s, t, lr, wd, h):
    gc = _clip(h["rescale_grad"] * g, h.get("clip_gradient"))
    s["h"] = s.get("h", 0) + gc * gc
    return w - lr * (gc / np.sqrt(s["h"] + h["eps"]) + wd * w)


def ref_adadelta(w, g, s, t, lr, wd, h):
    rho, eps = h["rho"], h["epsilon"]
    gc = _clip(h["rescale_grad"] * g, h.get("clip_gradient"))
    s["ag"] = rho * s.get("ag", 0) + (1 - rho) * gc * gc
    delta = np.sqrt(s.get("ad", 0) + eps) / np.sqrt(s["ag"] + eps) * gc
    s["ad"] = rho * s.get("ad", 0) + (1 - rho) * delta * delta
    return w - (delta + wd * w)


def ref_nag(w, g, s, t, lr, wd, h):
    mu = h["momentum"]
    gc = _clip(h["rescale_grad"] * g, h.get("clip_gradient"))
    m1 = mu * s.get("m", 0)
    w_new = w - m1 + (mu + 1) * (m1 - lr * (gc + wd * w))
    s["m"] = m1 - lr * (gc + wd * w_new)
    return w_new


def ref_dcasgd(w, g, s, t, lr, wd, h):
    gc = _clip(h["rescale_grad"] * g, h.get("clip_gradient"))
    prev = s.get("prev", s["w0"])
    step = -lr * (gc + wd * w + h["lamda"] * gc * gc * (w - prev))
    s["prev"] = w
    return w + step


def ref_group_adagrad(w, g, s, t, lr, wd, h):
    gc = _clip(h["rescale_grad"] * g, h.get("clip_gradient"))
    s["h"] = s.get("h", 0) + np.mean(gc * gc, axis=1, keepdims=True)
    return w - lr * gc / np.sqrt(s["h"] + h["eps"])


def ref_sgd(w, g, s, t, lr, wd, h):
    gw = _clip(h["rescale_grad"] * g, h.get("clip_gradient")) + wd * w
    if not h.get("momentum"):
        return w - lr * gw
    s["m"] = h["momentum"] * s.get("m", 0) - lr * gw
    return w + s["m"]


CLIP_WD = dict(rescale_grad=1.5, clip_gradient=0.3, wd=0.2)

RULES = [
    # name, constructor kwargs (beyond CLIP_WD), reference, hyperparameters the reference reads
    ("adam", {"learning_rate": 0.01}, ref_adam, dict(beta1=0.9, beta2=0.999, epsilon=1e-8)),
    ("adamax", {"learning_rate": 0.01}, ref_adamax, dict(beta1=0.9, beta2=0.999)),
    ("ftml", {}, ref_ftml, dict(beta1=0.6, beta2=0.999, epsilon=1e-8)),
    ("nadam", {"learning_rate": 0.01}, ref_nadam, dict(beta1=0.9, beta2=0.999, epsilon=1e-8,
                                                       schedule_decay=0.004)),
    ("rmsprop", {"learning_rate": 0.01}, ref_rmsprop, dict(gamma1=0.9, epsilon=1e-8)),
    ("rmsprop", {"learning_rate": 0.01, "centered": True, "gamma2": 0.8, "clip_weights": 1.2},
     ref_rmsprop, dict(gamma1=0.9, gamma2=0.8, epsilon=1e-8, centered=True, clip_weights=1.2)),
    ("adagrad", {"learning_rate": 0.1}, ref_adagrad, dict(eps=1e-7)),
    ("adadelta", {}, ref_adadelta, dict(rho=0.9, epsilon=1e-5)),
    ("nag", {"momentum": 0.9}, ref_nag, dict(momentum=0.9)),
    ("nag", {}, ref_sgd, dict()),
    ("dcasgd", {"learning_rate": 0.1}, ref_dcasgd, dict(lamda=0.04)),
    ("sgd", {"momentum": 0.9}, ref_sgd, dict(momentum=0.9)),
]


def _run_rule(name, kwargs, ref, hyper, dtype, mp, steps=4, shapes=((5, 3), (7,)), wd_clip=CLIP_WD):
    rng = np.random.default_rng(11)
    opt = mx1.optimizer.create(name, multi_precision=mp, **dict(wd_clip, **kwargs))
    updater = mx1.optimizer.get_updater(opt)
    ws = [rng.standard_normal(s).astype(dtype) for s in shapes]
    refs = [w.astype(np.float64) for w in ws]
    hyper = dict(hyper, rescale_grad=wd_clip["rescale_grad"], clip_gradient=wd_clip.get("clip_gradient"))
    states = [{"w0": r.copy()} for r in refs]
    lr = opt.lr
    for t in range(1, steps + 1):
        gs = [rng.standard_normal(s).astype(dtype) for s in shapes]
        for i in range(len(ws)):
            updater(i, gs[i], ws[i])
            refs[i] = ref(refs[i], gs[i].astype(np.float64), states[i], t, lr, wd_clip["wd"], hyper)
            if dtype == np.float16:
                # the float32 master is the float64 run rounded once per step at most
                np.testing.assert_allclose(ws[i].astype(np.float64), refs[i], rtol=4e-3, atol=2e-3)
            else:
                np.testing.assert_allclose(ws[i], refs[i], rtol=3e-5, atol=3e-6,
                                           err_msg="%s step %d tensor %d" % (name, t, i))
    return opt, updater


@pytest.mark.parametrize("name, kwargs, ref, hyper", RULES, ids=lambda x: x if isinstance(x, str) else "")
@pytest.mark.parametrize("dtype, mp", [(np.float32, False), (np.float64, False), (np.float16, True)])
def test_1x_rule_with_weight_decay_and_clipping(name, kwargs, ref, hyper, dtype, mp):
    _run_rule(name, kwargs, ref, hyper, dtype, mp)


def test_1x_group_adagrad_eps_inside_the_root():
    _run_rule("groupadagrad", {"eps": 0.01, "learning_rate": 0.1}, ref_group_adagrad, dict(eps=0.01),
              np.float32, False, wd_clip=dict(rescale_grad=1.5, clip_gradient=0.3, wd=0.0),
              shapes=((6, 4), (3, 9)))


def test_1x_lazy_adam_with_weight_decay_and_clipping_touches_listed_rows_only():
    opt = mx1.optimizer.create("adam", learning_rate=0.01, **CLIP_WD)
    assert opt.lazy_update
    w = np.random.default_rng(3).standard_normal((6, 2)).astype(np.float32)
    before = w.copy()
    state = opt.create_state_multi_precision(0, w)
    rows = np.array([1, 4])
    data = np.random.default_rng(4).standard_normal((2, 2)).astype(np.float32)
    opt.update_multi_precision(0, w, mx1.sparse.row_sparse_array((data, rows), shape=(6, 2)), state)
    s = {}
    want = ref_adam(before[rows].astype(np.float64), data.astype(np.float64), s, 1, 0.01, 0.2,
                    dict(beta1=0.9, beta2=0.999, epsilon=1e-8, **CLIP_WD))
    np.testing.assert_allclose(w[rows], want, rtol=3e-5)
    np.testing.assert_array_equal(np.delete(w, rows, axis=0), np.delete(before, rows, axis=0))


# ---------------------------------------------------------------------- defaults and layouts

@pytest.mark.parametrize("name, attr, value", [
    ("sgd", "lr", 0.01), ("sgd", "lazy_update", True), ("sgd", "aggregate_num", 4),
    ("sgld", "lr", 0.01), ("nag", "momentum", 0.0), ("nag", "lr", 0.01), ("dcasgd", "lr", 0.01),
    ("ftml", "lr", 0.01), ("adam", "lazy_update", True), ("adagrad", "epsilon", 1e-7),
    ("adadelta", "epsilon", 1e-5), ("groupadagrad", "epsilon", 1e-5), ("lars", "epsilon", 0.0),
    ("lars", "momentum_correction", True), ("lars", "aggregate_num", 4), ("lamb", "aggregate_num", 45),
    ("adamax", "epsilon", 0.0), ("rmsprop", "gamma1", 0.9), ("rmsprop", "gamma2", 0.9),
    ("adam", "aggregate_num", 0), ("ftrl", "lr", 0.1),
])
def test_1x_defaults(name, attr, value):
    assert getattr(mx1.optimizer.create(name), attr) == value


def test_1x_registry_has_the_1x_names_only():
    names = set(mx1.optimizer.Optimizer.opt_registry)
    assert set(MANIFEST["meta"]["registered_optimizers"]) <= names
    for only_2x in ("adamw", "adabelief", "lans"):
        with pytest.raises(ValueError):
            mx1.optimizer.create(only_2x)
    assert type(mx1.optimizer.create("adam")) is mx1.optimizer.Adam
    assert type(mxo.optimizer.create("adam")) is mxo.optimizer.Adam        # 2.x stays the default
    with pytest.raises(TypeError, match="use_fused_step"):
        mx1.optimizer.create("sgd", use_fused_step=False)


@pytest.mark.parametrize("name", ["sgd", "ccsgd", "nag", "lars"])
def test_1x_multi_precision_state_is_state_then_master(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        opt = mx1.optimizer.create(name, momentum=0.9, learning_rate=0.1, multi_precision=True)
    updater = mx1.optimizer.get_updater(opt)
    w = np.linspace(-1, 1, 12).astype(np.float16).reshape(3, 4)
    g = np.full((3, 4), 0.5, np.float16)
    updater(0, g, w)
    mom, master = updater.states[0]
    assert mom.dtype == np.float32 and master.dtype == np.float32
    np.testing.assert_array_equal(w, master.astype(np.float16))
    ref = np.linspace(-1, 1, 12).astype(np.float16).reshape(3, 4).astype(np.float64)
    if name == "lars":
        return                                  # trust ratio: the layout is what is checked here
    np.testing.assert_allclose(mom, -0.1 * 0.5, rtol=1e-6)
    np.testing.assert_allclose(master, ref + (-0.05 if name != "nag" else -0.05 * 1.9), rtol=1e-5,
                               atol=1e-6)


def test_1x_rmsprop_state_layouts():
    w = np.ones(3, np.float32)
    assert isinstance(mx1.optimizer.create("rmsprop").create_state(0, w), tuple)
    assert len(mx1.optimizer.create("rmsprop").create_state(0, w)) == 1
    n, a, d = mx1.optimizer.create("rmsprop", centered=True).create_state(0, w)
    assert n.shape == a.shape == d.shape == (3,)


def test_1x_test_optimizer_adds_the_gradient_and_does_not_count():
    opt = mx1.optimizer.create("test", rescale_grad=2.0, learning_rate=5.0, wd=1.0, clip_gradient=0.1)
    w = np.ones(3, np.float32)
    state = opt.create_state(0, w)
    opt.update(0, w, np.full(3, 0.25, np.float32), state)
    np.testing.assert_array_equal(w, 1.5)
    np.testing.assert_array_equal(state, 1.5)
    assert opt.num_update == 0


# ---------------------------------------------------------------------- base-class rules

def test_1x_wd_mult_name_rule():
    names = {0: "fc_weight", 1: "fc_bias", 2: "bn_gamma", 3: "bn_beta", 4: "emb"}
    opt = mx1.optimizer.create("sgd", wd=0.1, param_idx2name=names)
    assert opt._get_wds([0, 1, 2, 3, 4]) == pytest.approx([0.1, 0.0, 0.1, 0.0, 0.0])
    opt.set_wd_mult({"fc_bias": 0.5, 2: 2.0})
    assert opt._get_wds([0, 1, 2, 3]) == pytest.approx([0.1, 0.05, 0.2, 0.0])
    lars = mx1.optimizer.create("lars", wd=0.1, param_idx2name=names)
    assert lars._get_wds([0, 2]) == pytest.approx([0.1, 0.0])          # LARS: only _weight
    two = mxo.optimizer.create("sgd", wd=0.1, param_idx2name=names)    # 2.x: no name rule
    assert two._get_wds([1, 3]) == pytest.approx([0.1, 0.1])


@pytest.mark.parametrize("name", ["fc_bias", "fc_weight"])
def test_1x_lars_momentum_correction(name):
    # lr(n) = 0.4 * 0.5^floor((n-1)/2); momentum scaled by lr_now / lr_before (one pair
    # for the whole optimizer, updated at every call); a *_bias tensor keeps its rate, a
    # *_weight tensor is scaled by eta * ||w|| / (||g|| + wd * ||w|| + eps), here eps 0
    sched = mx1.lr_scheduler.FactorScheduler(step=2, factor=0.5, base_lr=0.4)
    opt = mx1.optimizer.create("lars", momentum=0.9, lr_scheduler=sched, eta=0.5, wd=0.01,
                               param_idx2name={0: name})
    w = np.linspace(0.5, 2.0, 4)
    state = opt.create_state_multi_precision(0, w)
    m, ref, last = np.zeros(4), w.copy(), None
    wd = 0.01 if name == "fc_weight" else 0.0            # the 1.x name rule: no decay for biases
    for t in range(1, 7):
        g = np.array([1.0, -0.5, 0.25, 2.0]) * t
        opt.update_multi_precision(0, w, g, state)
        lr = 0.4 * 0.5 ** ((t - 1) // 2)
        mu = 0.9 * (lr / last if last else 1.0)
        last = lr
        if name == "fc_weight":
            lr *= 0.5 * np.linalg.norm(ref) / (np.linalg.norm(g) + wd * np.linalg.norm(ref))
        m = mu * m - lr * (g + wd * ref)
        ref = ref + m
        np.testing.assert_allclose(w, ref, rtol=1e-12)


def test_1x_updater_calls_and_save_load(tmp_path):
    calls = []

    @mx1.optimizer.register
    class Recorder(mx1.optimizer.Optimizer):
        def create_state(self, index, weight):
            return np.zeros(weight.shape, weight.dtype)

        def update(self, index, weight, grad, state):
            calls.append(index)
            self._update_count(index)
            state += grad
            weight -= self._get_lr(index) * state

    try:
        _recorder_run(calls)
    finally:
        mx1.optimizer.Optimizer.opt_registry.pop("recorder", None)


def _recorder_run(calls):
    opt = mx1.optimizer.create("recorder", learning_rate=0.5, multi_precision=True)
    Recorder = type(opt)
    updater = mx1.optimizer.get_updater(opt)
    assert not updater.aggregate_updates
    ws = [np.ones(3, np.float16), np.ones(2, np.float32)]
    updater([0, 1], [np.full(3, 0.5, np.float16), np.full(2, 0.5, np.float32)], ws)
    assert calls == [0, 1] and opt.num_update == 1
    np.testing.assert_array_equal(ws[0], 0.75)
    np.testing.assert_array_equal(updater.states[0][0], 0.75)       # float32 master copy
    blob = updater.get_states(dump_optimizer=True)
    fresh = mx1.optimizer.get_updater(mx1.optimizer.create("sgd"))
    fresh.set_states(blob)
    assert type(fresh.optimizer) is Recorder and fresh.optimizer.num_update == 1
    fresh([0, 1], [np.full(3, 0.5, np.float16), np.full(2, 0.5, np.float32)], ws)
    np.testing.assert_array_equal(ws[1], 0.75 - 0.5 * 1.0)
    assert fresh.optimizer._index_update_count[0] == 2


def test_1x_sgd_save_load_keeps_class_and_layout():
    opt = mx1.optimizer.create("sgd", momentum=0.9, multi_precision=True)
    updater = mx1.optimizer.get_updater(opt)
    w = np.ones(4, np.float16)
    updater(0, np.full(4, 0.5, np.float16), w)
    other = mx1.optimizer.get_updater(mx1.optimizer.create("adam"))
    other.set_states(updater.get_states(dump_optimizer=True))
    assert type(other.optimizer) is mx1.optimizer.SGD and other.optimizer.lazy_update
    mom, master = other.states[0]
    other(0, np.full(4, 0.5, np.float16), w)
    np.testing.assert_allclose(master, 1 - 0.005 - (0.9 * 0.005 + 0.005), rtol=1e-6)
    assert pickle.loads(pickle.dumps(opt)).lr == 0.01


def test_1x_initializer_registry():
    init = mx1.initializer.create("xavier")
    assert type(init) is mxo.initializer.Xavier
    assert type(mx1.initializer.create("fusedrnn", init=None, num_hidden=2, num_layers=1,
                                       mode="lstm")).__name__ == "FusedRNN"
    with pytest.raises(ValueError):
        mx1.initializer.create("rnnfused")


def test_1x_updater_passes_scalars_when_not_aggregating():
    seen = []

    class OnePerCall(mx1.optimizer.Optimizer):
        def update_multi_precision(self, index, weight, grad, state):
            seen.append((type(index).__name__, type(weight).__name__))
            self._update_count(index)
            weight -= self._get_lr(index) * grad

    opt = OnePerCall(learning_rate=1.0)
    updater = mx1.optimizer.get_updater(opt)
    ws = [np.zeros(2, np.float32), np.zeros(3, np.float32)]
    updater([0, 1], [np.ones(2, np.float32), np.ones(3, np.float32)], ws)
    updater(b"2", np.ones(1, np.float32), np.zeros(1, np.float32))
    assert seen == [("int", "ndarray"), ("int", "ndarray"), ("str", "ndarray")]
    np.testing.assert_array_equal(ws[0], -1.0)
    assert set(updater.states) == {0, 1, "2"}
    # an aggregating optimizer gets one call per dtype chunk of aggregate_num tensors
    sgd = mx1.optimizer.create("sgd", learning_rate=1.0)
    agg = mx1.optimizer.get_updater(sgd)
    assert agg.aggregate_updates and sgd.aggregate_num == 4
    ws = [np.zeros(2, np.float32) for _ in range(5)]
    agg(list(range(5)), [np.ones(2, np.float32)] * 5, ws)
    np.testing.assert_array_equal(np.stack(ws), -1.0)


def test_1x_saved_optimizer_holds_no_state_copies():
    opt = mx1.optimizer.create("sgd", momentum=0.9, multi_precision=True)
    updater = mx1.optimizer.get_updater(opt)
    w = np.ones(1000, np.float16)
    updater(0, np.ones(1000, np.float16), w)
    with_opt = updater.get_states(dump_optimizer=True)
    without = updater.get_states()
    assert len(with_opt) - len(without) < 4000       # settings only, not a second copy of the states
