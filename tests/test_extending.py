"""Extending the library the way MXNet's docs say: user optimizers (1.x ``update`` and
2.x ``step``/``fused_step``), schedulers and initializers.

Every expected value is an independent float64 re-statement of what MXNet does with the
same subclass (its base ``update`` dispatches to ``step``/``fused_step`` and the subclass
counts; its multi-precision wrapper hands the subclass the float32 master copy).
"""
import math
import warnings

import numpy as np
import pytest

import mxopt_numba as mxo
from mxopt_numba.optimizer import optimizer as base_mod

Optimizer = mxo.optimizer.Optimizer
MOM = 0.9


# ---------------------------------------------------------------------- the two reproducers

def test_custom_step_counts_once():
    class MyOpt(Optimizer):
        def step(self, indices, weights, grads, states):
            for i, w, g in zip(indices, weights, grads):
                self._update_count(i)
                w -= self._get_lr(i) * g

    opt = MyOpt(learning_rate=0.1)
    w = np.zeros(3, np.float32)
    opt.update([0], [w], [np.ones(3, np.float32)], [None])
    assert (opt._index_update_count[0], opt.num_update) == (1, 1)
    np.testing.assert_allclose(w, -0.1)
    opt.update(0, w, np.ones(3, np.float32), None)          # 1.x scalar form
    assert (opt._index_update_count[0], opt.num_update) == (2, 2)


def test_custom_update_gets_master_copy():
    class MomentumSGD(Optimizer):
        def create_state(self, i, w):
            return np.zeros(w.shape, w.dtype)

        def update(self, indices, weights, grads, states):
            for i, w, g, m in zip(indices, weights, grads, states):
                assert w.dtype == np.float32 and g.dtype == np.float32 and m.dtype == np.float32
                m *= 0.9
                m -= self._get_lr(i) * g
                w += m

    opt = MomentumSGD(learning_rate=0.1, multi_precision=True)
    w = np.ones(4, np.float16)
    s = opt.create_state_multi_precision(0, w)
    opt.update_multi_precision([0], [w], [np.full(4, .5, np.float16)], [s])
    master, mom = s
    np.testing.assert_allclose(mom, -0.05, rtol=1e-6)
    np.testing.assert_allclose(master, 0.95, rtol=1e-6)
    np.testing.assert_array_equal(w, master.astype(np.float16))


# ---------------------------------------------------------------------- built-in rules

@pytest.mark.parametrize("name,kwargs", [("sgd", {"momentum": 0.9}), ("adam", {}), ("nadam", {}),
                                         ("lamb", {"aggregate_num": 1}), ("sgld", {})])
@pytest.mark.parametrize("fused", [True, False])
def test_builtin_rules_still_count_once(name, kwargs, fused):
    opt = mxo.optimizer.create(name, use_fused_step=fused, **kwargs) if name in ("sgd", "adam") else \
        mxo.optimizer.create(name, **kwargs)
    updater = mxo.optimizer.get_updater(opt)
    ws = [np.ones((3, 2), np.float32), np.ones(4, np.float32)]
    for t in range(1, 4):
        updater([0, 1], [np.full(w.shape, 0.1, np.float32) for w in ws], ws)
        assert opt.num_update == t
        assert dict(opt._index_update_count) == {0: t, 1: t}


def test_subclass_of_builtin_without_own_rule_counts_once():
    class MyAdam(mxo.optimizer.Adam):
        def create_state(self, index, weight):          # no new update rule
            return super().create_state(index, weight)

    opt = MyAdam()
    w = np.ones(3, np.float32)
    opt.update(0, w, np.ones(3, np.float32), opt.create_state(0, w))
    assert opt.num_update == 1


def test_counts_in_step_attribute_overrides_the_guess():
    class LibraryStyle(Optimizer):
        counts_in_step = False                          # expects the base class to count

        def step(self, indices, weights, grads, states):
            for i, w, g in zip(indices, weights, grads):
                w -= self._get_lr(i) * g

    opt = LibraryStyle(learning_rate=1.0)
    w = np.zeros(2, np.float32)
    opt.update([3], [w], [np.ones(2, np.float32)], [None])
    assert opt._index_update_count[3] == 1
    np.testing.assert_array_equal(w, -1.0)


