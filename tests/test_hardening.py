"""Hostile input: fuzzed state files, NaN/inf propagation, validation before any write."""
import numpy as np
import pytest

import mxopt_numba as mxo
from mxopt_numba._state_io import StateFormatError


def _saved_blob():
    opt = mxo.optimizer.create("adam", multi_precision=True, wd=1e-3,
                               lr_scheduler=mxo.lr_scheduler.FactorScheduler(step=2, factor=0.5))
    u = mxo.optimizer.get_updater(opt)
    ws = [np.linspace(-1, 1, 12).astype(np.float16).reshape(3, 4), np.ones(5, np.float32)]
    for _ in range(2):
        u([0, 1], [np.full(w.shape, 0.1, w.dtype) for w in ws], ws)
    return u.get_states(dump_optimizer=True)


def test_fuzzed_state_files_raise_state_format_errors_only():
    """Mutated bytes must either load to a well-formed state or raise StateFormatError:
    never another exception, never code execution (no pickle is ever read)."""
    blob = _saved_blob()
    rng = np.random.default_rng(0)
    outcomes = {"loaded": 0, "rejected": 0}
    for trial in range(300):
        data = bytearray(blob)
        kind = trial % 4
        if kind == 0:                                   # flip random bytes
            for pos in rng.integers(0, len(data), size=rng.integers(1, 8)):
                data[pos] ^= int(rng.integers(1, 256))
        elif kind == 1:                                 # truncate
            data = data[: int(rng.integers(0, len(data)))]
        elif kind == 2:                                 # splice in garbage
            pos = int(rng.integers(0, len(data)))
            data[pos:pos] = rng.integers(0, 256, size=int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        else:                                           # overwrite a run with zeros
            pos = int(rng.integers(0, len(data)))
            data[pos:pos + 32] = bytes(min(32, len(data) - pos))
        u = mxo.optimizer.get_updater(mxo.optimizer.create("sgd"))
        try:
            u.set_states(bytes(data))
        except StateFormatError:
            outcomes["rejected"] += 1
            continue
        outcomes["loaded"] += 1
        for state in u.states.values():       # whatever loaded is made of arrays and None
            for leaf in mxo.optimizer.optimizer.state_leaves(state):
                assert isinstance(leaf, np.ndarray)
    assert outcomes["rejected"] > 200


def test_state_file_from_a_newer_version_is_rejected():
    import io
    import json
    import zipfile
    blob = _saved_blob()
    src = zipfile.ZipFile(io.BytesIO(blob))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "__meta__.npy":
                arr = np.load(io.BytesIO(data))
                meta = json.loads(bytes(arr).decode())
                meta["version"] = 99
                buf = io.BytesIO()
                np.save(buf, np.frombuffer(json.dumps(meta).encode(), np.uint8))
                data = buf.getvalue()
            dst.writestr(name, data)
    with pytest.raises(StateFormatError, match="version 99"):
        mxo.optimizer.get_updater(mxo.optimizer.create("sgd")).set_states(out.getvalue())


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop", "lamb"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "step"])
def test_non_finite_gradients_propagate(name, fused):
    """MXNet's policy: NaN and inf in a gradient reach the weights (IEEE arithmetic)."""
    w = np.ones(6, np.float32)
    g = np.array([0.1, np.nan, 0.2, np.inf, -np.inf, 0.3], np.float32)
    opt = mxo.optimizer.create(name, use_fused_step=fused)
    opt.update(0, w, g, opt.create_state_multi_precision(0, w))
    assert not np.isfinite(w[[1, 3, 4]]).all()
    if name != "lamb":                  # LAMB's trust ratio mixes every element
        assert np.isfinite(w[[0, 2, 5]]).all()


@pytest.mark.parametrize("bad", [
    dict(weights=[np.ones(3, np.float32)], grads=[np.ones(3, np.float32)], states=[None, None]),
    dict(weights=[np.ones(3, np.float32)], grads=[np.ones((3, 1), np.float32)], states=[None]),
    dict(weights=[np.ones(3, np.complex64)], grads=[np.ones(3, np.complex64)], states=[None]),
    dict(weights=[np.ones(3, np.float32)[::2]], grads=[np.ones(2, np.float32)], states=[None]),
    dict(weights=[np.ones(3, np.float32)], grads=["grad"], states=[None]),
], ids=["states-length", "grad-shape", "complex", "strided-weight", "grad-type"])
def test_every_tensor_is_checked_before_any_is_written(bad):
    good_w = np.ones(4, np.float32)
    weights = [good_w] + bad["weights"]
    grads = [np.ones(4, np.float32)] + bad["grads"]
    states = [None] + bad["states"]
    opt = mxo.optimizer.create("sgd", learning_rate=1.0)
    with pytest.raises((TypeError, ValueError)):
        opt.update(list(range(len(weights))), weights, grads, states)
    np.testing.assert_array_equal(good_w, 1.0)
