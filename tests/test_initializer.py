"""Tests of mxopt_numba.initializer: MXNet 2.0.0b1 golden traces, exact values of the
deterministic initializers, distributions of the random ones, dispatch rules, dumps/create
round trips, errors, and seeding."""
import json
import logging
import math
import pickle
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mxopt_numba import initializer as I
from mxopt_numba import random as mxrandom

GOLDEN = Path(__file__).parent / "golden"
MANIFEST = json.loads((GOLDEN / "init_manifest.json").read_text())
CASES = MANIFEST["cases"]
OUTPUT_CASES = [c for c in CASES if c.get("file")]
DUMPS_CASE = next(c for c in CASES if c["id"] == "init.dumps")

DTYPES = [np.float16, ml_dtypes.bfloat16, np.float32, np.float64]
DTYPE_IDS = ["float16", "bfloat16", "float32", "float64"]
N_SE = 6.0  # standard errors allowed in the distribution checks


def W(name="x_weight", **kw):
    return I.InitDesc(name, **kw)


def filled(init, shape, dtype=np.float32, name="x_weight", start=-99.0):
    arr = np.full(shape, start, dtype=dtype)
    init(W(name), arr)
    return arr


def make_init(name, kwargs):
    kw = dict(kwargs)
    if name == "Constant" and isinstance(kw.get("value"), list):
        kw["value"] = np.array(kw["value"], dtype=np.float32)
    return getattr(I, name)(**kw)


def json_equal(a, b):
    return json.loads(a) == json.loads(b)


# ============================================================================ golden traces
@pytest.mark.parametrize("case", OUTPUT_CASES, ids=[c["id"] for c in OUTPUT_CASES])
def test_golden_outputs_bitwise(case):
    ref = np.load(GOLDEN / case["file"])
    for i, shape in enumerate(case["shapes"]):
        arr = np.zeros(tuple(shape), dtype=case["dtype"])
        make_init(case["name"], case["kwargs"])(W("x_weight"), arr)
        want = ref["out_%d" % i]
        assert arr.dtype == want.dtype and arr.shape == want.shape
        assert arr.tobytes() == want.tobytes(), "tensor %d differs" % i


DUMPS = DUMPS_CASE["dumps"]
DUMPS_IDS = ["%s(%s)" % (d["class"], ",".join("%s=%s" % kv for kv in d["kwargs"].items()))
             for d in DUMPS]


@pytest.mark.parametrize("entry", DUMPS, ids=DUMPS_IDS)
def test_golden_dumps_and_round_trip(entry):
    init = make_init(entry["class"], entry["kwargs"])
    text = init.dumps()
    assert json_equal(text, entry["dumps"])
    again = I.create(text)
    assert type(again).__name__ == entry["create_roundtrip_class"]
    # MXNet failed to rebuild Constant from an array value; the library fixes that
    assert json_equal(again.dumps(), text)
    assert again == init


ALIASES = DUMPS_CASE["aliases"]


@pytest.mark.parametrize("name", sorted(ALIASES), ids=sorted(ALIASES))
def test_golden_create_by_name(name):
    want = ALIASES[name]
    if "Error" in want:
        with pytest.raises(Exception):
            I.create(name)
    else:
        assert type(I.create(name)).__name__ == want


REGISTERED = sorted(DUMPS_CASE["registered"] + ["fusedrnn"])


def test_registered_names_are_mxnets_plus_fusedrnn():
    assert I._registry.names() == REGISTERED


# ============================================================================ exact values
QUARTER = np.array([0.25, 0.75, 0.75, 0.25])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_bilinear_4x4_is_outer_product(dtype):
    arr = filled(I.Bilinear(), (1, 1, 4, 4), dtype)
    assert arr.dtype == dtype
    np.testing.assert_array_equal(arr[0, 0].astype(np.float64), np.outer(QUARTER, QUARTER))


def test_bilinear_uses_width_for_both_axes():
    arr = filled(I.Bilinear(), (1, 1, 6, 4))
    rows = np.array([0.25, 0.75, 0.75, 0.25, -0.25, -0.75])  # f = 2, c = 0.75 from the width
    np.testing.assert_array_equal(arr[0, 0], np.outer(rows, QUARTER).astype(np.float32))


def test_bilinear_5x5_float32_rounded_even_in_float64():
    arr = filled(I.Bilinear(), (2, 3, 5, 5), np.float64)
    third = np.array([1, 2, 3, 2, 1]) / 3.0                    # f = 3, c = 5/6
    want = np.outer(third, third).astype(np.float32).astype(np.float64)
    for k in np.ndindex(2, 3):
        np.testing.assert_array_equal(arr[k], want)


LSTM_BIAS_CASES = [
    ("len16_default", (16,), 1.0, [0] * 4 + [1] * 4 + [0] * 8),
    ("len18_floor", (18,), 2.5, [0] * 4 + [2.5] * 4 + [0] * 10),
    ("len4", (4,), -1.0, [0, -1, 0, 0]),
]


@pytest.mark.parametrize("shape,forget,want", [c[1:] for c in LSTM_BIAS_CASES],
                         ids=[c[0] for c in LSTM_BIAS_CASES])
def test_lstm_bias_values(shape, forget, want):
    arr = filled(I.LSTMBias(forget), shape)
    np.testing.assert_array_equal(arr, np.array(want, np.float32))


def test_lstm_bias_rows_of_2d():
    arr = filled(I.LSTMBias(3.0), (8, 2))
    want = np.zeros((8, 2), np.float32)
    want[2:4] = 3.0
    np.testing.assert_array_equal(arr, want)


def test_lstm_bias_only_through_init_attribute():
    by_name = filled(I.LSTMBias(), (8,), name="lstm_i2h_bias")
    np.testing.assert_array_equal(by_name, np.zeros(8, np.float32))
    arr = np.full(8, -99.0, np.float32)
    I.Uniform()(W("lstm_i2h_bias", attrs={"__init__": I.LSTMBias(2.0).dumps()}), arr)
    np.testing.assert_array_equal(arr, [0, 0, 2, 2, 0, 0, 0, 0])


