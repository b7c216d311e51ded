"""``python -m mxopt_numba train`` / ``bench``, their option parsing and the workloads."""
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import mxopt_numba as mxo
from mxopt_numba import __main__ as cli
from mxopt_numba import cli_bench, cli_train, workloads

PNG = b"\x89PNG\r\n\x1a\n"


def run_module(*args, timeout=120):
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "passive")
    return subprocess.run([sys.executable, "-m", "mxopt_numba", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


# ---------------------------------------------------------------------- train

def test_train_one_epoch_subprocess(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    png = tmp_path / "loss.png"
    out = run_module("train", "--epochs", "1", "--plot", str(png))
    assert out.returncode == 0, out.stderr
    acc = re.search(r"^test accuracy: ([0-9.]+)", out.stdout, flags=re.M)
    assert acc, out.stdout
    assert float(acc.group(1)) > 0.8
    assert png.read_bytes()[:8] == PNG


def test_train_mixed_precision_with_scheduler(capsys):
    pytest.importorskip("sklearn")
    rc = cli.main(["train", "--epochs", "2", "--dtype", "bfloat16", "--multi-precision",
                   "--lr-scheduler", "cosine", "--no-progress", "--hidden", "32,16", "--seed", "1"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "multi_precision=True" in out and "cosine schedule" in out
    assert "MLP 64-32-16-10" in out
    assert float(re.search(r"test accuracy: ([0-9.]+)", out).group(1)) > 0.5


def test_train_bad_options(capsys):
    pytest.importorskip("sklearn")
    assert cli.main(["train", "--optimizer-params", "momentum"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert cli.main(["train", "--optimizer", "no_such_opt", "--epochs", "1"]) == 2
    assert "unknown optimizer 'no_such_opt'" in capsys.readouterr().err
    assert cli.main(["train", "--lr-scheduler-params", "factor=0.5"]) == 2
    assert cli.main(["train", "--epochs", "0"]) == 2


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "train" in capsys.readouterr().out


def test_parse_kv():
    assert cli_train.parse_kv("momentum=0.9, wd=1e-4,lazy_update=false,clip_gradient=None") == {
        "momentum": 0.9, "wd": 1e-4, "lazy_update": False, "clip_gradient": None}
    assert cli_train.parse_kv("step=[10, 20],factor=0.1,mode=linear,n=inf") == {
        "step": [10, 20], "factor": 0.1, "mode": "linear", "n": math.inf}
    assert cli_train.parse_kv(None) == {} and cli_train.parse_kv("  ") == {}
    with pytest.raises(ValueError, match="twice"):
        cli_train.parse_kv("a=1,a=2")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        cli_train.parse_kv("=3")


def test_make_scheduler_defaults_and_overrides():
    s = cli_train.make_scheduler("multifactor", 0.1, 100)
    assert s.step == [50, 75] and s.factor == 0.1
    s = cli_train.make_scheduler("factor", 0.2, 100, {"factor": 0.7, "warmup_steps": 5})
    assert s.step == 25 and s.factor == 0.7 and s.warmup_steps == 5 and s.base_lr == 0.2
    s = cli_train.make_scheduler("cosine", 0.3, 40)
    assert s.max_update == 40 and s(40) == pytest.approx(0.0)
    assert cli_train.make_scheduler("poly", 1.0, 10).pwr == 2
    assert cli_train.make_scheduler("none", 1.0, 10) is None
    assert cli_train.make_scheduler("multifactor", 0.1, 1).step == [1, 2]


def test_mlp_gradients_match_finite_differences():
    mxo.random.seed(0)
    model = cli_train.MLP([5, 4, 3], np.dtype(np.float64), mxo.initializer.Xavier())
    rng = np.random.default_rng(0)
    for p in model.params.values():      # nonzero biases, so every path is exercised
        p.data[...] = rng.standard_normal(p.shape) * 0.5
    x = rng.standard_normal((6, 5))
    y = rng.integers(0, 3, 6)

    def loss():
        z = model.logits(x)
        z = z - z.max(axis=1, keepdims=True)
        return float(np.sum(np.log(np.exp(z).sum(axis=1)) - z[np.arange(6), y]))

    model.forward_backward(x, y)
    for p in model.params.values():
        grad = p._grad.copy()
        flat = p.data.reshape(-1)
        for i in range(0, flat.size, 3):
            old = flat[i]
            flat[i] = old + 1e-6
            up = loss()
            flat[i] = old - 1e-6
            down = loss()
            flat[i] = old
            assert grad.reshape(-1)[i] == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-7)


# ---------------------------------------------------------------------- bench

def test_bench_tiny_preset_subprocess(tmp_path):
    pytest.importorskip("matplotlib")
    out_json, png = tmp_path / "bench.json", tmp_path / "bench.png"
    out = run_module("bench", "--preset", "tiny", "--optimizer", "sgd", "--dtype", "float32",
                     "--dtype", "float16-mp", "--repeats", "2", "--min-time", "0.002", "--warmup", "1",
                     "--json", str(out_json), "--plot", str(png))
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"^sgd +float16-mp +tiny ", out.stdout, flags=re.M), out.stdout
    data = json.loads(out_json.read_text())
    rows = data["results"]
    assert [(r["dtype"], r["status"]) for r in rows] == [("float32", "ok"), ("float16-mp", "ok")]
    for r in rows:
        assert r["tensors"] == 4 and r["elements"] == 1395
        assert r["step_ms"] > 0 and r["copy_ms"] > 0 and r["ratio"] > 0
    # momentum 0.9: float32 w rw + g r + m rw = 20 B; float16 MP: 2*2 + 2 + 4*2 + 4*2 = 22 B
    assert rows[0]["bytes_per_element"] == 20 and rows[1]["bytes_per_element"] == 22
    assert png.read_bytes()[:8] == PNG


def test_bench_vs_torch_without_torch(capsys):
    if cli_bench.torch_available():
        pytest.skip("torch is installed")
    rc = cli.main(["bench", "--preset", "tiny", "--optimizer", "sgd", "--dtype", "float32",
                   "--repeats", "1", "--min-time", "0.001", "--vs", "torch"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "torch is not installed" in out


def test_bench_list_and_unknown(capsys):
    assert cli.main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    assert "sgd" in out and "ccsgd" not in out and "bert-base" in out
    assert cli.main(["bench", "--optimizer", "nosuch"]) == 2


def test_bench_unsupported_cell_is_reported_not_fatal():
    class Args:
        repeats, min_time, warmup, vs = 1, 0.001, 1, None
    r = cli_bench.bench_cell("sgd", "tiny", "float32", Args, {"momentum": -1.0})
    assert r["status"] == "unsupported" and "momentum" in r["message"]
    assert "unsupported" in cli_bench.format_row(r)


def test_copy_kernel_touches_every_stream():
    pattern = [(2, 100, "rw"), (2, 100, "r"), (4, 100, "rw"), (4, 7, "rw")]
    kernel = cli_bench.copy_kernel(pattern, parallel=False)
    bufs = cli_bench.copy_buffers(pattern)
    before = [b.copy() for b in bufs]
    kernel(*bufs)
    assert np.array_equal(bufs[1], before[1])                 # read-only
    for k in (0, 2, 3):
        assert not np.array_equal(bufs[k], before[k])          # written
    assert cli_bench.pattern_bytes(pattern) == 2 * 200 + 200 + 2 * 400 + 2 * 28


def test_access_pattern_counts_master_and_states():
    w = [np.zeros(10, np.float16), np.zeros(3, np.float16)]
    g = [np.zeros(10, np.float16), np.zeros(3, np.float16)]
    states = [(np.zeros(10, np.float32), (np.zeros(10, np.float32), np.zeros(10, np.float32))),
              (np.zeros(3, np.float32), (np.zeros(3, np.float32), np.zeros(3, np.float32)))]
    pattern = cli_bench.access_pattern(w, g, states)
    assert sorted(pattern) == sorted([(2, 13, "rw"), (2, 13, "r"), (4, 13, "rw"), (4, 13, "rw"),
                                      (4, 13, "rw")])
    assert cli_bench.pattern_bytes(pattern) == 13 * (4 + 2 + 24)


# ---------------------------------------------------------------------- workloads

def test_workload_presets():
    assert workloads.summary("resnet50") == (161, 25_557_032)
    assert workloads.summary("bert-base") == (199, 109_482_240)
    assert workloads.summary("one16m") == (1, 1 << 24)
    assert workloads.summary("small2000x512") == (2000, 2000 * 512)
    names = [n for n, _ in workloads.resnet50()]
    assert len(set(names)) == len(names)
    assert sum(n.endswith(("_gamma", "_beta")) for n in names) == 106
    assert len(workloads.bert_base_shapes()) == 199
    with pytest.raises(ValueError, match="unknown workload"):
        workloads.shapes("resnet")
    w, g = workloads.make_arrays("tiny", np.float16)
    assert [a.shape for a in w] == workloads.shapes("tiny") and g[0].dtype == np.float16


def test_bench_flags_an_unstable_machine():
    from mxopt_numba import cli_bench
    steady = {"copy_ms": 1.0, "spread": 0.02}
    calm = {"optimizer": "adam", "preset": "tiny", "spread": {"step": 0.05, "copy": 0.03}}
    calm["unstable"] = cli_bench.unstable_reasons(calm)
    assert calm["unstable"] == []
    assert cli_bench.machine_stability(steady, dict(steady, copy_ms=1.1), [calm])["unstable"] is False
    noisy = {"optimizer": "sgd", "preset": "tiny", "spread": {"step": 3.0, "copy": 0.5, "torch": 40.0}}
    noisy["unstable"] = cli_bench.unstable_reasons(noisy)
    assert len(noisy["unstable"]) == 3 and "copy-kernel" in noisy["unstable"][0]
    verdict = cli_bench.machine_stability(steady, dict(steady, copy_ms=3.0), [calm, noisy])
    assert verdict["unstable"] is True
    assert any("before the run" in r for r in verdict["reasons"])
    assert any("1 of 2 measurements" in r for r in verdict["reasons"])
    loaded = cli_bench.machine_stability(dict(steady, spread=0.9), steady, [calm])
    assert loaded["unstable"] and "calibration copy before" in loaded["reasons"][0]


def test_bench_json_reports_stability(tmp_path):
    out = tmp_path / "bench.json"
    run = run_module("bench", "--optimizer", "sgd", "--preset", "tiny", "--dtype", "float32",
                  "--repeats", "3", "--min-time", "0.001", "--json", str(out))
    assert run.returncode == 0, run.stderr
    data = json.loads(out.read_text())
    stability = data["stability"]
    assert set(stability) >= {"unstable", "reasons", "calibration_before", "calibration_after"}
    assert stability["unstable"] == bool(stability["reasons"])
    assert "spread" in data["results"][0] and "unstable" in data["results"][0]
    if stability["unstable"]:
        assert "unreliable" in run.stdout


# ---------------------------------------------------------------------- user errors, choices, plots

@pytest.mark.parametrize("argv, needle", [
    (["--optimizer", "adam", "--optimizer-params", "momentum=0.9"], "--optimizer-params: Adam"),
    (["--optimizer", "sgd", "--optimizer-params", "momentum=-1"], "momentum"),
    (["--optimizer", "test"], "unknown optimizer 'test'"),
    (["--optimizer", "adma"], "did you mean"),
    (["--lr-scheduler", "cosine", "--lr-scheduler-params", "foo=1"], "--lr-scheduler-params"),
    (["--hidden", "a,b"], "--hidden"),
    (["--lr", "-1"], "learning_rate"),
])
def test_train_user_errors_are_one_line(argv, needle):
    out = run_module("train", "--epochs", "1", "--no-progress", *argv)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_internal_optimizer_is_not_offered(capsys):
    assert "test" not in cli_train.user_optimizers()
    assert {"sgd", "adam", "lamb"} <= set(cli_train.user_optimizers())
    parser = cli.build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    help_text = capsys.readouterr().out
    listed = re.search(r"one of: ([a-z, \n]+)\(default", help_text).group(1)
    assert "test" not in re.split(r"[,\s]+", listed)
    assert cli.main(["bench", "--list"]) == 0
    assert "test" not in capsys.readouterr().out.split("optimizers: ")[1].split("\n")[0].split(", ")
    assert cli.main(["bench", "--optimizer", "test"]) == 2
    assert "unknown optimizer" in capsys.readouterr().err


def test_bench_bad_numbers_are_one_line(capsys):
    for argv in (["--repeats", "0"], ["--min-time", "-1"], ["--threads", "0"]):
        assert cli.main(["bench", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: " + argv[0])


def test_lr_column_has_one_format(capsys):
    pytest.importorskip("sklearn")
    rc = cli.main(["train", "--epochs", "4", "--optimizer", "adam", "--lr", "0.003", "--lr-scheduler",
                   "factor", "--lr-scheduler-params", "factor=0.1", "--no-progress", "--hidden", "16"])
    out = capsys.readouterr().out
    assert rc == 0, out
    lrs = re.findall(r"  lr (\S+)  ", out)
    assert len(lrs) == 4
    assert all(re.fullmatch(r"\d\.\d{3}e[+-]\d\d", v) for v in lrs), lrs
    assert float(lrs[0]) > 1e-3 > float(lrs[-1])          # spans the old mixed formats
    assert "lr 3.000e-03, factor schedule" in out


def test_plot_titles_and_lr_curve(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    seen = {}
    real_losses, real_lrs = cli_train.plot_losses, cli_train.plot_lrs

    def losses(path, step_losses, epoch_losses, steps_per_epoch, title):
        seen["loss_title"] = title
        real_losses(path, step_losses, epoch_losses, steps_per_epoch, title)

    def lrs(path, step_lrs, steps_per_epoch, title):
        seen["lrs"], seen["lr_title"] = list(step_lrs), title
        real_lrs(path, step_lrs, steps_per_epoch, title)
    monkeypatch.setattr(cli_train, "plot_losses", losses)
    monkeypatch.setattr(cli_train, "plot_lrs", lrs)
    loss_png, lr_png = tmp_path / "loss.png", tmp_path / "lr.png"
    rc = cli.main(["train", "--epochs", "2", "--dtype", "bfloat16", "--multi-precision", "--lr", "0.05",
                   "--lr-scheduler", "cosine", "--no-progress", "--hidden", "16",
                   "--plot", str(loss_png), "--plot-lr", str(lr_png)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert loss_png.read_bytes()[:8] == PNG and lr_png.read_bytes()[:8] == PNG
    for key in ("loss_title", "lr_title"):
        assert "bfloat16 + fp32 master" in seen[key] and "cosine schedule from 5.000e-02" in seen[key]
    assert "test acc" in seen["loss_title"]
    # step k used the cosine rate at update count k (closed form, MXNet's CosineScheduler)
    total = len(seen["lrs"])
    expected = [0.05 * (1 + math.cos(math.pi * k / total)) / 2 for k in range(1, total + 1)]
    np.testing.assert_allclose(seen["lrs"], expected, rtol=1e-12, atol=1e-15)


def test_run_title_without_master_or_schedule():
    class Args:
        dtype, multi_precision, lr_scheduler = "float16", False, "none"
    title = cli_train.run_title("sgd", Args, np.dtype(np.float16), 0.1)
    assert title == "sgd, float16 (no master copy), constant lr 1.000e-01"


def test_bench_vs_torch_times_the_adapter(capsys):
    if not cli_bench.torch_available():
        pytest.skip("torch is not installed")
    rc = cli.main(["bench", "--preset", "tiny", "--optimizer", "adamw", "--dtype", "float32",
                   "--repeats", "1", "--min-time", "0.001", "--vs", "torch"])
    out = capsys.readouterr().out
    assert rc == 0, out
    row = [line for line in out.splitlines() if line.startswith("adamw")][0]
    assert "adapter " in row and "AdamW fused" in row and "AdamW foreach" in row
    assert row.count("time/adapter") == 2
