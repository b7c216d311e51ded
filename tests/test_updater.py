"""The Optimizer base class and the Updater: call forms, counts, lr/wd resolution,
multi-precision states, saving and loading, and bad input."""
import pickle
import types
import warnings

import ml_dtypes
import numpy as np
import pytest

import mxopt_numba as mxo
from mxopt_numba._state_io import StateFormatError
from mxopt_numba.optimizer import Optimizer


def sgd(**kw):
    return mxo.optimizer.create("sgd", **kw)


def test_create_is_case_insensitive_and_accepts_aliases():
    assert type(mxo.optimizer.create("SGD")) is mxo.optimizer.SGD
    assert type(Optimizer.create_optimizer("sGd", momentum=0.5)).__name__ == "SGD"
    with pytest.warns(DeprecationWarning):
        assert isinstance(mxo.optimizer.create("ccsgd"), mxo.optimizer.SGD)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match="did you mean 'sgd'|Did you mean 'sgd'"):
        mxo.optimizer.create("sdg")


def test_registering_a_name_twice_warns_and_overrides():
    class Sgd(mxo.optimizer.SGD):
        pass
    original = Optimizer.opt_registry["sgd"]
    try:
        with pytest.warns(UserWarning, match="overrides"):
            mxo.optimizer.register(Sgd)
        assert type(mxo.optimizer.create("sgd")) is Sgd
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mxo.optimizer.register(original)


def test_register_rejects_non_optimizers():
    with pytest.raises(TypeError, match="subclasses of Optimizer"):
        mxo.optimizer.register(int)


def test_one_x_scalar_form_and_two_x_list_form_agree():
    w1 = np.arange(6, dtype=np.float32)
    w2 = w1.copy()
    g = np.full(6, 0.5, np.float32)
    o1, o2 = sgd(momentum=0.9), sgd(momentum=0.9)
    s1, s2 = o1.create_state(0, w1), o2.create_state(0, w2)
    for _ in range(3):
        o1.update(0, w1, g, s1)
        o2.update([0], [w2], [g], [s2])
    np.testing.assert_array_equal(w1, w2)
    assert o1.num_update == o2.num_update == 3


def test_updater_scalar_and_list_calls():
    ws = [np.ones(3, np.float32), np.ones(4, np.float32)]
    gs = [np.full(3, 1.0, np.float32), np.full(4, 2.0, np.float32)]
    u = mxo.optimizer.get_updater(sgd(learning_rate=0.5))
    u(0, gs[0], ws[0])
    u([1], [gs[1]], [ws[1]])
    np.testing.assert_allclose(ws[0], 0.5)
    np.testing.assert_allclose(ws[1], 0.0)
    assert set(u.states) == {0, 1}


def test_counts_are_per_index_and_num_update_is_their_max():
    opt = sgd(begin_num_update=3)
    u = mxo.optimizer.get_updater(opt)
    w, g = np.ones(2, np.float32), np.ones(2, np.float32)
    u(0, g, w)
    u(0, g, w)
    u(1, g, w.copy())
    assert opt._index_update_count[0] == 5
    assert opt._index_update_count[1] == 4
    assert opt.num_update == 5
    assert dict(opt._index_update_count) == {0: 5, 1: 4}


def test_scheduler_sees_the_count_after_incrementing():
    sched = mxo.lr_scheduler.FactorScheduler(step=1, factor=0.5, base_lr=1.0)
    opt = sgd(lr_scheduler=sched)
    assert sched.base_lr == 1.0     # not overwritten by SGD's default learning rate
    w, g = np.zeros(1, np.float32), np.ones(1, np.float32)
    opt.update(0, w, g, None)       # num_update 1 -> lr 1.0
    opt.update(0, w, g, None)       # num_update 2 -> lr 0.5
    np.testing.assert_allclose(w, [-1.5])


def test_explicit_learning_rate_overwrites_the_scheduler_base_lr():
    sched = mxo.lr_scheduler.FactorScheduler(step=1, base_lr=1.0)
    with pytest.warns(UserWarning, match="overwritten"):
        sgd(learning_rate=0.25, lr_scheduler=sched)
    assert sched.base_lr == 0.25


def test_set_learning_rate_with_a_scheduler_is_an_error():
    opt = sgd(lr_scheduler=mxo.lr_scheduler.FactorScheduler(step=1))
    with pytest.raises(UserWarning, match="LRScheduler"):
        opt.set_learning_rate(0.1)
    plain = sgd()
    plain.set_learning_rate(0.3)
    assert plain.learning_rate == 0.3