CONSTANT_CASES = [
    ("scalar", 0.7, (2, 3), np.full((2, 3), 0.7)),
    ("int", -3, (4,), np.full(4, -3.0)),
    ("array", np.arange(6.0).reshape(2, 3), (2, 3), np.arange(6.0).reshape(2, 3)),
    ("row_broadcast", [1.0, 2.0, 3.0], (2, 3), np.tile([1.0, 2.0, 3.0], (2, 1))),
    ("numpy_scalar", np.float32(0.5), (3,), np.full(3, 0.5)),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("value,shape,want", [c[1:] for c in CONSTANT_CASES],
                         ids=[c[0] for c in CONSTANT_CASES])
def test_constant_values(value, shape, want, dtype):
    arr = filled(I.Constant(value), shape, dtype)
    assert arr.dtype == dtype
    np.testing.assert_array_equal(arr, np.asarray(want).astype(dtype))


@pytest.mark.parametrize("value", [c[1] for c in CONSTANT_CASES], ids=[c[0] for c in CONSTANT_CASES])
def test_constant_dumps_round_trip(value):
    init = I.Constant(value)
    text = init.dumps()
    name, kwargs = json.loads(text)
    assert name == "constant"
    np.testing.assert_array_equal(np.asarray(kwargs["value"]), np.asarray(value))
    again = I.create(text)
    assert again == init and json_equal(again.dumps(), text)
    shape = np.shape(value) or (3,)
    np.testing.assert_array_equal(filled(again, shape), filled(init, shape))


@pytest.mark.parametrize("shape", [(), (5,), (2, 3, 4)], ids=["0d", "1d", "3d"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cls,value", [(I.Zero, 0.0), (I.One, 1.0)], ids=["Zero", "One"])
def test_zero_one(cls, value, dtype, shape):
    arr = filled(cls(), shape, dtype)
    assert arr.dtype == dtype and arr.shape == shape
    assert (arr.astype(np.float64) == value).all()


# ============================================================================ dispatch
INITDESC_TABLE = [
    ("fc_weight", 0.3), ("fc_bias", 0.0), ("bn_gamma", 1.0), ("bn_beta", 0.0),
    ("q_min", 0.0), ("q_max", 1.0), ("fc_bias_quantize", 0.0),
]


@pytest.mark.parametrize("name,want", INITDESC_TABLE, ids=[n for n, _ in INITDESC_TABLE])
def test_initdesc_suffix_dispatch(name, want):
    arr = filled(I.Constant(0.3), (2, 3), name=name)
    np.testing.assert_array_equal(arr, np.full((2, 3), want, np.float32))


def test_weight_quantize_is_one_random_integer():
    mxrandom.seed(3)
    values = set()
    for _ in range(20):
        arr = filled(I.Constant(0.3), (4, 5), name="fc_weight_quantize")
        v = np.unique(arr)
        assert v.size == 1 and float(v[0]).is_integer() and -127 <= v[0] < 127
        values.add(float(v[0]))
    assert len(values) > 1


UNKNOWN_INITDESC = ["x_foo", "bn_moving_mean", "bn_moving_var", "upsampling0"]


@pytest.mark.parametrize("name", UNKNOWN_INITDESC, ids=UNKNOWN_INITDESC)
def test_initdesc_unknown_pattern_raises(name):
    with pytest.raises(ValueError, match="Unknown initialization pattern for '%s'" % name):
        filled(I.Uniform(), (3,), name=name)


LEGACY_TABLE = [
    ("upsampling0_weight", (1, 1, 4, 4), np.outer(QUARTER, QUARTER).reshape(1, 1, 4, 4)),
    ("stn_loc_weight", (2, 3), np.zeros((2, 3))),
    ("stn_loc_bias", (6,), [1, 0, 0, 0, 1, 0]),
    ("fc_bias", (3,), np.zeros(3)),
    ("bn_gamma", (3,), np.ones(3)),
    ("bn_beta", (3,), np.zeros(3)),
    ("fc_weight", (2, 3), np.full((2, 3), 0.3)),
    ("bn_moving_mean", (3,), np.zeros(3)),
    ("bn_moving_var", (3,), np.ones(3)),
    ("bn_moving_inv_var", (3,), np.zeros(3)),
    ("bn_moving_avg", (3,), np.zeros(3)),
    ("act_min", (3,), np.zeros(3)),
    ("act_max", (3,), np.ones(3)),
]


@pytest.mark.parametrize("name,shape,want", LEGACY_TABLE, ids=[t[0] for t in LEGACY_TABLE])
def test_legacy_string_dispatch(name, shape, want):
    arr = np.full(shape, -99.0, np.float32)
    with pytest.warns(DeprecationWarning, match="deprecated"):
        I.Constant(0.3)(name, arr)
    np.testing.assert_array_equal(arr, np.asarray(want, np.float32))


LEGACY_ERRORS = [
    ("unknown_name", "x_foo", np.zeros(3, np.float32), ValueError),
    ("stn_loc_bias_not_6", "stn_loc_bias", np.zeros(4, np.float32), ValueError),
    ("name_not_str", 3, np.zeros(3, np.float32), TypeError),
    ("arr_is_list", "fc_weight", [0.0, 0.0], TypeError),
]


@pytest.mark.parametrize("name,arr,exc", [t[1:] for t in LEGACY_ERRORS], ids=[t[0] for t in LEGACY_ERRORS])
def test_legacy_errors(name, arr, exc):
    with pytest.warns(DeprecationWarning), pytest.raises(exc):
        I.Constant(0.3)(name, arr)


OVERRIDES = [
    ("dumps_string", lambda: I.Constant(5).dumps()),
    ("instance", lambda: I.Constant(5)),
    ("json_dict", lambda: '{"initializer": "constant", "value": 5}'),
]
OVERRIDE_NAMES = ["fc_weight", "fc_bias", "bn_gamma", "x_foo", "bn_moving_var"]


@pytest.mark.parametrize("name", OVERRIDE_NAMES, ids=OVERRIDE_NAMES)
@pytest.mark.parametrize("spec", [o[1] for o in OVERRIDES], ids=[o[0] for o in OVERRIDES])
def test_init_attribute_overrides_name(spec, name):
    arr = np.full((2, 4), -99.0, np.float32)
    I.Uniform()(W(name, attrs={"__init__": spec()}), arr)
    np.testing.assert_array_equal(arr, np.full((2, 4), 5.0, np.float32))


def test_empty_init_attribute_uses_the_name():
    arr = np.full(3, -99.0, np.float32)
    I.Constant(5)(W("fc_bias", attrs={"__init__": ""}), arr)
    np.testing.assert_array_equal(arr, np.zeros(3, np.float32))


def test_global_init_is_set_once():
    first, second = I.Zero(), I.One()
    desc = W("fc_weight")
    first(desc, np.zeros(2))
    second(desc, np.zeros(2))
    assert desc.global_init is first
    assert W("a", global_init=second).global_init is second


def test_initdesc_is_a_str_with_attrs():
    d = I.InitDesc("fc_weight", attrs={"lr_mult": "2"})
    assert d == "fc_weight" and isinstance(d, str) and d.attrs == {"lr_mult": "2"}
    assert I.InitDesc("b").attrs == {} and I.InitDesc("b").global_init is None


def test_base_initializer_has_no_weight_rule():
    with pytest.raises(NotImplementedError):
        I.Initializer()(W("x_weight"), np.zeros(3))
    np.testing.assert_array_equal(filled(I.Initializer(), (3,), name="x_gamma"), np.ones(3))


def test_initdesc_call_rejects_non_arrays():
    with pytest.raises(TypeError, match="numpy array"):
        I.Zero()(W("x_weight"), [0.0, 1.0])


# ============================================================================ verbosity, eq
def test_set_verbosity_logs_rms(caplog):
    init = I.Constant(2.0)
    assert init.set_verbosity(True) is init
    with caplog.at_level(logging.INFO):
        init(W("fc_weight"), np.zeros((2, 2)))
    assert "Initialized fc_weight as weight: 2.0" in caplog.text


def test_set_verbosity_custom_print_and_off(caplog):
    init = I.One().set_verbosity(True, print_func=lambda a: "sum=%g" % a.sum())
    with caplog.at_level(logging.INFO):
        init(W("bn_beta"), np.ones(3))
        init.set_verbosity(False)
        init(W("other_weight"), np.ones(3))
    assert "Initialized bn_beta as beta: sum=0" in caplog.text
    assert "other_weight" not in caplog.text


EQUALITY = [
    ("same_kwargs", lambda: I.Normal(0.5), lambda: I.Normal(0.5), True),
    ("other_kwargs", lambda: I.Normal(0.5), lambda: I.Normal(0.2), False),
    ("other_class_same_kwargs", lambda: I.Zero(), lambda: I.Bilinear(), False),
    ("array_vs_list", lambda: I.Constant(np.eye(2)), lambda: I.Constant([[1.0, 0.0], [0.0, 1.0]]), True),
    ("rng_ignored", lambda: I.Uniform(0.1, rng=1), lambda: I.Uniform(0.1, rng=2), True),
]


@pytest.mark.parametrize("a,b,want", [e[1:] for e in EQUALITY], ids=[e[0] for e in EQUALITY])
def test_equality(a, b, want):
    assert (a() == b()) is want


def test_equality_with_other_objects():
    assert I.Zero() != "zero" and I.Zero() != 0


# ============================================================================ registry/create
SAMPLE_KWARGS = {
    "bilinear": {},
    "constant": {"value": [[1.0, -2.0], [0.5, 4.0]]},
    "fusedrnn": {"init": '["xavier", {"magnitude": 2}]', "num_hidden": 3, "num_layers": 2,
                 "mode": "gru", "bidirectional": True, "forget_bias": 0.5},
    "lstmbias": {"forget_bias": 2.0},
    "msraprelu": {"factor_type": "out", "slope": 0.1},
    "normal": {"sigma": 0.3},
    "one": {},
    "ones": {},
    "orthogonal": {"scale": 2.0, "rand_type": "normal"},
    "rnnfused": {"mode": "lstm", "num_layers": 2, "state_size": 4, "bidirectional": True,
                 "projection_size": 2, "i2h_weight_initializer": "uniform",
                 "h2h_weight_initializer": I.Normal(0.1), "i2h_bias_initializer": "zeros",
                 "h2h_bias_initializer": "ones", "h2r_weight_initializer": "one"},
    "uniform": {"scale": 0.2},
    "xavier": {"rnd_type": "gaussian", "factor_type": "in", "magnitude": 2.34},
    "zero": {},
    "zeros": {},
}


def test_every_registered_name_has_a_round_trip_sample():
    assert sorted(SAMPLE_KWARGS) == I._registry.names()


@pytest.mark.parametrize("name", sorted(SAMPLE_KWARGS), ids=sorted(SAMPLE_KWARGS))
def test_dumps_create_round_trip_every_registered(name):
    init = I.create(name, **SAMPLE_KWARGS[name])
    text = init.dumps()
    again = I.create(text)
    assert type(again) is type(init)
    assert json_equal(again.dumps(), text)
    assert again == init
    assert I.create(again) is again


CREATE_FORMS = [
    ("name", lambda: I.create("xavier"), I.Xavier()),
    ("upper_case_name", lambda: I.create("MSRAPrelu"), I.MSRAPrelu()),
    ("name_with_kwargs", lambda: I.create("normal", sigma=0.3), I.Normal(0.3)),
    ("name_with_args", lambda: I.create("uniform", 0.3), I.Uniform(0.3)),
    ("dict", lambda: I.create({"initializer": "xavier", "magnitude": 2}), I.Xavier(magnitude=2)),
    ("json_object", lambda: I.create('{"initializer": "normal", "sigma": 0.2}'), I.Normal(0.2)),
    ("keyword", lambda: I.create(initializer="constant", value=3), I.Constant(3)),
    ("dumps", lambda: I.create('["orthogonal", {"scale": 1.0}]'), I.Orthogonal(1.0)),
]


@pytest.mark.parametrize("make,want", [c[1:] for c in CREATE_FORMS], ids=[c[0] for c in CREATE_FORMS])
def test_create_forms(make, want):
    got = make()
    assert type(got) is type(want) and got == want


CREATE_ERRORS = [
    ("none", lambda: I.create(None), TypeError),
    ("nothing", lambda: I.create(), TypeError),
    ("unknown_name", lambda: I.create("glorot"), ValueError),
    ("instance_with_kwargs", lambda: I.create(I.Zero(), scale=2), ValueError),
    ("not_a_spec", lambda: I.create(3.5), TypeError),
    ("missing_ctor_args", lambda: I.create("rnnfused"), TypeError),
]


@pytest.mark.parametrize("call,exc", [c[1:] for c in CREATE_ERRORS], ids=[c[0] for c in CREATE_ERRORS])
def test_create_errors(call, exc):
    with pytest.raises(exc):
        call()


@pytest.fixture
def scratch_names():
    added = []
    yield added
    for name in added:
        I._registry._classes.pop(name, None)


def test_register_and_alias_custom_initializer(scratch_names):
    scratch_names += ["halfinit", "half"]

    @I.register
    @I.alias("half")
    class HalfInit(I.Initializer):
        def __init__(self):
            super().__init__()

        def _init_weight(self, _, arr):
            arr[...] = 0.5

    assert type(I.create("halfinit")) is HalfInit and type(I.create("HALF")) is HalfInit
    np.testing.assert_array_equal(filled(I.create("half"), (2,)), [0.5, 0.5])
    with pytest.warns(UserWarning, match="overrides"):
        I.register(type("HalfInit", (I.Initializer,), {}))


def test_register_rejects_non_initializers():
    with pytest.raises(TypeError):
        I.register(dict)


# ============================================================================ random: distributions
def xavier_c(shape, factor_type="avg", magnitude=3.0):
    hw = float(np.prod(shape[2:])) if len(shape) > 2 else 1.0
    fan_in, fan_out = shape[1] * hw, shape[0] * hw
    factor = {"avg": (fan_in + fan_out) / 2, "in": fan_in, "out": fan_out}[factor_type]
    return math.sqrt(magnitude / factor)


RANDOM_DISTS = [
    ("Uniform_default", lambda r: I.Uniform(rng=r), (64, 32), "uniform", 0.07),
    ("Uniform_0.5_3d", lambda r: I.Uniform(0.5, rng=r), (8, 8, 8), "uniform", 0.5),
    ("Normal_default", lambda r: I.Normal(rng=r), (64, 32), "normal", 0.01),
    ("Normal_2", lambda r: I.Normal(2.0, rng=r), (100,), "normal", 2.0),
    ("Xavier_default_dense", lambda r: I.Xavier(rng=r), (30, 50), "uniform", xavier_c((30, 50))),
    ("Xavier_default_conv", lambda r: I.Xavier(rng=r), (16, 8, 3, 3), "uniform", xavier_c((16, 8, 3, 3))),
    ("Xavier_uniform_in_conv", lambda r: I.Xavier("uniform", "in", 2.0, rng=r), (16, 8, 3, 3),
     "uniform", xavier_c((16, 8, 3, 3), "in", 2.0)),
    ("Xavier_uniform_out_dense", lambda r: I.Xavier("uniform", "out", 6.0, rng=r), (40, 10),
     "uniform", xavier_c((40, 10), "out", 6.0)),
    ("Xavier_gaussian_avg_dense", lambda r: I.Xavier("gaussian", "avg", 3, rng=r), (30, 50),
     "normal", xavier_c((30, 50))),
    ("Xavier_gaussian_in_conv", lambda r: I.Xavier("gaussian", "in", 2.34, rng=r), (4, 6, 5, 5),
     "normal", xavier_c((4, 6, 5, 5), "in", 2.34)),
    ("Xavier_gaussian_out_conv1d", lambda r: I.Xavier("gaussian", "out", 2, rng=r), (12, 7, 3),
     "normal", xavier_c((12, 7, 3), "out", 2)),
    ("MSRAPrelu_default", lambda r: I.MSRAPrelu(rng=r), (30, 50), "normal",
     xavier_c((30, 50), "avg", 2 / 1.0625)),
    ("MSRAPrelu_in", lambda r: I.MSRAPrelu("in", 0.0, rng=r), (16, 8, 3, 3), "normal",
     xavier_c((16, 8, 3, 3), "in", 2.0)),
    ("MSRAPrelu_out", lambda r: I.MSRAPrelu("out", 0.5, rng=r), (10, 20), "normal",
     xavier_c((10, 20), "out", 2 / 1.25)),
]


def draw_many(init, shape, dtype=np.float32, target=200_000):
    reps = max(1, target // int(np.prod(shape)))
    return np.concatenate([filled(init, shape, dtype).astype(np.float64).ravel() for _ in range(reps)])


@pytest.mark.parametrize("factory,shape,dist,param", [c[1:] for c in RANDOM_DISTS],
                         ids=[c[0] for c in RANDOM_DISTS])
def test_random_distribution(factory, shape, dist, param):
    x = draw_many(factory(np.random.default_rng(20240607)), shape)
    n = x.size
    assert np.isfinite(x).all()
    if dist == "uniform":
        sigma = param / math.sqrt(3.0)
        assert np.abs(x).max() <= param * (1 + 1e-6)
        assert np.abs(x).max() >= param * (1 - 12.0 / n)
        assert abs(x.mean()) <= N_SE * sigma / math.sqrt(n)
        assert abs(x.std() / sigma - 1) <= N_SE * math.sqrt(0.2 / n)
    else:
        sd = x.std()
        kurt = ((x - x.mean()) ** 4).mean() / x.var() ** 2 - 3.0
        assert abs(x.mean()) <= N_SE * param / math.sqrt(n)
        assert abs(sd / param - 1) <= N_SE * math.sqrt(0.5 / n)
        assert abs(kurt) <= N_SE * math.sqrt(24.0 / n)


ORTHO_CASES = [
    ("conv_wide_4x12", (4, 3, 2, 2), 1.414, "uniform"),
    ("tall_20x5", (20, 5), 1.414, "uniform"),
    ("square_7", (7, 7), 2.0, "normal"),
    ("wide_3x40", (3, 40), 0.5, "normal"),
    ("conv_tall_30x6", (30, 6, 1), 1.0, "uniform"),
]


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)], ids=["float64", "float32"])
@pytest.mark.parametrize("shape,scale,rand_type", [c[1:] for c in ORTHO_CASES], ids=[c[0] for c in ORTHO_CASES])
def test_orthogonal_is_scaled_orthonormal(shape, scale, rand_type, dtype, tol):
    init = I.Orthogonal(scale, rand_type, rng=7)
    nout, nin = shape[0], int(np.prod(shape[1:]))
    for _ in range(5):
        q = filled(init, shape, dtype).astype(np.float64).reshape(nout, nin) / scale
        gram = q @ q.T if nout <= nin else q.T @ q
        assert np.abs(gram - np.eye(min(nout, nin))).max() <= tol
        assert abs((q ** 2).sum() / min(nout, nin) - 1) <= tol


def test_orthogonal_draws_differ_between_calls():
    init = I.Orthogonal(rng=1)
    assert not np.array_equal(filled(init, (4, 4)), filled(init, (4, 4)))


RANDOM_FACTORIES = [
    ("Uniform", lambda rng=None: I.Uniform(0.3, rng=rng), 0.3),
    ("Normal", lambda rng=None: I.Normal(0.3, rng=rng), None),
    ("Orthogonal", lambda rng=None: I.Orthogonal(rng=rng), 1.414),
    ("Xavier_uniform", lambda rng=None: I.Xavier(rng=rng), xavier_c((6, 5))),
    ("Xavier_gaussian", lambda rng=None: I.Xavier("gaussian", rng=rng), None),
    ("MSRAPrelu", lambda rng=None: I.MSRAPrelu(rng=rng), None),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("factory,bound", [f[1:] for f in RANDOM_FACTORIES], ids=[f[0] for f in RANDOM_FACTORIES])
def test_random_initializers_keep_dtype(factory, bound, dtype):
    arr = filled(factory(rng=0), (6, 5), dtype)
    assert arr.dtype == dtype
    x = arr.astype(np.float64)
    assert np.isfinite(x).all() and (x != -99.0).all() and np.unique(x).size > 10
    if bound is not None:
        assert np.abs(x).max() <= bound * (1 + float(ml_dtypes.finfo(dtype).eps))


# ============================================================================ seeding
def draws(factory, n=3):
    init = factory()
    return [filled(init, (6, 5)) for _ in range(n)]


@pytest.mark.parametrize("factory", [f[1] for f in RANDOM_FACTORIES], ids=[f[0] for f in RANDOM_FACTORIES])
def test_library_seed_reproduces_draws(factory):
    mxrandom.seed(1234)
    a = draws(factory)
    mxrandom.seed(1234)
    b = draws(factory)
    mxrandom.seed(1235)
    c = draws(factory)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], a[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("factory", [f[1] for f in RANDOM_FACTORIES], ids=[f[0] for f in RANDOM_FACTORIES])
def test_rng_argument_reproduces_draws(factory):
    a = draws(lambda: factory(rng=np.random.default_rng(99)))
    b = draws(lambda: factory(rng=99))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], a[1])