# ---------------------------------------------------------------------- the four custom styles
# A momentum SGD with coupled weight decay and a 1 / sqrt(t) learning-rate decay driven
# by the optimizer's own count, written in each documented style.

def _reference_run(w0, grads, lr, wd, mp):
    """float64 re-statement: m <- 0.9 m - lr/sqrt(t) (g + wd w); w <- w + m; 16-bit
    weights with a master copy round the float32 master once per step."""
    w = w0.astype(np.float64)
    m = np.zeros_like(w)
    out = []
    for t, g in enumerate(grads, 1):
        m = MOM * m - lr / math.sqrt(t) * (g.astype(np.float64) + wd * w)
        w = w + m
        out.append(w.astype(w0.dtype) if mp else w.copy())
    return out


class _Base(Optimizer):
    def create_state(self, index, weight):
        return np.zeros(weight.shape, weight.dtype)

    def _one(self, index, weight, grad, mom, counted):
        if not counted:
            self._update_count(index)
        t = self._index_update_count[index]
        lr = self._get_lr(index) / math.sqrt(t)
        mom *= MOM
        mom -= lr * (grad + self._get_wd(index) * weight)
        weight += mom


class ScalarUpdateOpt(_Base):
    """MXNet 1.x docs: ``update(index, weight, grad, state)`` for one tensor."""

    def update(self, index, weight, grad, state):
        assert not isinstance(index, (list, tuple))
        self._one(index, weight, grad, state, False)


class ListUpdateOpt(_Base):
    """``update(indices, weights, grads, states)`` on lists, written by the user."""

    def update(self, indices, weights, grads, states):
        for item in zip(indices, weights, grads, states):
            self._one(*item, False)


class StepOpt(_Base):
    """MXNet 2.x docs: ``step`` counts the update itself."""

    def step(self, indices, weights, grads, states):
        for item in zip(indices, weights, grads, states):
            self._one(*item, False)


class FusedStepOpt(_Base):
    """MXNet 2.x with both paths: ``fused_step`` counts all indices in one call."""

    def __init__(self, **kwargs):
        kwargs.setdefault("use_fused_step", True)
        super().__init__(**kwargs)

    def step(self, indices, weights, grads, states):
        for item in zip(indices, weights, grads, states):
            self._one(*item, False)

    def fused_step(self, indices, weights, grads, states):
        self._update_count(indices)
        for item in zip(indices, weights, grads, states):
            self._one(*item, True)


STYLES = ["scalarupdateopt", "listupdateopt", "stepopt", "fusedstepopt"]


