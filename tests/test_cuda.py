"""CUDA twins against their CPU kernels, and optimizers updating device arrays.

Runs under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, as CI does) or on a GPU.  The
simulator runs each CUDA thread as a Python thread, so grids here are tiny (2 blocks of
16 threads) and table blocks short (32 elements), with tensors spanning several table
blocks and more elements than the grid has threads.  In the simulator the shared scalar
rules run as the CPU's compiled code, so twins must match their CPU kernels bit for bit;
on hardware NVVM contracts multiply-adds, so there the comparison allows a few ulps.
Reductions add in another order than the CPU, so sums agree to rounding.
"""
import ast
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import mxopt_numba as mxo
from cases import CASES
from mxopt_numba import _device
from mxopt_numba.kernels import _launch as launch

pytestmark = pytest.mark.gpu

KERNELS = Path(__file__).resolve().parent.parent / "kernels"
BF16 = np.dtype(ml_dtypes.bfloat16)

try:
    from numba import cuda
    HAVE_CUDA = cuda.is_available()
except Exception:       # pragma: no cover - numba without a CUDA target
    cuda, HAVE_CUDA = None, False

needs_cuda = pytest.mark.skipif(not HAVE_CUDA, reason="no CUDA device and NUMBA_ENABLE_CUDASIM is not set")
SIMULATOR = HAVE_CUDA and "simulator" in cuda.jit.__module__

GRID, THREADS, TABLE_BLOCK = 2, 16, 32


# --------------------------------------------------------------------------- inventory (no CUDA needed)

def _kernel_names(path, decorators):
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)
            and any(ast.unparse(d) in decorators for d in node.decorator_list)}


def cpu_kernels():
    out = []
    for path in sorted(KERNELS.glob("*.py")):
        if not path.name.startswith("_"):
            out += [(path.stem, name) for name in sorted(_kernel_names(path, {"cpu_kernel"}))]
    return out


def test_every_cpu_kernel_has_a_gpu_twin():
    missing = []
    for module, name in cpu_kernels():
        twin_file = KERNELS / "gpu" / (module + ".py")
        twins = _kernel_names(twin_file, {"gpu_kernel", "gpu_reduction"}) if twin_file.exists() else set()
        if name[:-4] + "_gpu" not in twins:
            missing.append("%s.%s" % (module, name))
    assert not missing, "CPU kernels without a GPU twin: %s" % missing


