"""Time optimizer steps and compare them with what the memory allows.

For every optimizer (all registered ones, or each --optimizer), storage type and workload
preset: the time of one step of the aggregated Updater (median over warm batches of
steps, after JIT warm-up), the effective bandwidth (bytes of weights, gradients, master
copies and states read and written per step), and the ratio to a copy kernel that moves
exactly the same bytes in the same number of streams (a parallel Numba loop, timed
interleaved with the optimizer in the same run).  A ratio near 1 means the step runs at
memory speed.

dtypes: float32, float16-mp / bfloat16-mp (16-bit weights and gradients with a float32
master copy and float32 states), float16, bfloat16, float64.

--vs torch times torch.optim in the same interleaved loop, on copies of the same tensors
(16-bit weights without a master copy: torch has none).  A calibration copy kernel timed
before and after the run, and the spread of every measurement's batches, tell a loaded or
unstable machine: the output and the JSON ("stability") say so rather than report ratios
that mean nothing.

presets: one16m (one 16M-element tensor), resnet50 (161 tensors, 25.6M elements),
bert-base (199 tensors, 109.5M), small2000x512 (2000 tensors of 512), tiny.

examples:
  python -m mxopt_numba bench --optimizer sgd --optimizer adam --preset resnet50
  python -m mxopt_numba bench --preset one16m --dtype float32 --vs torch --plot bench.png
  python -m mxopt_numba bench --preset all --json results.json
"""
import math
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np

from . import workloads
from .utils import wait_for_compilation

#: bench label -> (weight dtype name, multi_precision)
DTYPES = {
    "float32": ("float32", False),
    "float16-mp": ("float16", True),
    "bfloat16-mp": ("bfloat16", True),
    "float16": ("float16", False),
    "bfloat16": ("bfloat16", False),
    "float64": ("float64", False),
}
DEFAULT_DTYPES = ("float32", "float16-mp", "bfloat16-mp")
DEFAULT_PRESETS = ("one16m", "resnet50", "small2000x512")

#: typical settings, so that the common kernel variant is the one measured
BENCH_SETTINGS = {"sgd": {"momentum": 0.9}, "nag": {"momentum": 0.9}, "lars": {"momentum": 0.9},
                  "signum": {"momentum": 0.9}}

#: mxopt_numba name -> torch.optim class name (same update family)
TORCH_NAMES = {"sgd": "SGD", "nag": "SGD", "adam": "Adam", "adamw": "AdamW", "adagrad": "Adagrad",
               "rmsprop": "RMSprop", "adamax": "Adamax", "nadam": "NAdam", "adadelta": "Adadelta"}


def add_arguments(p):
    p.add_argument("--optimizer", action="append", metavar="NAME",
                   help="optimizer to time (repeatable; default: every registered optimizer)")
    p.add_argument("--dtype", action="append", choices=list(DTYPES),
                   help="storage type (repeatable; default: %s)" % ", ".join(DEFAULT_DTYPES))
    p.add_argument("--preset", action="append", choices=list(workloads.PRESETS) + ["all"],
                   help="workload (repeatable; default: %s)" % ", ".join(DEFAULT_PRESETS))
    p.add_argument("--optimizer-params", default=None, metavar="K=V,...",
                   help="extra keyword arguments for every optimizer timed")
    p.add_argument("--repeats", type=int, default=7,
                   help="timed batches per measurement; the median is reported (default: 7)")
    p.add_argument("--min-time", type=float, default=0.05,
                   help="seconds per timed batch of steps (default: 0.05)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default: 2)")
    p.add_argument("--threads", type=int, default=None, help="Numba threads (default: all cores)")
    p.add_argument("--vs", choices=["torch"], default=None,
                   help="also time torch.optim (fused=True, and foreach=True) and this library "
                        "through mxopt_numba.torch on torch copies of the same tensors")
    p.add_argument("--plot", metavar="PATH", help="write a roofline-style PNG")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument("--list", action="store_true", help="list optimizers and presets, then exit")


# ---------------------------------------------------------------------- optimizers

def registered_optimizers():
    """Registered optimizer names (one per class, deprecated aliases left out)."""
    from .optimizer import Optimizer
    names, seen = [], set()
    from .cli_train import INTERNAL_OPTIMIZERS
    for name, cls in sorted(Optimizer.opt_registry.items()):
        if cls in seen or name in INTERNAL_OPTIMIZERS:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            try:
                cls()
            except DeprecationWarning:
                continue
            except Exception:      # needs arguments: keep it, errors show in its row
                pass
        seen.add(cls)
        names.append(name)
    return names


