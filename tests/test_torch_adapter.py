"""mxopt_numba.torch: the library's rules behind torch.optim.Optimizer, checked bitwise
against the NumPy Updater on the same data."""
import io
import math

import ml_dtypes
import numpy as np
import pytest

torch = pytest.importorskip("torch")
mxt = pytest.importorskip("mxopt_numba.torch")

from mxopt_numba.optimizer import Updater, create  # noqa: E402
from mxopt_numba.sparse import row_sparse_array  # noqa: E402

BF16 = np.dtype(ml_dtypes.bfloat16)


def np_view(t):
    t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(BF16)
    return t.numpy()


def make_model(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    return model.to(dtype)


def clone(model):
    import copy
    return copy.deepcopy(model)


def batches(n, seed=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(5, 6, generator=g).to(dtype), torch.randn(5, 3, generator=g).to(dtype))
            for _ in range(n)]


def backward(model, x, y):
    loss = (model(x) - y).square().sum()
    loss.backward()
    return loss


class Reference:
    """The same rule through the NumPy Updater on a twin model."""

    def __init__(self, model, name, **kwargs):
        self.model = model
        self.params = list(model.parameters())
        self.updater = Updater(create(name, **kwargs))

    def step(self, x, y, lr=None, beta1=None):
        for p in self.params:
            p.grad = None
        backward(self.model, x, y)
        if lr is not None:
            self.updater.optimizer.set_learning_rate(lr)
        if beta1 is not None:
            self.updater.optimizer.beta1 = beta1
        self.updater(list(range(len(self.params))), [np_view(p.grad) for p in self.params],
                     [np_view(p) for p in self.params])


def assert_same(model_a, model_b):
    for (name, a), b in zip(model_a.named_parameters(), model_b.parameters()):
        assert np_view(a).tobytes() == np_view(b).tobytes(), name


RULES = [
    ("adamw", {"lr": 0.01, "weight_decay": 0.01, "betas": (0.8, 0.99), "eps": 1e-6},
     {"learning_rate": 0.01, "wd": 0.01, "beta1": 0.8, "beta2": 0.99, "epsilon": 1e-6}),
    ("adam", {"lr": 0.01, "weight_decay": 1e-3}, {"learning_rate": 0.01, "wd": 1e-3}),
    ("sgd", {"lr": 0.05, "momentum": 0.9}, {"learning_rate": 0.05, "momentum": 0.9}),
    ("lamb", {"lr": 0.01, "weight_decay": 0.01}, {"learning_rate": 0.01, "wd": 0.01}),
    ("lars", {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4},
     {"learning_rate": 0.1, "momentum": 0.9, "wd": 1e-4}),
    ("signum", {"lr": 0.01, "momentum": 0.9}, {"learning_rate": 0.01, "momentum": 0.9}),
    ("ftml", {"lr": 0.01}, {"learning_rate": 0.01}),
]


@pytest.mark.parametrize("name, torch_kw, lib_kw", RULES, ids=[r[0] for r in RULES])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_training_matches_the_numpy_updater_bitwise(name, torch_kw, lib_kw, dtype):
    model = make_model(dtype=dtype)
    ref = Reference(clone(model), name, **lib_kw)
    opt = mxt.Optimizer(model.parameters(), optimizer=name, **torch_kw)
    for x, y in batches(6, dtype=dtype):
        opt.zero_grad()
        backward(model, x, y)
        opt.step()
        ref.step(x, y)
    assert_same(model, ref.model)


def test_convenience_classes_cover_the_registry():
    from mxopt_numba.optimizer import Optimizer as LibOptimizer
    expected = {cls.__name__ for name, cls in LibOptimizer.opt_registry.items() if name not in ("test", "ccsgd")}
    assert expected <= set(mxt.__all__)
    for cls_name in expected:
        cls = getattr(mxt, cls_name)
        assert issubclass(cls, mxt.Optimizer) and issubclass(cls, torch.optim.Optimizer)
    model = make_model()
    opt = mxt.LAMB(model.parameters(), lr=0.003)
    assert opt.param_groups[0]["lr"] == 0.003 and opt.param_groups[0]["betas"] == (0.9, 0.999)


