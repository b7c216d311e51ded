"""Train a small multilayer perceptron on scikit-learn's bundled digits (8x8 images, 10
classes, no download) with mxopt_numba's Trainer, and print the test accuracy.

The model is plain NumPy (forward and backward written out, ReLU hidden layers, softmax
cross-entropy), initialised with mxopt_numba.initializer.Xavier; only the optimizer step
runs through the library.  Needs the ``examples`` extra:
``pip install -e ".[examples]"`` (scikit-learn, tqdm, matplotlib).

examples:
  python -m mxopt_numba train
  python -m mxopt_numba train --optimizer adam --lr 0.003 --lr-scheduler cosine
  python -m mxopt_numba train --dtype float16 --multi-precision --plot loss.png
  python -m mxopt_numba train --lr-scheduler cosine --plot-lr lr.png
  python -m mxopt_numba train --optimizer sgd --optimizer-params momentum=0.9,wd=1e-4 \\
      --lr-scheduler multifactor --lr-scheduler-params "step=[300,600],factor=0.1"
  mpiexec -n 2 python -m mxopt_numba train --distributed --shard-states
"""
import ast
import math
import re
import sys
import time
import warnings

import numpy as np

from .utils import wait_for_compilation

#: hyperparameters added for an optimizer unless --optimizer-params sets them
OPTIMIZER_DEFAULTS = {"sgd": {"momentum": 0.9}, "nag": {"momentum": 0.9}}

SCHEDULERS = ("none", "factor", "multifactor", "poly", "cosine")

#: registered for MXNet compatibility and the test suite, not offered to users
INTERNAL_OPTIMIZERS = ("test",)
DTYPES = ("float32", "float64", "float16", "bfloat16")


def add_arguments(p):
    p.add_argument("--optimizer", default="sgd", metavar="NAME",
                   help="optimizer name, one of: %s (default: sgd, with momentum=0.9)"
                        % ", ".join(user_optimizers()))
    p.add_argument("--optimizer-params", default=None, metavar="K=V,...",
                   help="optimizer keyword arguments, e.g. 'momentum=0.9,wd=1e-4' "
                        "(values are Python literals)")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: the optimizer's own default)")
    p.add_argument("--lr-scheduler", choices=SCHEDULERS, default="none",
                   help="learning-rate schedule over the whole run (default: none)")
    p.add_argument("--lr-scheduler-params", default=None, metavar="K=V,...",
                   help="scheduler arguments overriding the defaults (factor: step=total/4, "
                        "factor=0.5; multifactor: step=[total/2,3*total/4], factor=0.1; poly: "
                        "max_update=total, pwr=2; cosine: max_update=total), e.g. "
                        "'warmup_steps=50'")
    p.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="storage type of weights and gradients (default: float32)")
    p.add_argument("--multi-precision", nargs="?", const="master", default=None,
                   choices=["master", "kahan", "stochastic"],
                   help="how float16/bfloat16 weights are updated: 'master' (the default when "
                        "the flag is given without a value) keeps a float32 master copy, "
                        "'kahan' a 16-bit compensation buffer, 'stochastic' rounds "
                        "stochastically; without the flag, round to nearest")
    p.add_argument("--epochs", type=int, default=20, help="passes over the training set (default: 20)")
    p.add_argument("--batch-size", type=int, default=32, help="samples per step (default: 32)")
    p.add_argument("--hidden", default="128", metavar="N[,N...]",
                   help="hidden layer widths (default: 128)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, init and shuffling (default: 0)")
    p.add_argument("--test-fraction", type=float, default=0.25,
                   help="share of the samples held out for testing (default: 0.25)")
    p.add_argument("--plot", metavar="PATH", help="write the loss curve as a PNG")
    p.add_argument("--plot-lr", metavar="PATH", help="write the learning rate of every step as a PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--blas-threads", type=int, default=1,
                   help="threads for NumPy's matrix products (default: 1; the demo's matrices are "
                        "small enough that more threads only add synchronisation; 0 keeps the "
                        "library's setting)")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over the processes of an MPI launch (mpiexec -n N python -m "
                        "mxopt_numba train --distributed): each process computes its share of every "
                        "batch; needs mpi4py (pip install mpi4py mpich)")
    p.add_argument("--shard-states", action="store_true",
                   help="with --distributed: each process keeps only its part of the optimizer "
                        "state (ZeRO-1)")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="with --distributed: how long a collective may wait for the other "
                        "processes before the job stops with an error naming them (default: "
                        "$MXOPT_DIST_TIMEOUT or 300)")