def make_optimizer(name, multi_precision, extra=None):
    """The optimizer for ``name`` with the largest aggregation it accepts (one launch for
    the whole workload when possible)."""
    from .optimizer import create
    kwargs = dict(BENCH_SETTINGS.get(name, {}))
    kwargs.update(extra or {})
    kwargs["multi_precision"] = multi_precision
    last = None
    for agg in (math.inf, 45, None):
        try:
            return create(name, aggregate_num=agg, **kwargs) if agg is not None else create(name, **kwargs)
        except (ValueError, AssertionError) as exc:
            last = exc
    raise last


def _weight_dtype(name):
    if name == "bfloat16":
        import ml_dtypes
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


# ---------------------------------------------------------------------- access pattern

def access_pattern(weights, grads, states):
    """``[(itemsize, elements, mode), ...]``: one stream per array role, ``mode`` 'r' or
    'rw'.  Weights and states are read and written, gradients read."""
    from .optimizer.optimizer import state_leaves
    streams = {}

    def add(role, arr, mode):
        key = (role, arr.dtype.itemsize, mode)
        streams[key] = streams.get(key, 0) + arr.size

    for w, g, s in zip(weights, grads, states):
        add("weight", w, "rw")
        add("grad", g, "r")
        for k, leaf in enumerate(state_leaves(s)):
            add("state%d" % k, leaf, "rw")
    return [(itemsize, n, mode) for (_, itemsize, mode), n in streams.items()]


def pattern_bytes(pattern):
    return sum(itemsize * n * (2 if mode == "rw" else 1) for itemsize, n, mode in pattern)


_COPY_KERNELS = {}
_UINT = {1: "np.uint8", 2: "np.uint16", 4: "np.uint32", 8: "np.uint64"}


def copy_kernel(pattern, parallel=True):
    """A Numba kernel that reads every stream of ``pattern`` and writes the 'rw' ones
    (integer xor with the read-only streams), streams of equal length in one loop.
    Called with one integer array per stream, in pattern order."""
    key = (tuple(pattern), parallel)
    fn = _COPY_KERNELS.get(key)
    if fn is not None:
        return fn
    from numba import njit, prange   # noqa: F401  (used by the generated code)
    args = ["s%d" % k for k in range(len(pattern))]
    lines = ["def kernel(%s):" % ", ".join(args)]
    by_length = {}
    for k, (_, n, _) in enumerate(pattern):
        by_length.setdefault(n, []).append(k)
    for n, members in by_length.items():
        first = members[0]
        lines.append("    for i in prange(s%d.size):" % first)
        reads = [k for k in members if pattern[k][2] == "r"]
        if reads:
            lines.append("        x = " + " ^ ".join("np.uint64(s%d[i])" % k for k in reads))
        else:
            lines.append("        x = np.uint64(1)")
        for k in members:
            if pattern[k][2] == "rw":
                lines.append("        s%d[i] = s%d[i] ^ %s(x)" % (k, k, _UINT[pattern[k][0]]))
    namespace = {"np": np, "prange": prange}
    exec(compile("\n".join(lines) + "\n", "<copy kernel>", "exec"), namespace)   # noqa: S102
    fn = njit(parallel=parallel, error_model="numpy")(namespace["kernel"])
    _COPY_KERNELS[key] = fn
    return fn


def copy_buffers(pattern):
    rng = np.random.default_rng(1)
    out = []
    for itemsize, n, _ in pattern:
        dtype = np.dtype(_UINT[itemsize][3:])
        out.append(rng.integers(0, 1 << min(8 * itemsize - 1, 62), size=n, dtype=dtype))
    return out


# ---------------------------------------------------------------------- timing

