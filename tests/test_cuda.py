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
import ctypes
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from numba.core import types as nb_types

import mxopt_numba as mxo
from cases import CASES
from mxopt_numba import _device
from mxopt_numba._state_tree import state_leaves
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

GRID, THREADS, TABLE_BLOCK = 2, 8, 32


@pytest.fixture(autouse=True)
def _short_switch_interval():
    """A simulated ``syncthreads`` waits for Python's GIL to change hands (every 5 ms by
    default), which made each reduction launch take half a second; switch more often."""
    if not SIMULATOR:
        yield
        return
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


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

SCALARS = dict(seed_a=0x1234, seed_b=0xFEDC, seed_c=0x0F0F, seed_d=0xA5A5, momentum=0.9, one_minus_momentum=0.1, rescale=1.25, clip=0.8, lamda=0.04, beta1=0.9,
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
        if name == "multi_rmsprop_v1_centered_update_cpu":  # 1.x order: var, mean, delta
            leaves[1] *= 0.1
            leaves[0] += 0.5
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
        coefs = np.zeros((n, 6), dtype=ct)
        coefs[:, 0], coefs[:, 1] = lrs / 2, np.sqrt(lrs)
        coefs[:, 2], coefs[:, 3] = 0, np.arange(1, n + 1)            # update counts
        coefs[:, 4], coefs[:, 5] = 0x8000 + np.arange(n), 0x1357     # parameter keys
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


# --------------------------------------------------------------------------- optimizers on device arrays

@pytest.fixture
def device_routing(monkeypatch):
    """The launch geometry shrunk for the simulator (device arrays take the GPU path by
    themselves)."""
    from mxopt_numba.optimizer import _gpu_launch
    monkeypatch.setattr(_gpu_launch.config, "threads_per_block", THREADS)
    monkeypatch.setattr(_gpu_launch.config, "max_blocks", GRID)
    monkeypatch.setattr(_gpu_launch.config, "block_elements", TABLE_BLOCK)


@pytest.fixture
def launches(monkeypatch):
    """Every twin launch of the test: (twin, args)."""
    from mxopt_numba.optimizer import _gpu_launch
    seen = []
    call = _gpu_launch._call

    def spy(twin, grid, threads, args, scratch=None):
        seen.append((twin, args))
        return call(twin, grid, threads, args, scratch)
    monkeypatch.setattr(_gpu_launch, "_call", spy)
    return seen


def _small(shape):
    """Catalog shapes cut down for the simulator (rows still span several table blocks)."""
    return tuple(min(d, 13) for d in shape)


def _run_updater(case, kwargs, dtype, device, steps=2, multi_precision=False, aggregate_num=np.inf):
    rng = np.random.default_rng(11)
    shapes = [_small(s) for s in case.shapes]
    w0 = [rng.standard_normal(s) for s in shapes]
    if case.positive_weights:
        w0 = [np.abs(w) + 0.1 for w in w0]
    grads = [[rng.standard_normal(s) * (1 + 0.5 * k) for k, s in enumerate(shapes)] for _ in range(steps)]
    put = cuda.to_device if device else (lambda a: a)
    weights = [put(w.astype(dtype)) for w in w0]
    opt = mxo.optimizer.create(case.name, multi_precision=multi_precision, **kwargs)
    opt.aggregate_num = aggregate_num
    updater = mxo.optimizer.get_updater(opt)
    mxo.random.seed(1234)
    for t in range(steps):
        updater(list(range(len(weights))), [put(g.astype(dtype)) for g in grads[t]], weights)
    host = (lambda a: a.copy_to_host()) if device else (lambda a: a)
    states = [[host(x) for x in state_leaves(updater.states[k])] for k in range(len(weights))]
    return [host(w) for w in weights], states


LAYERWISE = {"lars", "lamb", "lans", "lbsgd"}     # trust ratios from sums added in another order


def assert_same_run(got, ref, name):
    for k, (x, r) in enumerate(zip(got, ref)):
        if SIMULATOR and name not in LAYERWISE:
            assert np.array_equal(x.view(np.uint8), r.view(np.uint8)), "%s: tensor %d differs" % (name, k)
        else:
            np.testing.assert_allclose(x.astype(np.float64), r.astype(np.float64), rtol=2e-6, atol=1e-7,
                                       err_msg="%s: tensor %d" % (name, k))


def _optimizer_params():
    out = []
    for case in CASES:
        for n, (desc, kwargs) in enumerate(case.configs.items()):
            out.append(pytest.param(case, kwargs, "fp32", id="%s-%s-fp32" % (case.name, desc)))
            if n == 0:
                out.append(pytest.param(case, kwargs, "fp16-mp", id="%s-%s-fp16-mp" % (case.name, desc)))
                if case.name in FULL_PRECISIONS:
                    out += [pytest.param(case, kwargs, p, id="%s-%s-%s" % (case.name, desc, p))
                            for p in ("fp64", "bf16-mp")]
    return out


#: optimizers also run in float64 and bfloat16 here (the kernel tests cover every twin in
#: every layout; these check the launch path end to end)
FULL_PRECISIONS = {"sgd", "adam", "groupadagrad", "lamb", "sgld"}


RUN_DTYPES = {"fp32": (np.float32, False), "fp64": (np.float64, False), "fp16-mp": (np.float16, True),
              "bf16-mp": (BF16, True)}


@needs_cuda
@pytest.mark.parametrize("case, kwargs, precision", _optimizer_params())
def test_optimizer_on_device_matches_host(case, kwargs, precision, device_routing, launches):
    dtype, mp = RUN_DTYPES[precision]
    ref_w, ref_s = _run_updater(case, kwargs, dtype, device=False, multi_precision=mp)
    got_w, got_s = _run_updater(case, kwargs, dtype, device=True, multi_precision=mp)
    assert launches, "no GPU launch"
    assert_same_run(got_w, ref_w, case.name)
    for k, (gs, rs) in enumerate(zip(got_s, ref_s)):
        assert len(gs) == len(rs)
        assert_same_run(gs, rs, case.name)
    # every rule scalar reached its twin in the compute dtype (no Python float: float64 on a GPU)
    ct = launch.compute_dtype(dtype)
    for twin, args in launches:
        for a in args[2:5] + args[9:]:
            got = _device.dtype_of(a) if _device.is_device_array(a) else type(a)
            assert got == ct, "%s got %r for a rule argument (expected %s)" % (twin.__name__, got, ct.__name__)


# --------------------------------------------------------------------------- real CUDA compilation

def _ptx_compiler():
    """``cuda.compile_ptx`` when NVVM is usable (numba-cuda with the toolkit wheels), with a
    stand-in device on machines without a GPU; None under the simulator."""
    if cuda is None or SIMULATOR:
        return None
    try:
        from numba.cuda import dispatcher
        if not HAVE_CUDA:          # compile for a stand-in compute capability 8.0 device
            class _Device:
                compute_capability = (8, 0)
            dispatcher.get_current_device = lambda: _Device()
        cuda.compile_ptx(lambda a: None, (nb_types.Array(nb_types.float32, 1, "C"),), cc=(8, 0))
    except Exception:
        return None
    return cuda.compile_ptx


@pytest.mark.slow
@pytest.mark.skipif(SIMULATOR, reason="the simulator compiles nothing")
@pytest.mark.parametrize("module, name", cpu_kernels(), ids=lambda x: x)
def test_twin_compiles_to_ptx_without_float64_math(module, name):
    """The hardware path (typed pointers, CUDA overloads of load/store/master_view) compiles,
    and with float32 rule scalars the element-wise twins do no float64 arithmetic (the
    reductions and GroupAdaGrad's row sums add in float64 on purpose)."""
    import importlib
    compile_ptx = _ptx_compiler()
    if compile_ptx is None:
        pytest.skip("no NVVM (install numba-cuda with its cu12/cu13 toolkit extra)")
    types = nb_types
    gpu_mod = importlib.import_module("mxopt_numba.kernels.gpu." + module)
    twin = getattr(gpu_mod, name[:-4] + "_gpu")
    func = getattr(twin, "partials", twin).py_func
    arr = lambda dt, nd=1: types.Array(dt, nd, "C")
    for w, master, state in ((types.float32, None, types.float32), (types.uint16, types.float32, types.float32),
                             (types.int16, types.float32, types.float32)):
        sig = [arr(types.int64, 2), arr(types.int64, 2), arr(types.float32), arr(types.float32),
               arr(types.float32, 2), arr(w), arr(w), types.none if master is None else arr(master), arr(state)]
        for p in list(inspect.signature(func).parameters)[9:]:
            sig.append(arr(types.float32) if p == "noise" else arr(types.float64, 2) if p == "out" else types.float32)
        ptx, _ = compile_ptx(func, tuple(sig), cc=(8, 0))
        if not (hasattr(twin, "run") or module == "groupadagrad"):
            assert ".f64" not in ptx, "%s does float64 math with float32 scalars" % name


# --------------------------------------------------------------------------- device rules and errors

def _sgd_setup(device, dtype=np.float32, shapes=((40,), (9, 7), (70,)), **kwargs):
    rng = np.random.default_rng(5)
    put = cuda.to_device if device else (lambda a: a)
    weights = [put(rng.standard_normal(s).astype(dtype)) for s in shapes]
    grads = [put(rng.standard_normal(s).astype(dtype)) for s in shapes]
    opt = mxo.optimizer.create("sgd", momentum=0.9, wd=0.01, **kwargs)
    states = [opt.create_state_multi_precision(k, w) for k, w in enumerate(weights)]
    return opt, weights, grads, states


@needs_cuda
def test_states_are_created_on_the_device(device_routing):
    opt, weights, _, states = _sgd_setup(True, np.float16, multi_precision=True)
    for w, (master, mom) in zip(weights, states):
        assert _device.is_device_array(master) and _device.is_device_array(mom)
        assert master.dtype == np.float32 and mom.dtype == np.float32 and master.shape == w.shape
        np.testing.assert_array_equal(master.copy_to_host(), w.copy_to_host().astype(np.float32))


@needs_cuda
def test_mixing_host_and_device_arrays_is_an_error(device_routing):
    opt, weights, grads, states = _sgd_setup(True)
    host_grads = [g.copy_to_host() for g in grads]
    with pytest.raises(TypeError, match="one update call takes host .* or CUDA device arrays only"):
        opt.update([0, 1, 2], weights, host_grads, states)
    host_states = [s.copy_to_host() for s in states]
    with pytest.raises(TypeError, match=r"states\[0\] leaf 0 is a host array .* weights\[0\] a CUDA device array"):
        opt.update([0, 1, 2], weights, grads, host_states)


@needs_cuda
def test_step_path_needs_host_arrays(device_routing):
    opt, weights, grads, states = _sgd_setup(True, use_fused_step=False)
    with pytest.raises(TypeError, match="use_fused_step=False"):
        opt.update([0, 1, 2], weights, grads, states)


@needs_cuda
def test_device_arrays_in_a_host_call_are_named(device_routing):
    from mxopt_numba.optimizer import optimizer as base
    opt, weights, grads, states = _sgd_setup(False)
    # the host checks name the device array once optimizer.py asks _device (before: a generic TypeError)
    match = r"grads\[1\] is a CUDA device array, weights\[1\] a host array" if hasattr(base, "_device") else None
    with pytest.raises(TypeError, match=match):
        opt.update([0, 1, 2], weights, [grads[0], cuda.to_device(grads[1]), grads[2]], states)


def test_device_arrays_without_cuda_raise_the_gpu_error(monkeypatch):
    class FakeDeviceArray:
        __cuda_array_interface__ = {"shape": (3,), "typestr": "<f4", "data": (1, False), "version": 3}
    monkeypatch.setattr(_device, "_cuda", None)
    from numba import cuda as numba_cuda
    monkeypatch.setattr(numba_cuda, "is_available", lambda: False)
    w = FakeDeviceArray()
    assert _device.is_device_array(w)
    with pytest.raises(_device.GPUUnavailableError, match="GPU support needs numba-cuda and a CUDA device"):
        _device.on_device([w], [FakeDeviceArray()], [None])


def test_simulator_requested_means_the_cuda_tests_run():
    """CI sets NUMBA_ENABLE_CUDASIM=1: then these tests must run, not skip (a Numba without
    a CUDA target, built-in or numba-cuda, would otherwise skip them silently)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        assert HAVE_CUDA and SIMULATOR


def test_host_arrays_never_touch_cuda():
    w = [np.zeros(3, np.float32)]
    assert _device.on_device(w, [np.ones(3, np.float32)], [(np.zeros(3), None)]) is False
    assert not _device.is_device_array(w[0])


@needs_cuda
def test_one_launch_per_chunk_and_tables_reused(device_routing, launches):
    opt, weights, grads, states = _sgd_setup(True)
    indices = [0, 1, 2]
    opt.update(indices, weights, grads, states)
    opt.update(indices, weights, grads, states)                 # a repeated call is cached
    plan = opt._plans.get(tuple(indices))
    ptrs, blocks = plan.groups[0].ptrs, plan.groups[0].blocks
    opt.update(indices, weights, grads, states)                 # same gradients: tables as they are
    new_grads = [cuda.to_device(g.copy_to_host() * 2) for g in grads]
    opt.update(indices, weights, new_grads, states)             # new gradients: column 1 rewritten
    assert len(launches) == 4
    assert plan.groups[0].ptrs is ptrs and plan.groups[0].blocks is blocks
    assert list(plan.groups[0].ptrs.copy_to_host()[:, 1]) == [_device.address(g) for g in new_grads]
    # and the result is the host's
    ref_opt, ref_w, ref_g, ref_s = _sgd_setup(False)
    for _ in range(3):
        ref_opt.update(indices, ref_w, ref_g, ref_s)
    ref_opt.update(indices, ref_w, [g * 2 for g in ref_g], ref_s)
    assert_same_run([w.copy_to_host() for w in weights], ref_w, "sgd")


@needs_cuda
def test_mixed_layouts_in_one_chunk(device_routing, launches):
    """float32 and float16 weights in one call: one launch per storage layout."""
    rng = np.random.default_rng(2)
    dtypes = [np.float32, np.float16, np.float32, BF16]
    host = [rng.standard_normal(30 + 17 * k).astype(dt) for k, dt in enumerate(dtypes)]
    hgrads = [rng.standard_normal(w.shape).astype(w.dtype) for w in host]
    results = []
    for device in (False, True):
        put = cuda.to_device if device else (lambda a: a.copy())
        weights, grads = [put(w) for w in host], [put(g) for g in hgrads]
        opt = mxo.optimizer.create("adam", multi_precision=True, wd=0.02)
        states = [opt.create_state_multi_precision(k, w) for k, w in enumerate(weights)]
        for _ in range(2):
            opt.update(list(range(4)), weights, grads, states)
        results.append([w.copy_to_host() if device else w for w in weights])
    assert len(launches) == 2 * 3
    assert_same_run(results[1], results[0], "adam")


def _row_sparse(device, rows, data):
    from mxopt_numba.sparse import RowSparseArray
    return RowSparseArray(cuda.to_device(data) if device else data, np.asarray(rows, np.int64),
                          (11,) + data.shape[1:])


@needs_cuda
@pytest.mark.parametrize("name, kwargs", [("sgd", {"momentum": 0.9, "wd": 0.01, "lazy_update": True}),
                                          ("sgd", {"momentum": 0.9, "wd": 0.01, "lazy_update": False}),
                                          ("adagrad", {"wd": 0.0}),
                                          ("adam", {"lazy_update": True, "wd": 0.01})],
                         ids=["sgd-lazy", "sgd-standard", "adagrad", "adam-lazy"])
def test_row_sparse_gradients_on_device(name, kwargs, device_routing):
    rng = np.random.default_rng(9)
    w0 = [rng.standard_normal((11, 6)).astype(np.float32), rng.standard_normal((11, 6)).astype(np.float16)]
    dense = rng.standard_normal(30).astype(np.float32)
    rows = [1, 4, 5, 9]
    data = [rng.standard_normal((len(rows), 6)).astype(w.dtype) for w in w0]
    results = []
    for device in (False, True):
        put = cuda.to_device if device else (lambda a: a.copy())
        weights = [put(w) for w in w0] + [put(dense)]
        opt = mxo.optimizer.create(name, multi_precision=True, **kwargs)
        states = [opt.create_state_multi_precision(k, w) for k, w in enumerate(weights)]
        for step in range(2):
            grads = [_row_sparse(device, rows, d * (step + 1)) for d in data] + [put(dense * 0.5)]
            opt.update([0, 1, 2], weights, grads, states)
        results.append([w.copy_to_host() if device else w for w in weights])
    assert_same_run(results[1], results[0], name)


@needs_cuda
def test_same_row_sparse_gradient_twice_on_a_dense_plan(device_routing):
    """The standard update densifies a row-sparse gradient into a new device array every
    call: reusing the gradient object must not reuse a freed dense copy."""
    rng = np.random.default_rng(4)
    w0 = rng.standard_normal((11, 5)).astype(np.float32)
    data = rng.standard_normal((3, 5)).astype(np.float32)
    results = []
    for device in (False, True):
        weight = cuda.to_device(w0) if device else w0.copy()
        grad = _row_sparse(device, [0, 2, 10], data)
        opt = mxo.optimizer.create("sgd", momentum=0.9)
        state = opt.create_state_multi_precision(0, weight)
        for _ in range(3):
            opt.update([0], [weight], [grad], [state])
        results.append([weight.copy_to_host() if device else weight])
    assert_same_run(results[1], results[0], "sgd")


@pytest.mark.skipif(SIMULATOR or cuda is None, reason="the real CUDA launcher")
def test_none_argument_reaches_the_launcher_as_a_null_pointer():
    """Without multi-precision ``master_fmt`` is None: Numba's CUDA launcher has no case for
    a ``none`` argument, so the twins' launch extension passes the null pointer the
    compiled kernel expects in its place."""
    from numba.cuda import dispatcher
    from mxopt_numba.kernels.gpu._common import _NONE_ARGUMENTS
    kernel_cls = next(c for c in vars(dispatcher).values() if isinstance(c, type) and hasattr(c, "_prepare_args"))
    packer = kernel_cls.__new__(kernel_cls)
    packer.extensions = [_NONE_ARGUMENTS]
    args = []
    packer._prepare_args(nb_types.none, None, 0, [], args)
    assert len(args) == 1 and args[0].value == 0 and ctypes.sizeof(args[0]) == ctypes.sizeof(ctypes.c_void_p)


@needs_cuda
@pytest.mark.parametrize("name, kwargs", [
    ("adagrad", {"wd": 0.01}), ("adadelta", {"wd": 0.01}), ("rmsprop", {"wd": 0.01, "clip_weights": 2.0}),
    ("rmsprop", {"centered": True, "wd": 0.01}), ("nag", {"momentum": 0.9, "wd": 0.01}),
    ("dcasgd", {"wd": 0.01}), ("test", {}), ("groupadagrad", {}), ("sgd", {"momentum": 0.9, "wd": 0.01}),
    ("adam", {"wd": 0.1}), ("ftml", {"wd": 0.1}), ("adamax", {"wd": 0.1}), ("nadam", {"wd": 0.1})])
def test_v1_optimizers_on_device_match_host(name, kwargs, device_routing, launches):
    """mxopt_numba.v1's rules run through the same twins on device arrays."""
    import mxopt_numba.v1 as mx1
    shapes = ((6, 7), (9, 5))
    runs = []
    for device in (False, True):
        rng = np.random.default_rng(3)
        put = cuda.to_device if device else (lambda a: a)
        opt = mx1.optimizer.create(name, learning_rate=0.05, rescale_grad=1.5, clip_gradient=0.8, **kwargs)
        updater = mx1.optimizer.get_updater(opt)
        weights = [put(rng.standard_normal(s).astype(np.float32)) for s in shapes]
        for _ in range(2):
            grads = [put(rng.standard_normal(s).astype(np.float32)) for s in shapes]
            updater(list(range(len(shapes))), grads, weights)
        runs.append([w.copy_to_host() if device else w for w in weights])
    assert launches, "no GPU launch"
    for got, want in zip(runs[1], runs[0]):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