def _called_rules(func_node, namespace):
    """Names called in ``func_node`` that are Numba CPU functions of ``namespace``, the
    addressing helpers left out."""
    from numba.core.registry import CPUDispatcher
    names = {n.func.id for n in ast.walk(func_node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    return {n for n in names - {"view", "master_view", "load", "store"}
            if isinstance(namespace.get(n), CPUDispatcher)}


@pytest.mark.parametrize("module, name", cpu_kernels(), ids=lambda x: x)
def test_twin_takes_the_cpu_signature_and_calls_the_same_rules(module, name):
    """Same parameters (a reduction adds its ``out`` array last), and every rule function
    the twin calls is one the CPU module calls: the arithmetic lives in one place."""
    import importlib
    cpu_mod = importlib.import_module("mxopt_numba.kernels." + module)
    gpu_mod = importlib.import_module("mxopt_numba.kernels.gpu." + module)
    twin = getattr(gpu_mod, name[:-4] + "_gpu")
    gpu_func = getattr(twin, "partials", twin).py_func
    cpu_params = list(inspect.signature(getattr(cpu_mod, name).py_func).parameters)
    assert list(inspect.signature(gpu_func).parameters) in (cpu_params, cpu_params + ["out"])
    gpu_rules = _called_rules(ast.parse(inspect.getsource(gpu_func).lstrip()), vars(gpu_mod))
    cpu_rules = _called_rules(ast.parse(inspect.getsource(cpu_mod)), vars(cpu_mod))
    assert gpu_rules and gpu_rules <= cpu_rules


def test_gpu_kernels_import_only_kernels_and_compile_nothing():
    pattern = re.compile(r"^\s*(import|from)\s+mxopt_numba\b|^\s*from\s+\.\.\.", re.M)
    assert not [p.name for p in (KERNELS / "gpu").glob("*.py") if pattern.search(p.read_text())]
    code = ("import pkgutil, importlib, gc\n"
            "import mxopt_numba.kernels.gpu as g\n"
            "from numba.core.registry import CPUDispatcher\n"
            "from mxopt_numba.kernels.gpu._common import GPUKernel\n"
            "for m in pkgutil.iter_modules(g.__path__): importlib.import_module(g.__name__ + '.' + m.name)\n"
            "objs = gc.get_objects()\n"
            "print(sum(1 for d in objs if isinstance(d, CPUDispatcher) and d.signatures),"
            " sum(1 for k in objs if isinstance(k, GPUKernel) and k._dispatcher is not None))")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["0", "0"]


# --------------------------------------------------------------------------- kernel harness

LAYOUTS = {
    # name: (weight/grad dtype, master?, state dtype)
    "fp32": (np.float32, False, np.float32),
    "fp64": (np.float64, False, np.float64),
    "fp16-mp": (np.float16, True, np.float32),
    "bf16-mp": (BF16, True, np.float32),
    "fp16": (np.float16, False, np.float16),
}

SCALARS = dict(momentum=0.9, one_minus_momentum=0.1, rescale=1.25, clip=0.8, lamda=0.04, beta1=0.9,
               one_minus_beta1=0.1, beta2=0.99, one_minus_beta2=0.01, epsilon=1e-6, eps=1e-6, rho=0.9,
               one_minus_rho=0.1, clip_weights=2.5, lamda1=0.02, beta=1.0, batch_scale=2.0, grad_scale=0.75)

SIZES = (150, 37, 90)                        # one chunk of three tensors, 10 table blocks
GROUP_SHAPES = ((6, 25), (3, 7), (5, 18))    # GroupAdaGrad: rows of several lengths


def _n_states(cpu_func):
    columns = [int(c) for c in re.findall(r"view\(ptrs, t, (\d+),", inspect.getsource(cpu_func))]
    return max([2] + columns) - 2


def _kernel_case(module, name, layout, seed=0):
    """Host arrays, per-tensor scalars and rule scalars for one CPU kernel."""
    import importlib
    cpu_mod = importlib.import_module("mxopt_numba.kernels." + module)
    cpu_kernel = getattr(cpu_mod, name)
    w_dtype, mp, s_dtype = LAYOUTS[layout]
    ct = launch.compute_dtype(w_dtype)
    rng = np.random.default_rng(seed)
    shapes = GROUP_SHAPES if module == "groupadagrad" else [(n,) for n in SIZES]
    n = len(shapes)
    weights = [rng.standard_normal(s).astype(w_dtype) for s in shapes]
    grads = [rng.standard_normal(s).astype(w_dtype) for s in shapes]
    masters = [w.astype(np.float32) for w in weights] if mp else [None] * n
    n_states = _n_states(cpu_kernel.py_func)
    states = []
    for s in shapes:
        size = s[0] if module == "groupadagrad" else int(np.prod(s))
        leaves = [rng.uniform(0.1, 1.0, size) for _ in range(n_states)]
        if name == "multi_rmsprop_centered_update_cpu":     # keep var - mean**2 > 0
            leaves[0] *= 0.1
            leaves[1] += 0.5
        states.append([x.astype(s_dtype) for x in leaves])
    lrs = np.array([0.05, 0.1, 0.02][:n], dtype=ct)
    wds = np.array([0.01, 0.0, 0.03][:n], dtype=ct)
    coefs = rng.uniform(0.5, 1.5, (n, 5)).astype(ct)
    params = list(inspect.signature(cpu_kernel.py_func).parameters)[9:]
    scalars = []
    for p in params:
        if p == "noise":
            scalars.append(rng.standard_normal(sum(w.size for w in weights)).astype(ct) * ct(0.01))
        else:
            scalars.append(ct(SCALARS[p]))
    if module == "sgld":
        sizes = np.array([w.size for w in weights])
        offsets = np.cumsum(sizes) - sizes
        coefs[:, 1], coefs[:, 2] = offsets // cpu_mod.OFFSET_SPLIT, offsets % cpu_mod.OFFSET_SPLIT
    if module == "groupadagrad":
        cols = np.array([s[1] for s in shapes])
        coefs[:, 0], coefs[:, 1], coefs[:, 2] = cols // cpu_mod.COLS_SPLIT, cols % cpu_mod.COLS_SPLIT, cols
        wds[:] = 0
    if module == "lbsgd":
        coefs[:, 0] = [1, 0, 1]                # update call, accumulating call, update call
    return dict(kernel=cpu_kernel, weights=weights, grads=grads, masters=masters, states=states,
                lrs=lrs, wds=wds, coefs=coefs, scalars=scalars, mp=mp, w_dtype=w_dtype, s_dtype=s_dtype)


def _table(c, address):
    rows = []
    for w, g, m, leaves in zip(c["weights"], c["grads"], c["masters"], c["states"]):
        rows.append([address(w), address(g), address(w if m is None else m)] + [address(x) for x in leaves])
    return np.array(rows, dtype=np.int64)


def _run_cpu(c, blocks):
    fmt = launch.storage_format
    args = (blocks, _table(c, launch.address), c["lrs"], c["wds"], c["coefs"], fmt(c["w_dtype"]),
            fmt(c["w_dtype"]), fmt(np.float32) if c["mp"] else None, fmt(c["s_dtype"]), *c["scalars"])
    return c["kernel"].serial(*args)


def _to_device(c):
    d = dict(c)
    for key in ("weights", "grads", "masters"):
        d[key] = [None if a is None else cuda.to_device(a) for a in c[key]]
    d["states"] = [[cuda.to_device(x) for x in leaves] for leaves in c["states"]]
    return d


def _run_gpu(c, d, blocks):
    from mxopt_numba.optimizer import _gpu_launch
    twin = _gpu_launch.twin_of(c["kernel"])
    fmt = _gpu_launch._format
    args = (cuda.to_device(blocks), cuda.to_device(_table(d, _device.address)), cuda.to_device(c["lrs"]),
            cuda.to_device(c["wds"]), cuda.to_device(c["coefs"]), fmt(c["w_dtype"]), fmt(c["w_dtype"]),
            fmt(np.float32) if c["mp"] else None, fmt(c["s_dtype"]),
            *[cuda.to_device(s) if isinstance(s, np.ndarray) else s for s in c["scalars"]])
    sums = _gpu_launch._call(twin, GRID, THREADS, args)
    return None if sums is None else sums.copy_to_host()


def assert_same(host, dev, what):
    got = dev.copy_to_host()
    if SIMULATOR:
        assert np.array_equal(got.view(np.uint8), host.view(np.uint8)), "%s differs" % what
    else:    # hardware: FMA contraction moves the last bits
        np.testing.assert_allclose(got.astype(np.float64), host.astype(np.float64), rtol=3e-6, atol=1e-7,
                                   err_msg=what)


KERNEL_PARAMS = [pytest.param(module, name, layout, id="%s-%s" % (name[6:-4], layout))
                 for module, name in cpu_kernels() for layout in LAYOUTS]


@needs_cuda
@pytest.mark.parametrize("module, name, layout", KERNEL_PARAMS)
def test_twin_matches_cpu_kernel(module, name, layout):
    c = _kernel_case(module, name, layout)
    d = _to_device(c)
    sizes = [w.size for w in c["weights"]]
    blocks = launch.block_table(sizes, block=TABLE_BLOCK)
    assert blocks.shape[0] > GRID and max(sizes) > GRID * THREADS   # the strides wrap around
    cpu_sums = _run_cpu(c, blocks)
    gpu_sums = _run_gpu(c, d, blocks)
    for k in range(len(sizes)):
        assert_same(c["weights"][k], d["weights"][k], "weight %d" % k)
        if c["mp"]:
            assert_same(c["masters"][k], d["masters"][k], "master %d" % k)
        for p, leaf in enumerate(c["states"][k]):
            assert_same(leaf, d["states"][k][p], "state %d of tensor %d" % (p, k))
    if cpu_sums is not None:
        np.testing.assert_allclose(gpu_sums, cpu_sums, rtol=1e-12)
