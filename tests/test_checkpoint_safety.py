"""Checkpoints that load again: custom learning-rate schedulers, the random stream of
SGLD, saving through symbolic links; and Parameter setters that name the parameter."""
import importlib
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mxopt_numba as mxo
from mxopt_numba import _state_io, distributed
from mxopt_numba.lr_scheduler import FactorScheduler, LRScheduler
from mxopt_numba._state_io import StateFormatError


# ---------------------------------------------------------------------- schedulers
class WarmStep(LRScheduler):
    """Linear warm-up, then a nested FactorScheduler; attributes of several kinds."""

    def __init__(self, base_lr=0.1, warm=3, drops=(4, 7)):
        super().__init__(base_lr)
        self.warm = warm
        self.drops = drops
        self.inner = FactorScheduler(step=2, factor=0.5, base_lr=base_lr)
        self.calls = {"n": 0, "seen": []}

    def __call__(self, num_update):
        self.calls["n"] += 1
        self.calls["seen"].append(num_update)
        scale = 0.1 ** sum(num_update > d for d in self.drops)
        return self.inner(num_update) * min(1.0, num_update / self.warm) * scale


class WithFunction(WarmStep):
    def __init__(self):
        super().__init__()
        self.shape_fn = abs


class BrokenRoundTrip(WarmStep):
    def load_state_dict(self, state):
        raise ValueError("this class never loads")


class Plain:
    """A callable with base_lr, accepted by the optimizer but not an LRScheduler."""

    base_lr = 0.1

    def __call__(self, num_update):
        return self.base_lr


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return [mxo.Parameter("fc%d_weight" % k, rng.standard_normal(s).astype(np.float32))
            for k, s in enumerate([(3, 4), (5,)])]


def _grads(step, params):
    rng = np.random.default_rng(1000 + step)
    return [rng.standard_normal(p.shape).astype(np.float32) for p in params]


def _steps(trainer, params, start, stop):
    for t in range(start, stop):
        for p, g in zip(params, _grads(t, params)):
            p.grad = g
        trainer.step(2)


def _clone(params):
    return [mxo.Parameter(p.name, p.data.copy()) for p in params]


def test_custom_scheduler_resumes_exactly_through_trainer_checkpoint(tmp_path):
    full = _params()
    ref = mxo.Trainer(full, "sgd", {"momentum": 0.9, "lr_scheduler": WarmStep()})
    _steps(ref, full, 0, 10)

    first = _params()
    trainer = mxo.Trainer(first, "sgd", {"momentum": 0.9, "lr_scheduler": WarmStep()})
    _steps(trainer, first, 0, 5)
    trainer.save_states(tmp_path / "ck")

    resumed = _clone(first)
    again = mxo.Trainer(resumed, "sgd")
    again.load_states(tmp_path / "ck")
    sched = again.optimizer.lr_scheduler
    assert type(sched) is WarmStep and type(sched.inner) is FactorScheduler
    assert sched.drops == (4, 7) and isinstance(sched.drops, tuple)
    assert sched.calls == trainer.optimizer.lr_scheduler.calls
    _steps(again, resumed, 5, 10)
    for a, b in zip(resumed, full):
        np.testing.assert_array_equal(a.data, b.data)
    assert sched.calls == ref.optimizer.lr_scheduler.calls


def test_custom_scheduler_state_dict_round_trips_on_its_own():
    sched = WarmStep(base_lr=0.2, warm=5)
    for n in range(1, 9):
        sched(n)
    state = json.loads(json.dumps(sched.state_dict()))      # JSON-compatible
    other = WarmStep.__new__(WarmStep).load_state_dict(state)
    assert [other(n) for n in range(9, 20)] == [sched(n) for n in range(9, 20)]