def test_param_groups_with_their_own_hyperparameters_and_add_param_group():
    model = make_model()
    ref = clone(model)
    first, second = list(model[0].parameters()), list(model[2].parameters())
    opt = mxt.AdamW([{"params": first, "lr": 0.02, "weight_decay": 0.1}], lr=0.005)
    opt.add_param_group({"params": second, "betas": (0.5, 0.9)})
    assert opt.param_groups[1]["lr"] == 0.005 and opt.param_groups[1]["weight_decay"] == 0.0
    ref_a = Updater(create("adamw", learning_rate=0.02, wd=0.1))
    ref_b = Updater(create("adamw", learning_rate=0.005, beta1=0.5, beta2=0.9))
    ra, rb = list(ref[0].parameters()), list(ref[2].parameters())
    for x, y in batches(4):
        opt.zero_grad()
        backward(model, x, y)
        opt.step()
        for p in ra + rb:
            p.grad = None
        backward(ref, x, y)
        for upd, ps in ((ref_a, ra), (ref_b, rb)):
            upd([0, 1], [np_view(p.grad) for p in ps], [np_view(p) for p in ps])
    assert_same(model, ref)


def test_params_without_grad_are_skipped_and_zero_grad():
    model = make_model()
    frozen = model[0].bias
    before = frozen.detach().clone()
    opt = mxt.Adam(model.parameters(), lr=0.01)
    for x, y in batches(3):
        opt.zero_grad(set_to_none=True)
        assert all(p.grad is None for p in model.parameters())
        backward(model, x, y)
        frozen.grad = None
        opt.step()
    assert torch.equal(frozen, before)
    state = opt.state_dict()["state"]
    assert 1 not in state and state[0]["step"] == 3
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters() if p is not frozen)


def test_step_with_closure_returns_its_loss():
    model = make_model()
    ref = Reference(clone(model), "sgd", learning_rate=0.1)
    opt = mxt.SGD(model.parameters(), lr=0.1)
    (x, y), = batches(1)

    def closure():
        opt.zero_grad()
        return backward(model, x, y)
    loss = opt.step(closure)
    ref.step(x, y)
    assert torch.is_tensor(loss) and loss.requires_grad
    assert_same(model, ref.model)


# ---------------------------------------------------------------------- torch's lr schedulers

def _drive(model, opt, sched, n, ref, read_beta=False):
    lrs = []
    for x, y in batches(n):
        lr = opt.param_groups[0]["lr"]
        beta1 = opt.param_groups[0]["betas"][0] if read_beta else None
        lrs.append(lr)
        opt.zero_grad()
        backward(model, x, y)
        opt.step()
        sched.step()
        ref.step(x, y, lr=lr, beta1=beta1)
    assert_same(model, ref.model)
    return lrs


