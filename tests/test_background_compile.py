"""Kernels compiled in the background (``kernels/_background.py``).

While a parallel kernel compiles in a helper process, launches run its single-threaded twin; the
switch may happen at any step, so the two must compute identical bits for every rule.
The rest checks the mechanism in fresh processes with an empty kernel cache: the first
steps run without waiting for the parallel compile, give the same results as a
foreground compile, the switch happens, and neither exit nor ``fork`` hangs.
"""
import os
import subprocess
import sys
import textwrap

import ml_dtypes
import numpy as np
import pytest

import mxopt_numba as mxo
from cases import CASES
from mxopt_numba._state_tree import state_leaves
from mxopt_numba.kernels import _background
from mxopt_numba.kernels import _launch as launch
from test_optimizers import run


def _richest(case):
    return max(case.configs.values(), key=len)


def _twin_params():
    params = []
    for case in CASES:
        params.append(pytest.param(case, np.float32, False, id=case.name + "-fp32"))
        params.append(pytest.param(case, np.float16, True, id=case.name + "-fp16-mp"))
        if case.name in ("sgd", "adam", "rmsprop", "sgld"):     # the 16-bit modes share one store
            params.append(pytest.param(case, ml_dtypes.bfloat16, "kahan", id=case.name + "-bf16-kahan"))
            params.append(pytest.param(case, np.float16, "stochastic", id=case.name + "-fp16-stochastic"))
    return params


@pytest.mark.parametrize("case, dtype, mp", _twin_params())
def test_parallel_kernel_and_its_serial_twin_give_identical_bits(case, dtype, mp, monkeypatch):
    kwargs = _richest(case)
    monkeypatch.setattr(launch, "SERIAL_BELOW", 1 << 62)
    serial, upd_s, _ = run(case, kwargs, dtype, multi_precision=mp)
    monkeypatch.setattr(launch, "SERIAL_BELOW", 0)
    monkeypatch.setattr(_background, "ready", lambda dispatcher, args: True)   # compile here, run threaded
    parallel, upd_p, _ = run(case, kwargs, dtype, multi_precision=mp)
    for x, y in zip(serial, parallel):
        np.testing.assert_array_equal(x, y)
    leaves_s = [leaf for k in sorted(upd_s.states) for leaf in state_leaves(upd_s.states[k])]
    leaves_p = [leaf for k in sorted(upd_p.states) for leaf in state_leaves(upd_p.states[k])]
    assert len(leaves_s) == len(leaves_p)
    for x, y in zip(leaves_s, leaves_p):
        np.testing.assert_array_equal(x, y)


_CHILD = textwrap.dedent("""
    import json, os, sys, time
    import numpy as np
    import mxopt_numba as mxo
    from mxopt_numba.kernels import _background, adam
    from mxopt_numba.optimizer import _headers
    rng = np.random.default_rng(0)
    shapes = [(300, 301), (7,), (1 << 17,)]
    weights = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    opt = mxo.optimizer.create("adam", learning_rate=0.01, wd=1e-3, aggregate_num=np.inf)
    updater = mxo.optimizer.get_updater(opt)
    report = {"threaded_at": [], "pending_after_first": None}
    # at least the given number of steps, and on until the switch (a loaded machine
    # compiles slowly), within a generous limit
    deadline = time.monotonic() + 240
    step = 0
    while step < int(sys.argv[1]) or (not report["threaded_at"][-1] and time.monotonic() < deadline):
        grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        updater(list(range(len(shapes))), grads, weights)
        if step == 0:
            report["pending_after_first"] = _background.pending()
        report["threaded_at"].append(len(adam.multi_adam_update_cpu.overloads) > 0)
        if sys.argv[2] == "pause":
            time.sleep(0.05)
        step += 1
    report["waited"] = mxo.utils.wait_for_compilation(timeout=120)
    report["threaded_after_wait"] = len(adam.multi_adam_update_cpu.overloads) > 0
    report["header_check_compiled"] = len(_headers._check.overloads) > 0
    np.save(sys.argv[3], np.concatenate([w.ravel() for w in weights]))
    print(json.dumps(report))
""")