# ---------------------------------------------------------------------- option parsing

def user_optimizers():
    """Registered optimizer names a user may choose (the internal ones left out)."""
    from .optimizer import Optimizer
    return [n for n in sorted(Optimizer.opt_registry) if n not in INTERNAL_OPTIMIZERS]


def check_optimizer_name(name):
    """``name`` lower-cased, or a ValueError listing the choices."""
    import difflib
    lowered = name.lower()
    choices = user_optimizers()
    if lowered not in choices:
        close = difflib.get_close_matches(lowered, choices, n=3)
        hint = " (did you mean %s?)" % " or ".join(close) if close else ""
        raise ValueError("--optimizer: unknown optimizer %r%s; choose from %s"
                         % (name, hint, ", ".join(choices)))
    return lowered


def create_checked(name, opt_params, option="--optimizer-params"):
    """``create(name, **opt_params)``, with a keyword the rule does not take reported as a
    user error (ValueError) naming the option."""
    from .optimizer import create
    try:
        return create(name, **opt_params)
    except TypeError as exc:
        raise ValueError("%s: %s" % (option, exc)) from None


def format_lr(lr):
    """One format for every learning rate of a run (``1.000e-03``)."""
    return "%.3e" % lr


_SPLIT = re.compile(r",(?=\s*[A-Za-z_]\w*\s*=)")


def _precision_note(mode):
    return {"master": " (float32 master copy)", "kahan": " (Kahan-compensated updates)",
            "stochastic": " (stochastic rounding)"}.get(mode, "")


