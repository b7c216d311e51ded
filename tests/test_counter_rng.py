"""The counter-based generators (Philox-4x32-10 + Box-Muller for SGLD's noise,
Philox-4x32-7 for rounding bits): known answers, the documented map, the distribution,
and the properties a counter-based stream promises (same numbers whatever the threads,
the aggregation, the block layout or the device; repeatable for a seed; resumable from
saved settings)."""
import math
import pickle

import numpy as np
import pytest

import mxopt_numba as mxo
from mxopt_numba.kernels import _launch as launch
from mxopt_numba.kernels import counter_rng as cr
from mxopt_numba.kernels import sgld as sgld_kernels

U64 = np.uint64

# Random123's published known-answer vectors for Philox-4x32-10 (counter, key, output)
PHILOX_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]

# and for Philox-4x32-7, the rounding stream's generator
PHILOX_7_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x5F6FB709, 0x0D893F64, 0x4F121F81, 0x4F730A48)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x5207DDC2, 0x45165E59, 0x4D8EE751, 0x8C52F662)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0x4DFCCABA, 0x190A87F0, 0xC47362BA, 0xB6B5242A)),
]

SEED = 0x9E3779B97F4A7C15


@pytest.mark.parametrize("counter, key, expected", PHILOX_KAT)
def test_philox_known_answers(counter, key, expected):
    got = cr.philox4x32(*[U64(c) for c in counter], *[U64(k) for k in key])
    assert tuple(int(x) for x in got) == expected
    got_np = cr.philox4x32_np(*[np.array([c], dtype=np.uint64) for c in counter], *key)
    assert tuple(int(x[0]) for x in got_np) == expected


@pytest.mark.parametrize("counter, key, expected", PHILOX_7_KAT)
def test_philox_seven_rounds_known_answers(counter, key, expected):
    assert cr.ROUNDING_ROUNDS == 7
    got = cr.philox4x32_rounds(*[U64(c) for c in counter], *[U64(k) for k in key], 7)
    assert tuple(int(x) for x in got) == expected
    got_np = cr.philox4x32_np(*[np.array([c], dtype=np.uint64) for c in counter], *key, rounds=7)
    assert tuple(int(x[0]) for x in got_np) == expected
    # the rounding stream's words are these, under its counter layout
    c1 = U64(cr.ROUNDING_STREAM << 16)
    octet = cr.rounding_octet(U64(counter[0]), U64(counter[2]), U64(counter[3]), U64(key[0]), U64(key[1]))
    assert tuple(int(x) for x in octet) == tuple(
        int(x) for x in cr.philox4x32_rounds(U64(counter[0]), c1, U64(counter[2]), U64(counter[3]),
                                             U64(key[0]), U64(key[1]), 7))