def _child(tmp_path, name, steps, env_update, mode="pause"):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / ("cache-" + name)))
    env.pop("MXOPT_NUMBA_BACKGROUND_COMPILE", None)
    env.update(env_update)
    out_file = str(tmp_path / (name + ".npy"))
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(steps), mode, out_file], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    import json
    return json.loads(proc.stdout.strip().splitlines()[-1]), np.load(out_file)


def test_cold_first_steps_do_not_wait_and_match_a_foreground_compile(tmp_path):
    report, background = _child(tmp_path, "background", 20, {})
    assert report["pending_after_first"] >= 1           # the threaded kernel was still compiling
    assert report["threaded_at"][0] is False            # so the first step ran the twin
    assert report["threaded_at"][-1] is True            # and later steps switched
    assert report["waited"] and report["threaded_after_wait"] and report["header_check_compiled"]
    report_off, foreground = _child(tmp_path, "foreground", len(report["threaded_at"]),
                                    {"MXOPT_NUMBA_BACKGROUND_COMPILE": "0"})
    assert report_off["pending_after_first"] == 0 and report_off["threaded_at"][0] is True
    np.testing.assert_array_equal(background, foreground)


def test_a_warm_cache_loads_the_threaded_kernel_at_once(tmp_path):
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "shared-cache")}
    _child(tmp_path, "fill", 2, env)
    report, _ = _child(tmp_path, "warm", 2, env)
    assert report["pending_after_first"] == 0 and report["threaded_at"] == [True, True]


_EXIT_AND_FORK = textwrap.dedent("""
    import os, sys
    import numpy as np
    import mxopt_numba as mxo
    from mxopt_numba.kernels import _background
    w = [np.ones(1 << 17, np.float32)]
    opt = mxo.optimizer.create("rmsprop", centered=True, aggregate_num=np.inf)
    updater = mxo.optimizer.get_updater(opt)
    updater([0], [np.full(w[0].shape, 0.1, np.float32)], w)
    assert _background.pending() >= 1, "nothing compiling in the background"
    if sys.argv[1] == "fork":
        pid = os.fork()
        if pid == 0:
            # the child compiles and runs a kernel of its own: Numba's compiler lock must be free
            sgd = mxo.optimizer.create("nag", momentum=0.9, aggregate_num=np.inf)
            v = [np.ones(1 << 17, np.float32)]
            mxo.optimizer.get_updater(sgd)([0], [np.full(v[0].shape, 0.1, np.float32)], v)
            ok = np.all(v[0] < 1) and _background._to_helper is None
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
    print("pending at exit", _background.pending())
""")


@pytest.mark.parametrize("mode", ["exit", "fork"])
def test_exit_and_fork_during_a_background_compile(tmp_path, mode):
    if mode == "fork" and not hasattr(os, "fork"):
        pytest.skip("no fork here")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("MXOPT_NUMBA_BACKGROUND_COMPILE", None)
    proc = subprocess.run([sys.executable, "-c", _EXIT_AND_FORK, mode], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    if mode == "fork":
        assert "child 0" in proc.stdout
    # the interpreter waited for the compile: its result is in the cache for the next process
    assert any(name.startswith("rmsprop.multi_rmsprop_centered_update_cpu-") and name.endswith(".nbc")
               for _, _, files in os.walk(tmp_path / "cache") for name in files)


_QUICK_LOAD = textwrap.dedent("""
    import sys
    import numpy as np
    import mxopt_numba as mxo
    w = [np.linspace(-1, 1, 1 << 17, dtype=np.float32), np.ones(7, np.float32)]
    opt = mxo.optimizer.create("adam", learning_rate=0.1, aggregate_num=np.inf)
    updater = mxo.optimizer.get_updater(opt)
    for _ in range(3):
        updater([0, 1], [np.full(x.shape, 0.5, np.float32) for x in w], w)
    full_start = "numba.np.arraymath" in sys.modules
    # compiling something new afterwards still has every registry Numba needs
    import numba
    @numba.njit
    def dot(a, b):
        return np.dot(a, b) + np.sum(np.sort(a))
    x = np.arange(4.0)
    assert dot(x, x) == 14.0 + 6.0
    print(full_start, repr(w[0][:3].tolist()), repr(w[1].tolist()))
""")


def test_cached_kernels_load_without_numbas_full_start_up(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), MXOPT_NUMBA_BACKGROUND_COMPILE="0")
    runs = [subprocess.run([sys.executable, "-c", _QUICK_LOAD], env=env, capture_output=True, text=True,
                           timeout=300) for _ in range(2)]
    for proc in runs:
        assert proc.returncode == 0, proc.stderr
    cold, warm = (proc.stdout.split(None, 1) for proc in runs)
    assert cold[0] == "True"           # compiling loads Numba's registries
    assert warm[0] == "False"          # loading the cached kernels did not
    assert cold[1] == warm[1]


