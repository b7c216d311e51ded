"""Rule modules load when first named (``mxopt_numba/optimizer/_rules.py``), and nothing
a user can observe depends on that: the registry, attributes, ``__all__``, ``dir`` and
overriding a built-in name behave as if every rule were imported up front."""
import subprocess
import sys
import textwrap

import mxopt_numba as mxo
from mxopt_numba.optimizer import _rules


def _child(code):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_import_loads_no_rule_and_create_loads_one():
    out = _child("""
        import sys
        import mxopt_numba as mxo
        def rules():
            return sorted(m.rsplit(".", 1)[1] for m in sys.modules
                          if m.startswith(("mxopt_numba.optimizer.", "mxopt_numba.kernels."))
                          and not m.rsplit(".", 1)[1].startswith("_") and m.rsplit(".", 1)[1] not in
                          ("optimizer", "updater", "counter_rng"))
        print(rules())
        mxo.optimizer.create("adam")
        print(rules())
        print(len(mxo.optimizer.Optimizer.opt_registry) > 20, len(rules()) > 20)
    """)
    first, after_create, after_registry = out.splitlines()
    assert first == "[]"
    assert after_create == "['adam', 'adam']"          # the rule and its kernels
    assert after_registry == "True True"


def test_every_registered_name_and_class_is_found_by_its_module():
    registry = mxo.optimizer.Optimizer.opt_registry
    for name, cls in registry.items():
        if cls.__module__.startswith("mxopt_numba.optimizer."):
            assert [m.__name__ for m in _rules.load(name)] == [cls.__module__], name
    for name in mxo.optimizer.__all__:
        obj = getattr(mxo.optimizer, name)
        if isinstance(obj, type) and obj.__module__.split(".")[-1] in _rules.rule_modules():
            assert obj.__module__ in [m.__name__ for m in _rules.load(name)], name


def test_namespace_as_if_eager():
    out = _child("""
        import mxopt_numba as mxo
        print(sorted(dir(mxo.optimizer)) == sorted(set(mxo.optimizer.__all__) | {n for n in dir(mxo.optimizer) if n.startswith("__")}))
        print("Adam" in mxo.optimizer.__all__ and "SGD" in mxo.optimizer.__all__ and "ccSGD" in mxo.optimizer.__all__)
        ns = {}
        exec("from mxopt_numba.optimizer import *", ns)
        print(ns["NAG"] is mxo.optimizer.NAG, "nag" in mxo.optimizer.Optimizer.opt_registry)
        try:
            mxo.optimizer.NoSuchRule
        except AttributeError as e:
            print("AttributeError", "NoSuchRule" in str(e))
        try:
            mxo.optimizer.create("adamm")
        except ValueError as e:
            print("ValueError", "'adam'" in str(e))
        print(mxo.optimizer.ftml.FTML is mxo.optimizer.FTML)
    """)
    assert out.split() == ["True", "True", "True", "True", "AttributeError", "True", "ValueError", "True", "True"]


def test_a_user_class_registered_first_still_overrides_the_built_in():
    out = _child("""
        import warnings
        import mxopt_numba as mxo
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            @mxo.optimizer.register
            class Adam(mxo.optimizer.Optimizer):
                pass
        print(type(mxo.optimizer.create("adam")) is Adam, any("overrides" in str(w.message) for w in caught))
        print(mxo.optimizer.Optimizer.opt_registry["adam"] is Adam, mxo.optimizer.Adam is not Adam)
    """)
    assert out.split() == ["True", "True", "True", "True"]