@pytest.mark.parametrize("factory", [f[1] for f in RANDOM_FACTORIES], ids=[f[0] for f in RANDOM_FACTORIES])
def test_rng_argument_leaves_library_stream_alone(factory):
    mxrandom.seed(5)
    want = filled(I.Normal(), (4,))
    mxrandom.seed(5)
    filled(factory(rng=3), (6, 5))
    np.testing.assert_array_equal(filled(I.Normal(), (4,)), want)


@pytest.mark.parametrize("factory", [f[1] for f in RANDOM_FACTORIES], ids=[f[0] for f in RANDOM_FACTORIES])
def test_rng_not_in_dumps(factory):
    with_rng, without = factory(rng=np.random.default_rng(1)), factory()
    assert "rng" not in json.loads(with_rng.dumps())[1]
    assert with_rng.dumps() == without.dumps() and with_rng == without


# ============================================================================ shape errors
SHAPE_ERRORS = [
    ("Xavier_1d", lambda: I.Xavier(), (5,), r"Xavier.*'x_weight'.*\(5,\).*at least 2 dimensions"),
    ("Xavier_0d", lambda: I.Xavier(), (), "at least 2 dimensions"),
    ("MSRAPrelu_1d", lambda: I.MSRAPrelu(), (4,), "MSRAPrelu.*at least 2 dimensions"),
    ("Orthogonal_1d", lambda: I.Orthogonal(), (5,), r"Orthogonal.*\(5,\).*at least 2 dimensions"),
    ("Bilinear_2d", lambda: I.Bilinear(), (4, 4), r"Bilinear.*\(4, 4\).*4-D"),
    ("Bilinear_5d", lambda: I.Bilinear(), (1, 1, 1, 4, 4), "4-D"),
    ("LSTMBias_0d", lambda: I.LSTMBias(), (), "LSTMBias.*0-d"),
    ("Constant_bad_broadcast", lambda: I.Constant(np.ones((2, 3))), (3, 2), r"Constant.*\(2, 3\).*\(3, 2\)"),
    ("FusedRNN_bad_length", lambda: I.FusedRNN(I.Zero(), 3, 1, "lstm"), (85,), "FusedRNN.*85 elements"),
    ("FusedRNN_too_short", lambda: I.FusedRNN(I.Zero(), 3, 1, "lstm"), (12,), "FusedRNN.*12 elements"),
    ("RNNFused_bad_length", lambda: I.RNNFused("lstm", 1, 3, **{k: "zero" for k in
                                                                ("i2h_weight_initializer",
                                                                 "h2h_weight_initializer",
                                                                 "i2h_bias_initializer",
                                                                 "h2h_bias_initializer")}),
     (83,), "RNNFused.*83 elements"),
]