_WARNINGS_MEANWHILE = textwrap.dedent("""
    import threading, warnings
    import numpy as np
    import mxopt_numba as mxo
    from mxopt_numba.kernels import _background
    original = warnings.showwarning
    w = [np.ones(1 << 17, np.float32)]
    updater = mxo.optimizer.get_updater(mxo.optimizer.create("adamw", aggregate_num=np.inf))
    updater([0], [np.full(w[0].shape, 0.1, np.float32)], w)
    assert _background.pending() >= 1, "nothing compiling in the background"
    probes = lost = 0
    others = set()
    while _background.pending():
        others.update(t.name for t in threading.enumerate() if t is not threading.main_thread())
        for _ in range(200):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                warnings.warn("probe", UserWarning)
            probes += 1
            lost += not any(str(c.message) == "probe" for c in caught)
    print(probes, lost, warnings.showwarning is original, sorted(others))
""")


def test_warnings_on_the_users_thread_survive_a_background_compile(tmp_path):
    """Numba's type inference swaps the warnings module's global state many times per
    kernel; compiling on a thread of this process made warnings raised meanwhile vanish
    (a ``pytest.warns`` block saw nothing).  The compile runs in another process, so
    every warning reaches the block that expects it."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("MXOPT_NUMBA_BACKGROUND_COMPILE", None)
    proc = subprocess.run([sys.executable, "-c", _WARNINGS_MEANWHILE], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    probes, lost, hooks_restored, others = proc.stdout.split(None, 3)
    assert int(probes) > 10000, "too few probes to mean anything"
    assert int(lost) == 0
    assert hooks_restored == "True"
    assert others.strip() == "[]"          # no compiling thread in this process


_HELPER_OUTCOMES = textwrap.dedent("""
    import pathlib, sys, warnings
    sys.path.insert(0, sys.argv[1])
    sys.path.append(pathlib.Path("not-a-str-entry"))     # the helper's path is built from these too
    import numba
    from mxopt_numba.kernels import _background
    import helpers
    nested = helpers.make_nested()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = [_background.ready(f, (1,)) for f in (helpers.good, helpers.bad, nested)]
        waited = _background.wait(timeout=200)
        after = [_background.ready(f, (1,)) for f in (helpers.good, helpers.bad, nested)]
    print(first, waited, after)
    print(helpers.good(5), bool(helpers.good.stats.cache_hits), len(helpers.bad.overloads))
    print([str(c.message) for c in caught if "could not compile" in str(c.message)])
""")


def test_the_helper_process_compiles_what_it_can_reach_and_reports_what_fails(tmp_path):
    (tmp_path / "helpers.py").write_text(
        "import numba\n\n"
        "@numba.njit(cache=True)\ndef good(x):\n    return 3 * x\n\n"
        "@numba.njit(cache=True)\ndef bad(x):\n    return x.no_such_attribute\n\n"
        "def make_nested():\n    @numba.njit(cache=True)\n    def nested(x):\n        return x + 1\n"
        "    return nested\n")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("MXOPT_NUMBA_BACKGROUND_COMPILE", None)
    proc = subprocess.run([sys.executable, "-c", _HELPER_OUTCOMES, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    readiness, loaded, failures = proc.stdout.strip().splitlines()
    # a module-level function goes to the helper; a nested one compiles on the caller's thread
    assert readiness == "[False, False, True] True [True, False, True]"
    # the good one was loaded from the helper's cache entry, not compiled here; the bad
    # one keeps its fallback and was never compiled here either
    assert loaded == "15 True 0"
    assert "could not compile bad" in failures and "no_such_attribute" in failures


_OTHER_FILE = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from mxopt_numba.kernels import _background
    import helpers
    sys.path[0] = sys.argv[2]          # where a different helpers.py lies
    first = _background.ready(helpers.good, (1,))
    waited = _background.wait(timeout=200)
    print(first, waited, _background.ready(helpers.good, (1,)), helpers.good(5), bool(helpers.good.stats.cache_hits))
""")