def _batch_time(fn, inner):
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def time_interleaved(fns, repeats, min_time, warmup, spreads=None):
    """Median seconds per call of each function, timed in alternation: batches of
    ``inner`` calls (``inner`` so that a batch lasts about ``min_time``).  ``spreads``, a
    list, receives each function's spread: (slowest - fastest batch) / median."""
    for fn in fns:
        for _ in range(max(1, warmup)):
            fn()
    wait_for_compilation()         # no single-threaded twin stands in for a kernel being timed
    inners = []
    for fn in fns:
        t = _batch_time(fn, 1)
        inners.append(max(1, min(10000, int(math.ceil(min_time / max(t, 1e-7))))))
    samples = [[] for _ in fns]
    for _ in range(max(1, repeats)):
        for k, fn in enumerate(fns):
            samples[k].append(_batch_time(fn, inners[k]))
    medians = [statistics.median(s) for s in samples]
    if spreads is not None:
        spreads.extend((max(s) - min(s)) / m if m > 0 else 0.0 for s, m in zip(samples, medians))
    return medians


#: a copy kernel whose batches differ by more than this (relative to their median), or a
#: peer's by more than PEER_SPREAD, means the machine was busy with something else
COPY_SPREAD = 0.25
PEER_SPREAD = 1.0


def unstable_reasons(result):
    """Why a measurement cannot be trusted (empty when it can)."""
    reasons = []
    spread = result.get("spread", {})
    if spread.get("copy", 0.0) > COPY_SPREAD:
        reasons.append("copy-kernel batches vary by %.0f%%" % (100 * spread["copy"]))
    for who, value in spread.items():
        if who != "copy" and value > PEER_SPREAD:
            reasons.append("%s batches vary by %.0f%%" % (who, 100 * value))
    return reasons


def calibrate(repeats=7, n=1 << 22):
    """Spread of a fixed copy kernel timed in ``repeats`` batches: on a quiet machine the
    batches agree within a few per cent."""
    pattern = [(4, n, "rw"), (4, n, "r")]
    kernel = copy_kernel(pattern, parallel=True)
    buffers = copy_buffers(pattern)
    spreads = []
    median = time_interleaved([lambda: kernel(*buffers)], repeats, 0.02, 5, spreads)[0]
    return {"copy_ms": median * 1e3, "spread": spreads[0]}


def bench_cell(name, preset, dtype_label, args, extra=None):
    """One measurement; returns a result dict (``status`` 'ok', 'unsupported' or 'error')."""
    from .kernels import _launch
    from .optimizer import Updater
    w_name, mp = DTYPES[dtype_label]
    n_tensors, n_elements = workloads.summary(preset)
    result = {"optimizer": name, "dtype": dtype_label, "preset": preset, "tensors": n_tensors,
              "elements": n_elements}
    try:
        weights, grads = workloads.make_arrays(preset, _weight_dtype(w_name))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = make_optimizer(name, mp, extra)
            updater = Updater(opt)
            indices = list(range(len(weights)))
            updater(indices, grads, weights)        # states, plans and JIT compilation
    except (ValueError, TypeError, NotImplementedError) as exc:
        result.update(status="unsupported", message="%s: %s" % (type(exc).__name__, exc))
        return result
    except Exception as exc:                          # report, go on with the next cell
        result.update(status="error", message="%s: %s" % (type(exc).__name__, exc))
        return result
    try:
        pattern = access_pattern(weights, grads, [updater.states[i] for i in indices])
        nbytes = pattern_bytes(pattern)
        kernel = copy_kernel(pattern, parallel=n_elements >= _launch.SERIAL_BELOW)
        buffers = copy_buffers(pattern)

        def step():
            updater(indices, grads, weights)

        def copy():
            kernel(*buffers)

        fns = [step, copy]
        others, slots = {}, []
        if args.vs == "torch":
            preps = (("torch", lambda: prepare_torch(name, weights, grads, opt, args, "fused")),
                     ("torch_foreach", lambda: prepare_torch(name, weights, grads, opt, args, "foreach")),
                     ("adapter", lambda: prepare_adapter(name, weights, grads, mp, extra, nbytes, args)))
            for key, prep in preps:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        other = prep()
                except Exception as exc:
                    other = {"status": "error", "message": "%s: %s" % (type(exc).__name__, exc)}
                others[key] = other
                if "fn" in other:
                    fns.append(other.pop("fn"))
                    slots.append(key)
        spreads = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            times = time_interleaved(fns, args.repeats, args.min_time, args.warmup, spreads)
    except Exception as exc:
        result.update(status="error", message="%s: %s" % (type(exc).__name__, exc))
        return result
    t_step, t_copy = times[0], times[1]
    result.update(status="ok", aggregate_num=_agg_repr(opt.aggregate_num), bytes_per_step=nbytes,
                  bytes_per_element=nbytes / n_elements, streams=len(pattern),
                  step_ms=t_step * 1e3, gbps=nbytes / t_step / 1e9,
                  copy_ms=t_copy * 1e3, copy_gbps=nbytes / t_copy / 1e9, ratio=t_copy / t_step,
                  spread=dict(zip(["step", "copy"] + slots, spreads)))
    for key, t in zip(slots, times[2:]):
        others[key].update(step_ms=t * 1e3, gbps=others[key]["bytes_per_step"] / t / 1e9)
    result.update(others)
    result["unstable"] = unstable_reasons(result)
    return result


