"""Property tests of the launch-plan layer: random mismatches of optimizer and state, and
random raw row-sparse gradients, must end in a clear exception with nothing written or
in a correct update; never in a crash.

Hypothesis draws a batch of cases; one child process (tests/plan_fuzz_child.py) runs the
whole batch and reports each outcome, so a crash fails the test and names its case
without killing the run.  Shrinking is off: the report already names the case.
HYPOTHESIS_PROFILE=ci runs more batches.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from cases import CASES

BATCH = 30
_CI = os.environ.get("HYPOTHESIS_PROFILE", "default") == "ci"
_SETTINGS = settings(max_examples=12 if _CI else 2, deadline=None, derandomize=False,
                     phases=[Phase.explicit, Phase.reuse, Phase.generate],
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_CHILD = Path(__file__).with_name("plan_fuzz_child.py")

BY_NAME = {c.name: c for c in CASES}
NAMES = sorted(BY_NAME)
DTYPES = ["float32", "float16", "bfloat16", "float64"]
MUTATIONS = ["keep", "keep", "keep", "none", "drop_leaf", "extra_leaf", "wrong_dtype", "wrong_size",
             "add_master", "drop_master"]

#: optimizers and settings that take row-sparse gradients (lazy rows or a dense copy)
SPARSE = [
    ("sgd", {"lazy_update": True, "momentum": 0.9, "wd": 0.05}),
    ("sgd", {"lazy_update": True}),
    ("sgd", {"lazy_update": False, "momentum": 0.9}),
    ("adam", {"lazy_update": True, "wd": 0.01}),
    ("adam", {"lazy_update": False}),
    ("adagrad", {}),
    ("groupadagrad", {}),
    ("rmsprop", {"centered": True}),
    ("nag", {}),
    ("ftrl", {"wd": 0.01}),
]


def _config(draw, name):
    configs = BY_NAME[name].configs
    return dict(configs[draw(st.sampled_from(sorted(configs)))])


@st.composite
def state_cases(draw):
    name = draw(st.sampled_from(NAMES))
    case = BY_NAME[name]
    target = {"name": name, "config": _config(draw, name), "mp": draw(st.booleans()),
              "dtype": draw(st.sampled_from(DTYPES))}
    source = dict(target)
    origin = draw(st.sampled_from(["own", "other_config", "other_optimizer", "other_precision"]))
    if origin == "other_config":
        source["config"] = _config(draw, name)
    elif origin == "other_optimizer":
        source["name"] = draw(st.sampled_from(NAMES))
        source["config"] = _config(draw, source["name"])
    elif origin == "other_precision":
        source["mp"] = draw(st.booleans())
        source["dtype"] = draw(st.sampled_from(DTYPES))
    via = draw(st.sampled_from(["update", "updater", "set_states", "flip"]))
    if via == "flip":       # the optimizer's own state, then a hyperparameter changes
        source = dict(target)
    return dict(kind="state", shape=draw(st.tuples(st.integers(1, 5), st.integers(1, 6))), via=via,
                flip=draw(st.sampled_from(["momentum", "centered", "multi_precision"])),
                source=source, mutation="keep" if via in ("set_states", "flip") else draw(st.sampled_from(MUTATIONS)),
                seed=draw(st.integers(0, 2**31 - 1)), stochastic=case.stochastic,
                tolerance=case.tolerance_factor, positive=case.positive_weights, **target)


def _indices_ok(indices, n_rows):
    return all(0 <= i < n_rows for i in indices) and all(a < b for a, b in zip(indices, indices[1:]))


@st.composite
def _bad_value(draw, n_rows):
    return draw(st.one_of(st.integers(n_rows, n_rows + 3), st.sampled_from([10**7, 2**31 - 1]),
                          st.integers(-10**6, -1), st.integers(0, max(n_rows - 1, 0))))


@st.composite
def sparse_cases(draw):
    name, config = draw(st.sampled_from(SPARSE))
    n_rows, width = draw(st.integers(1, 12)), draw(st.integers(1, 4))
    good = sorted(draw(st.lists(st.integers(0, n_rows - 1), unique=True, max_size=n_rows)))
    kind = draw(st.sampled_from(["valid", "valid", "out_of_range", "negative", "unsorted", "duplicate", "random"]))
    indices = list(good)
    if kind == "out_of_range":
        indices.append(draw(st.one_of(st.integers(n_rows, n_rows + 3), st.sampled_from([10**7, 2**31 - 1]))))
    elif kind == "negative":
        indices.insert(0, -draw(st.integers(1, 10**6)))
    elif kind == "unsorted" and len(indices) >= 2:
        indices.reverse()
    elif kind == "duplicate" and indices:
        k = draw(st.integers(0, len(indices) - 1))
        indices.insert(k, indices[k])
    elif kind == "random":
        indices = draw(st.lists(st.integers(-3, n_rows + 3), max_size=8))
    extra_rows = draw(st.sampled_from([0, 0, 0, 0, 1, 2] + ([-1] if indices else [])))
    set_after = None
    if indices and draw(st.integers(0, 3)) == 0:
        set_after = (draw(st.integers(0, len(indices) - 1)), draw(_bad_value(n_rows)))
    final = list(indices)
    if set_after is not None:
        final[set_after[0]] = set_after[1]
    valid = extra_rows == 0 and _indices_ok(indices, n_rows) and _indices_ok(final, n_rows)
    return dict(kind="sparse", name=name, config=config, rows=n_rows, width=width, indices=indices,
                extra_rows=extra_rows, index_type=draw(st.sampled_from(["int64", "int32", "list"])),
                build=draw(st.sampled_from(["raw", "raw", "helper"])), set_after=set_after,
                via=draw(st.sampled_from(["update", "updater"])), valid=valid,
                seed=draw(st.integers(0, 2**31 - 1)))


def _no_core_dump():
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass


def run_batch(cases):
    """Run ``cases`` in one child; returns (outcomes, crash report or None)."""
    env = dict(os.environ, OMP_WAIT_POLICY="passive")
    proc = subprocess.run([sys.executable, "-X", "faulthandler", str(_CHILD)], input=repr(cases),
                          capture_output=True, text=True, timeout=600, env=env,
                          preexec_fn=_no_core_dump if os.name == "posix" else None,
                          cwd=str(Path(__file__).resolve().parent.parent))
    outcomes = [json.loads(line[len("OUTCOME "):]) for line in proc.stdout.splitlines()
                if line.startswith("OUTCOME ")]
    crash = None
    if proc.returncode != 0 or len(outcomes) != len(cases):
        k = len(outcomes)
        crash = ("the child process died (exit status %d) while running case %d:\n%r\n%s"
                 % (proc.returncode, k, cases[k] if k < len(cases) else None, proc.stderr[-2000:]))
    return outcomes, crash


def _problem(case, out):
    """Why an outcome is wrong, or None."""
    if "setup_error" in out:
        return "the case could not be set up: %s" % out["setup_error"]
    if out["valid"]:
        if out["raised"] is not None:
            return "a valid call raised %s: %s" % (out["raised"], out["message"])
        if not out.get("structure_kept", True):
            return "the update changed the state's structure"
        if out.get("matches_reference") is False:
            return "the update differs from the float64 NumPy step path"
        return None
    if out["raised"] is None:
        if out.get("ambiguous"):
            return None
        if case["kind"] == "state":
            return "an invalid state was accepted: %s, where the optimizer builds another structure" % (
                out.get("given"),)
        return "an invalid row-sparse gradient was accepted"
    if out["raised"] not in ("TypeError", "ValueError"):
        return "raised %s rather than TypeError/ValueError: %s" % (out["raised"], out["message"])
    if not out["message"].strip():
        return "raised %s without a message" % out["raised"]
    if not out["intact"]:
        return "raised %s after modifying the weight or the state" % out["raised"]
    return None


def _check_batch(cases):
    outcomes, crash = run_batch(cases)
    problems = []
    for case, out in zip(cases, outcomes):
        why = _problem(case, out)
        if why:
            problems.append("%s\n    case: %r" % (why, case))
    if crash:
        problems.append(crash)
    assert not problems, "%d of %d cases went wrong:\n%s" % (len(problems), len(cases), "\n".join(problems[:8]))


@_SETTINGS
@given(st.lists(state_cases(), min_size=BATCH, max_size=BATCH))
def test_mismatched_states_raise_clearly_or_update_correctly(cases):
    _check_batch(cases)


@_SETTINGS
@given(st.lists(sparse_cases(), min_size=BATCH, max_size=BATCH))
def test_raw_row_sparse_gradients_raise_clearly_or_update_correctly(cases):
    _check_batch(cases)
