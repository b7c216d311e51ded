"""float16 and bfloat16 conversions inside kernels: bit-identical to NumPy / ml_dtypes."""
import ml_dtypes
import numpy as np
import pytest
from numba import njit, prange

from mxopt_numba.kernels import _common


@njit(parallel=True)
def _to_f32_soft(bits, out):
    for i in prange(bits.size):
        out[i] = _common.f16bits_to_f32_soft(bits[i])


@njit(parallel=True)
def _from_f32_soft(values, out):
    for i in prange(values.size):
        out[i] = _common.f32_to_f16bits_soft(values[i])


@njit(parallel=True)
def _to_f32_hw(bits, out):
    for i in prange(bits.size):
        out[i] = _common.f16bits_to_f32_hw(bits[i])


@njit(parallel=True)
def _from_f32_hw(values, out):
    for i in prange(values.size):
        out[i] = _common.f32_to_f16bits_hw(values[i])


@njit(parallel=True)
def _bf16_roundtrip(values, out_bits, back):
    for i in prange(values.size):
        out_bits[i] = _common.f32_to_bf16bits(values[i])
        back[i] = _common.bf16bits_to_f32(out_bits[i])


CONVERTERS = [pytest.param(_to_f32_soft, _from_f32_soft, id="portable")]
if _common.use_hardware_f16():
    CONVERTERS.append(pytest.param(_to_f32_hw, _from_f32_hw, id="f16c"))


def _float32_samples():
    rng = np.random.default_rng(3)
    random_bits = rng.integers(0, 2**32, size=2_000_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    halves = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
    # exact ties between neighbouring halves, and the edges of the range
    finite = halves[np.isfinite(halves)]
    finite.sort()
    ties = ((finite[1:].astype(np.float64) + finite[:-1]) / 2).astype(np.float32)
    edges = np.array([0.0, -0.0, 65504, 65519.99, 65520, -65520, 2.0**-24, 2.0**-25, 3 * 2.0**-26,
                      2.0**-14, 1 + 2.0**-11, 1 + 3 * 2.0**-11, 2049, 2051, np.inf, -np.inf, np.nan],
                     dtype=np.float32)
    return np.concatenate([random_bits, halves, ties, edges])


@pytest.mark.parametrize("to_f32, from_f32", CONVERTERS)
def test_every_float16_widens_exactly(to_f32, from_f32):
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    out = np.empty(bits.size, np.float32)
    to_f32(bits, out)
    want = bits.view(np.float16).astype(np.float32)
    finite = ~np.isnan(want)
    np.testing.assert_array_equal(out[finite].view(np.uint32), want[finite].view(np.uint32))
    assert np.isnan(out[~finite]).all()


@pytest.mark.parametrize("to_f32, from_f32", CONVERTERS)
def test_float32_to_float16_rounds_to_nearest_even_like_numpy(to_f32, from_f32):
    values = _float32_samples()
    out = np.empty(values.size, np.uint16)
    from_f32(values, out)
    with np.errstate(over="ignore", invalid="ignore"):
        want = values.astype(np.float16)
    nan = np.isnan(values)
    np.testing.assert_array_equal(out[~nan], want[~nan].view(np.uint16))
    assert np.isnan(out[nan].view(np.float16)).all()


def test_bfloat16_rounds_like_ml_dtypes():
    values = _float32_samples()
    bits = np.empty(values.size, np.int16)
    back = np.empty(values.size, np.float32)
    _bf16_roundtrip(values, bits, back)
    with np.errstate(invalid="ignore", over="ignore"):
        want = values.astype(ml_dtypes.bfloat16)
    nan = np.isnan(values)
    np.testing.assert_array_equal(bits[~nan].view(np.uint16), want[~nan].view(np.uint16))
    assert np.isnan(bits[nan].view(ml_dtypes.bfloat16).astype(np.float32)).all()
    np.testing.assert_array_equal(back[~nan], want[~nan].astype(np.float32))


def test_storage_formats_distinguish_the_16_bit_layouts():
    from mxopt_numba.kernels import _launch
    assert _launch.storage_format(np.float16).dtype == np.uint16
    assert _launch.storage_format(ml_dtypes.bfloat16).dtype == np.int16
    assert _launch.compute_dtype(np.float64) == np.float64
    assert _launch.compute_dtype(ml_dtypes.bfloat16) == np.float32
    with pytest.raises(TypeError, match="unsupported dtype int32"):
        _launch.storage_format(np.int32)


def test_block_table_covers_every_element_once():
    from mxopt_numba.kernels import _launch
    sizes = [0, 1, 5, 40000, 32768, 3]
    table = _launch.block_table(sizes, block=32768)
    seen = [np.zeros(s, int) for s in sizes]
    for t, start, length in table:
        assert length > 0
        seen[t][start:start + length] += 1
    for s in seen:
        assert (s == 1).all()