@pytest.fixture(autouse=True, scope="module")
def _registered():
    """Register this module's classes by name for its tests only (other test modules
    check the registries' exact contents)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cls in (ScalarUpdateOpt, ListUpdateOpt, StepOpt, FusedStepOpt):
            mxo.optimizer.register(cls)
        mxo.initializer.register(ArangeInit)
    yield
    for name in STYLES:
        mxo.optimizer.Optimizer.opt_registry.pop(name, None)
    mxo.initializer._registry._classes.pop("arangeinit", None)


def _inputs(dtype, steps=4):
    rng = np.random.default_rng(7)
    w0 = [rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal(5).astype(dtype)]
    grads = [[rng.standard_normal(w.shape).astype(dtype) for w in w0] for _ in range(steps)]
    return w0, grads


def _check(results, w0, grads, dtype, mp, lr=0.05, wd=0.01):
    for i in range(len(w0)):
        ref = _reference_run(w0[i], [g[i] for g in grads], lr, wd, mp)
        for t, (got, want) in enumerate(zip(results[i], ref)):
            if dtype == np.float16:
                np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64),
                                           rtol=2e-3, atol=1e-3, err_msg="tensor %d step %d" % (i, t))
            else:
                np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6,
                                           err_msg="tensor %d step %d" % (i, t))


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("dtype,mp", [(np.float32, False), (np.float16, True)])
@pytest.mark.parametrize("aggregate", [1, 4])
def test_custom_optimizer_through_updater(style, dtype, mp, aggregate):
    w0, grads = _inputs(dtype)
    opt = mxo.optimizer.create(style, learning_rate=0.05, wd=0.01, multi_precision=mp,
                               aggregate_num=aggregate)
    updater = mxo.optimizer.get_updater(opt)
    ws = [w.copy() for w in w0]
    results = [[], []]
    for t, gs in enumerate(grads, 1):
        if aggregate > 1:
            updater([0, 1], gs, ws)
        else:
            for i in range(2):
                updater(i, gs[i], ws[i])
        assert opt.num_update == t and dict(opt._index_update_count) == {0: t, 1: t}
        for i in range(2):
            results[i].append(ws[i].copy())
    _check(results, w0, grads, dtype, mp)
    if mp:
        for i in range(2):
            master, mom = updater.states[i]
            assert master.dtype == np.float32 and mom.dtype == np.float32
            np.testing.assert_array_equal(ws[i], master.astype(np.float16))


@pytest.mark.parametrize("style", STYLES)
def test_custom_optimizer_direct_scalar_calls(style):
    w0, grads = _inputs(np.float16)
    opt = mxo.optimizer.create(style, learning_rate=0.05, wd=0.01, multi_precision=True)
    ws = [w.copy() for w in w0]
    states = [opt.create_state_multi_precision(i, w) for i, w in enumerate(ws)]
    results = [[], []]
    for gs in grads:
        for i in range(2):
            opt.update_multi_precision(i, ws[i], gs[i], states[i])
            results[i].append(ws[i].copy())
    _check(results, w0, grads, np.float16, True)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("dtype,mp", [(np.float32, False), (np.float16, True)])
def test_custom_optimizer_trainer_save_load(style, dtype, mp, tmp_path):
    w0, grads = _inputs(dtype, steps=4)
    names = ["fc_weight", "fc_bias"]

    def make():
        params = [mxo.Parameter(n, w.copy()) for n, w in zip(names, w0)]
        trainer = mxo.Trainer(params, style, {"learning_rate": 0.05, "wd": 0.01,
                                              "multi_precision": mp})
        return params, trainer

    params, trainer = make()
    results = [[], []]
    for t, gs in enumerate(grads):
        if t == 2:                       # save, rebuild everything, load, carry on
            fname = str(tmp_path / "states")
            trainer.save_states(fname)
            data = [p.data.copy() for p in params]
            params, trainer = make()
            for p, d in zip(params, data):
                p.data[...] = d
            trainer.load_states(fname)
            assert trainer.optimizer.num_update == 2
        for p, g in zip(params, gs):
            p.grad[...] = g
        trainer.step(1)
        for i, p in enumerate(params):
            results[i].append(p.data.copy())
    _check(results, w0, grads, dtype, mp)


def test_custom_step_with_row_sparse_gradient_sees_it_as_given():
    seen = []

    class Rows(Optimizer):
        def step(self, indices, weights, grads, states):
            for i, w, g in zip(indices, weights, grads):
                self._update_count(i)
                seen.append(type(g).__name__)
                w[g.indices] -= self._get_lr(i) * g.data

    opt = Rows(learning_rate=1.0)
    w = np.zeros((4, 2), np.float32)
    g = mxo.sparse.row_sparse_array((np.ones((1, 2), np.float32), [2]), shape=(4, 2))
    opt.update([0], [w], [g], [None])
    assert seen == ["RowSparseArray"]
    np.testing.assert_array_equal(w[2], -1.0)
    np.testing.assert_array_equal(w[[0, 1, 3]], 0.0)


def test_user_kind_detection():
    assert base_mod._user_update_kind(mxo.optimizer.SGD) is None
    assert base_mod._user_update_kind(ScalarUpdateOpt) == "update"
    assert base_mod._user_update_kind(StepOpt) == "step"
    assert base_mod._user_update_kind(FusedStepOpt) == "step"


# ---------------------------------------------------------------------- schedulers

class StepDecay(mxo.lr_scheduler.LRScheduler):
    """User schedule: halve every 3 updates after a linear warm-up of 2 updates."""

    def __call__(self, num_update):
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)
        return self.base_lr * 0.5 ** (num_update // 3)


def _step_decay_reference(n, base=0.4, warm=2, begin=0.1):
    # MXNet's LRScheduler warm-up: linear from warmup_begin_lr to the base captured at
    # construction, reached at warmup_steps.
    if n < warm:
        return begin + (base - begin) * n / warm
    return base * 0.5 ** (n // 3)


def test_custom_scheduler_values():
    s = StepDecay(base_lr=0.4, warmup_steps=2, warmup_begin_lr=0.1)
    for n in range(12):
        assert s(n) == pytest.approx(_step_decay_reference(n), rel=1e-15)


@pytest.mark.parametrize("name", ["sgd", "stepopt"])
def test_custom_scheduler_drives_the_optimizer(name):
    # MXNet counts before it reads the rate: update t uses lr(t), t = 1, 2, ...
    opt = mxo.optimizer.create(name, lr_scheduler=StepDecay(base_lr=0.4, warmup_steps=2,
                                                            warmup_begin_lr=0.1))
    w = np.zeros(2, np.float64)
    state = opt.create_state(0, w)
    expect = 0.0
    for t in range(1, 8):
        before = w.copy()
        opt.update([0], [w], [np.ones(2)], [state])
        if name == "sgd":
            expect = before - _step_decay_reference(t)
            np.testing.assert_allclose(w, expect, rtol=1e-14)
    assert opt.num_update == 7


# ---------------------------------------------------------------------- initializers

class ArangeInit(mxo.initializer.Initializer):
    """User initializer: weights 0, 1, 2, ... times ``scale``."""

    def __init__(self, scale=1.0):
        super().__init__(scale=scale)
        self.scale = scale

    def _init_weight(self, name, arr):
        arr[...] = (np.arange(arr.size) * self.scale).reshape(arr.shape)


def _mxnet_dispatch(name, shape, scale):
    """What MXNet's base Initializer does with a name: suffix rules, fixed values."""
    if name.endswith("weight"):
        return (np.arange(int(np.prod(shape))) * scale).reshape(shape)
    if name.endswith(("bias", "beta", "min")):
        return np.zeros(shape)
    if name.endswith(("gamma", "max")):
        return np.ones(shape)
    raise ValueError(name)


