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
