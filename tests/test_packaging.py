"""The wheel carries what an installed package needs, and each public module's dir()
shows its exports only."""
import importlib
import re
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest

import mxopt_numba

ROOT = Path(__file__).resolve().parent.parent

PUBLIC_MODULES = ["mxopt_numba", "mxopt_numba.optimizer", "mxopt_numba.lr_scheduler",
                  "mxopt_numba.initializer", "mxopt_numba.parameter", "mxopt_numba.trainer",
                  "mxopt_numba.sparse", "mxopt_numba.random", "mxopt_numba.registry",
                  "mxopt_numba.workloads", "mxopt_numba.utils", "mxopt_numba.distributed"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                    "-q", "-w", str(out)], check=True, capture_output=True, text=True)
    wheels = list(out.glob("mxopt_numba-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_holds_license_typing_marker_and_kernels(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    version = mxopt_numba.__version__
    assert "mxopt_numba-%s.dist-info/licenses/LICENSE" % version in names
    assert "mxopt_numba/py.typed" in names
    kernels = {p.name for p in (ROOT / "kernels").glob("*.py")}
    gpu = {p.name for p in (ROOT / "kernels" / "gpu").glob("*.py")}
    assert {"mxopt_numba/kernels/%s" % k for k in kernels} <= names
    assert {"mxopt_numba/kernels/gpu/%s" % k for k in gpu} <= names
    assert not any(n.startswith("kernels/") for n in names)


def test_wheel_metadata(wheel):
    meta = zipfile.ZipFile(wheel).read("mxopt_numba-%s.dist-info/METADATA"
                                       % mxopt_numba.__version__).decode()
    fields = [tuple(line.split(": ", 1)) for line in meta.split("\n\n")[0].splitlines() if ": " in line]
    assert ("Version", mxopt_numba.__version__) in fields
    assert ("License-Expression", "Apache-2.0") in fields
    assert ("License-File", "LICENSE") in fields
    urls = dict(v.split(", ", 1) for k, v in fields if k == "Project-URL")
    assert urls["Homepage"] == "https://github.com/mxopt-numba/mxopt-numba"
    assert urls["Repository"] == "https://github.com/mxopt-numba/mxopt-numba"
    extras = {v for k, v in fields if k == "Provides-Extra"}
    assert {"torch", "docs", "test"} <= extras


def test_version_is_written_once():
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r"^version\s*=\s*\"", text, re.M) is None
    assert 'dynamic = ["version"]' in text
    assert re.fullmatch(r"\d+\.\d+\.\d+(\S*)", mxopt_numba.__version__)


def test_license_is_the_apache_2_text():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text


def test_asv_project_url_is_real():
    import json
    conf = json.loads((ROOT / "asv_benchmarks" / "asv.conf.json").read_text())
    assert conf["project_url"] == "https://github.com/mxopt-numba/mxopt-numba"


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_names_are_the_exports(name):
    module = importlib.import_module(name)
    # touch the lazy attributes first: importing submodules must not widen the listing
    for attr in list(module.__all__):
        if attr != "torch":
            getattr(module, attr)
    public = {n for n in dir(module) if not n.startswith("_")}
    assert public == set(module.__all__)
    for attr in public:
        if name == "mxopt_numba" and attr == "torch":
            continue
        value = getattr(module, attr)
        if isinstance(value, types.ModuleType):
            # only the package's own submodules may be exported as modules
            assert value.__name__.startswith("mxopt_numba."), (name, attr)


def test_lr_scheduler_exports_no_stdlib_modules():
    from mxopt_numba import lr_scheduler
    assert not {"logging", "math", "numbers"} & set(dir(lr_scheduler))


def _annotated(fn):
    import inspect
    sig = inspect.signature(fn)
    params = [p for name, p in sig.parameters.items() if name != "self"]
    return sig.return_annotation is not inspect.Signature.empty and all(
        p.annotation is not inspect.Parameter.empty for p in params)


def test_public_api_is_annotated():
    from mxopt_numba import Parameter, Trainer, initializer, lr_scheduler, optimizer
    functions = [optimizer.Optimizer.__init__, optimizer.create, optimizer.register, optimizer.get_updater,
                 optimizer.Updater.__init__, optimizer.Updater.__call__, optimizer.Updater.get_states,
                 Trainer.__init__, Trainer.step, Trainer.update, Trainer.save_states, Trainer.load_states,
                 Parameter.__init__, Parameter.set_data, Parameter.set_grad, Parameter.initialize,
                 initializer.create, initializer.Initializer.__call__, initializer.Uniform.__init__,
                 initializer.Xavier.__init__]
    for name in lr_scheduler.__all__:
        obj = getattr(lr_scheduler, name)
        functions += [obj.__init__, obj.__call__] if isinstance(obj, type) else [obj]
    missing = [f.__qualname__ for f in functions if not _annotated(f)]
    assert not missing


def test_torch_adapter_namespace():
    pytest.importorskip("torch")
    from mxopt_numba import torch as mxt
    assert mxopt_numba.torch is mxt
    public = {n for n in dir(mxt) if not n.startswith("_")}
    assert public == set(mxt.__all__)
    assert not any(isinstance(getattr(mxt, n), types.ModuleType) for n in public)