@pytest.mark.parametrize("name", ["fc1_weight", "fc1_bias", "bn_gamma", "bn_beta", "q_min", "q_max"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_custom_initializer_dispatch(name, dtype):
    init = ArangeInit(scale=0.5)
    arr = np.full((3, 4), 7.0, dtype)
    init(mxo.initializer.InitDesc(name), arr)
    np.testing.assert_array_equal(arr, _mxnet_dispatch(name, (3, 4), 0.5).astype(dtype))


def test_custom_initializer_by_name_dumps_and_attr_override():
    init = mxo.initializer.create("arangeinit", scale=2.0)
    assert isinstance(init, ArangeInit)
    again = mxo.initializer.create(init.dumps())
    assert again == init and again.scale == 2.0
    # an explicit per-parameter initializer beats the suffix rule (MXNet's __init__ attr)
    arr = np.full(4, 9.0, np.float32)
    mxo.initializer.Zero()(mxo.initializer.InitDesc("x_bias", attrs={"__init__": init.dumps()}), arr)
    np.testing.assert_array_equal(arr, np.arange(4) * 2.0)
    with pytest.raises(ValueError, match="Unknown initialization pattern"):
        init(mxo.initializer.InitDesc("running"), np.zeros(2))


def test_custom_scheduler_survives_trainer_save_load(tmp_path):
    def make():
        p = mxo.Parameter("fc_weight", np.zeros(3, np.float64))
        return p, mxo.Trainer([p], "sgd", {"lr_scheduler": StepDecay(base_lr=0.4, warmup_steps=2,
                                                                     warmup_begin_lr=0.1)})
    p, trainer = make()
    for _ in range(4):
        p.grad[...] = 1.0
        trainer.step(1)
    fname = str(tmp_path / "states")
    trainer.save_states(fname)
    data = p.data.copy()
    p, trainer = make()
    p.data[...] = data
    trainer.load_states(fname)
    assert type(trainer.optimizer.lr_scheduler) is StepDecay
    expect = data.copy()
    for t in range(5, 8):
        p.grad[...] = 1.0
        trainer.step(1)
        expect -= _step_decay_reference(t)
        np.testing.assert_allclose(p.data, expect, rtol=1e-14)