def _kernel_normals(size, step, pkey, seed, stream=cr.NOISE_STREAM):
    """Per-element scalar function and quad function, called from compiled code."""
    from numba import njit

    @njit(error_model="numpy")
    def draw(size, step, pkey, k0, k1, stream):
        one = np.empty(size, np.float32)
        quad = np.empty(4 * ((size + 3) // 4), np.float32)
        for i in range(size):
            one[i] = cr.standard_normal(i, stream, step, pkey, k0, k1)
        for j in range(quad.size // 4):
            quad[4 * j], quad[4 * j + 1], quad[4 * j + 2], quad[4 * j + 3] = cr.normal_quad(
                j, stream, step, pkey, k0, k1)
        return one, quad[:size]
    return draw(size, U64(step), U64(pkey), U64(seed & 0xFFFFFFFF), U64(seed >> 32), stream)


def test_scalar_quad_and_numpy_normals_are_the_same_bits():
    one, quad = _kernel_normals(1001, 7, 12, SEED)
    ref = cr.standard_normal_np(1001, 7, 12, SEED)
    assert one.dtype == quad.dtype == ref.dtype == np.float32
    assert np.array_equal(one.view(np.uint32), ref.view(np.uint32))
    assert np.array_equal(quad.view(np.uint32), ref.view(np.uint32))


def test_normals_follow_the_documented_box_muller_map():
    """Recompute the documented map in float64 from the raw Philox words (an independent
    float64 log/cos/sin): the float32 polynomials agree to float32 accuracy."""
    n = 1 << 16
    x0, x1, x2, x3 = cr.quad_draw_np(n, cr.NOISE_STREAM, 3, 5, SEED)

    def pair(a, b):
        u = ((a >> 8) + 1).astype(np.float64) * 2.0 ** -24
        angle = 2 * np.pi * (b >> 8).astype(np.float64) / 2 ** 24
        r = np.sqrt(-2 * np.log(u))
        return r * np.cos(angle), r * np.sin(angle)
    z0, z1 = pair(x0, x1)
    z2, z3 = pair(x2, x3)
    ref = np.stack([z0, z1, z2, z3], axis=1).ravel()[:n]
    got = cr.standard_normal_np(n, 3, 5, SEED).astype(np.float64)
    err = np.abs(got - ref)
    assert np.max(err / np.maximum(np.abs(ref), 1.0)) < 2e-6


def _normal_cdf(x):
    erfc = np.frompyfunc(math.erfc, 1, 1)
    return 0.5 * np.asarray(erfc(-np.asarray(x, dtype=np.float64) / math.sqrt(2.0)), dtype=np.float64)


def _ks_pvalue(z):
    """Kolmogorov-Smirnov test against N(0, 1): asymptotic p-value (Stephens' correction)."""
    x = np.sort(z.astype(np.float64))
    n = x.size
    cdf = _normal_cdf(x)
    d = max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))
    t = (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)) * d
    return min(1.0, max(0.0, 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * t * t) for k in range(1, 101))))


def _corr_z(a, b):
    """Correlation coefficient in standard errors (|r| * sqrt(n))."""
    return abs(np.corrcoef(a.astype(np.float64), b.astype(np.float64))[0, 1]) * math.sqrt(a.size)


N_DIST = 1 << 20


@pytest.fixture(scope="module")
def sample():
    return cr.standard_normal_np(N_DIST, 1, 0, SEED).astype(np.float64)


def test_mean_and_variance(sample):
    n = sample.size
    assert abs(sample.mean()) / math.sqrt(1.0 / n) < 5
    assert abs(sample.var() - 1.0) / math.sqrt(2.0 / n) < 5          # var of s^2 is 2 for N(0,1)
    assert abs(np.mean(sample ** 4) - 3.0) / math.sqrt(96.0 / n) < 5   # kurtosis: var of z^4 is 96


def test_kolmogorov_smirnov(sample):
    assert _ks_pvalue(sample) > 1e-4


def test_chi_square_on_equiprobable_bins(sample):
    """64 bins of equal normal probability (edges found by bisection of the CDF)."""
    bins = 64
    targets = np.arange(1, bins) / bins
    lo, hi = np.full(bins - 1, -8.0), np.full(bins - 1, 8.0)
    for _ in range(60):
        mid = (lo + hi) / 2
        below = _normal_cdf(mid) < targets
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    counts = np.bincount(np.searchsorted((lo + hi) / 2, sample), minlength=bins)
    expected = sample.size / bins
    chi2 = np.sum((counts - expected) ** 2 / expected)
    df = bins - 1
    assert abs(chi2 - df) / math.sqrt(2 * df) < 5


def test_tails(sample):
    """The fraction beyond 3 sigma (a region KS hardly sees)."""
    p = 2 * _normal_cdf(-3.0)
    frac = np.mean(np.abs(sample) > 3.0)
    assert abs(frac - p) / math.sqrt(p * (1 - p) / sample.size) < 5
    assert np.max(np.abs(sample)) <= math.sqrt(48 * math.log(2.0)) + 1e-5