@pytest.mark.parametrize("factory,shape,msg", [e[1:] for e in SHAPE_ERRORS], ids=[e[0] for e in SHAPE_ERRORS])
def test_shapes_that_cannot_be_filled(factory, shape, msg):
    arr = np.full(shape, -99.0, np.float32)
    with pytest.raises(ValueError, match=msg):
        factory()(W("x_weight"), arr)
    assert (arr == -99.0).all(), "a failed initialization must not write partial results"


ARG_ERRORS = [
    ("Xavier_factor_type", lambda: I.Xavier(factor_type="fan"), "factor_type.*'fan'"),
    ("Xavier_rnd_type", lambda: I.Xavier(rnd_type="normal"), "rnd_type.*'normal'"),
    ("MSRAPrelu_factor_type", lambda: I.MSRAPrelu(factor_type="fan_in"), "MSRAPrelu: factor_type"),
    ("Orthogonal_rand_type", lambda: I.Orthogonal(rand_type="foo"), "rand_type.*'foo'"),
    ("RNNFused_mode", lambda: I.RNNFused("transformer", 1, 3), "mode.*'transformer'"),
    ("FusedRNN_mode", lambda: I.FusedRNN(None, 3, 1, "lsmt"), "mode.*'lsmt'"),
    ("Mixed_lengths", lambda: I.Mixed(["a", "b"], [I.Zero()]), "2 patterns but 1 initializers"),
]