@pytest.mark.parametrize("bad, match", [
    (lambda n: 0.1, "lr_scheduler is a function"),
    (Plain(), "lr_scheduler is a Plain"),
    (WithFunction(), r"WithFunction\.shape_fn.*builtin_function_or_method"),
    (BrokenRoundTrip(), "does not load back"),
], ids=["function", "callable-object", "function-attribute", "broken-load_state_dict"])
def test_scheduler_that_cannot_round_trip_is_refused_before_writing(tmp_path, bad, match):
    if callable(bad) and not hasattr(bad, "base_lr"):
        bad.base_lr = 0.1
    params = _params()
    trainer = mxo.Trainer(params, "sgd", {"lr_scheduler": bad})
    _steps(trainer, params, 0, 1)
    target = tmp_path / "ck"
    target.write_bytes(b"previous checkpoint")
    with pytest.raises(TypeError, match=match):
        trainer.save_states(target)
    assert target.read_bytes() == b"previous checkpoint"
    assert os.listdir(tmp_path) == ["ck"]          # no temporary file left either
    with pytest.raises(TypeError, match=match):
        trainer._updater.get_states(dump_optimizer=True)


def test_scheduler_class_defined_in_a_function_is_refused_at_save(tmp_path):
    class Local(LRScheduler):
        def __call__(self, num_update):
            return self.base_lr

    params = _params()
    trainer = mxo.Trainer(params, "sgd", {"lr_scheduler": Local()})
    with pytest.raises(TypeError, match="defined inside a function"):
        trainer.save_states(tmp_path / "ck")
    assert not (tmp_path / "ck").exists()


_USER_MODULE = '''
from mxopt_numba.lr_scheduler import LRScheduler

class Halving(LRScheduler):
    def __init__(self, every):
        super().__init__(0.1)
        self.every = every

    def __call__(self, num_update):
        return self.base_lr * 0.5 ** (num_update // self.every)
'''