def test_lr_and_wd_resolution_order():
    params = {0: types.SimpleNamespace(lr_mult=0.25, wd_mult=3.0)}
    opt = sgd(learning_rate=1.0, wd=0.1, param_idx2name={1: "fc_bias", 2: "fc_weight"}, param_dict=params)
    opt.set_lr_mult({0: 9.0, 1: 0.5, "fc_weight": 2.0, "fc_bias": 7.0})
    opt.set_wd_mult({"fc_bias": 0.0})
    # param_dict beats everything, an index key beats a name key, names via idx2name
    assert opt._get_lrs([0, 1, 2, 3]) == [0.25, 0.5, 2.0, 1.0]
    assert opt._get_wds([0, 1, 2, 3]) == pytest.approx([0.3, 0.0, 0.1, 0.1])


def test_multi_precision_state_layout_and_warning():
    w16 = np.ones(5, np.float16)
    opt = sgd(momentum=0.9, multi_precision=True)
    master, mom = opt.create_state_multi_precision(0, w16)
    assert master.dtype == np.float32 and mom.dtype == np.float32
    wbf = np.ones(5, ml_dtypes.bfloat16)
    master, mom = opt.create_state_multi_precision(0, wbf)
    assert master.dtype == np.float32
    with pytest.warns(UserWarning, match="multi_precision=True"):
        state = sgd(momentum=0.9).create_state_multi_precision(0, w16)
    assert state.dtype == np.float16


def test_aggregate_num_values():
    assert sgd().aggregate_num == 1
    assert sgd(aggregate_num=None).aggregate_num == 1
    opt = sgd(aggregate_num=np.inf)
    assert opt.aggregate_num == float("inf")
    opt.aggregate_num = 4
    assert mxo.optimizer.get_updater(opt).aggregate_updates


def test_no_cap_on_tensors_per_launch():
    """MXNet's multi-tensor SGD kernels crash above 60 tensors; ours take any number."""
    ws = [np.full(3, float(i), np.float32) for i in range(150)]
    gs = [np.ones(3, np.float32) for _ in ws]
    u = mxo.optimizer.get_updater(sgd(learning_rate=1.0, momentum=0.5, aggregate_num=np.inf))
    u(list(range(150)), gs, ws)
    for i, w in enumerate(ws):
        np.testing.assert_array_equal(w, i - 1.0)


def test_mixed_dtypes_in_one_call():
    ws = [np.ones(4, np.float32), np.ones(4, np.float16), np.ones(4, np.float64), np.ones(4, ml_dtypes.bfloat16)]
    gs = [np.ones(4, w.dtype) for w in ws]
    opt = sgd(learning_rate=0.5, multi_precision=True, aggregate_num=np.inf)
    mxo.optimizer.get_updater(opt)(list(range(4)), gs, ws)
    for w in ws:
        np.testing.assert_array_equal(w.astype(np.float64), 0.5)


def test_gradient_is_never_modified():
    for fused in (True, False):
        w = np.ones(4, np.float32)
        g = np.linspace(-1, 1, 4).astype(np.float32)
        before = g.copy()
        opt = sgd(rescale_grad=3.0, wd=0.1, clip_gradient=0.5, use_fused_step=fused)
        opt.update(0, w, g, opt.create_state(0, w))
        np.testing.assert_array_equal(g, before)


def test_clip_gradient_zero_or_none_means_no_clipping():
    for clip in (None, 0, 0.0):
        w = np.zeros(1, np.float32)
        sgd(learning_rate=1.0, clip_gradient=clip).update(0, w, np.full(1, 5.0, np.float32), None)
        assert w[0] == -5.0


def test_non_contiguous_gradient_is_copied_and_weight_must_be_contiguous():
    w = np.zeros((4, 4), np.float32)
    g = np.ones((4, 4), np.float32).T
    sgd(learning_rate=1.0).update(0, w, g[:, :], None)
    np.testing.assert_array_equal(w, -1.0)
    with pytest.raises(ValueError, match="C-contiguous"):
        sgd().update(0, np.zeros((4, 4), np.float32).T, g, None)


@pytest.mark.parametrize("call, exc, match", [
    (lambda o: o.update(0, [1.0, 2.0], np.ones(2, np.float32), None), TypeError, "numpy array"),
    (lambda o: o.update(0, np.ones(2, np.int32), np.ones(2, np.int32), None), TypeError, "dtype int32"),
    (lambda o: o.update(0, np.ones(2, np.float32), np.ones(3, np.float32), None), ValueError, "shape"),
    (lambda o: o.update([0, 1], [np.ones(2, np.float32)], [np.ones(2, np.float32)], [None]), ValueError,
     "weights has 1 entries"),
    (lambda o: o.update([0, 0], [np.ones(2, np.float32)] * 2, [np.ones(2, np.float32)] * 2, [None, None]),
     ValueError, "unique"),
], ids=["weight-list", "int-dtype", "shape-mismatch", "length-mismatch", "duplicate-index"])
def test_bad_input_raises_before_any_update(call, exc, match):
    opt = sgd()
    with pytest.raises(exc, match=match):
        call(opt)
    assert opt.num_update == 0


def test_gradient_aliasing_its_weight_is_rejected():
    w = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="shares memory with its weight"):
        sgd().update(0, w, w, None)