def test_step_lr_drives_the_rate():
    model = make_model()
    ref = Reference(clone(model), "sgd", learning_rate=0.1, momentum=0.9)
    opt = mxt.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    lrs = _drive(model, opt, sched, 8, ref)
    np.testing.assert_allclose(lrs, [0.1 * 0.5 ** (k // 3) for k in range(8)], rtol=1e-15)


def test_cosine_annealing_drives_the_rate():
    model = make_model()
    ref = Reference(clone(model), "lamb", learning_rate=0.01)
    opt = mxt.LAMB(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=6, eta_min=0.001)
    lrs = _drive(model, opt, sched, 6, ref)
    expected = [0.001 + (0.01 - 0.001) * (1 + math.cos(math.pi * k / 6)) / 2 for k in range(6)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)


def test_one_cycle_drives_rate_and_momentum():
    model = make_model()
    ref = Reference(clone(model), "adamw", learning_rate=0.01)
    opt = mxt.AdamW(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.02, total_steps=10)
    # the reference reads beta1 from the group each step too: the weights agree only if
    # the adapter used the cycled momentum
    lrs = _drive(model, opt, sched, 9, ref, read_beta=True)
    peak = int(np.argmax(lrs))
    assert lrs[peak] == pytest.approx(0.02) and 0 < peak < 8
    assert lrs[0] == pytest.approx(0.02 / 25) and lrs[-1] < lrs[peak] / 10
    assert opt.param_groups[0]["betas"][0] > 0.85


# ---------------------------------------------------------------------- state dicts

def _roundtrip(sd):
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("dtype, kw", [(torch.float32, {}), (torch.bfloat16, {"multi_precision": True}),
                                       (torch.float16, {"multi_precision": True})])
def test_state_dict_round_trip_mid_run_is_bitwise(dtype, kw):
    data = batches(6, dtype=dtype)
    model = make_model(dtype=dtype)
    twin = clone(model)
    opt = mxt.AdamW(model.parameters(), lr=0.01, weight_decay=0.01, **kw)
    for x, y in data:
        opt.zero_grad()
        backward(model, x, y)
        opt.step()

    opt2 = mxt.AdamW(twin.parameters(), lr=0.5, **kw)
    for x, y in data[:3]:
        opt2.zero_grad()
        backward(twin, x, y)
        opt2.step()
    sd = _roundtrip(opt2.state_dict())
    entry = sd["state"][0]
    assert entry["step"] == 3
    if kw:
        assert entry["master"].dtype == torch.float32
        assert all(t.dtype == torch.float32 for t in entry["state"])
    resumed = clone(twin)
    opt3 = mxt.AdamW(resumed.parameters(), lr=0.7, betas=(0.1, 0.2), **kw)
    opt3.load_state_dict(sd)
    assert opt3.param_groups[0]["lr"] == 0.5 and opt3.param_groups[0]["betas"] == (0.9, 0.999)
    opt3.param_groups[0]["lr"] = 0.01
    opt3.param_groups[0]["weight_decay"] = 0.01
    for x, y in data[3:]:
        opt3.zero_grad()
        backward(resumed, x, y)
        opt3.step()
    # the first run used lr 0.01 throughout; the resumed run switched from 0.5 at step 4
    ref = clone(twin)
    opt4 = mxt.AdamW(ref.parameters(), lr=0.5, **kw)
    opt4.load_state_dict(opt2.state_dict())
    opt4.param_groups[0].update(lr=0.01, weight_decay=0.01)
    for x, y in data[3:]:
        opt4.zero_grad()
        backward(ref, x, y)
        opt4.step()
    assert_same(resumed, ref)
    # and the uninterrupted run with a mid-run change of lr equals the resumed one
    straight = make_model(dtype=dtype)
    opt5 = mxt.AdamW(straight.parameters(), lr=0.5, **kw)
    for k, (x, y) in enumerate(data):
        if k == 3:
            opt5.param_groups[0].update(lr=0.01, weight_decay=0.01)
        opt5.zero_grad()
        backward(straight, x, y)
        opt5.step()
    assert_same(resumed, straight)


def test_state_dict_holds_only_tensors_and_plain_values():
    model = make_model(dtype=torch.bfloat16)
    opt = mxt.LAMB(model.parameters(), lr=0.01, multi_precision=True)
    (x, y), = batches(1, dtype=torch.bfloat16)
    backward(model, x, y)
    opt.step()
    sd = opt.state_dict()

    def walk(v):
        if isinstance(v, dict):
            for k, w in v.items():
                assert isinstance(k, (str, int))
                walk(w)
        elif isinstance(v, (list, tuple)):
            for w in v:
                walk(w)
        else:
            assert v is None or isinstance(v, (torch.Tensor, str, int, float, bool)), type(v)
    walk(sd)
    master = sd["state"][0]["master"]
    assert torch.equal(master.to(torch.bfloat16), model[0].weight.detach())


def test_load_state_dict_rejects_mismatches():
    model = make_model()
    opt = mxt.Adam(model.parameters(), lr=0.01)
    (x, y), = batches(1)
    backward(model, x, y)
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="'adam' rule"):
        mxt.LAMB(make_model().parameters()).load_state_dict(sd)
    with pytest.raises(ValueError, match="parameters"):
        mxt.Adam(list(make_model().parameters())[:2]).load_state_dict(sd)
    with pytest.raises(ValueError, match="shape"):
        other = torch.nn.Sequential(torch.nn.Linear(6, 9), torch.nn.Tanh(), torch.nn.Linear(9, 3))
        mxt.Adam(other.parameters()).load_state_dict(sd)
    with pytest.raises(ValueError, match="not one written"):
        opt.load_state_dict(torch.optim.Adam(model.parameters()).state_dict())


# ---------------------------------------------------------------------- precision

@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16_bit_with_master_tracks_float32(dtype):
    g = torch.Generator().manual_seed(3)
    w16 = torch.nn.Parameter(torch.randn(300, generator=g).to(dtype))
    w32 = torch.nn.Parameter(w16.detach().float().clone())
    o16 = mxt.AdamW([w16], lr=0.01, weight_decay=0.01, multi_precision=True)
    o32 = mxt.AdamW([w32], lr=0.01, weight_decay=0.01)
    for _ in range(20):
        grad = torch.randn(300, generator=g).to(dtype)
        w16.grad, w32.grad = grad, grad.float()
        o16.step()
        o32.step()
        master = o16.state_dict()["state"][0]["master"]
        # the master follows the float32 run exactly (same float32 arithmetic) and the
        # 16-bit weight is the master rounded once
        assert torch.equal(master, w32.detach())
        assert torch.equal(w16.detach(), master.to(dtype))
    drift = (w32.detach() - w16.detach().float()).abs().max().item()
    assert 0 < drift < 0.02


def test_grad_scaler_skips_inf_steps_and_unscales():
    model = make_model()
    ref = Reference(clone(model), "adam", learning_rate=0.01)
    opt = mxt.Adam(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    for k, (x, y) in enumerate(batches(4)):
        opt.zero_grad()
        scaler.scale((model(x) - y).square().sum()).backward()
        if k == 2:
            model[0].weight.grad[0, 0] = float("inf")      # a step the scaler must skip
        before = [p.detach().clone() for p in model.parameters()]
        scaler.step(opt)
        scaler.update()
        if k == 2:
            assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before))
            assert scaler.get_scale() == 2.0 ** 7
        else:
            ref.step(x, y)
            # power-of-two scales: unscaling is exact, so the weights are bitwise the same
            assert_same(model, ref.model)


# ---------------------------------------------------------------------- sparse gradients

def test_sparse_embedding_gradients_update_only_their_rows():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(50, 4, sparse=True)
    ref_w = emb.weight.detach().numpy().copy()
    opt = mxt.Adam(emb.parameters(), lr=0.01, lazy_update=True)
    updater = Updater(create("adam", learning_rate=0.01, lazy_update=True))
    for ids in ([3, 7, 7, 20], [7, 1, 49]):
        opt.zero_grad()
        idx = torch.tensor(ids)
        emb(idx).square().sum().backward()
        assert emb.weight.grad.layout == torch.sparse_coo
        dense = emb.weight.grad.to_dense().numpy()
        rows = np.unique(ids)
        before = emb.weight.detach().numpy().copy()
        opt.step()
        updater(0, row_sparse_array((dense[rows], rows), shape=dense.shape), ref_w)
        after = emb.weight.detach().numpy()
        untouched = np.setdiff1d(np.arange(50), rows)
        assert np.array_equal(after[untouched], before[untouched])
        assert not np.array_equal(after[rows], before[rows])
    assert emb.weight.detach().numpy().tobytes() == ref_w.tobytes()


# ---------------------------------------------------------------------- errors

def test_clear_errors():
    good = torch.nn.Parameter(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="contiguous"):
        mxt.Adam([torch.nn.Parameter(torch.zeros(4, 3).t())])
    with pytest.raises(TypeError, match="dtype"):
        mxt.Adam([torch.zeros(3, dtype=torch.float64).to(torch.int32)])
    with pytest.raises(ValueError, match="one device"):
        mxt.Adam([good, torch.nn.Parameter(torch.zeros(3, device="meta"))])
    with pytest.raises(ValueError, match="device meta"):
        mxt.Adam([torch.nn.Parameter(torch.zeros(3, device="meta"))])
    opt = mxt.Adam([good])
    with pytest.raises(ValueError, match="one device"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(3, device="meta"))]})
    assert len(opt.param_groups) == 1
    with pytest.raises(TypeError, match="amsgrad"):
        mxt.Adam([good], amsgrad=True)
    with pytest.raises(TypeError, match="no hyperparameter 'momentum'"):
        mxt.Adam([good], momentum=0.9)
    with pytest.raises(ValueError, match="twice"):
        mxt.Adam([good], lr=0.1, learning_rate=0.1)
    with pytest.raises(ValueError, match="cannot find optimizer"):
        mxt.Optimizer([good], optimizer="nosuch")
    with pytest.raises(ValueError, match="beta1"):
        mxt.Adam([good], betas=(1.5, 0.9))