@pytest.mark.parametrize("call,msg", [e[1:] for e in ARG_ERRORS], ids=[e[0] for e in ARG_ERRORS])
def test_bad_arguments(call, msg):
    with pytest.raises(ValueError, match=msg):
        call()


def test_changed_attribute_still_checked_at_call_time():
    init = I.Xavier()
    init.factor_type = "fan"
    with pytest.raises(ValueError, match="factor_type"):
        init(W("x_weight"), np.zeros((3, 3)))


@pytest.mark.parametrize("cls", [I.Xavier, I.MSRAPrelu, I.Orthogonal, I.Uniform, I.Normal, I.Zero],
                         ids=lambda c: c.__name__)
def test_zero_size_arrays_are_fine(cls):
    assert filled(cls(), (0, 4)).shape == (0, 4)


def test_initializers_and_initdesc_pickle():
    init = I.Uniform(0.2, rng=3)
    again = pickle.loads(pickle.dumps(init))
    assert again == init
    np.testing.assert_array_equal(filled(again, (5,)), filled(init, (5,)))
    desc = pickle.loads(pickle.dumps(I.InitDesc("fc_weight", attrs={"__init__": "one"})))
    assert desc == "fc_weight" and desc.attrs == {"__init__": "one"}


def bilinear_reference(shape):
    """The spec's per-index formula, written as a plain loop."""
    out = np.zeros(int(np.prod(shape)), np.float32)
    f = math.ceil(shape[3] / 2)
    c = (2 * f - 1 - f % 2) / (2 * f)
    for i in range(out.size):
        x, y = i % shape[3], (i // shape[3]) % shape[2]
        out[i] = (1 - abs(x / f - c)) * (1 - abs(y / f - c))
    return out.reshape(shape)


@settings(max_examples=60, deadline=None)
@given(st.tuples(*[st.integers(1, 4)] * 2, *[st.integers(1, 9)] * 2))
def test_bilinear_matches_formula(shape):
    np.testing.assert_array_equal(filled(I.Bilinear(), shape, np.float64), bilinear_reference(shape))


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 6), min_size=2, max_size=4).map(tuple),
       factor=st.sampled_from(["avg", "in", "out"]), magnitude=st.floats(0.5, 6.0),
       seed=st.integers(0, 2 ** 32 - 1))