def test_a_bad_tensor_in_a_chunk_leaves_every_tensor_untouched():
    ws = [np.ones(3, np.float32) for _ in range(3)]
    gs = [np.ones(3, np.float32), np.ones(3, np.float32), np.ones(4, np.float32)]
    u = mxo.optimizer.get_updater(sgd(momentum=0.9, aggregate_num=np.inf))
    with pytest.raises(ValueError, match=r"grads\[2\]"):
        u([0, 1, 2], gs, ws)
    for w in ws:
        np.testing.assert_array_equal(w, 1.0)
    assert u.optimizer.num_update == 0


def test_wrong_state_is_rejected():
    opt = sgd(momentum=0.9)
    w = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="elements"):
        opt.update(0, w, np.ones(4, np.float32), np.zeros(3, np.float32))
    opt16 = sgd(momentum=0.9, multi_precision=True)
    with pytest.raises(ValueError, match="create_state_multi_precision"):
        opt16.update(0, np.ones(4, np.float16), np.ones(4, np.float16), np.zeros(4, np.float32))


def _trained_updater(steps=3, **kw):
    opt = mxo.optimizer.create("sgd", momentum=0.9, **kw)
    u = mxo.optimizer.get_updater(opt)
    ws = [np.linspace(-1, 1, 5).astype(np.float32), np.ones((2, 3), np.float16)]
    rng = np.random.default_rng(0)
    for _ in range(steps):
        u([0, "b"], [rng.standard_normal(w.shape).astype(w.dtype) for w in ws], ws)
    return u, ws


def test_states_round_trip_with_optimizer_and_scheduler():
    sched = mxo.lr_scheduler.FactorScheduler(step=2, factor=0.5, base_lr=0.2)
    u, ws = _trained_updater(multi_precision=True, lr_scheduler=sched, wd=0.01,
                             param_idx2name={0: "fc_weight"})
    u.optimizer.set_lr_mult({"fc_weight": 0.5})
    blob = u.get_states(dump_optimizer=True)
    assert blob[:2] == b"PK"            # an npz archive, no pickle inside
    v = mxo.optimizer.get_updater(mxo.optimizer.create("adam" if "adam" in Optimizer.opt_registry else "sgd"))
    v.set_states(blob)
    o, p = v.optimizer, u.optimizer
    assert type(o) is type(p)
    assert (o.momentum, o.wd, o.multi_precision, o.num_update, o.lr_mult, o.idx2name) == \
        (p.momentum, p.wd, p.multi_precision, p.num_update, p.lr_mult, p.idx2name)
    assert dict(o._index_update_count) == dict(p._index_update_count)
    assert o.lr_scheduler is not p.lr_scheduler and o.lr_scheduler(10) == p.lr_scheduler(10)
    for k in u.states:
        for a, b in zip(u.states[k], v.states[k]):
            np.testing.assert_array_equal(a, b)


def test_states_without_optimizer_keep_the_current_optimizer():
    u, _ = _trained_updater()
    other = mxo.optimizer.get_updater(sgd(momentum=0.9))
    opt = other.optimizer
    other.set_states(u.get_states())
    assert other.optimizer is opt
    assert set(other.states) == {0, "b"}


@pytest.mark.parametrize("mutate", [
    lambda b: b[: len(b) // 2],
    lambda b: b[:100] + bytes(50) + b[150:],
    lambda b: b"",
    lambda b: pickle.dumps({"states": {}}),
    lambda b: b"PK" + b"\x00" * 40,
], ids=["truncated", "zeroed", "empty", "pickle", "garbage-zip"])
def test_corrupted_state_data_raises_a_clear_error(mutate):
    u, _ = _trained_updater()
    blob = mutate(u.get_states(dump_optimizer=True))
    v = mxo.optimizer.get_updater(sgd())
    with pytest.raises(StateFormatError):
        v.set_states(blob)


def test_state_file_of_another_kind_is_rejected():
    from mxopt_numba import _state_io
    with pytest.raises(StateFormatError, match="expected 'updater'"):
        mxo.optimizer.get_updater(sgd()).set_states(_state_io.dumps("trainer", {"states": {}}))


def test_pickling_an_optimizer_drops_param_dict():
    opt = sgd(param_dict={0: types.SimpleNamespace(lr_mult=1.0, wd_mult=1.0)})
    again = pickle.loads(pickle.dumps(opt))
    assert again.param_dict == {}
    assert again.lr == opt.lr


def test_a_gradient_of_another_dtype_rebuilds_the_cached_plan():
    """A cached plan chose its kernel for float32 gradients; a float16 gradient for the
    same weight must not be read as float32."""
    opt = sgd(learning_rate=1.0)
    w = np.zeros(4, np.float32)
    opt.update(0, w, np.ones(4, np.float32), None)
    opt.update(0, w, np.ones(4, np.float16), None)
    opt.update(0, w, np.ones(4, np.float64), None)
    np.testing.assert_array_equal(w, -3.0)