def parse_kv(text, option="--optimizer-params"):
    """``'a=1,b=[2,3],c=adam'`` -> ``{'a': 1, 'b': [2, 3], 'c': 'adam'}``.

    Values are Python literals (numbers, lists, True/False/None); anything else is kept
    as a string.  Commas inside brackets do not split.
    """
    out = {}
    if text is None or not text.strip():
        return out
    for item in _SPLIT.split(text.strip()):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError("%s: expected KEY=VALUE items separated by commas, got %r" % (option, item))
        if key in out:
            raise ValueError("%s: %r is given twice" % (option, key))
        value = value.strip()
        lowered = value.lower()
        if lowered in ("true", "false", "none"):
            out[key] = {"true": True, "false": False, "none": None}[lowered]
            continue
        if lowered in ("inf", "+inf"):
            out[key] = math.inf
            continue
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def make_scheduler(kind, base_lr, total_steps, params=None):
    """A scheduler for a run of ``total_steps`` updates (None for ``'none'``)."""
    from . import lr_scheduler
    params = dict(params or {})
    if kind == "none":
        if params:
            raise ValueError("--lr-scheduler-params given without --lr-scheduler")
        return None
    total = max(1, int(total_steps))
    if kind == "factor":
        args = {"step": max(1, total // 4), "factor": 0.5}
        cls = lr_scheduler.FactorScheduler
    elif kind == "multifactor":
        first = max(1, total // 2)
        args = {"step": [first, max(first + 1, (3 * total) // 4)], "factor": 0.1}
        cls = lr_scheduler.MultiFactorScheduler
    elif kind == "poly":
        args = {"max_update": total, "pwr": 2}
        cls = lr_scheduler.PolyScheduler
    elif kind == "cosine":
        args = {"max_update": total}
        cls = lr_scheduler.CosineScheduler
    else:
        raise ValueError("unknown lr scheduler %r; choose from %s" % (kind, ", ".join(SCHEDULERS)))
    args.update(params)
    args.setdefault("base_lr", base_lr)
    try:
        return cls(**args)
    except TypeError as exc:
        raise ValueError("--lr-scheduler-params: %s" % exc) from None


def _dtype(name):
    if name == "bfloat16":
        import ml_dtypes
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


# ---------------------------------------------------------------------- the model

class MLP:
    """``fc1 -> ReLU -> ... -> fcN -> softmax``; weights stored ``(out, in)`` as in MXNet."""

    def __init__(self, sizes, dtype, init):
        from .parameter import Parameter
        self.compute = np.float64 if dtype == np.float64 else np.float32
        self.layers = []
        self.params = {}
        for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            w = Parameter("fc%d_weight" % k, np.zeros((n_out, n_in), dtype)).initialize(init)
            b = Parameter("fc%d_bias" % k, np.zeros(n_out, dtype)).initialize(init)
            self.layers.append((w, b))
            self.params[w.name] = w
            self.params[b.name] = b

    def _weights(self):
        ct = self.compute
        return [(w.data.astype(ct, copy=False), b.data.astype(ct, copy=False)) for w, b in self.layers]

    def logits(self, x):
        a = x
        weights = self._weights()
        for k, (w, b) in enumerate(weights):
            a = a @ w.T + b
            if k < len(weights) - 1:
                a = np.maximum(a, 0)
        return a

    def forward_backward(self, x, y):
        """Write the gradients of the summed cross-entropy; return ``(loss sum, correct)``."""
        weights = self._weights()
        acts = [x]
        a = x
        for k, (w, b) in enumerate(weights):
            a = a @ w.T + b
            if k < len(weights) - 1:
                a = np.maximum(a, 0)
            acts.append(a)
        z = a - a.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        rows = np.arange(len(y))
        loss = float(np.sum(np.log(s[:, 0]) - z[rows, y]))
        correct = int(np.sum(np.argmax(z, axis=1) == y))
        delta = e / s
        delta[rows, y] -= 1                         # d(loss)/d(logits), summed over the batch
        for k in range(len(weights) - 1, -1, -1):
            w, _ = weights[k]
            pw, pb = self.layers[k]
            pw.grad[...] = delta.T @ acts[k]
            pb.grad[...] = delta.sum(axis=0)
            if k:
                delta = (delta @ w) * (acts[k] > 0)
        return loss, correct

    def accuracy(self, x, y):
        return float(np.mean(np.argmax(self.logits(x), axis=1) == y))


# ---------------------------------------------------------------------- data-parallel hook

class World:
    """Where this process sits in a data-parallel run: one process here
    (:class:`MPIWorld` under ``--distributed``)."""

    rank = 0
    size = 1
    communicator = None

    def shard(self, indices):
        """The part of a batch this process computes."""
        return indices[self.rank::self.size]

    @property
    def is_main(self):
        return self.rank == 0

    def trainer(self, params, name, opt_params):
        import mxopt_numba as mxo
        return mxo.Trainer(params, name, opt_params, communicator=self.communicator)

    def total(self, values):
        """``values`` summed over the processes (float64 array)."""
        return np.asarray(values, dtype=np.float64)


class MPIWorld(World):
    """``--distributed``: this process's place in an MPI launch, a DistributedTrainer."""

    def __init__(self, shard_states=False, timeout=None):
        from . import distributed
        # also makes a failure on any process end the whole job (install_abort_handler)
        self.communicator = distributed.init("mpi", timeout=timeout)
        self.rank, self.size = self.communicator.rank, self.communicator.size
        self.shard_states = shard_states

    def trainer(self, params, name, opt_params):
        from .distributed import DistributedTrainer
        return DistributedTrainer(params, name, opt_params, communicator=self.communicator,
                                  shard_states=self.shard_states)

    def total(self, values):
        values = np.array(values, dtype=np.float64)
        self.communicator.allreduce(values)
        return values


def make_world(args):
    if getattr(args, "shard_states", False) and not getattr(args, "distributed", False):
        raise ValueError("--shard-states needs --distributed")
    if getattr(args, "timeout", None) is not None and not getattr(args, "distributed", False):
        raise ValueError("--timeout needs --distributed")
    if getattr(args, "distributed", False):
        return MPIWorld(shard_states=args.shard_states, timeout=getattr(args, "timeout", None))
    return World()


def _load_digits(test_fraction, seed):
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise SystemExit("train needs scikit-learn: pip install -e \".[examples]\" "
                         "(or pip install scikit-learn tqdm matplotlib)") from None
    data = load_digits()
    x = (data.data / 16.0).astype(np.float64)
    return train_test_split(x, data.target, test_size=test_fraction, random_state=seed, stratify=data.target)


class _NoBar:
    def __init__(self, iterable, **_):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def set_postfix(self, **_):
        pass

    def close(self):
        pass


def _progress(disable):
    if disable:
        return _NoBar
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar
    return tqdm


# ---------------------------------------------------------------------- main

def main(args):
    try:
        with _blas_threads(args.blas_threads):
            return run(args, make_world(args))
    except ValueError as exc:       # bad option values: a message, not a traceback
        print("error: %s" % " ".join(str(exc).split()), file=sys.stderr)
        return 2


def _blas_threads(n):
    """Limit the BLAS pool for the run: the forward and backward products of a batch of a
    few samples take microseconds, and waking (or spinning) BLAS threads for each of them
    costs more than the product on a machine whose cores are busy."""
    import contextlib
    if n is None or n < 0:
        raise ValueError("--blas-threads must be >= 0, got %r" % (n,))
    if n == 0:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


def run(args, world):
    import mxopt_numba as mxo

    if args.epochs < 1 or args.batch_size < 1:
        raise ValueError("--epochs and --batch-size must be >= 1")
    if not 0 < args.test_fraction < 1:
        raise ValueError("--test-fraction must be in (0, 1), got %r" % args.test_fraction)
    try:
        hidden = [int(h) for h in str(args.hidden).split(",") if h.strip()]
    except ValueError:
        raise ValueError("--hidden: expected comma-separated integers, got %r" % args.hidden) from None
    if any(h < 1 for h in hidden):
        raise ValueError("--hidden widths must be >= 1, got %r" % args.hidden)
    dtype = _dtype(args.dtype)
    name = check_optimizer_name(args.optimizer)
    opt_params = dict(OPTIMIZER_DEFAULTS.get(name, {}))
    opt_params.update(parse_kv(args.optimizer_params))
    if args.lr is not None:
        opt_params["learning_rate"] = args.lr
    if args.multi_precision:
        opt_params["multi_precision"] = True if args.multi_precision == "master" else args.multi_precision
    # bad hyperparameters are reported before the data is loaded
    probe = create_checked(name, opt_params)
    sched_params = parse_kv(args.lr_scheduler_params, "--lr-scheduler-params")

    x_train, x_test, y_train, y_test = _load_digits(args.test_fraction, args.seed)
    compute = np.float64 if dtype == np.float64 else np.float32
    x_train, x_test = x_train.astype(compute), x_test.astype(compute)

    mxo.random.seed(args.seed)
    model = MLP([x_train.shape[1]] + hidden + [10], dtype, mxo.initializer.Xavier())

    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    total = steps_per_epoch * args.epochs
    if args.lr_scheduler != "none":
        base_lr = opt_params.get("learning_rate")
        if base_lr is None:
            base_lr = probe.learning_rate
        opt_params["lr_scheduler"] = make_scheduler(args.lr_scheduler, base_lr, total, sched_params)
    else:
        make_scheduler("none", None, total, sched_params)

    try:
        trainer = world.trainer(model.params, name, opt_params)
    except TypeError as exc:
        raise ValueError("--optimizer-params: %s" % exc) from None
    base_lr = trainer.optimizer.lr
    if world.is_main:
        shown = {k: v for k, v in opt_params.items() if k != "lr_scheduler"}
        print("digits: %d train / %d test samples; MLP %s; %s weights%s" % (
            len(x_train), len(x_test), "-".join(map(str, [x_train.shape[1]] + hidden + [10])),
            args.dtype, _precision_note(args.multi_precision) if dtype.itemsize == 2 else ""))
        print("optimizer: %s(%s); lr %s%s; %d epochs x %d steps of %d" % (
            name, ", ".join("%s=%r" % kv for kv in sorted(shown.items())), format_lr(base_lr),
            "" if args.lr_scheduler == "none" else ", %s schedule" % args.lr_scheduler,
            args.epochs, steps_per_epoch, args.batch_size))
        if world.size > 1:
            sharded = getattr(world, "shard_states", False)
            print("distributed: %d processes, each computes 1/%d of every batch%s"
                  % (world.size, world.size, "; optimizer state sharded" if sharded else ""))
        if dtype == np.float16 and not args.multi_precision:
            print("note: float16 weights without --multi-precision are rounded to float16 every step")
        sys.stdout.flush()

    bar_cls = _progress(args.no_progress or not world.is_main)
    step_losses, epoch_losses, step_lrs = [], [], []
    started = time.perf_counter()
    with warnings.catch_warnings():
        # float16 without multi_precision: the note above replaces the optimizer's warning
        warnings.filterwarnings("ignore", message="Accumulating with float16", category=UserWarning)
        status = _epochs(args, world, model, trainer, x_train, y_train, x_test, y_test, bar_cls,
                         steps_per_epoch, step_losses, epoch_losses, step_lrs)
    if status:
        return status
    test_acc = model.accuracy(x_test, y_test)
    if world.is_main:
        print("test accuracy: %.4f (%d epochs in %.1f s)" % (test_acc, args.epochs,
                                                           time.perf_counter() - started))
        title = run_title(name, args, dtype, base_lr)
        if args.plot:
            plot_losses(args.plot, step_losses, epoch_losses, steps_per_epoch,
                        "%s; test acc %.3f" % (title, test_acc))
            print("loss curve written to %s" % args.plot)
        if args.plot_lr:
            plot_lrs(args.plot_lr, step_lrs, steps_per_epoch, title)
            print("learning-rate curve written to %s" % args.plot_lr)
    return 0


def run_title(name, args, dtype, base_lr):
    """``'adam, bfloat16 + fp32 master, cosine schedule from 1.000e-03'``: what a plot shows."""
    precision = args.dtype
    if dtype.itemsize == 2:
        precision += {"master": " + fp32 master", "kahan": " + Kahan compensation",
                      "stochastic": " + stochastic rounding"}.get(args.multi_precision, " (no master copy)")
    schedule = ("constant lr %s" % format_lr(base_lr) if args.lr_scheduler == "none"
                else "%s schedule from %s" % (args.lr_scheduler, format_lr(base_lr)))
    return "%s, %s, %s" % (name, precision, schedule)


def _epochs(args, world, model, trainer, x_train, y_train, x_test, y_test, bar_cls, steps_per_epoch,
            step_losses, epoch_losses, step_lrs):
    rng = np.random.default_rng(args.seed)
    first_step = True
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(x_train))
        bar = bar_cls(range(steps_per_epoch), desc="epoch %d/%d" % (epoch, args.epochs),
                      leave=False, unit="step", disable=None, mininterval=0.2)
        seen = correct = 0
        loss_sum = 0.0
        t0 = time.perf_counter()
        timed_from = 0          # samples of this epoch before the throughput clock started
        for k in bar:
            batch = order[k * args.batch_size:(k + 1) * args.batch_size]
            mine = world.shard(batch)
            loss, hits = model.forward_backward(x_train[mine], y_train[mine])
            if first_step:
                # the first step compiles (or loads) the kernels: announced, and left out of
                # the throughput
                if world.is_main:
                    print("compiling kernels (first run only) ...", end=" ")
                    sys.stdout.flush()
                t_first = time.perf_counter()
                trainer.step(len(batch))
                step_lrs.append(trainer.learning_rate)
                # the multi-threaded kernels compile in the background while the first step
                # runs their single-threaded twins: finish that before the clock starts
                wait_for_compilation()
                if world.is_main:
                    print("%.1f s" % (time.perf_counter() - t_first))
                    sys.stdout.flush()
                first_step = False
                t0 = time.perf_counter()
                timed_from = len(mine)
            else:
                trainer.step(len(batch))
                # the rate of the update just made: the scheduler's value at the new count
                step_lrs.append(trainer.learning_rate)
            step_losses.append(loss / max(len(mine), 1))
            loss_sum += loss
            correct += hits
            seen += len(mine)
            bar.set_postfix(loss="%.4f" % (loss / max(len(mine), 1)), refresh=False,
                            samples_s="%.0f" % ((seen - timed_from) / max(time.perf_counter() - t0, 1e-9)))
        bar.close()
        elapsed = time.perf_counter() - t0
        loss_sum, correct, seen, timed_from = world.total([loss_sum, correct, seen, timed_from])
        timed = seen - timed_from
        test_acc = model.accuracy(x_test, y_test)
        epoch_losses.append(loss_sum / seen)
        if not np.isfinite(epoch_losses[-1]):
            print("epoch %d: the loss is not finite (%r); try a smaller --lr" % (epoch, epoch_losses[-1]))
            return 1
        if world.is_main:
            print("epoch %2d/%d  loss %.4f  train acc %.4f  test acc %.4f  lr %s  %.0f samples/s"
                  % (epoch, args.epochs, epoch_losses[-1], correct / seen, test_acc,
                     format_lr(trainer.learning_rate), timed / max(elapsed, 1e-9)))
            sys.stdout.flush()
    return 0


def plot_losses(path, step_losses, epoch_losses, steps_per_epoch, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = np.arange(1, len(step_losses) + 1)
    ax.plot(steps, step_losses, lw=0.6, alpha=0.5, label="batch loss")
    ax.plot(np.arange(1, len(epoch_losses) + 1) * steps_per_epoch, epoch_losses, "o-", label="epoch mean")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_lrs(path, step_lrs, steps_per_epoch, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(np.arange(1, len(step_lrs) + 1), step_lrs, lw=1.2)
    for epoch in range(1, len(step_lrs) // max(steps_per_epoch, 1)):
        ax.axvline(epoch * steps_per_epoch, color="0.85", lw=0.5, zorder=0)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