def test_xavier_uniform_within_bound(shape, factor, magnitude, seed):
    arr = filled(I.Xavier("uniform", factor, magnitude, rng=seed), shape, np.float64)
    assert np.abs(arr).max() <= xavier_c(shape, factor, magnitude)


# ============================================================================ Load and Mixed
SRC = {"arg:fc_weight": np.arange(6.0).reshape(2, 3), "aux:bn_moving_mean": np.array([1.0, 2.0, 3.0]),
       "fc_bias": np.array([-1.0, -2.0, -3.0])}
LOAD_CALLS = [
    ("prefix_arg_stripped", "fc_weight", (2, 3), np.arange(6.0).reshape(2, 3)),
    ("prefix_aux_stripped", "bn_moving_mean", (3,), [1, 2, 3]),
    ("no_prefix", "fc_bias", (3,), [-1, -2, -3]),
    ("default_weight", "conv_weight", (2, 2), np.full((2, 2), 0.2)),
    ("default_bias_is_zero", "conv_bias", (2,), [0, 0]),
    ("prefixed_query_not_found", "arg:fc_weight", (2, 3), np.full((2, 3), 0.2)),
    ("default_moving_var", "bn_moving_var", (3,), [1, 1, 1]),
]


@pytest.fixture(params=["dict", "npz_file", "npz_path_str"])
def loader(request, tmp_path):
    if request.param == "dict":
        return I.Load(SRC, default_init=I.Constant(0.2))
    path = tmp_path / "params.npz"
    np.savez(path, **SRC)
    src = path if request.param == "npz_file" else str(path)
    return I.Load(src, default_init=I.Constant(0.2))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("name,shape,want", [c[1:] for c in LOAD_CALLS], ids=[c[0] for c in LOAD_CALLS])
