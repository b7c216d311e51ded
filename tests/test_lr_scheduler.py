"""Tests of mxopt_numba.lr_scheduler: MXNet 2.0.0b1 golden traces, closed forms, warm-up,
state_dict round trips and constructor errors."""

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest

from mxopt_numba import lr_scheduler

GOLDEN = Path(__file__).parent / "golden"
MANIFEST = GOLDEN / "sched_manifest.json"
RTOL = 1e-12


def _load_cases():
    with open(MANIFEST) as f:
        manifest = json.load(f)
    return manifest["cases"]


CASES = _load_cases()


def _kwargs(case):
    kw = dict(case["kwargs"])
    # recorded with a tuple in MXNet; JSON only keeps lists
    if case["id"].endswith("err_step_not_list") and isinstance(kw.get("step"), list):
        kw["step"] = tuple(kw["step"])
    return kw


def _cls(case):
    return getattr(lr_scheduler, case["name"])


def _assert_close(have, want, what):
    have = np.asarray(have, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert have.shape == want.shape, what
    err = np.abs(have - want)
    bad = ~(err <= RTOL * np.abs(want))
    if bad.any():
        j = int(np.argmax(bad))
        pytest.fail("%s[%d] = %r, MXNet %r" % (what, j, float(have[j]), float(want[j])))


# --------------------------------------------------------------------------- golden replay
def test_manifest_holds_all_scheduler_cases():
    assert len(CASES) == 39
    assert all(c["kind"] == "lr_scheduler" for c in CASES)
    status = {}
    for c in CASES:
        status[c["status"]] = status.get(c["status"], 0) + 1
    assert status == {"ok": 25, "expected_error": 13, "error": 1}
    for c in CASES:
        if c["status"] == "ok":
            assert (GOLDEN / c["file"]).is_file(), c["file"]


@pytest.mark.parametrize("case", [c for c in CASES if c["status"] == "ok"],
                         ids=lambda c: c["id"])
def test_golden_ok(case):
    cls = _cls(case)
    kw = _kwargs(case)
    with np.load(GOLDEN / case["file"]) as z:
        arrays = {k: z[k] for k in z.files}
    ks = [int(k) for k in arrays["num_update"]]

    s = cls(**kw)
    _assert_close([s(k) for k in ks], arrays["lr"], "lr")
    # the attribute MXNet left in base_lr after the in-order run
    _assert_close([s.base_lr], [case["final_base_lr_attr"]], "final base_lr")

    s2 = cls(**kw)
    _assert_close([s2(int(k)) for k in arrays["nonmono_queries"]], arrays["nonmono_lr"],
                  "nonmono_lr")
    if "jump_lr" in arrays:
        _assert_close([cls(**kw)(k) for k in ks], arrays["jump_lr"], "jump_lr")


@pytest.mark.parametrize("case", [c for c in CASES if c["status"] == "expected_error"],
                         ids=lambda c: c["id"])
def test_golden_expected_error(case):
    with pytest.raises((ValueError, TypeError)):
        _cls(case)(**_kwargs(case))


@pytest.mark.parametrize("case", [c for c in CASES if c["status"] == "error"],
                         ids=lambda c: c["id"])
def test_golden_mxnet_error_still_raises(case):
    """MXNet failed on these (ZeroDivisionError at num_update == max_update); we reject the
    configuration earlier, in the constructor."""
    kw = _kwargs(case)
    with pytest.raises(ValueError):
        s = _cls(case)(**kw)
        for k in range(kw.get("max_update", 0) + 2):
            s(k)


# --------------------------------------------------------------------------- closed forms
FACTOR_CONFIGS = [
    pytest.param(dict(step=3, factor=0.5, base_lr=1.0), id="step3-f0.5"),
    pytest.param(dict(step=1, factor=0.9, base_lr=0.5), id="step1-f0.9"),
    pytest.param(dict(step=2, factor=0.1, base_lr=1.0, stop_factor_lr=1e-3), id="stop1e-3"),
    pytest.param(dict(step=7, factor=1.0, base_lr=0.3), id="factor1"),
    pytest.param(dict(step=4, factor=0.7, base_lr=2.0, stop_factor_lr=0.05), id="step4-stop"),
]


def _factor_closed(n, step, factor=1, base_lr=0.01, stop_factor_lr=1e-8):
    if n < 1:
        return base_lr
    return max(base_lr * factor ** ((n - 1) // step), stop_factor_lr)


@pytest.mark.parametrize("cfg", FACTOR_CONFIGS)
def test_factor_closed_form_in_order_and_jump(cfg):
    s = lr_scheduler.FactorScheduler(**cfg)
    for n in range(0, 60):
        want = _factor_closed(n, **cfg)
        assert s(n) == pytest.approx(want, rel=RTOL)
        assert lr_scheduler.FactorScheduler(**cfg)(n) == pytest.approx(want, rel=RTOL)


def test_factor_first_reduction_is_one_later_than_docstring():
    s = lr_scheduler.FactorScheduler(step=10, factor=0.5, base_lr=1.0)
    assert s(10) == 1.0
    assert s(11) == 0.5


def test_factor_is_monotone_state():
    s = lr_scheduler.FactorScheduler(step=2, factor=0.5, base_lr=1.0)
    assert s(9) == 0.0625
    assert s(1) == 0.0625          # a smaller num_update does not restore the lr
    assert s.count == 8


def test_factor_counting_starts_at_zero_not_at_warmup():
    s = lr_scheduler.FactorScheduler(step=3, factor=0.5, base_lr=1.0, warmup_steps=5,
                                     warmup_begin_lr=0.0)
    assert s(5) == 0.5             # (5 - 1) // 3 = 1 reduction already


MULTI_CONFIGS = [
    pytest.param(dict(step=[3, 7, 12], factor=0.5, base_lr=1.0), id="3-7-12"),
    pytest.param(dict(step=[1], factor=0.1, base_lr=0.2), id="single-1"),
    pytest.param(dict(step=[2, 3, 4, 5], factor=0.9), id="consecutive-default-base"),
]


@pytest.mark.parametrize("cfg", MULTI_CONFIGS)
def test_multifactor_closed_form_strict_greater(cfg):
    base = cfg.get("base_lr", 0.01)
    s = lr_scheduler.MultiFactorScheduler(**cfg)
    for n in range(0, 20):
        k = sum(1 for st in cfg["step"] if n > st)
        want = base * cfg["factor"] ** k
        assert s(n) == pytest.approx(want, rel=RTOL)
        assert lr_scheduler.MultiFactorScheduler(**cfg)(n) == pytest.approx(want, rel=RTOL)
    assert s.cur_step_ind == len(cfg["step"])
    assert s.count == cfg["step"][-1]


@pytest.mark.parametrize("boundary", [3, 7, 12])
def test_multifactor_boundary_is_exclusive(boundary):
    steps = [3, 7, 12]
    s = lr_scheduler.MultiFactorScheduler(step=steps, factor=0.5, base_lr=1.0)
    before = s(boundary)
    after = s(boundary + 1)
    assert after == before * 0.5
    assert s.count == boundary


def test_multifactor_copies_step_list():
    steps = [2, 4]
    s = lr_scheduler.MultiFactorScheduler(step=steps, factor=0.5)
    steps.append(1)
    assert s.step == [2, 4]


def _poly(n, max_update, base_lr=0.01, pwr=2, final_lr=0, warmup_steps=0):
    return final_lr + (base_lr - final_lr) * (1 - (n - warmup_steps)
                                              / (max_update - warmup_steps)) ** pwr


def _cosine(n, max_update, base_lr=0.01, final_lr=0, warmup_steps=0):
    return final_lr + (base_lr - final_lr) * (1 + math.cos(math.pi * (n - warmup_steps)
                                                           / (max_update - warmup_steps))) / 2


@pytest.mark.parametrize("cfg", [
    pytest.param(dict(max_update=20, base_lr=1.0, pwr=2, final_lr=0.01), id="pwr2"),
    pytest.param(dict(max_update=10, base_lr=0.5, pwr=1), id="pwr1"),
    pytest.param(dict(max_update=10, base_lr=0.5, pwr=3, warmup_steps=3), id="pwr3-warmup"),
    pytest.param(dict(max_update=8, base_lr=0.3, pwr=0.5, final_lr=0.1), id="pwr0.5"),
])
def test_poly_closed_form(cfg):
    s = lr_scheduler.PolyScheduler(**cfg)
    w = cfg.get("warmup_steps", 0)
    for n in range(w, cfg["max_update"] + 1):
        assert s(n) == pytest.approx(_poly(n, **cfg), rel=RTOL)
    assert s(cfg["max_update"]) == pytest.approx(cfg.get("final_lr", 0), rel=RTOL, abs=1e-15)


@pytest.mark.parametrize("cfg", [
    pytest.param(dict(max_update=20, base_lr=1.0, final_lr=0.01), id="final0.01"),
    pytest.param(dict(max_update=10, base_lr=0.5), id="final0"),
    pytest.param(dict(max_update=12, base_lr=0.4, final_lr=0.05, warmup_steps=4), id="warmup4"),
])
def test_cosine_closed_form(cfg):
    s = lr_scheduler.CosineScheduler(**cfg)
    w = cfg.get("warmup_steps", 0)
    for n in range(w, cfg["max_update"] + 1):
        assert s(n) == pytest.approx(_cosine(n, **cfg), rel=RTOL, abs=1e-15)


@pytest.mark.parametrize("cls", ["PolyScheduler", "CosineScheduler"])
def test_beyond_max_update_returns_last_in_range_value(cls):
    C = getattr(lr_scheduler, cls)
    # never called in range: the original base_lr
    assert C(max_update=10, base_lr=1.0, final_lr=0.1)(20) == 1.0
    s = C(max_update=10, base_lr=1.0, final_lr=0.1)
    mid = s(5)
    assert s(20) == mid
    assert s(10) == pytest.approx(0.1, rel=RTOL)
    assert s(1000) == pytest.approx(0.1, rel=RTOL)


def test_poly_beyond_max_update_spec_values():
    s = lr_scheduler.PolyScheduler(max_update=10, base_lr=1.0, final_lr=0.1, pwr=2)
    assert s(5) == pytest.approx(0.325, rel=RTOL)
    assert s(20) == pytest.approx(0.325, rel=RTOL)


def test_poly_pwr_alias_and_attributes():
    s = lr_scheduler.PolyScheduler(max_update=10, base_lr=0.5, pwr=3, warmup_steps=4)
    assert s.power == 3 and s.pwr == 3
    assert s.base_lr_orig == 0.5
    assert s.max_steps == 6
    assert s.max_update == 10
    assert s.final_lr == 0


@pytest.mark.parametrize("cls", ["PolyScheduler", "CosineScheduler"])
def test_warmup_longer_than_max_update_is_accepted(cls):
    """MXNet accepts it: warm-up, then the original base_lr forever."""
    s = getattr(lr_scheduler, cls)(max_update=3, base_lr=0.5, warmup_steps=5)
    assert s(2) == pytest.approx(0.2, rel=RTOL)
    assert s(5) == 0.5
    assert s(100) == 0.5


# --------------------------------------------------------------------------- warm-up
WARMUP_CLASSES = [
    pytest.param("FactorScheduler", dict(step=2, factor=0.5), id="Factor"),
    pytest.param("MultiFactorScheduler", dict(step=[2, 4], factor=0.5), id="MultiFactor"),
    pytest.param("PolyScheduler", dict(max_update=30), id="Poly"),
    pytest.param("CosineScheduler", dict(max_update=30), id="Cosine"),
]


@pytest.mark.parametrize("name,extra", WARMUP_CLASSES)
@pytest.mark.parametrize("mode", ["linear", "constant"])
def test_warmup_values(name, extra, mode):
    C = getattr(lr_scheduler, name)
    kw = dict(extra, base_lr=0.8, warmup_steps=8, warmup_begin_lr=0.2, warmup_mode=mode)
    s = C(**kw)
    for n in range(8):
        want = 0.2 + (0.8 - 0.2) * n / 8 if mode == "linear" else 0.2
        assert s(n) == pytest.approx(want, rel=RTOL)
        assert s.get_warmup_lr(n) == pytest.approx(want, rel=RTOL)
    assert s.warmup_final_lr == 0.8
    assert s.warmup_mode == mode


@pytest.mark.parametrize("name,extra", WARMUP_CLASSES)
def test_warmup_leaves_state_untouched(name, extra):
    C = getattr(lr_scheduler, name)
    s = C(**dict(extra, base_lr=0.8, warmup_steps=8, warmup_begin_lr=0.2))
    before = s.state_dict()
    for n in range(8):
        s(n)
    assert s.state_dict() == before


def test_warmup_default_begin_is_zero():
    s = lr_scheduler.FactorScheduler(step=100, base_lr=1.0, warmup_steps=4)
    assert [s(n) for n in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_warmup_final_lr_captured_at_construction():
    """An optimizer overwrites base_lr with its own lr: the warm-up still climbs to the old
    base, then jumps (spec 4.6)."""
    s = lr_scheduler.FactorScheduler(step=100, base_lr=1.0, warmup_steps=10)
    s.base_lr = 0.1
    assert s(5) == 0.5
    assert s(11) == 0.1


@pytest.mark.parametrize("cls", ["PolyScheduler", "CosineScheduler"])
def test_base_lr_override_ignored_by_poly_cosine(cls):
    C = getattr(lr_scheduler, cls)
    ref = C(max_update=10, base_lr=1.0)
    s = C(max_update=10, base_lr=1.0)
    s.base_lr = 0.1
    for n in range(11):
        assert s(n) == ref(n)


def test_get_warmup_lr_outside_warmup_raises():
    s = lr_scheduler.FactorScheduler(step=2, warmup_steps=3)
    with pytest.raises(ValueError, match="warmup_steps"):
        s.get_warmup_lr(3)


def test_base_call_is_abstract():
    s = lr_scheduler.LRScheduler(base_lr=0.1, warmup_steps=2, warmup_begin_lr=0.05)
    assert s.get_warmup_lr(1) == pytest.approx(0.075, rel=RTOL)
    with pytest.raises(NotImplementedError):
        s(0)


# --------------------------------------------------------------------------- state_dict
STATE_CONFIGS = [
    pytest.param("FactorScheduler", dict(step=3, factor=0.5, base_lr=1.0, stop_factor_lr=0.01,
                                         warmup_steps=4, warmup_begin_lr=0.1), id="Factor"),
    pytest.param("MultiFactorScheduler", dict(step=[3, 7, 12], factor=0.5, base_lr=1.0,
                                              warmup_steps=2, warmup_mode="constant",
                                              warmup_begin_lr=0.3), id="MultiFactor"),
    pytest.param("PolyScheduler", dict(max_update=20, base_lr=1.0, pwr=3, final_lr=0.01,
                                       warmup_steps=5, warmup_begin_lr=0.1), id="Poly"),
    pytest.param("CosineScheduler", dict(max_update=20, base_lr=1.0, final_lr=0.01,
                                         warmup_steps=5), id="Cosine"),
]
HISTORY = [0, 1, 4, 6, 9]
FUTURE = [10, 8, 13, 14, 19, 20, 25, 3, 40]


def _json_plain(obj):
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _json_plain(v) for k, v in obj.items())
    if isinstance(obj, list):
        return all(_json_plain(v) for v in obj)
    return obj is None or type(obj) in (int, float, str, bool)


@pytest.mark.parametrize("name,kw", STATE_CONFIGS)
def test_state_dict_round_trip_mid_schedule(name, kw):
    C = getattr(lr_scheduler, name)
    s = C(**kw)
    for n in HISTORY:
        s(n)
    state = s.state_dict()
    assert state["class"] == name
    assert _json_plain(state)
    state = json.loads(json.dumps(state, allow_nan=False))

    loaded = C(**kw).load_state_dict(state)
    rebuilt = lr_scheduler.from_state_dict(state)
    assert type(rebuilt) is C
    assert loaded.state_dict() == s.state_dict() == rebuilt.state_dict()
    want = [s(n) for n in FUTURE]
    assert [loaded(n) for n in FUTURE] == want
    assert [rebuilt(n) for n in FUTURE] == want


@pytest.mark.parametrize("name,kw", STATE_CONFIGS)
def test_state_dict_loads_into_differently_built_instance(name, kw):
    """All of the state travels: a scheduler built with other arguments behaves like the
    saved one after loading."""
    C = getattr(lr_scheduler, name)
    s = C(**kw)
    for n in HISTORY:
        s(n)
    other_kw = dict(step=[1, 2]) if name == "MultiFactorScheduler" else (
        dict(step=1) if name == "FactorScheduler" else dict(max_update=99))
    other = C(**other_kw).load_state_dict(s.state_dict())
    assert [other(n) for n in FUTURE] == [s(n) for n in FUTURE]


def test_state_dict_expected_keys():
    assert set(lr_scheduler.FactorScheduler(step=2).state_dict()) == {
        "class", "base_lr", "warmup_steps", "warmup_begin_lr", "warmup_final_lr",
        "warmup_mode", "step", "factor", "stop_factor_lr", "count"}
    assert set(lr_scheduler.MultiFactorScheduler(step=[2]).state_dict()) >= {
        "step", "factor", "count", "cur_step_ind"}
    assert set(lr_scheduler.PolyScheduler(max_update=5).state_dict()) >= {
        "max_update", "power", "final_lr", "base_lr_orig", "max_steps"}
    assert set(lr_scheduler.CosineScheduler(max_update=5).state_dict()) >= {
        "max_update", "final_lr", "base_lr_orig", "max_steps"}


def test_state_dict_converts_numpy_scalars():
    s = lr_scheduler.PolyScheduler(max_update=np.int64(10), base_lr=np.float32(0.5),
                                   warmup_steps=np.int32(2), pwr=np.float64(2.0))
    s(4)
    state = s.state_dict()
    assert _json_plain(state)
    json.dumps(state, allow_nan=False)


def test_load_state_dict_errors():
    s = lr_scheduler.FactorScheduler(step=2)
    state = s.state_dict()
    with pytest.raises(ValueError, match="CosineScheduler"):
        s.load_state_dict(lr_scheduler.CosineScheduler(max_update=3).state_dict())
    with pytest.raises(ValueError, match="bogus"):
        s.load_state_dict(dict(state, bogus=1))
    missing = dict(state)
    del missing["count"]
    with pytest.raises(ValueError, match="count"):
        s.load_state_dict(missing)
    with pytest.raises(TypeError):
        s.load_state_dict([("count", 1)])
    with pytest.raises(ValueError, match="class"):
        lr_scheduler.from_state_dict({"class": "NoSuchScheduler"})


@pytest.mark.parametrize("name,kw", STATE_CONFIGS)
def test_pickle_round_trip(name, kw):
    s = getattr(lr_scheduler, name)(**kw)
    for n in HISTORY:
        s(n)
    s2 = pickle.loads(pickle.dumps(s))
    assert [s2(n) for n in FUTURE] == [s(n) for n in FUTURE]


@pytest.mark.parametrize("name,kw", STATE_CONFIGS)
def test_repr(name, kw):
    s = getattr(lr_scheduler, name)(**kw)
    r = repr(s)
    assert r.startswith(name + "(")
    assert "base_lr=" in r and "warmup_steps=" in r


# --------------------------------------------------------------------------- constructor errors
ERRORS = [
    # (id, class, kwargs, exception, parameter named, value shown)
    ("Factor-step0", "FactorScheduler", dict(step=0), ValueError, "step", "0"),
    ("Factor-step-str", "FactorScheduler", dict(step="3"), TypeError, "step", "'3'"),
    ("Factor-factor-gt1", "FactorScheduler", dict(step=2, factor=1.5), ValueError, "factor",
     "1.5"),
    ("Factor-stop-str", "FactorScheduler", dict(step=2, stop_factor_lr="x"), TypeError,
     "stop_factor_lr", "'x'"),
    ("Factor-warmup-negative", "FactorScheduler", dict(step=2, warmup_steps=-1), ValueError,
     "warmup_steps", "-1"),
    ("Factor-warmup-float", "FactorScheduler", dict(step=2, warmup_steps=2.0), TypeError,
     "warmup_steps", "2.0"),
    ("Factor-warmup-begin-gt-base", "FactorScheduler",
     dict(step=2, base_lr=0.1, warmup_begin_lr=0.5, warmup_steps=2), ValueError,
     "warmup_begin_lr", "0.5"),
    ("Factor-warmup-mode", "FactorScheduler", dict(step=2, warmup_steps=2, warmup_mode="cosine"),
     ValueError, "warmup_mode", "'cosine'"),
    ("Factor-base-lr-str", "FactorScheduler", dict(step=2, base_lr="0.1"), TypeError, "base_lr",
     "'0.1'"),
    ("Multi-tuple", "MultiFactorScheduler", dict(step=(3, 5)), TypeError, "step", "(3, 5)"),
    ("Multi-int", "MultiFactorScheduler", dict(step=3), TypeError, "step", "3"),
    ("Multi-empty", "MultiFactorScheduler", dict(step=[]), ValueError, "step", "[]"),
    ("Multi-not-increasing", "MultiFactorScheduler", dict(step=[5, 3]), ValueError, "step",
     "[5, 3]"),
    ("Multi-equal", "MultiFactorScheduler", dict(step=[3, 3]), ValueError, "step", "[3, 3]"),
    ("Multi-zero", "MultiFactorScheduler", dict(step=[0, 3]), ValueError, "step", "[0, 3]"),
    ("Multi-factor-gt1", "MultiFactorScheduler", dict(step=[2, 3], factor=2.0), ValueError,
     "factor", "2.0"),
    ("Multi-warmup-float", "MultiFactorScheduler", dict(step=[2], warmup_steps=1.5), TypeError,
     "warmup_steps", "1.5"),
    ("Poly-max0", "PolyScheduler", dict(max_update=0), ValueError, "max_update", "0"),
    ("Poly-max-float", "PolyScheduler", dict(max_update=10.0), TypeError, "max_update", "10.0"),
    ("Poly-warmup-float", "PolyScheduler", dict(max_update=10, warmup_steps=2.0), TypeError,
     "warmup_steps", "2.0"),
    ("Poly-warmup-eq-max", "PolyScheduler", dict(max_update=5, base_lr=0.5, warmup_steps=5),
     ValueError, "max_update", "5"),
    ("Poly-pwr-str", "PolyScheduler", dict(max_update=5, pwr="2"), TypeError, "pwr", "'2'"),
    ("Poly-final-str", "PolyScheduler", dict(max_update=5, final_lr=None), TypeError,
     "final_lr", "None"),
    ("Cosine-max0", "CosineScheduler", dict(max_update=0), ValueError, "max_update", "0"),
    ("Cosine-max-float", "CosineScheduler", dict(max_update=10.0), TypeError, "max_update",
     "10.0"),
    ("Cosine-max-bool", "CosineScheduler", dict(max_update=True), TypeError, "max_update",
     "True"),
    ("Cosine-warmup-eq-max", "CosineScheduler", dict(max_update=4, warmup_steps=4), ValueError,
     "warmup_steps", "4"),
    ("Cosine-warmup-mode", "CosineScheduler", dict(max_update=4, warmup_mode="Linear"),
     ValueError, "warmup_mode", "'Linear'"),
    ("Base-warmup-negative", "LRScheduler", dict(warmup_steps=-3), ValueError, "warmup_steps",
     "-3"),
]


@pytest.mark.parametrize("name,kw,exc,param,value", [pytest.param(*e[1:], id=e[0])
                                                     for e in ERRORS])
def test_constructor_error_names_parameter(name, kw, exc, param, value):
    with pytest.raises(exc) as info:
        getattr(lr_scheduler, name)(**kw)
    msg = str(info.value)
    assert param in msg, msg
    assert value in msg, msg
    assert name in msg, msg


def test_numpy_integers_accepted_where_ints_required():
    s = lr_scheduler.CosineScheduler(max_update=np.int64(10), warmup_steps=np.int32(2),
                                     base_lr=0.5)
    assert s.max_update == 10 and s.warmup_steps == 2
    assert s(1) == pytest.approx(0.25, rel=RTOL)