def test_end_to_end_example_trains():
    pytest.importorskip("sklearn")
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).resolve().parent.parent / "examples" / "torch_mlp.py"
    env = dict(os.environ, OMP_WAIT_POLICY="passive")
    out = subprocess.run([sys.executable, str(script), "--epochs", "4", "--dtype", "bfloat16"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    assert float(re.search(r"^test accuracy: ([0-9.]+)", out.stdout, re.M).group(1)) > 0.6
    bad = subprocess.run([sys.executable, str(script), "--optimizer", "adam", "--epochs", "1"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert bad.returncode == 0, bad.stderr


def test_one_launch_per_step_for_the_whole_model(monkeypatch):
    from mxopt_numba.kernels import _launch
    model = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(10)])
    opt = mxt.AdamW(model.parameters(), lr=0.01)
    (x, _), = batches(1)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()                                           # plans and compilation
    calls = []
    real = _launch.run
    monkeypatch.setattr(_launch, "run", lambda kernel, n, *a: calls.append(kernel) or real(kernel, n, *a))
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(2, 4)).sum().backward()
        opt.step()
    assert len(calls) == 2                               # 20 tensors, one launch per step


def test_public_methods_are_annotated():
    import inspect
    for fn in (mxt.Optimizer.__init__, mxt.Optimizer.step, mxt.Optimizer.zero_grad, mxt.Optimizer.state_dict,
               mxt.Optimizer.load_state_dict, mxt.Optimizer.add_param_group):
        sig = inspect.signature(fn)
        assert sig.return_annotation is not inspect.Signature.empty, fn.__qualname__
        assert all(p.annotation is not inspect.Parameter.empty
                   for name, p in sig.parameters.items() if name != "self"), fn.__qualname__