def test_load(loader, name, shape, want):
    arr = np.full(shape, -99.0, np.float32)
    loader(name, arr)
    np.testing.assert_array_equal(arr, np.asarray(want, np.float32))


def test_load_errors(tmp_path):
    ld = I.Load(SRC, default_init=I.Zero())
    with pytest.raises(ValueError, match=r"'fc_weight'.*shape mismatch.*\(3, 2\).*\(2, 3\)"):
        ld("fc_weight", np.zeros((3, 2)))
    with pytest.raises(ValueError, match="'other_weight'.*no default_init"):
        I.Load(SRC)("other_weight", np.zeros(3))
    with pytest.raises(ValueError, match="cannot read"):
        I.Load(str(tmp_path / "missing.npz"))
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(ValueError, match="single array"):
        I.Load(tmp_path / "single.npy")
    with pytest.raises(TypeError):
        I.Load([1, 2])


def test_load_with_initdesc_and_verbose(caplog):
    ld = I.Load({"fc_weight": np.ones((2, 2))}, default_init=I.Constant(3.0), verbose=True)
    a, b = np.zeros((2, 2)), np.zeros((2, 2))
    with caplog.at_level(logging.INFO):
        ld(W("fc_weight"), a)
        ld(W("fc_bias", attrs={"__init__": "one"}), b)
    np.testing.assert_array_equal(a, np.ones((2, 2)))
    np.testing.assert_array_equal(b, np.ones((2, 2)))
    assert "Initialized fc_weight by loading" in caplog.text
    assert "Initialized fc_bias by default" in caplog.text


MIXED_CALLS = [
    ("anchored_match_misses_suffix", "fc_bias", np.zeros(3)),     # '.*' -> Constant(0.7) -> bias rule -> 0
    ("first_pattern", "bias_weight", np.full(3, 0.3)),
    ("fallback_pattern", "fc_weight", np.full(3, 0.7)),
    ("fallback_gamma_rule", "bn_gamma", np.ones(3)),
]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("name,want", [c[1:] for c in MIXED_CALLS], ids=[c[0] for c in MIXED_CALLS])
def test_mixed(name, want):
    arr = np.full(3, -99.0, np.float32)
    I.Mixed(["bias", ".*"], [I.Constant(0.3), I.Constant(0.7)])(name, arr)
    np.testing.assert_array_equal(arr, np.asarray(want, np.float32))


def test_mixed_passes_initdesc_through():
    arr = np.full(3, -99.0, np.float32)
    I.Mixed(["fc.*"], [I.Constant(0.3)])(W("fc_bias", attrs={"__init__": "one"}), arr)
    np.testing.assert_array_equal(arr, np.ones(3, np.float32))


def test_mixed_no_match_names_the_parameter():
    with pytest.raises(ValueError, match="Parameter name conv_weight did not match any pattern") as e:
        I.Mixed(["fc.*"], [I.Constant(0.3)])("conv_weight", np.zeros(3))
    assert "%s" not in str(e.value)


# ============================================================================ RNN layouts
FIVE = dict(i2h_weight_initializer=I.Constant(1.0).dumps(), h2h_weight_initializer=I.Constant(2.0).dumps(),
            i2h_bias_initializer=I.Constant(3.0).dumps(), h2h_bias_initializer=I.Constant(4.0).dumps(),
            h2r_weight_initializer=I.Constant(5.0).dumps())


def blocks(*pairs):
    """Concatenate (length, value) runs."""
    return np.concatenate([np.full(n, v, np.float32) for n, v in pairs])


# hand-computed layouts: (length, which initializer: 1 i2h W, 2 h2h W, 3 i2h b, 4 h2h b, 5 h2r W)
RNNFUSED_LAYOUTS = [
    ("lstm_1layer_H3_in2", dict(mode="lstm", num_layers=1, state_size=3),
     blocks((24, 1), (36, 2), (12, 3), (12, 4))),
    ("gru_2layers_bi_H2_in3", dict(mode="gru", num_layers=2, state_size=2, bidirectional=True),
     blocks((18, 1), (12, 2), (18, 1), (12, 2), (24, 1), (12, 2), (24, 1), (12, 2),
            *[(6, 3), (6, 4)] * 4)),
    ("lstm_proj_H4_P2_in3", dict(mode="lstm", num_layers=1, state_size=4, projection_size=2),
     blocks((48, 1), (32, 2), (8, 5), (16, 3), (16, 4))),
    ("lstm_proj_2layers_bi", dict(mode="lstm", num_layers=2, state_size=3, projection_size=2,
                                  bidirectional=True),
     blocks(*[(12 * 5, 1), (12 * 2, 2), (6, 5)] * 2, *[(12 * 4, 1), (12 * 2, 2), (6, 5)] * 2,
            *[(12, 3), (12, 4)] * 4)),
    ("rnn_tanh_H5_in4", dict(mode="rnn_tanh", num_layers=1, state_size=5),
     blocks((20, 1), (25, 2), (5, 3), (5, 4))),
]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64], ids=["float16", "float32", "float64"])
@pytest.mark.parametrize("kw,want", [c[1:] for c in RNNFUSED_LAYOUTS], ids=[c[0] for c in RNNFUSED_LAYOUTS])
def test_rnnfused_layout(kw, want, dtype):
    arr = np.full(want.shape, -99.0, dtype)
    I.RNNFused(**kw, **FIVE)(W("rnn_weight"), arr)
    assert arr.dtype == dtype
    np.testing.assert_array_equal(arr, want.astype(dtype))