def machine_stability(before, after, results):
    """Whether the run can be trusted: the calibration copy kernel timed before and after
    must agree with itself and with each other, and no measurement may be erratic."""
    reasons = []
    for when, cal in (("before", before), ("after", after)):
        if cal["spread"] > COPY_SPREAD:
            reasons.append("calibration copy %s the run varies by %.0f%%" % (when, 100 * cal["spread"]))
    drift = abs(after["copy_ms"] - before["copy_ms"]) / max(min(after["copy_ms"], before["copy_ms"]), 1e-12)
    if drift > COPY_SPREAD:
        reasons.append("calibration copy took %.3f ms before the run and %.3f ms after"
                       % (before["copy_ms"], after["copy_ms"]))
    erratic = [r for r in results if r.get("unstable")]
    if erratic:
        reasons.append("%d of %d measurements erratic (e.g. %s %s: %s)" % (
            len(erratic), len(results), erratic[0]["optimizer"], erratic[0]["preset"],
            ", ".join(erratic[0]["unstable"])))
    return {"unstable": bool(reasons), "reasons": reasons, "calibration_before": before,
            "calibration_after": after, "drift": drift}


def _agg_repr(n):
    return "inf" if math.isinf(n) else int(n)


# ---------------------------------------------------------------------- torch

def torch_available():
    try:
        import torch  # noqa: F401
    except Exception:
        return False
    return True


def _torch_copies(weights, grads):
    import torch
    from .torch import _to_numpy
    dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64,
             np.dtype(np.float16): torch.float16}.get(weights[0].dtype, torch.bfloat16)
    params = []
    for w, g in zip(weights, grads):
        p = torch.nn.Parameter(torch.empty(w.shape, dtype=dtype))
        p.grad = torch.empty(w.shape, dtype=dtype)
        _to_numpy(p)[...] = w
        _to_numpy(p.grad)[...] = g
        params.append(p)
    return params


def prepare_adapter(name, weights, grads, multi_precision, extra, nbytes, args):
    """The same step through ``mxopt_numba.torch`` on torch copies of the tensors."""
    import torch

    from . import torch as mxt
    if args.threads:
        torch.set_num_threads(args.threads)
    params = _torch_copies(weights, grads)
    kwargs = dict(BENCH_SETTINGS.get(name, {}))
    kwargs.update(extra or {})
    kwargs["multi_precision"] = multi_precision
    adapter = mxt.Optimizer(params, optimizer=name, **kwargs)
    adapter.step()
    return {"status": "ok", "mode": "adapter", "class": "mxopt_numba.torch.%s" % name,
            "bytes_per_step": nbytes, "fn": adapter.step}


def prepare_torch(name, weights, grads, opt, args, mode="fused"):
    """The same step with ``torch.optim.<X>(fused=True)`` (``foreach=True`` where torch
    has no fused kernel for it; ``mode='foreach'``: foreach only), on copies of the same
    tensors: a result dict whose ``fn`` entry is the step to time, or a status
    'unsupported'/'error'."""
    import torch
    cls_name = TORCH_NAMES.get(name)
    if cls_name is None or not hasattr(torch.optim, cls_name):
        return {"status": "unsupported", "message": "no torch.optim counterpart"}
    if args.threads:
        torch.set_num_threads(args.threads)
    kwargs = {"lr": float(opt.learning_rate)}
    if cls_name == "SGD":
        kwargs["momentum"] = getattr(opt, "momentum", 0.0)
        kwargs["nesterov"] = name == "nag" and kwargs["momentum"] > 0
    params = _torch_copies(weights, grads)
    try:
        if mode != "fused":
            raise ValueError("foreach asked for")
        topt = getattr(torch.optim, cls_name)(params, fused=True, **kwargs)
        topt.step()
    except (RuntimeError, ValueError, TypeError):
        mode = "foreach"
        try:
            topt = getattr(torch.optim, cls_name)(params, foreach=True, **kwargs)
            topt.step()
        except Exception as exc:
            return {"status": "error", "message": "%s: %s" % (type(exc).__name__, exc)}
    nbytes = 0
    for p in params:
        nbytes += 2 * p.numel() * p.element_size() + p.grad.numel() * p.grad.element_size()
        for value in topt.state[p].values():
            if torch.is_tensor(value) and value.numel() > 1:
                nbytes += 2 * value.numel() * value.element_size()

    def torch_step():
        with torch.no_grad():
            topt.step()

    return {"status": "ok", "mode": mode, "class": cls_name, "version": torch.__version__,
            "threads": torch.get_num_threads(), "master_copy": False, "bytes_per_step": nbytes,
            "fn": torch_step}