def test_the_helper_never_compiles_another_file_of_the_same_name(tmp_path):
    """When the module name leads the helper to a different file (the search path
    changed since), it compiles nothing: the kernel compiles here, from its own file."""
    for name, factor in (("here", 3), ("elsewhere", 4)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "helpers.py").write_text(
            "import numba\n\n@numba.njit(cache=True)\ndef good(x):\n    return %d * x\n" % factor)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("MXOPT_NUMBA_BACKGROUND_COMPILE", None)
    proc = subprocess.run([sys.executable, "-c", _OTHER_FILE, str(tmp_path / "here"), str(tmp_path / "elsewhere")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True", "True", "15", "False"]
    # and the other file was never compiled: the only cache index is this process's own
    indexes = [name for _, _, files in os.walk(tmp_path / "cache") for name in files
               if name.startswith("helpers.good-") and name.endswith(".nbi")]
    assert len(indexes) == 1, indexes


_HELPER_TROUBLE = textwrap.dedent("""
    import os, signal, sys, warnings
    import numpy as np
    import mxopt_numba as mxo
    from mxopt_numba.kernels import _background
    if sys.argv[1] == "no-start":
        sys.executable = "/nonexistent/python"
    rng = np.random.default_rng(1)
    w = [rng.standard_normal(1 << 17).astype(np.float32)]
    updater = mxo.optimizer.get_updater(mxo.optimizer.create("adam", learning_rate=0.01, aggregate_num=np.inf))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(4):
            updater([0], [rng.standard_normal(w[0].shape).astype(np.float32)], w)
            if step == 0 and sys.argv[1] == "killed" and _background.enabled():
                assert _background.pending() == 1
                os.kill(_background._helper.pid, signal.SIGKILL)
                _background._helper.wait()
        assert _background.wait(timeout=200)
    from mxopt_numba.kernels import adam
    print(len(adam.multi_adam_update_cpu.overloads), _background.pending())
    print(" | ".join(str(c.message) for c in caught if "compile process" in str(c.message)))
    np.save(sys.argv[2], w[0])
""")


@pytest.mark.parametrize("trouble", ["no-start", "killed"])
def test_without_a_working_helper_kernels_compile_on_the_launching_thread(tmp_path, trouble):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("MXOPT_NUMBA_BACKGROUND_COMPILE", None)
    out = {}
    for name, extra in ((trouble, {}), ("reference", {"MXOPT_NUMBA_BACKGROUND_COMPILE": "0"})):
        target = str(tmp_path / (name + ".npy"))
        proc = subprocess.run([sys.executable, "-c", _HELPER_TROUBLE, trouble, target], env=dict(env, **extra),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        out[name] = proc.stdout.strip().splitlines(), np.load(target)
    (counts, notice), weights = out[trouble]
    assert counts == "1 0"                        # the threaded kernel compiled here after all
    expected = "could not start" if trouble == "no-start" else "stopped"
    assert expected in notice
    np.testing.assert_array_equal(weights, out["reference"][1])


_FROZEN = textwrap.dedent("""
    import sys
    sys.frozen = True                  # as in a bundled application
    import numpy as np
    import mxopt_numba as mxo
    from mxopt_numba.kernels import _background, adam
    w = [np.ones(1 << 17, np.float32)]
    mxo.optimizer.get_updater(mxo.optimizer.create("adam", aggregate_num=np.inf))([0], [np.ones_like(w[0])], w)
    print(_background._helper is None, len(adam.multi_adam_update_cpu.overloads))
""")


def test_a_frozen_application_never_starts_itself_as_a_helper(tmp_path):
    """A bundled application's executable is the application: the kernels compile on
    the launching thread instead."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("MXOPT_NUMBA_BACKGROUND_COMPILE", None)
    proc = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", _FROZEN], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "1"]