@pytest.mark.parametrize("lag", [1, 2, 3, 4, 5, 8])
def test_neighbouring_elements_are_uncorrelated(sample, lag):
    a, b = sample[:-lag], sample[lag:]
    assert _corr_z(a, b) < 5
    assert _corr_z(a * a, b * b) < 5      # Box-Muller pairs share a radius: squares would show it
    assert _corr_z(np.abs(a), np.abs(b)) < 5


def test_consecutive_steps_parameters_streams_and_seeds_are_uncorrelated(sample):
    n = sample.size
    others = {"next step": cr.standard_normal_np(n, 2, 0, SEED),
              "another parameter": cr.standard_normal_np(n, 1, 1, SEED),
              "another seed": cr.standard_normal_np(n, 1, 0, SEED + 1),
              "another stream": cr.standard_normal_np(n, 1, 0, SEED, stream=cr.ROUNDING_STREAM)}
    for what, other in others.items():
        assert _corr_z(sample, other) < 5, what
        assert _corr_z(sample * sample, other.astype(np.float64) ** 2) < 5, what
        assert not np.array_equal(sample, other), what


def test_rounding_bits_are_uniform_and_match_numpy():
    from numba import njit

    @njit(error_model="numpy")
    def bits(size, step, pkey, k0, k1):
        out = np.empty(size, np.uint64)
        for i in range(size):
            out[i] = cr.rounding_bits(i, step, pkey, k0, k1)
        return out
    n = 1 << 18
    got = bits(n, U64(4), U64(9), U64(SEED & 0xFFFFFFFF), U64(SEED >> 32))
    ref = cr.rounding_bits_np(n, 4, 9, SEED)
    assert np.array_equal(got, ref)
    u = (ref.astype(np.float64) + 0.5) / 65536
    assert abs(u.mean() - 0.5) / math.sqrt(1 / 12 / n) < 5
    counts = np.bincount((ref >> 10).astype(np.int64), minlength=64)
    chi2 = np.sum((counts - n / 64) ** 2 / (n / 64))
    assert abs(chi2 - 63) / math.sqrt(126) < 5