def test_loading_resolves_only_modules_already_imported(tmp_path, monkeypatch):
    name = "mxo_user_schedules_ck"
    (tmp_path / (name + ".py")).write_text(_USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    params = _params()
    trainer = mxo.Trainer(params, "sgd", {"lr_scheduler": module.Halving(every=3)})
    _steps(trainer, params, 0, 2)
    trainer.save_states(tmp_path / "ck")

    monkeypatch.delitem(sys.modules, name)
    fresh = mxo.Trainer(_clone(params), "sgd")
    with pytest.raises(StateFormatError, match=r"%s:Halving.*import it" % name):
        fresh.load_states(tmp_path / "ck")
    assert name not in sys.modules          # the file made nothing import it
    assert fresh.optimizer.lr_scheduler is None

    module = importlib.import_module(name)
    fresh.load_states(tmp_path / "ck")
    sched = fresh.optimizer.lr_scheduler
    assert type(sched) is module.Halving and sched.every == 3


@pytest.mark.parametrize("path", ["os:system", "mxopt_numba.trainer:Trainer", "builtins:dict",
                                  "mxopt_numba.lr_scheduler:_resolve", "no_such_module_xyz:Foo",
                                  "mxopt_numba:lr_scheduler", "nocolon"])
def test_state_file_naming_something_else_than_a_scheduler_is_rejected(path):
    blob = _state_io.dumps("updater", {"states": {}, "optimizer": {
        "class": "SGD", "attrs": {"lr_scheduler": _Named(path)}, "counts": {}}},
        encode_object=lambda value, where: (value.path, {"class": "X"}))
    u = mxo.optimizer.get_updater(mxo.optimizer.create("sgd"))
    with pytest.raises(StateFormatError, match="LRScheduler subclass|not imported|module:QualName"):
        u.set_states(blob)
    assert "no_such_module_xyz" not in sys.modules


class _Named:
    def __init__(self, path):
        self.path = path


def test_builtin_schedulers_still_load_from_files_with_bare_class_names():
    """Files written before class paths named built-in classes as ``$object`` plus
    ``module``; they keep loading."""
    sched = FactorScheduler(step=2, factor=0.5, base_lr=0.3)
    sched(7)
    blob = _state_io.dumps("updater", {"states": {}, "optimizer": {
        "class": "SGD", "attrs": {"lr_scheduler": sched}, "counts": {}}},
        encode_object=lambda value, where: ("FactorScheduler", value.state_dict()))
    meta = _read_meta(blob)
    entry = meta["payload"]["$dict"][1][1]["$dict"][1][1]["$dict"][0][1]
    entry["module"] = "mxopt_numba.lr_scheduler"
    u = mxo.optimizer.get_updater(mxo.optimizer.create("sgd"))
    u.set_states(_write_meta(blob, meta))
    got = u.optimizer.lr_scheduler
    assert type(got) is FactorScheduler and got.state_dict() == sched.state_dict()


def _read_meta(blob):
    import io
    with np.load(io.BytesIO(blob)) as archive:
        return json.loads(bytes(archive["__meta__"]).decode())


def _write_meta(blob, meta):
    import io
    with np.load(io.BytesIO(blob)) as archive:
        arrays = {k: archive[k] for k in archive.files if k != "__meta__"}
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    return buf.getvalue()


# ---------------------------------------------------------------------- SGLD resume
def _sgld(params):
    return mxo.Trainer(params, "sgld", {"learning_rate": 0.01, "wd": 1e-3})


def test_sgld_resumes_bitwise_in_a_fresh_process(tmp_path):
    mxo.random.seed(7)
    full = _params()
    _steps(_sgld(full), full, 0, 10)

    mxo.random.seed(7)
    half = _params()
    trainer = _sgld(half)
    _steps(trainer, half, 0, 5)
    trainer.save_states(tmp_path / "ck")
    np.savez(tmp_path / "w.npz", *[p.data for p in half])
    script = textwrap.dedent("""
        import sys
        import numpy as np
        sys.path.insert(0, %r)
        import mxopt_numba as mxo
        from test_checkpoint_safety import _sgld, _steps
        mxo.random.seed(12345)           # elsewhere in the stream: the file must restore it
        with np.load(%r) as f:
            params = [mxo.Parameter("fc%%d_weight" %% k, f["arr_%%d" %% k]) for k in range(2)]
        trainer = _sgld(params)
        trainer.load_states(%r)
        _steps(trainer, params, 5, 10)
        np.savez(%r, *[p.data for p in params])
    """) % (os.path.dirname(os.path.abspath(__file__)), str(tmp_path / "w.npz"),
            str(tmp_path / "ck"), str(tmp_path / "out.npz"))
    subprocess.run([sys.executable, "-c", script], check=True, timeout=600)
    with np.load(tmp_path / "out.npz") as out:
        for k, p in enumerate(full):
            np.testing.assert_array_equal(out["arr_%d" % k], p.data)


@pytest.mark.parametrize("fused", [True, False])
def test_sgld_resumes_bitwise_through_the_updater(fused):
    rng = np.random.default_rng(3)
    w0 = [rng.standard_normal(s).astype(np.float32) for s in [(4, 3), (7,), (2, 2)]]
    grads = [[rng.standard_normal(w.shape).astype(np.float32) for w in w0] for _ in range(8)]

    def run(updater, weights, steps):
        for t in steps:
            updater([0, 1, 2], grads[t], weights)

    mxo.random.seed(11)
    full = [w.copy() for w in w0]
    run(mxo.optimizer.get_updater(mxo.optimizer.create("sgld", use_fused_step=fused)), full, range(8))

    mxo.random.seed(11)
    part = [w.copy() for w in w0]
    first = mxo.optimizer.get_updater(mxo.optimizer.create("sgld", use_fused_step=fused))
    run(first, part, range(4))
    blob = first.get_states(dump_optimizer=True)
    mxo.random.seed(99)
    mxo.random.generator().standard_normal(1000)
    second = mxo.optimizer.get_updater(mxo.optimizer.create("sgd"))
    second.set_states(blob)
    run(second, part, range(4, 8))
    for a, b in zip(part, full):
        np.testing.assert_array_equal(a, b)


def test_failed_load_leaves_the_random_stream_alone(tmp_path):
    params = _params()
    trainer = _sgld(params)
    _steps(trainer, params, 0, 2)
    trainer.save_states(tmp_path / "ck")
    other = [mxo.Parameter("fc0_weight", np.zeros((2, 2), np.float32))]
    mxo.random.seed(5)
    before = mxo.random.get_state()
    target = mxo.Trainer(other, "sgld")
    with pytest.raises(StateFormatError):
        target.load_states(tmp_path / "ck")        # 2 parameters saved, 1 here
    assert mxo.random.get_state() == before


@pytest.mark.parametrize("rng_state", [
    None, 3, {"bit_generator": "PCG64"}, {"bit_generator": "os.system"},
    {"bit_generator": "PCG64", "state": {"state": -1, "inc": 3}, "has_uint32": 0, "uinteger": 0},
    {"bit_generator": "PCG64", "state": {"state": "x", "inc": 3}, "has_uint32": 0, "uinteger": 0},
])
def test_malformed_random_state_in_a_file_is_rejected(rng_state):
    blob = _state_io.dumps("updater", {"states": {}, "rng": rng_state})
    mxo.random.seed(5)
    before = mxo.random.get_state()
    with pytest.raises(StateFormatError, match="random state"):
        mxo.optimizer.get_updater(mxo.optimizer.create("sgd")).set_states(blob)
    assert mxo.random.get_state() == before


# ---------------------------------------------------------------------- symbolic links
def _trained():
    params = _params()
    trainer = mxo.Trainer(params, "adam")
    _steps(trainer, params, 0, 2)
    return params, trainer


def test_save_states_through_a_symlink_keeps_the_link(tmp_path):
    params, trainer = _trained()
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "ck"
    target.write_bytes(b"old")
    link = tmp_path / "latest"
    os.symlink(os.path.join("real", "ck"), link)      # relative, as `ln -s` makes them
    trainer.save_states(link)
    assert os.path.islink(link) and os.readlink(link) == os.path.join("real", "ck")
    assert target.read_bytes()[:2] == b"PK"
    assert sorted(os.listdir(tmp_path)) == ["latest", "real"]
    assert os.listdir(tmp_path / "real") == ["ck"]     # the temporary file went beside the target
    fresh = mxo.Trainer(_clone(params), "sgd")
    fresh.load_states(target)
    assert type(fresh.optimizer).__name__ == "Adam"


def test_save_states_through_a_dangling_symlink_creates_the_target(tmp_path):
    _, trainer = _trained()
    link = tmp_path / "latest"
    os.symlink(tmp_path / "new-ck", link)
    trainer.save_states(link)
    assert os.path.islink(link) and (tmp_path / "new-ck").read_bytes()[:2] == b"PK"


@pytest.mark.parametrize("shard", [False, True])
def test_distributed_save_states_through_a_symlink_keeps_the_link(tmp_path, shard):
    params = _params()
    trainer = distributed.DistributedTrainer(params, "adam", communicator=distributed.SingleProcessCommunicator(),
                                             shard_states=shard)
    _steps(trainer, params, 0, 2)
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "ck"
    target.write_bytes(b"old")
    link = tmp_path / "ck-link"
    os.symlink(target, link)
    trainer.save_states(link)
    assert os.path.islink(link) and target.read_bytes()[:2] == b"PK"
    again = distributed.DistributedTrainer(_clone(params), "adam",
                                           communicator=distributed.SingleProcessCommunicator(),
                                           shard_states=shard)
    for path in (link, target):
        again.load_states(path)
        for k in trainer._updater.states:
            for a, b in zip(trainer._updater.states[k], again._updater.states[k]):
                np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------- Parameter setters
@pytest.mark.parametrize("setter", ["grad", "set_grad", "data", "set_data"])
@pytest.mark.parametrize("value, exc, match", [
    (np.ones((3, 4), np.complex128), TypeError, r"'fc0_weight'.*complex128.*float32"),
    (np.full((3, 4), "a"), TypeError, r"'fc0_weight'.*<U1.*float32"),
    ([[1.0, 2.0], [3.0]], TypeError, r"'fc0_weight'.*shape \(3, 4\)"),
    (np.ones((4, 3)), ValueError, r"'fc0_weight'.*shape \(4, 3\), expected \(3, 4\)"),
], ids=["complex", "strings", "ragged", "shape"])
def test_parameter_setters_name_the_parameter(setter, value, exc, match):
    p = _params()[0]
    before = (p.data.copy(), p._grad.copy())
    with pytest.raises(exc, match=match):
        if setter in ("grad", "data"):
            setattr(p, setter, value)
        else:
            getattr(p, setter)(value)
    np.testing.assert_array_equal(p.data, before[0])
    np.testing.assert_array_equal(p._grad, before[1])


def test_parameter_setters_still_take_real_arrays_of_other_dtypes():
    p = _params()[0]
    p.grad = np.arange(12, dtype=np.int64).reshape(3, 4)
    np.testing.assert_array_equal(p.grad, np.arange(12, dtype=np.float32).reshape(3, 4))
    p.set_data(np.full((3, 4), 0.25, np.float64))
    np.testing.assert_array_equal(p.data, np.full((3, 4), 0.25, np.float32))