def test_rnnfused_through_init_attribute():
    fused = I.RNNFused("lstm", 1, 3, **FIVE)
    arr = np.zeros(84, np.float32)
    I.Uniform()(W("lstm0_parameters", attrs={"__init__": fused.dumps()}), arr)
    np.testing.assert_array_equal(arr, RNNFUSED_LAYOUTS[0][2])


def test_rnnfused_slices_are_flat():
    kw = dict(FIVE, i2h_weight_initializer="xavier")
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        I.RNNFused("lstm", 1, 3, **kw)(W("rnn_weight"), np.zeros(84, np.float32))


def test_rnnfused_needs_every_initializer():
    with pytest.raises(ValueError, match="i2h_weight_initializer is not set"):
        I.RNNFused("lstm", 1, 3)(W("rnn_weight"), np.zeros(84, np.float32))


def test_rnnfused_set_initializer_fills_only_missing():
    fused = I.RNNFused("lstm", 1, 3, i2h_weight_initializer=I.Constant(1.0).dumps(),
                       i2h_bias_initializer="zeros")
    fused.set_initializer(I.Constant(7.0))
    arr = np.zeros(84, np.float32)
    fused(W("rnn_weight"), arr)
    np.testing.assert_array_equal(arr, blocks((24, 1), (36, 7), (12, 0), (12, 7)))
    kwargs = json.loads(fused.dumps())[1]
    assert kwargs["i2h_bias_initializer"] == "zeros"
    assert json.loads(kwargs["h2h_weight_initializer"]) == ["constant", {"value": 7.0}]
    assert I.create(fused.dumps()) == fused


def test_rnnfused_random_slices_within_bounds():
    fused = I.RNNFused("gru", 2, 2, bidirectional=True, i2h_weight_initializer=I.Uniform(0.1, rng=0),
                       h2h_weight_initializer=I.Normal(0.01, rng=1), i2h_bias_initializer="zeros",
                       h2h_bias_initializer="zeros")
    arr = np.full(180, -99.0, np.float32)
    fused(W("rnn_weight"), arr)
    assert np.abs(arr[:132]).max() <= 0.1 and (arr[132:] == 0).all()


def fused_lstm_1layer(weight, f_bias, n_in=2, h=3):
    gate_bias = np.concatenate([np.zeros(h), np.full(h, f_bias), np.zeros(2 * h)])
    return np.concatenate([np.full(4 * h * (n_in + h), weight), gate_bias, gate_bias]).astype(np.float32)


def test_fusedrnn_lstm_layout():
    arr = np.full(84, -99.0, np.float32)
    I.FusedRNN(I.Constant(0.25), 3, 1, "lstm", forget_bias=1.0)(W("rnn_weight"), arr)
    np.testing.assert_array_equal(arr, fused_lstm_1layer(0.25, 1.0))


def test_fusedrnn_two_layers_bidirectional_gru():
    # H=2, input 3, D=2, G=3: per layer/direction i2h gates then h2h gates; no forget bias for gru
    arr = np.full(180, -99.0, np.float32)
    I.FusedRNN(I.Constant(0.5), 2, 2, "gru", bidirectional=True, forget_bias=9.0)(W("rnn_weight"), arr)
    np.testing.assert_array_equal(arr, blocks((132, 0.5), (48, 0.0)))


def test_fusedrnn_slice_names_follow_fusedrnncell():
    seen = []

    class Spy(I.Initializer):
        def __call__(self, desc, arr):
            seen.append((str(desc), arr.shape))
            arr[...] = 0

    I.FusedRNN(Spy(), 2, 2, "lstm", bidirectional=True)(W("rnn_weight"), np.zeros(240))
    weights = [s for s in seen if s[0].endswith("weight")]
    assert weights[:8] == [("l0_i2h_i_weight", (2, 3)), ("l0_i2h_f_weight", (2, 3)),
                           ("l0_i2h_c_weight", (2, 3)), ("l0_i2h_o_weight", (2, 3)),
                           ("l0_h2h_i_weight", (2, 2)), ("l0_h2h_f_weight", (2, 2)),
                           ("l0_h2h_c_weight", (2, 2)), ("l0_h2h_o_weight", (2, 2))]
    assert weights[8][0] == "r0_i2h_i_weight" and ("l1_i2h_i_weight", (2, 4)) in weights
    assert len(seen) == 2 * 2 * 8 * 2 - 8   # forget-gate biases are not delegated


def test_fusedrnn_uses_global_init_when_init_is_none():
    arr = np.full(84, -99.0, np.float32)
    fused = I.FusedRNN(None, 3, 1, "lstm", forget_bias=2.0)
    I.Constant(0.75)(W("rnn_parameters", attrs={"__init__": fused.dumps()}), arr)
    np.testing.assert_array_equal(arr, fused_lstm_1layer(0.75, 2.0))


def test_fusedrnn_without_any_initializer_raises():
    with pytest.raises(ValueError, match="global initializer"):
        I.FusedRNN(None, 3, 1, "lstm")(W("rnn_weight"), np.zeros(84))


@pytest.mark.parametrize("init", ['["constant", {"value": 0.25}]', "zeros", {"initializer": "one"}],
                         ids=["dumps_string", "name", "dict"])
def test_fusedrnn_init_forms(init):
    fused = I.FusedRNN(init, 3, 1, "lstm")
    assert json.loads(fused.dumps())[1]["init"] == I.create(init).dumps()
    arr = np.zeros(84, np.float32)
    fused(W("rnn_weight"), arr)
    assert (arr[72:75] == 0).all() and (arr[75:78] == 1).all()


def test_fusedrnn_xavier_weights():
    arr = np.zeros(84, np.float32)
    I.FusedRNN(I.Xavier(rng=0), 3, 1, "lstm")(W("rnn_weight"), arr)
    i2h = arr[:4 * 3 * 2].reshape(4, 3, 2)
    assert np.abs(i2h).max() <= math.sqrt(3 / 2.5) and np.unique(i2h).size == 24
    np.testing.assert_array_equal(arr[60:], fused_lstm_1layer(0, 1.0)[60:])