def test_rounding_bits_take_eight_elements_from_one_call():
    """The documented layout: element 8R + 2j + h gets half h of word j of the call whose
    counter is the octet R on the rounding stream."""
    n = 8 * 1000 + 5
    step, pkey = 6, 11
    octets = np.arange((n + 7) // 8, dtype=np.uint64)
    words = cr.philox4x32_np(octets, U64(cr.ROUNDING_STREAM << 16), U64(step), U64(pkey),
                             SEED & 0xFFFFFFFF, SEED >> 32, rounds=7)
    expected = np.stack([part for x in words for part in (x & U64(0xFFFF), x >> U64(16))], axis=1)
    assert np.array_equal(cr.rounding_bits_np(n, step, pkey, SEED), expected.ravel()[:n])
    # positions past 2**32 octets use the counter's second word
    far = np.array([8 << 32, (8 << 32) + 13], dtype=np.int64)
    c1 = U64((1 | (cr.ROUNDING_STREAM << 16)))
    w = cr.philox4x32_np(np.array([0, 1], dtype=np.uint64), c1, U64(step), U64(pkey), SEED & 0xFFFFFFFF, SEED >> 32,
                         rounds=7)
    assert np.array_equal(cr.rounding_bits_at_np(far, step, pkey, SEED), [w[0][0] & U64(0xFFFF), w[2][1] >> U64(16)])


def test_rounding_bits_of_an_octet_are_uniform_and_uncorrelated():
    """The eight 16-bit values one call gives (and the next call's) are each uniform and
    pairwise uncorrelated, as are their low bits (the bits a rounding decision rests on
    when the dropped part is small)."""
    n = 8 << 16
    bits = cr.rounding_bits_np(n, 2, 3, SEED).astype(np.float64).reshape(-1, 8)
    m = bits.shape[0]
    for lane in range(8):
        u = (bits[:, lane] + 0.5) / 65536
        assert abs(u.mean() - 0.5) / math.sqrt(1 / 12 / m) < 5, lane
        counts = np.bincount((bits[:, lane] // 1024).astype(np.int64), minlength=64)
        chi2 = np.sum((counts - m / 64) ** 2 / (m / 64))
        assert abs(chi2 - 63) / math.sqrt(126) < 5, lane
    low = bits % 256
    for a in range(8):
        for b in range(a + 1, 8):
            assert _corr_z(bits[:, a], bits[:, b]) < 5, (a, b)
            assert _corr_z(low[:, a], low[:, b]) < 5, (a, b)
        assert _corr_z(bits[:-1, a], bits[1:, a]) < 5, a       # same lane, next octet


@pytest.mark.parametrize("offset", [0, 3, 8, 13])
@pytest.mark.parametrize("start, length", [(0, 1), (0, 37), (5, 64), (11, 1000), (0, launch.BLOCK)])
def test_cpu_rounding_buffer_holds_each_elements_bits(start, length, offset):
    """What ``store_weight`` reads on the CPU (the per-block buffer ``master_view`` fills)
    is ``rounding_bits`` of the element's position, for any block start and any position
    of the tensor's element 0 (rows of a row-sparse update)."""
    from numba import njit
    from mxopt_numba.kernels._common import master_view

    @njit(error_model="numpy")
    def read_bits(ptrs, start, length, w_fmt, table):
        w32 = master_view(ptrs, 0, start, length, w_fmt, table)
        out = np.empty(length, np.uint64)
        for i in range(length):
            out[i] = w32[6][i]
        return out
    w = np.zeros(start + length, np.int16)
    ptrs = np.array([[w.ctypes.data, 0, 0]], dtype=np.int64)
    step, pkey = 9, 4
    table = np.array([[step, pkey, SEED & 0xFFFFFFFF, SEED >> 32, offset]], dtype=np.uint32)
    got = read_bits(ptrs, start, length, w[:0], table)
    ref = cr.rounding_bits_at_np(np.arange(start, start + length) + offset, step, pkey, SEED)
    assert np.array_equal(got, ref)


def test_cpu_blocks_fit_the_rounding_buffer():
    from mxopt_numba.kernels import _common
    assert _common.ROUNDING_BUFFER >= launch.BLOCK + 16


def test_param_keys():
    assert cr.param_key(0) == 0 and cr.param_key(12345) == 12345
    names = [cr.param_key(s) for s in ("fc1_weight", "fc1_bias", "0", "1")]
    assert len(set(names)) == 4 and all(k >= 1 << 31 for k in names)
    assert cr.param_key(-1) >= 1 << 31 and cr.param_key(1 << 40) >= 1 << 31
    assert cr.param_key("fc1_weight") == cr.param_key("fc1_weight")


# --------------------------------------------------------------------------- SGLD noise

def _sgld(ws, grads, seed=None, reseed=None, fused=True, aggregate_num=np.inf, indices=None, **kwargs):
    if reseed is not None:
        mxo.random.seed(reseed)
    opt = mxo.optimizer.create("sgld", use_fused_step=fused, seed=seed, **kwargs)
    opt.aggregate_num = aggregate_num
    updater = mxo.optimizer.get_updater(opt)
    ws = [w.copy() for w in ws]
    for gs in grads:
        updater(list(range(len(ws))) if indices is None else indices,
                [g.astype(w.dtype) for g, w in zip(gs, ws)], ws)
    return ws, updater


def test_sgld_noise_is_the_documented_function_of_seed_index_step_and_position():
    """Zero gradient, zero weight decay: after one step w = w0 + sqrt(lr) * z(seed, index,
    t=1, position), z from the NumPy reference of the generator."""
    lr = 0.09
    ws = [np.zeros(1000, np.float32), np.zeros((3, 70), np.float32), np.zeros(5, np.float64)]
    got, _ = _sgld(ws, [[np.zeros_like(w) for w in ws]], seed=SEED, learning_rate=lr)
    for index, (w, x) in enumerate(zip(ws, got)):
        ct = np.float64 if w.dtype == np.float64 else np.float32
        z = cr.standard_normal_np(w.size, 1, index, SEED).astype(ct)
        assert np.array_equal(x.ravel(), ct(math.sqrt(lr)) * z)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "step"])
def test_sgld_reproducible_for_a_library_seed(fused, rng):
    ws = [rng.standard_normal(s).astype(np.float32) for s in [(40, 3), (17,)]]
    grads = [[rng.standard_normal(w.shape) for w in ws] for _ in range(3)]
    a, ua = _sgld(ws, grads, reseed=21, fused=fused)
    b, ub = _sgld(ws, grads, reseed=21, fused=fused)
    c, _ = _sgld(ws, grads, reseed=22, fused=fused)
    assert ua.optimizer.seed == ub.optimizer.seed
    for x, y, z in zip(a, b, c):
        assert np.array_equal(x, y)
        assert not np.array_equal(x, z)


def test_sgld_same_noise_for_any_thread_count_aggregation_and_path(rng):
    """Tensors large enough for the threaded kernel: one thread, every thread, one tensor
    per launch, the NumPy step — the same bits."""
    import numba
    ws = [rng.standard_normal(s).astype(np.float32) for s in [(300, 700), (1001,), (70000,)]]
    grads = [[rng.standard_normal(w.shape) for w in ws] for _ in range(2)]
    assert max(w.size for w in ws) >= launch.SERIAL_BELOW
    ref, _ = _sgld(ws, grads, seed=SEED, wd=0.01)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one_thread, _ = _sgld(ws, grads, seed=SEED, wd=0.01)
    finally:
        numba.set_num_threads(before)
    per_tensor, _ = _sgld(ws, grads, seed=SEED, wd=0.01, aggregate_num=1)
    reversed_ws, _ = _sgld(ws[::-1], [g[::-1] for g in grads], seed=SEED, wd=0.01, indices=[2, 1, 0])
    step, _ = _sgld(ws, grads, seed=SEED, wd=0.01, fused=False)
    for k, r in enumerate(ref):
        assert np.array_equal(one_thread[k], r)
        assert np.array_equal(per_tensor[k], r)
        assert np.array_equal(step[k], r)
        assert np.array_equal(reversed_ws[len(ws) - 1 - k], r)     # same index, other position


def _direct_launch(block, sizes, seed_halves, steps, keys, dtype=np.float32, blocks=None):
    """Run the SGLD CPU kernel over a table of ``block``-sized blocks (odd block sizes make
    blocks start inside a quad)."""
    rng = np.random.default_rng(3)
    ws = [rng.standard_normal(n).astype(dtype) for n in sizes]
    gs = [rng.standard_normal(n).astype(dtype) for n in sizes]
    ptrs = np.array([[launch.address(w), launch.address(g), launch.address(w)] for w, g in zip(ws, gs)],
                    dtype=np.int64)
    n = len(sizes)
    lrs = np.full(n, 0.04, np.float32)
    coefs = np.zeros((n, 6), np.float32)
    coefs[:, 0], coefs[:, 1] = lrs / 2, np.sqrt(lrs)
    coefs[:, 2], coefs[:, 3] = np.asarray(steps) >> 16, np.asarray(steps) & 0xFFFF
    coefs[:, 4], coefs[:, 5] = np.asarray(keys) >> 16, np.asarray(keys) & 0xFFFF
    fmt = launch.storage_format(dtype)
    table = launch.block_table(sizes, block=block) if blocks is None else blocks
    sgld_kernels.multi_sgld_update_cpu.serial(table, ptrs, lrs, np.zeros(n, np.float32), coefs, fmt, fmt, None,
                                              fmt, *[np.float32(x) for x in seed_halves], np.float32(1.0),
                                              np.float32(-1.0))
    return ws, dict(ptrs=ptrs, lrs=lrs, coefs=coefs, fmt=fmt, table=table, gs=gs)


def test_sgld_kernel_same_numbers_for_any_block_layout():
    sizes, steps, keys = [37, 1000, 5], [1, 70000, 3], [0, 9, (1 << 31) + 77]
    halves = cr.seed_halves(SEED)
    ref, _ = _direct_launch(launch.BLOCK, sizes, halves, steps, keys)
    for block in (1, 3, 7, 64):
        got, _ = _direct_launch(block, sizes, halves, steps, keys)
        for a, b in zip(got, ref):
            assert np.array_equal(a, b), block


@pytest.mark.gpu
def test_sgld_cuda_twin_same_bits_as_the_cpu_kernel():
    """Under NUMBA_ENABLE_CUDASIM=1 bit for bit (on hardware NVVM may fuse multiply-adds)."""
    try:
        from numba import cuda
        have = cuda.is_available()
    except Exception:
        have = False
    if not have:
        pytest.skip("no CUDA device and NUMBA_ENABLE_CUDASIM is not set")
    from mxopt_numba import _device
    from mxopt_numba.kernels.gpu import sgld as gpu_sgld
    from mxopt_numba.kernels.gpu._common import SIMULATOR
    from mxopt_numba.optimizer import _gpu_launch
    sizes, steps, keys = [37, 90, 6], [1, 5, 3], [0, 9, (1 << 31) + 77]
    halves = cr.seed_halves(SEED)
    rng = np.random.default_rng(3)
    w0 = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    cpu, args = _direct_launch(7, sizes, halves, steps, keys)
    d_ws = [cuda.to_device(w) for w in w0]
    d_gs = [cuda.to_device(g) for g in args["gs"]]
    ptrs = np.array([[_device.address(w), _device.address(g), _device.address(w)] for w, g in zip(d_ws, d_gs)],
                    dtype=np.int64)
    fmt = _gpu_launch._format(np.float32)
    dev_args = (cuda.to_device(args["table"]), cuda.to_device(ptrs), cuda.to_device(args["lrs"]),
                cuda.to_device(np.zeros(len(sizes), np.float32)), cuda.to_device(args["coefs"]), fmt, fmt, None,
                fmt, *[np.float32(x) for x in halves], np.float32(1.0), np.float32(-1.0))
    _gpu_launch._call(gpu_sgld.multi_sgld_update_gpu, 2, 8, dev_args)
    for k, (c, d) in enumerate(zip(cpu, d_ws)):
        got = d.copy_to_host()
        if SIMULATOR:
            assert np.array_equal(got.view(np.uint32), c.view(np.uint32)), k
        else:
            np.testing.assert_allclose(got, c, rtol=3e-6, atol=1e-7)


def test_sgld_resumes_from_saved_settings(rng):
    """Three steps, save (dump_optimizer=True), restore into a new updater, two more steps:
    the same weights as five uninterrupted steps (the seed and the counts travel)."""
    ws = [rng.standard_normal(s).astype(np.float32) for s in [(6, 5), (11,)]]
    grads = [[rng.standard_normal(w.shape) for w in ws] for _ in range(5)]
    straight, _ = _sgld(ws, grads, reseed=5)
    first, updater = _sgld(ws, grads[:3], reseed=5)
    blob = updater.get_states(dump_optimizer=True)
    mxo.random.seed(999)          # the restored run must not depend on the library stream
    fresh = mxo.optimizer.get_updater(mxo.optimizer.create("sgld"))
    fresh.set_states(blob)
    assert fresh.optimizer.seed == updater.optimizer.seed
    for gs in grads[3:]:
        fresh(list(range(len(first))), [g.astype(np.float32) for g in gs], first)
    for a, b in zip(first, straight):
        assert np.array_equal(a, b)
    # pickling the optimizer keeps the seed as well
    clone = pickle.loads(pickle.dumps(updater.optimizer))
    assert clone.seed == updater.optimizer.seed


def test_sgld_seed_argument_checked():
    with pytest.raises(ValueError, match="seed"):
        mxo.optimizer.create("sgld", seed=-1)
    with pytest.raises(ValueError, match="seed"):
        mxo.optimizer.create("sgld", seed=1.5)
    assert mxo.optimizer.create("sgld", seed=(1 << 64) - 1).seed == (1 << 64) - 1