# ---------------------------------------------------------------------- output

_HEADER = ("%-12s %-11s %-13s %7s %9s %6s %9s %8s %9s %6s"
           % ("optimizer", "dtype", "preset", "tensors", "elements", "B/el", "step ms", "GB/s",
              "copy GB/s", "ratio"))


def format_row(r):
    head = "%-12s %-11s %-13s %7d %9s" % (r["optimizer"], r["dtype"], r["preset"], r["tensors"],
                                          _count(r["elements"]))
    if r["status"] != "ok":
        return head + "  %s: %s" % (r["status"], r["message"][:120])
    line = head + " %6.1f %9.3f %8.2f %9.2f %6.2f%s" % (
        r["bytes_per_element"], r["step_ms"], r["gbps"], r["copy_gbps"], r["ratio"],
        "?" if r.get("unstable") else " ")
    a = r.get("adapter")
    if a:
        if a.get("step_ms"):
            line += "   adapter %.3f ms" % a["step_ms"]
        else:
            line += "   adapter: %s" % a.get("message", "")[:60]
    for key in ("torch", "torch_foreach"):
        t = r.get(key)
        if not t:
            continue
        if t["status"] == "ok" and t.get("step_ms"):
            line += "   torch %s %s: %.3f ms, %.2f GB/s, time/ours %.2f" % (
                t["class"], t["mode"], t["step_ms"], t["gbps"], t["step_ms"] / r["step_ms"])
            if a and a.get("step_ms"):
                line += ", time/adapter %.2f" % (t["step_ms"] / a["step_ms"])
        else:
            line += "   torch %s: %s" % (key, t["message"][:60])
    return line


def _count(n):
    return "%d" % n if n < 100000 else "%.2fM" % (n / 1e6)


def machine_info():
    import numba
    from . import __version__
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "numba_threads": numba.get_num_threads(),
            "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "mxopt_numba": __version__}


