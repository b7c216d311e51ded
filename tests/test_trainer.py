"""Trainer and Parameter: gluon Trainer semantics without gluon."""
import os
import pickle

import ml_dtypes
import numpy as np
import pytest

import mxopt_numba as mxo
from mxopt_numba._state_io import StateFormatError

BF16 = np.dtype(ml_dtypes.bfloat16)


def make_params(shapes=((3, 4), (3,)), names=("fc_weight", "fc_bias"), dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return [mxo.Parameter(n, rng.standard_normal(s).astype(dtype)) for n, s in zip(names, shapes)]


def write_grads(params, rng):
    for p in params:
        p.grad[...] = rng.standard_normal(p.shape)


# ---------------------------------------------------------------------- basic semantics

def test_step_rescales_by_batch_size():
    params = make_params()
    old = [p.data.copy() for p in params]
    trainer = mxo.Trainer(params, "sgd", {"learning_rate": 1.0})
    rng = np.random.default_rng(1)
    write_grads(params, rng)
    for batch in (4, 3):
        old = [p.data.copy() for p in params]
        grads = [p.grad.copy() for p in params]
        trainer.step(batch)
        for p, w, g in zip(params, old, grads):
            np.testing.assert_allclose(p.data, w - g / batch, rtol=1e-6, atol=1e-7)
        write_grads(params, rng)
    assert trainer.optimizer.rescale_grad == pytest.approx(1 / 3)


def test_momentum_and_lr_mult_change_take_effect():
    p = mxo.Parameter("x_weight", np.zeros(5, np.float32))
    trainer = mxo.Trainer([p], "sgd", {"learning_rate": 1.0, "momentum": 0.5})
    p.grad = np.ones(5)
    trainer.step(1)
    np.testing.assert_array_equal(p.data, -1.0)
    p.lr_mult = 0.5                      # read at the next step
    p.grad = np.ones(5)
    trainer.step(1)                      # m = 0.5 * -1 - 0.5 = -1
    np.testing.assert_array_equal(p.data, -2.0)


def test_wd_mult_from_parameter():
    a = mxo.Parameter("a_weight", np.full(4, 2.0, np.float32), wd_mult=0.0)
    b = mxo.Parameter("b_weight", np.full(4, 2.0, np.float32))
    trainer = mxo.Trainer([a, b], "sgd", [("learning_rate", 1.0), ("wd", 0.1)])
    a.grad[...] = 0
    b.grad[...] = 0
    trainer.step(1)
    np.testing.assert_array_equal(a.data, 2.0)
    np.testing.assert_allclose(b.data, 2.0 * 0.9, rtol=1e-6)


def test_order_names_and_shared_parameters():
    p = {k: mxo.Parameter(k, np.zeros(2, np.float32)) for k in ("c_weight", "a_bias", "b_weight")}
    trainer = mxo.Trainer(p, "sgd")
    assert trainer.param_idx2name == {0: "a_bias", 1: "b_weight", 2: "c_weight"}
    assert trainer.optimizer.idx2name == trainer.param_idx2name
    assert trainer.optimizer.param_dict is trainer.param_dict
    assert [q.name for q in trainer.params] == ["a_bias", "b_weight", "c_weight"]
    shared = mxo.Parameter("s_weight", np.zeros(3, np.float32))
    trainer = mxo.Trainer([shared, shared], "sgd", {"learning_rate": 1.0})
    assert len(trainer.params) == 1
    shared.grad = np.ones(3)
    trainer.step(1)
    np.testing.assert_array_equal(shared.data, -1.0)   # updated once


def test_optimizer_instance_gets_param_dict():
    params = make_params()
    opt = mxo.optimizer.create("sgd", learning_rate=0.5)
    trainer = mxo.Trainer(params, opt)
    assert trainer.optimizer is opt
    assert opt.param_dict is trainer.param_dict
    assert opt.idx2name == {0: "fc_weight", 1: "fc_bias"}


def test_one_updater_call_with_persistent_lists():
    params = make_params(shapes=[(4, 3), (5,), (2, 2)], names=["a_weight", "b_bias", "c_weight"])
    trainer = mxo.Trainer(params, "sgd", {"learning_rate": 0.1, "momentum": 0.9,
                                          "aggregate_num": np.inf})
    calls = []
    opt = trainer.optimizer
    original = opt.update_multi_precision

    def spy(indices, weights, grads, states):
        calls.append(list(indices))
        original(indices, weights, grads, states)

    opt.update_multi_precision = spy
    rng = np.random.default_rng(0)
    lists = None
    for _ in range(3):
        write_grads(params, rng)
        trainer.step(2)
        if lists is None:
            lists = trainer._lists
        assert trainer._lists is lists
    assert calls == [[0, 1, 2]] * 3
    assert len(opt._plans) == 1          # the launch plan was built once


def test_learning_rate_and_scheduler():
    params = make_params()
    trainer = mxo.Trainer(params, "sgd", {"learning_rate": 0.3})
    assert trainer.learning_rate == pytest.approx(0.3)
    trainer.set_learning_rate(0.2)
    assert trainer.learning_rate == pytest.approx(0.2)
    sched = mxo.lr_scheduler.FactorScheduler(step=2, factor=0.1, base_lr=1.0)
    trainer = mxo.Trainer(params, "sgd", {"lr_scheduler": sched})
    with pytest.raises(UserWarning):
        trainer.set_learning_rate(0.5)
    seen = []
    rng = np.random.default_rng(0)
    for _ in range(6):
        write_grads(params, rng)
        trainer.step(1)
        seen.append(trainer.learning_rate)
    np.testing.assert_allclose(seen, [1, 1, 0.1, 0.1, 0.01, 0.01], rtol=1e-12)


def test_communicator_hook():
    class Doubler:
        calls = 0

        def allreduce(self, arrays):
            Doubler.calls += 1
            for a in arrays:
                a *= 2

    p = mxo.Parameter("w_weight", np.zeros(3, np.float32))
    trainer = mxo.Trainer([p], "sgd", {"learning_rate": 1.0}, communicator=Doubler())
    p.grad = np.ones(3)
    trainer.step(1)
    np.testing.assert_array_equal(p.data, -2.0)
    p.grad = np.ones(3)
    trainer.update(1)                    # no all-reduce
    np.testing.assert_array_equal(p.data, -3.0)
    assert Doubler.calls == 1


# ---------------------------------------------------------------------- stale gradients

def test_stale_gradient_raises_and_can_be_ignored():
    a, b = make_params()
    trainer = mxo.Trainer([a, b], "sgd", {"learning_rate": 1.0})
    with pytest.raises(UserWarning, match="fc_weight"):
        trainer.step(1)                  # nothing written yet
    a.grad[...] = 1
    b_old = b.data.copy()
    with pytest.raises(UserWarning, match="fc_bias"):
        trainer.step(1)
    a_old = a.data.copy()
    trainer.step(1, ignore_stale_grad=True)
    np.testing.assert_array_equal(a.data, a_old - 1)
    np.testing.assert_array_equal(b.data, b_old)
    # both stale now: nothing moves
    trainer.step(1, ignore_stale_grad=True)
    np.testing.assert_array_equal(a.data, a_old - 1)


def test_fresh_rules():
    a = mxo.Parameter("a_weight", np.zeros(3, np.float32))
    assert not a.fresh_grad
    a.zero_grad()
    assert not a.fresh_grad
    g = a.grad
    assert a.fresh_grad
    trainer = mxo.Trainer([a], "sgd", {"learning_rate": 1.0})
    g[...] = 1
    trainer.step(1)
    assert not a.fresh_grad
    g[...] = 1                           # a kept reference does not count...
    with pytest.raises(UserWarning):
        trainer.step(1)
    a.mark_fresh()                       # ...unless declared
    trainer.step(1)
    a.set_grad(np.ones(3))
    trainer.step(1)
    np.testing.assert_array_equal(a.data, -3.0)


def test_grad_req_null_and_add():
    frozen = mxo.Parameter("f_weight", np.ones(2, np.float32), grad_req="null")
    acc = mxo.Parameter("g_weight", np.zeros(2, np.float32), grad_req="add")
    trainer = mxo.Trainer([frozen, acc], "sgd", {"learning_rate": 1.0})
    with pytest.raises(RuntimeError, match="grad_req='null'"):
        frozen.grad
    acc.set_grad(np.ones(2))
    acc.set_grad(np.ones(2))             # accumulates
    trainer.step(1)
    np.testing.assert_array_equal(acc.data, -2.0)
    np.testing.assert_array_equal(frozen.data, 1.0)
    trainer.zero_grad()
    np.testing.assert_array_equal(acc._grad, 0.0)
    frozen.grad_req = "write"            # now it trains
    frozen.grad = np.ones(2)
    acc.set_grad(np.ones(2))
    trainer.step(1)
    np.testing.assert_array_equal(frozen.data, 0.0)


# ---------------------------------------------------------------------- save / load

def _run(trainer, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g
        trainer.step(2)


@pytest.mark.parametrize("dtype, mp", [(np.float32, False), (np.float16, True), (BF16, True)])
def test_save_load_mid_training_same_trajectory(tmp_path, dtype, mp):
    rng = np.random.default_rng(3)
    shapes = [(4, 5), (5,), (3, 3)]
    names = ["l1_weight", "l1_bias", "l2_weight"]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(8)]

    def fresh():
        sched = mxo.lr_scheduler.FactorScheduler(step=3, factor=0.5, base_lr=0.2)
        params = make_params(shapes, names, dtype=dtype, seed=5)
        params[1].lr_mult = 2.0
        trainer = mxo.Trainer(params, "sgd", {"momentum": 0.9, "wd": 0.01, "lr_scheduler": sched,
                                              "multi_precision": mp})
        return params, trainer

    ref_params, ref = fresh()
    _run(ref, ref_params, grads)

    params, trainer = fresh()
    _run(trainer, params, grads[:4])
    path = tmp_path / "states.bin"
    trainer.save_states(path)
    saved = [p.data.copy() for p in params]

    # a new trainer with other settings: the file's optimizer replaces them
    params2 = make_params(shapes, names, dtype=dtype, seed=9)
    for p, w in zip(params2, saved):
        p.set_data(w)
    params2[1].lr_mult = 2.0
    trainer2 = mxo.Trainer(params2, "sgd", {"learning_rate": 0.7})
    trainer2.load_states(path)
    assert trainer2.optimizer.param_dict is trainer2.param_dict
    assert trainer2.optimizer.idx2name == trainer2.param_idx2name
    _run(trainer2, params2, grads[4:])
    for p, q in zip(params2, ref_params):
        np.testing.assert_array_equal(p.data, q.data)


def test_lr_mult_honoured_after_load(tmp_path):
    params = make_params()
    trainer = mxo.Trainer(params, "sgd", {"learning_rate": 0.1})
    trainer.save_states(tmp_path / "s")
    trainer.load_states(tmp_path / "s")
    assert trainer.optimizer._get_lr(0) == pytest.approx(0.1)
    params[0].lr_mult = 2.0
    assert trainer.optimizer._get_lr(0) == pytest.approx(0.2)


def _trained(params, **opt):
    trainer = mxo.Trainer(params, "sgd", {"momentum": 0.9, **opt})
    for p in params:
        p.grad = np.ones(p.shape)
    trainer.step(1)
    return trainer


def test_load_rejects_bad_files(tmp_path):
    params = make_params()
    trainer = _trained(params)
    good = tmp_path / "good"
    trainer.save_states(good)
    data = good.read_bytes()
    opt = trainer.optimizer

    bad = tmp_path / "bad"
    for content in (b"", b"garbage", data[: len(data) // 2], pickle.dumps({0: np.zeros(3)})):
        bad.write_bytes(content)
        with pytest.raises(StateFormatError, match="bad"):
            trainer.load_states(bad)
    assert trainer.optimizer is opt                  # unchanged after a failed load

    # states for an index this trainer does not have
    more = _trained(make_params(shapes=[(3, 4), (3,), (2,)], names=["a_weight", "b_bias", "c_bias"]))
    more.save_states(bad)
    with pytest.raises(StateFormatError, match="index 2.*2 parameters"):
        trainer.load_states(bad)
    # shapes that do not match
    _trained(make_params(shapes=[(4, 4), (3,)])).save_states(bad)
    with pytest.raises(StateFormatError, match=r"fc_weight.*shape \(4, 4\)"):
        trainer.load_states(bad)
    # a multi-precision state for a float32 weight
    _trained(make_params(dtype=np.float16), multi_precision=True).save_states(bad)
    with pytest.raises(StateFormatError, match="does not fit"):
        trainer.load_states(bad)
    assert trainer.optimizer is opt
    trainer.load_states(good)                        # still fine


def test_save_is_atomic(tmp_path, monkeypatch):
    params = make_params()
    trainer = _trained(params)
    path = tmp_path / "s.states"
    path.write_bytes(b"old content")
    trainer.save_states(path)
    assert path.read_bytes() != b"old content"
    assert os.listdir(tmp_path) == ["s.states"]
    before = path.read_bytes()

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        trainer.save_states(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["s.states"]


# ---------------------------------------------------------------------- errors

def test_trainer_errors():
    params = make_params()
    with pytest.raises(ValueError, match="optimizer instance"):
        mxo.Trainer(params, mxo.optimizer.create("sgd"), {"learning_rate": 0.1})
    with pytest.raises(ValueError, match="single Parameter"):
        mxo.Trainer(params[0], "sgd")
    with pytest.raises(ValueError, match="Parameter objects"):
        mxo.Trainer([np.zeros(3)], "sgd")
    with pytest.raises(ValueError, match="dict of name"):
        mxo.Trainer("fc_weight", "sgd")
    with pytest.raises(TypeError, match="registered name or an Optimizer"):
        mxo.Trainer(params, 3)
    with pytest.raises(ValueError, match="cannot find optimizer"):
        mxo.Trainer(params, "no_such_optimizer")
    with pytest.raises(ValueError, match="entry"):
        mxo.Trainer(params, "sgd", [("learning_rate", 0.1, 3)])
    with pytest.raises(ValueError, match="twice"):
        mxo.Trainer(params, "sgd", [("wd", 0.1), ("wd", 0.2)])
    with pytest.raises(ValueError, match="param_idx2name"):
        mxo.Trainer(params, "sgd", {"param_idx2name": {}})
    with pytest.raises(TypeError, match="unexpected keyword"):
        mxo.Trainer(params, "sgd", {"momentom": 0.9})
    trainer = mxo.Trainer(params, "sgd")
    for bad in (0, -1, float("nan"), "4", True):
        with pytest.raises(ValueError, match="batch_size"):
            trainer.step(bad)


def test_parameter_validation_and_initialize():
    with pytest.raises(TypeError, match="numpy array"):
        mxo.Parameter("w", [1.0, 2.0])
    with pytest.raises(TypeError, match="dtype int64"):
        mxo.Parameter("w", np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="C-contiguous"):
        mxo.Parameter("w", np.zeros((3, 4), np.float32).T)
    with pytest.raises(ValueError, match="grad has shape"):
        mxo.Parameter("w", np.zeros(3, np.float32), grad=np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="grad_req"):
        mxo.Parameter("w", np.zeros(3, np.float32), grad_req="sometimes")
    with pytest.raises(TypeError, match="lr_mult"):
        mxo.Parameter("w", np.zeros(3, np.float32), lr_mult="2")
    data = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="shares memory"):
        mxo.Parameter("w", data, grad=data)
    p = mxo.Parameter("w", data)
    assert p.grad.dtype == np.float32 and p.grad.shape == (3,)
    with pytest.raises(ValueError, match="shape"):
        p.grad = np.zeros(4)
    p.data = [1, 2, 3]
    assert p.data is data and data.tolist() == [1, 2, 3]

    mxo.random.seed(0)
    w = mxo.Parameter("fc_weight", np.zeros((8, 6), BF16)).initialize(mxo.initializer.Xavier())
    b = mxo.Parameter("fc_bias", np.ones(8, np.float32)).initialize(mxo.initializer.Xavier())
    assert np.abs(w.data.astype(np.float32)).max() > 0
    assert np.abs(w.data.astype(np.float32)).max() <= np.sqrt(3 / 7) + 1e-2
    np.testing.assert_array_equal(b.data, 0.0)
    u = mxo.Parameter("u_weight", np.zeros(100, np.float32)).initialize()
    assert 0 < np.abs(u.data).max() <= 0.07
    assert "fc_weight" in repr(w)


# ---------------------------------------------------------------------- global-norm clipping

def test_clip_global_norm_option_clips_the_rescaled_gradients():
    rng = np.random.default_rng(11)
    shapes, names = [(6, 5), (5,)], ["l_weight", "l_bias"]
    params = make_params(shapes, names, dtype=np.float64, seed=2)
    trainer = mxo.Trainer(params, "sgd", {"learning_rate": 0.5, "rescale_grad": 2.0}, clip_global_norm=0.3)
    for p in params:
        p.grad[...] = rng.standard_normal(p.shape) * 10
    batch = 4
    w0 = [p.data.copy() for p in params]
    g0 = [p.grad.copy() for p in params]
    r = 2.0 / batch
    norm = np.sqrt(sum(np.sum((r * g) ** 2) for g in g0))
    assert norm > 0.3
    trainer.step(batch)
    assert trainer.last_grad_norm == pytest.approx(norm, rel=1e-12)
    # what the rule saw: the rescaled gradients, scaled to the global norm 0.3
    seen = [r * p.grad for p in params]
    assert np.sqrt(sum(np.sum(g ** 2) for g in seen)) == pytest.approx(0.3, rel=1e-7)
    # clip_global_norm's scale on the raw buffers: max_norm / (norm + 1e-8), in raw units
    scale = (0.3 / r) / (norm / r + 1e-8)
    for p, w, g in zip(params, w0, g0):
        np.testing.assert_allclose(p.grad, g * scale, rtol=1e-13)
        np.testing.assert_allclose(p.data, w - 0.5 * r * g * scale, rtol=1e-12, atol=1e-14)


def test_clip_global_norm_option_below_the_limit_changes_nothing():
    rng = np.random.default_rng(12)
    a, b = make_params(seed=3), make_params(seed=3)
    ta = mxo.Trainer(a, "adam", {"learning_rate": 0.01}, clip_global_norm=1e6)
    tb = mxo.Trainer(b, "adam", {"learning_rate": 0.01})
    for _ in range(3):
        for p, q in zip(a, b):
            p.grad = q.grad = rng.standard_normal(p.shape).astype(np.float32)
        ta.step(2)
        tb.step(2)
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.data, q.data)


def test_clip_global_norm_option_is_checked():
    for bad in (0, -1, float("inf"), "x", True):
        with pytest.raises(ValueError, match="clip_global_norm"):
            mxo.Trainer(make_params(), "sgd", clip_global_norm=bad)


# ---------------------------------------------------------------------- in-memory state dict

@pytest.mark.parametrize("dtype, mp", [(np.float32, False), (BF16, True)])
def test_state_dict_mid_training_same_trajectory(dtype, mp):
    rng = np.random.default_rng(4)
    shapes, names = [(4, 5), (5,)], ["l1_weight", "l1_bias"]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(6)]

    def fresh(seed=5, **kw):
        params = make_params(shapes, names, dtype=dtype, seed=seed)
        sched = mxo.lr_scheduler.FactorScheduler(step=2, factor=0.5, base_lr=0.1)
        return params, mxo.Trainer(params, "adam", {"lr_scheduler": sched, "multi_precision": mp, **kw})

    ref_params, ref = fresh()
    _run(ref, ref_params, grads)
    params, trainer = fresh()
    _run(trainer, params, grads[:3])
    state = trainer.state_dict()
    assert state["states"] == trainer.state_dict()["states"]
    saved = [p.data.copy() for p in params]
    _run(trainer, params, grads[3:4])             # later steps do not change the dict
    params2, trainer2 = fresh(seed=9, beta1=0.5)
    for p, w in zip(params2, saved):
        p.set_data(w)
    trainer2.load_state_dict(state)
    assert trainer2.optimizer.beta1 == 0.9
    _run(trainer2, params2, grads[3:])
    for p, q in zip(params2, ref_params):
        np.testing.assert_array_equal(p.data, q.data)


def test_state_dict_matches_the_file(tmp_path):
    params = make_params()
    trainer = mxo.Trainer(params, "sgd", {"momentum": 0.9})
    _run(trainer, params, [[np.ones(p.shape, np.float32) for p in params]])
    trainer.save_states(tmp_path / "s.bin")
    other = mxo.Trainer(make_params(), "sgd", {"momentum": 0.9})
    other.load_state_dict({"states": (tmp_path / "s.bin").read_bytes()})
    assert other.state_dict()["states"] == trainer.state_dict()["states"]


def test_load_state_dict_rejects_bad_input():
    params = make_params()
    trainer = mxo.Trainer(params, "sgd", {"momentum": 0.9})
    before = trainer.state_dict()
    for bad in (None, {}, {"states": "x"}, {"states": b"junk"},
                {"format": "other", "version": 1, "states": before["states"]},
                {"format": "mxopt_numba.Trainer", "version": 2, "states": before["states"]}):
        with pytest.raises(StateFormatError):
            trainer.load_state_dict(bad)
    bigger = mxo.Trainer(make_params(((3, 4), (3,), (2,)), ("a", "b", "c")), "sgd", {"momentum": 0.9})
    _run(bigger, bigger.params, [[np.ones(p.shape, np.float32) for p in bigger.params]])
    with pytest.raises(StateFormatError, match="parameter index 2"):
        trainer.load_state_dict(bigger.state_dict())
    assert trainer.state_dict()["states"] == before["states"]


# ---------------------------------------------------------------------- one launch by default

def test_default_is_one_launch_for_the_whole_model():
    assert mxo.Trainer(make_params(), "adam").optimizer.aggregate_num == np.inf
    assert mxo.Trainer(make_params(), "adam", {"aggregate_num": 2}).optimizer.aggregate_num == 2
    inst = mxo.optimizer.create("adam")
    assert mxo.Trainer(make_params(), inst).optimizer.aggregate_num == 1


@pytest.mark.parametrize("name, kwargs", [
    ("sgd", {"momentum": 0.9, "wd": 1e-3}),
    ("adam", {"wd": 1e-3, "clip_gradient": 0.5}),
    ("lamb", {}),
    ("lars", {"momentum": 0.9}),
    ("nag", {"momentum": 0.9}),
])
def test_default_aggregation_is_bitwise_the_same_as_one_tensor_per_launch(name, kwargs):
    rng = np.random.default_rng(21)
    shapes = [(40, 30), (30,), (7, 3, 3), (70000,), (3,)]
    names = ["a_weight", "a_bias", "b_weight", "c_weight", "c_gamma"]
    dtypes = [np.float32, np.float32, np.float16, np.float32, BF16]
    runs = []
    for agg in (None, 1):
        params = [mxo.Parameter(n, np.random.default_rng(k).standard_normal(s).astype(d))
                  for k, (n, s, d) in enumerate(zip(names, shapes, dtypes))]
        opt_params = dict(kwargs, learning_rate=0.01, multi_precision=True)
        if agg is not None:
            opt_params["aggregate_num"] = agg
        trainer = mxo.Trainer(params, name, opt_params)
        assert trainer.optimizer.aggregate_num == (np.inf if agg is None else 1)
        runs.append((params, trainer))
    for _ in range(4):
        gs = [rng.standard_normal(s) for s in shapes]
        for params, trainer in runs:
            for p, g in zip(params, gs):
                p.grad = g.astype(p.dtype)
            trainer.step(3)
    for p, q in zip(*(r[0] for r in runs)):
        assert p.data.tobytes() == q.data.tobytes(), p.name
