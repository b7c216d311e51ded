"""clip_global_norm against float64 NumPy."""
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

from mxopt_numba.kernels import _launch
from mxopt_numba.utils import clip_global_norm

BF16 = np.dtype(ml_dtypes.bfloat16)


def ref_norm(arrays):
    return float(np.sqrt(sum(np.sum(np.asarray(a, dtype=np.float64) ** 2) for a in arrays)))


def ref_scaled(a, scale):
    if a.dtype == np.float64:
        return a * scale
    return (a.astype(np.float32) * np.float32(scale)).astype(a.dtype)


def make(rng, specs):
    return [np.array(rng.standard_normal(shape) * mag, dtype=dtype) for shape, dtype, mag in specs]


SPECS = [
    [((3, 4), np.float32, 1.0)],
    [((70000,), np.float32, 3.0), ((5,), np.float32, 100.0), ((0,), np.float32, 1.0)],
    [((1000, 80), np.float64, 1.0), ((17,), np.float32, 2.0), ((300, 7), np.float16, 0.5),
     ((2, 3, 4), BF16, 4.0), ((), np.float32, 7.0)],
]


@pytest.mark.parametrize("specs", SPECS)
@pytest.mark.parametrize("factor", [0.1, 0.999, 1.5])
def test_norm_and_scaling_match_float64(specs, factor):
    rng = np.random.default_rng(len(specs))
    arrays = make(rng, specs)
    before = [a.copy() for a in arrays]
    expected_norm = ref_norm(before)
    max_norm = factor * expected_norm
    norm = clip_global_norm(arrays, max_norm)
    assert isinstance(norm, float)
    assert norm == pytest.approx(expected_norm, rel=1e-12)
    if expected_norm > max_norm:
        scale = max_norm / (norm + 1e-8)
        for a, b in zip(arrays, before):
            np.testing.assert_array_equal(a, ref_scaled(b, scale))
        assert ref_norm(arrays) == pytest.approx(max_norm, rel=1e-2 if any(
            a.dtype in (np.float16, BF16) for a in arrays) else 1e-6)
    else:
        for a, b in zip(arrays, before):
            np.testing.assert_array_equal(a, b)


def test_threaded_and_serial_launches_agree(monkeypatch):
    rng = np.random.default_rng(7)
    arrays = make(rng, [((300000,), np.float32, 1.0), ((4096,), np.float64, 1.0)])
    copies = [a.copy() for a in arrays]
    threaded = clip_global_norm(arrays, 1.0)
    monkeypatch.setattr(_launch, "SERIAL_BELOW", 1 << 40)
    serial = clip_global_norm(copies, 1.0)
    assert threaded == serial
    for a, b in zip(arrays, copies):
        np.testing.assert_array_equal(a, b)


def test_one_launch_per_phase_and_dtype(monkeypatch):
    calls = []
    real = _launch.run

    def counting(kernel, n, *args):
        calls.append(kernel)
        return real(kernel, n, *args)
    monkeypatch.setattr(_launch, "run", counting)
    rng = np.random.default_rng(1)
    arrays = make(rng, [((10,), np.float32, 1.0)] * 50 + [((4,), np.float64, 1.0)] * 3)
    clip_global_norm(arrays, 1e-3)
    assert len(calls) == 4            # (sum of squares, scaling) x (float32, float64)


def test_nonfinite_norm_warns_and_leaves_arrays():
    a = np.array([1.0, np.inf, 2.0], np.float32)
    b = np.array([3.0, 4.0], np.float32)
    with pytest.warns(UserWarning, match="global norm"):
        norm = clip_global_norm([a, b], 1.0)
    assert norm == np.inf
    np.testing.assert_array_equal(b, [3.0, 4.0])
    c = np.array([np.nan], np.float64)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(clip_global_norm([c], 1.0, check_isfinite=False))


def test_errors_name_the_argument():
    ok = [np.ones(3, np.float32)]
    for bad in (0, -1.0, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValueError, match="max_norm"):
            clip_global_norm(ok, bad)
    with pytest.raises(TypeError, match="list or tuple"):
        clip_global_norm(np.ones(3), 1.0)
    with pytest.raises(TypeError, match=r"arrays\[1\]"):
        clip_global_norm([np.ones(3), [1.0, 2.0]], 1.0)
    with pytest.raises(TypeError, match="int32"):
        clip_global_norm([np.ones(3, np.int32)], 1.0)
    with pytest.raises(ValueError, match="C-contiguous"):
        clip_global_norm([np.ones((4, 4))[:, 1]], 1.0)
    ro = np.ones(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        clip_global_norm([ro], 1.0)