def plot_results(path, results):
    """Bars: achieved GB/s per optimizer and dtype; a black tick on each bar: the copy
    kernel with the same access pattern (the ceiling); hatched bars: torch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ok = [r for r in results if r["status"] == "ok"]
    presets = list(dict.fromkeys(r["preset"] for r in ok))
    if not presets:
        return False
    fig, axes = plt.subplots(len(presets), 1, figsize=(max(6, 0.45 * max(
        sum(1 for r in ok if r["preset"] == p) for p in presets) + 2), 3.2 * len(presets)), squeeze=False)
    dtypes = list(dict.fromkeys(r["dtype"] for r in ok))
    colors = {d: "C%d" % k for k, d in enumerate(dtypes)}
    for ax, preset in zip(axes[:, 0], presets):
        rows = [r for r in ok if r["preset"] == preset]
        x = np.arange(len(rows))
        ax.bar(x, [r["gbps"] for r in rows], color=[colors[r["dtype"]] for r in rows], width=0.7)
        ax.scatter(x, [r["copy_gbps"] for r in rows], marker="_", s=400, color="k", zorder=3,
                   label="copy kernel, same bytes")
        torch_rows = [(k, r["torch"]) for k, r in enumerate(rows)
                      if r.get("torch") and r["torch"]["status"] == "ok"]
        if torch_rows:
            ax.scatter([k for k, _ in torch_rows], [t["gbps"] for _, t in torch_rows], marker="x",
                       color="r", zorder=4, label="torch.optim")
        ax.set_xticks(x)
        ax.set_xticklabels(["%s\n%s" % (r["optimizer"], r["dtype"]) for r in rows], fontsize=7)
        ax.set_ylabel("GB/s")
        top = max(max(r["gbps"], r["copy_gbps"]) for r in rows)
        if torch_rows:
            top = max(top, max(t["gbps"] for _, t in torch_rows))
        ax.set_ylim(0, 1.45 * top)
        ax.set_title("%s (%d tensors, %.1fM elements)" % (preset, rows[0]["tensors"],
                                                         rows[0]["elements"] / 1e6))
        handles = [matplotlib.patches.Patch(color=colors[d], label=d) for d in dtypes]
        ax.legend(handles=handles + ax.get_legend_handles_labels()[0], fontsize=7, loc="upper right",
                  ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------- main

def main(args):
    import json

    from .cli_train import INTERNAL_OPTIMIZERS, parse_kv
    from .optimizer import Optimizer
    for option, value, ok in (("--repeats", args.repeats, args.repeats >= 1),
                              ("--min-time", args.min_time, args.min_time >= 0),
                              ("--warmup", args.warmup, args.warmup >= 0),
                              ("--threads", args.threads, args.threads is None or args.threads >= 1)):
        if not ok:
            print("error: %s must be %s, got %r" % (option, ">= 0" if option in ("--min-time", "--warmup")
                                                     else ">= 1", value), file=sys.stderr)
            return 2
    if args.threads:
        import numba
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    registered = registered_optimizers()
    if args.list:
        print("optimizers: %s" % ", ".join(registered))
        for preset in workloads.PRESETS:
            n, e = workloads.summary(preset)
            print("preset %-14s %5d tensors %12d elements" % (preset, n, e))
        return 0
    if args.optimizer:
        names = [n.lower() for n in args.optimizer]
        unknown = [n for n in names if n not in Optimizer.opt_registry or n in INTERNAL_OPTIMIZERS]
        if unknown:
            print("error: unknown optimizer(s) %s; registered: %s" % (", ".join(unknown), ", ".join(registered)),
                  file=sys.stderr)
            return 2
    else:
        names = registered
    presets = args.preset or list(DEFAULT_PRESETS)
    if "all" in presets:
        presets = list(workloads.PRESETS)
    dtypes = args.dtype or list(DEFAULT_DTYPES)
    try:
        extra = parse_kv(args.optimizer_params)
    except ValueError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 2
    if args.vs == "torch" and not torch_available():
        print("--vs torch: torch is not installed (pip install torch); skipping the comparison")
        args.vs = None

    info = machine_info()
    print("mxopt_numba %s, numba %s, %d threads on %s; median of %d batches of >= %.0f ms"
          % (info["mxopt_numba"], info["numba"], info["numba_threads"], info["processor"],
             args.repeats, args.min_time * 1e3))
    before = calibrate()
    print(_HEADER)
    sys.stdout.flush()
    results = []
    for preset in presets:
        for name in names:
            for dtype_label in dtypes:
                r = bench_cell(name, preset, dtype_label, args, extra)
                results.append(r)
                print(format_row(r))
                sys.stdout.flush()
    after = calibrate()
    stability = machine_stability(before, after, results)
    failed = [r for r in results if r["status"] == "error"]
    ok = [r for r in results if r["status"] == "ok"]
    if ok:
        print("ratio = copy-kernel time / step time (1.0: the step moves its bytes as fast as a "
              "plain copy); median ratio %.2f over %d measurements" % (
                  statistics.median(r["ratio"] for r in ok), len(ok)))
    if stability["unstable"]:
        print("(? marks a measurement whose batches varied too much to trust)")
        print("warning: the machine looked loaded or unstable during this run (%s); the times "
              "and ratios above are unreliable: rerun on a quiet machine"
              % "; ".join(stability["reasons"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "settings": {
                "repeats": args.repeats, "min_time": args.min_time, "warmup": args.warmup,
                "optimizer_params": extra, "bench_settings": BENCH_SETTINGS}, "stability": stability,
                "results": results},
                f, indent=1, default=str)
        print("results written to %s" % args.json)
    if args.plot:
        if plot_results(args.plot, results):
            print("plot written to %s" % args.plot)
        else:
            print("nothing to plot: no successful measurement")
    if failed:
        print("%d measurement(s) failed" % len(failed), file=sys.stderr)
        return 1
    return 0
