"""mxopt_numba.distributed: communicators, DistributedTrainer (data-parallel and ZeRO-1
sharded states), sharded checkpoints, ``train --distributed``.

In-process tests use SingleProcessCommunicator and ThreadCommunicator (below: N "processes"
as threads of this process, summing in rank order), so layouts with 3 processes and
re-sharding are covered without MPI.  The MPI tests launch ``tests/dist_worker.py`` under
``mpiexec -n 2``, ``-n 3`` and ``-n 4`` and read one PASS/FAIL line per check, and the
faulty jobs of ``tests/dist_faults.py`` (a collective deadline of 10 s), each in its own
session, killed in the end, and checked for processes left behind.
"""
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import mxopt_numba as mxo
from mxopt_numba import distributed
from mxopt_numba._state_io import StateFormatError

HERE = Path(__file__).resolve().parent
SINGLE = distributed.SingleProcessCommunicator()
BF16 = np.dtype(ml_dtypes.bfloat16)

SHAPES = [("conv_weight", (4, 3, 3, 3)), ("conv_bias", (4,)), ("fc_weight", (7, 5)),
          ("bn_gamma", (9,)), ("out_weight", (3, 13)), ("out_bias", (3,))]


def make_params(seed=0, dtype=np.float32, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    params = [mxo.Parameter(n, rng.standard_normal(s).astype(dtype)) for n, s in shapes]
    for k, p in enumerate(params):
        p.lr_mult = (1.0, 0.5, 2.0)[k % 3]
        p.wd_mult = (1.0, 0.0, 3.0)[k % 3]
    return params


# ---------------------------------------------------------------------- a thread "backend"

class ThreadCommunicator(distributed.Communicator):
    """Rank ``rank`` of ``size`` threads; sums are taken in rank order (so a reference
    summing in the same order is bitwise comparable)."""

    def __init__(self, group, rank):
        self.group, self.rank, self.size = group, rank, group["size"]

    def _exchange(self, obj):
        g = self.group
        g["slots"][self.rank] = obj
        g["barrier"].wait()
        out = list(g["slots"])
        g["barrier"].wait()
        return out

    @staticmethod
    def _sum(parts, dtype):
        acc = parts[0].astype(np.float32) if dtype.itemsize == 2 else parts[0].copy()
        for p in parts[1:]:
            acc = acc + p
        return acc

    def allreduce(self, arrays, op="sum"):
        for a in distributed._array_list(arrays):
            parts = self._exchange(a.copy())
            if op == "sum":
                a[...] = self._sum(parts, a.dtype).reshape(a.shape)
            else:
                a[...] = (np.maximum if op == "max" else np.minimum).reduce(parts)

    def reduce_scatter(self, send, recv, counts):
        parts = self._exchange(send.copy())
        lo = sum(counts[:self.rank])
        recv[...] = self._sum(parts, send.dtype)[lo:lo + counts[self.rank]]

    def allgather(self, buf, counts):
        lo = sum(counts[:self.rank])
        parts = self._exchange(buf[lo:lo + counts[self.rank]].copy())
        buf[...] = np.concatenate(parts)

    def broadcast(self, arrays, root=0):
        for a in distributed._array_list(arrays):
            parts = self._exchange(a.copy() if self.rank == root else None)
            a[...] = parts[root]

    def barrier(self):
        self._exchange(None)

    def allgather_object(self, obj):
        return self._exchange(obj)

    def broadcast_object(self, obj, root=0):
        return self._exchange(obj)[root]


def run_ranks(size, fn):
    """``[fn(comm_0), ..., fn(comm_size-1)]`` with each call in its own thread."""
    group = {"size": size, "slots": [None] * size, "barrier": threading.Barrier(size, timeout=60)}
    with ThreadPoolExecutor(size) as pool:
        futures = [pool.submit(fn, ThreadCommunicator(group, r)) for r in range(size)]
        return [f.result() for f in futures]


def summed_grads(params, size, rng):
    """Per-rank gradients and their rank-order sum (float16/bfloat16: summed in float32,
    rounded once, as the communicators do)."""
    per_rank = [[rng.standard_normal(p.shape).astype(p.dtype) for p in params] for _ in range(size)]
    total = []
    for k, p in enumerate(params):
        acc = per_rank[0][k].astype(np.float32) if p.dtype.itemsize == 2 else per_rank[0][k]
        for r in range(1, size):
            acc = acc + per_rank[r][k]
        total.append(acc.astype(p.dtype))
    return per_rank, total


def train_pair(size, name, kwargs, steps=3, dtype=np.float32, shapes=SHAPES, **dist_kw):
    """Weights of a DistributedTrainer on ``size`` thread-ranks (rank 0's) and of a
    single-process Trainer fed the summed gradients."""
    ref = make_params(dtype=dtype, shapes=shapes)
    ref_trainer = mxo.Trainer(ref, name, dict(kwargs))
    grads = []
    rng = np.random.default_rng(5)
    for _ in range(steps):
        per_rank, total = summed_grads(ref, size, rng)
        grads.append(per_rank)
        for p, g in zip(ref, total):
            p.grad[...] = g
        ref_trainer.step(8)

    def rank_fn(comm):
        params = make_params(seed=comm.rank, dtype=dtype, shapes=shapes)
        trainer = distributed.DistributedTrainer(params, name, dict(kwargs), communicator=comm, **dist_kw)
        for per_rank in grads:
            for p, g in zip(params, per_rank[comm.rank]):
                p.grad[...] = g
            trainer.step(8)
        return [p.data.copy() for p in params], trainer

    results = run_ranks(size, rank_fn)
    for weights, _ in results[1:]:
        for a, b in zip(weights, results[0][0]):
            assert a.tobytes() == b.tobytes(), "replicas differ"
    return results[0][0], [p.data for p in ref], [t for _, t in results]


def assert_bitwise(got, want):
    for k, (a, b) in enumerate(zip(got, want)):
        assert a.tobytes() == b.tobytes(), "parameter %d differs (max %g)" % (
            k, np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


# ---------------------------------------------------------------------- communicators

def test_single_process_communicator():
    comm = distributed.SingleProcessCommunicator()
    a = np.arange(4, dtype=np.float32)
    comm.allreduce(a)
    comm.allreduce([a, a[:2]])
    comm.broadcast(a)
    comm.allgather(a, [4])
    recv = np.empty(4, np.float32)
    comm.reduce_scatter(a, recv, [4])
    np.testing.assert_array_equal(recv, a)
    assert comm.allgather_object({"x": 1}) == [{"x": 1}]
    assert comm.broadcast_object(3) == 3
    comm.barrier()
    with pytest.raises(ValueError, match="counts must be 1"):
        comm.reduce_scatter(a, recv, [2, 2])
    with pytest.raises(ValueError, match="op must be"):
        comm.allreduce(a, op="prod")
    with pytest.raises(ValueError, match="writeable C-contiguous"):
        comm.allreduce(np.zeros((4, 4), np.float32)[:, 1])
    with pytest.raises(ValueError, match="root"):
        comm.broadcast(a, root=1)


def test_init_without_a_launcher_is_single_process(monkeypatch):
    for var in distributed._LAUNCH_VARS:
        monkeypatch.delenv(var, raising=False)
    assert isinstance(distributed.init(), distributed.SingleProcessCommunicator)
    assert isinstance(distributed.init("single"), distributed.SingleProcessCommunicator)
    with pytest.raises(ValueError, match="backend"):
        distributed.init("nccl")


def test_lazy_module_attribute():
    assert mxo.distributed is distributed
    assert issubclass(mxo.distributed.DistributedTrainer, mxo.Trainer)


def test_trainer_communicator_hook_accepts_a_communicator():
    """The plain Trainer's ``communicator=`` hook works with any Communicator."""
    def rank_fn(comm):
        params = make_params()
        trainer = mxo.Trainer(params, "sgd", {"learning_rate": 1.0}, communicator=comm)
        for p in params:
            p.grad[...] = comm.rank + 1.0
        trainer.step(3)
        return params[0].data.copy()
    a, b = run_ranks(2, rank_fn)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, make_params()[0].data - 1.0, rtol=1e-6)


# ---------------------------------------------------------------------- layout and partition

def test_bounds():
    assert distributed._element_bounds(10, 3) == [0, 3, 6, 10]
    assert distributed._element_bounds(2, 4) == [0, 0, 1, 1, 2]
    # parameters of 6, 1, 1, 4 elements: cut at the boundary nearest to 6 (of 12)
    assert distributed._param_bounds([0, 6, 7, 8], [6, 1, 1, 4], 12, 2) == [0, 6, 12]
    assert distributed._param_bounds([0], [10], 10, 3) == [0, 0, 10, 10]


@pytest.mark.parametrize("name, kwargs, expected", [
    ("adam", {}, "elements"), ("sgd", {"momentum": 0.9}, "elements"),
    ("groupadagrad", {}, "params"), ("lamb", {"use_fused_step": False}, "params")])
def test_auto_partition(name, kwargs, expected):
    opt = mxo.optimizer.create(name, **kwargs)
    assert distributed._partition_for(opt, "auto") == expected


def test_partition_errors():
    with pytest.raises(ValueError, match="noise"):
        distributed._partition_for(mxo.optimizer.create("sgld"), "auto")
    with pytest.raises(ValueError, match="not known to be element-wise"):
        distributed._partition_for(mxo.optimizer.create("groupadagrad"), "elements")
    with pytest.raises(ValueError, match="whole-tensor norms"):
        distributed._partition_for(mxo.optimizer.create("lars", use_fused_step=False), "elements")
    with pytest.raises(ValueError, match="partition must be"):
        distributed._partition_for(mxo.optimizer.create("adam"), "rows")


def test_layerwise_rules_are_cut_at_elements():
    # launch_sums passes the pieces' partial sums through opt.norm_reducer
    for name in ("lamb", "lars", "lans", "lbsgd"):
        assert distributed._partition_for(mxo.optimizer.create(name), "auto") == "elements"


def test_user_rule_declares_elementwise():
    class Halve(mxo.optimizer.SGD):
        elementwise = True
    assert distributed._partition_for(Halve(), "elements") == "elements"

    class Same(mxo.optimizer.SGD):         # SGD's rule, other defaults: still element-wise
        def __init__(self, **kwargs):
            super().__init__(momentum=0.5, **kwargs)
    assert distributed._partition_for(Same(), "auto") == "elements"

    class Other(mxo.optimizer.SGD):        # a new rule that says nothing: assumed not
        def fused_step(self, indices, weights, grads, states):
            super().fused_step(indices, weights, grads, states)
    assert distributed._partition_for(Other(), "auto") == "params"


def test_parameters_become_views_of_flat_buffers():
    params = make_params()
    params.append(mxo.Parameter("frozen_weight", np.ones(3, np.float32), grad_req="null"))
    params.append(mxo.Parameter("half_weight", np.ones(5, np.float16)))
    old = params[0].data
    trainer = distributed.DistributedTrainer(params, "sgd", communicator=SINGLE, shard_states=True)
    assert params[0].data is not old and np.array_equal(params[0].data, old)
    assert params[0].data.base is params[1].data.base
    assert params[-1].data.base is not params[0].data.base      # its own float16 buffer
    n = sum(int(np.prod(s)) for _, s in SHAPES)
    assert trainer.bounds == {("float32", "float32"): [0, n], ("float16", "float16"): [0, 5]}
    params[0].grad_req = "null"
    with pytest.raises(RuntimeError, match="changed its arrays"):
        trainer.step(1)
    params[0].grad_req = "write"
    trainer = distributed.DistributedTrainer(params, "sgd", communicator=SINGLE)
    params[-2].grad_req = "write"      # frozen when the trainer was made
    with pytest.raises(RuntimeError, match="grad_req='null' when"):
        trainer.step(1)


def test_norm_reducer_of_an_earlier_trainer_is_removed():
    opt = mxo.optimizer.create("lamb")

    def stale(sums):
        raise AssertionError("called")
    stale._distributed_trainer = True
    opt.norm_reducer = stale
    params = make_params()
    trainer = distributed.DistributedTrainer(params, opt, communicator=SINGLE)
    assert "norm_reducer" not in vars(opt)
    for p in params:
        p.grad[...] = 1.0
    trainer.step(1)


# ---------------------------------------------------------------------- exactness

@pytest.mark.parametrize("shard", [False, True])
@pytest.mark.parametrize("name, kwargs", [("adam", {"wd": 0.01}), ("sgd", {"momentum": 0.9, "wd": 1e-3}),
                                          ("rmsprop", {"centered": True}), ("ftml", {})])
def test_one_process_equals_trainer(name, kwargs, shard):
    got, want, _ = train_pair(1, name, kwargs, shard_states=shard)
    assert_bitwise(got, want)


@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("name, kwargs", [("adam", {"wd": 0.01}), ("nadam", {}),
                                          ("sgd", {"momentum": 0.9})])
def test_sharded_elementwise_is_bitwise(size, name, kwargs):
    """Pieces under their parameter's index: lr_mult, wd_mult and the update counts (bias
    corrections) stay per parameter."""
    got, want, trainers = train_pair(size, name, kwargs, shard_states=True)
    assert_bitwise(got, want)
    assert all(t.partition == "elements" for t in trainers)
    sizes = [int(np.prod(s)) for _, s in SHAPES]
    assert any(0 < p.stop - p.start < sizes[p.index] for t in trainers for p in t._pieces), \
        "no parameter is cut between processes"


@pytest.mark.parametrize("dtype", [np.float16, BF16])
def test_sharded_multi_precision_is_bitwise(dtype):
    got, want, trainers = train_pair(3, "adam", {"multi_precision": True}, dtype=dtype, shard_states=True)
    assert_bitwise(got, want)
    masters = [s[0] for t in trainers for s in t._updater.states.values()]
    assert all(m.dtype == np.float32 for m in masters)
    assert sum(m.size for m in masters) == sum(int(np.prod(s)) for _, s in SHAPES)


def test_groupadagrad_on_whole_tensors():
    shapes = [(n, s) for n, s in SHAPES if len(s) == 2]
    got, want, trainers = train_pair(2, "groupadagrad", {}, shapes=shapes, shard_states=True)
    assert_bitwise(got, want)
    assert trainers[0].partition == "params"


def test_state_memory_is_split():
    _, _, trainers = train_pair(3, "adam", {}, shard_states=True)
    per_rank = [t.optimizer_state_nbytes() for t in trainers]
    total = 2 * 4 * sum(int(np.prod(s)) for _, s in SHAPES)
    assert sum(per_rank) == total
    assert max(per_rank) <= total / 3 + 8


# ---------------------------------------------------------------------- checkpoints

def _continue(size, fname, steps, shard, name="adam", seed=9, save=None):
    """Weights after loading ``fname`` into a fresh run on ``size`` thread-ranks and
    stepping ``steps`` times on gradients whose rank-order sum is the same for any
    ``size`` (rank 0 gets the sum, the others zeros)."""
    rng = np.random.default_rng(seed)
    sums = [[rng.standard_normal(s).astype(np.float32) for _, s in SHAPES] for _ in range(steps)]

    def rank_fn(comm):
        params = make_params(seed=42)
        trainer = distributed.DistributedTrainer(params, name, {}, communicator=comm, shard_states=shard)
        trainer.load_states(fname)
        for g in sums:
            for p, gk in zip(params, g):
                p.grad[...] = gk if comm.rank == 0 else 0
            trainer.step(4)
        if save:
            trainer.save_states(save)
        return [p.data.copy() for p in params]
    return run_ranks(size, rank_fn)[0]


def _checkpoint(tmp_path, size, shard, name="adam"):
    fname = str(tmp_path / ("ck%d%s" % (size, "s" if shard else "")))

    def rank_fn(comm):
        params = make_params(seed=42)
        trainer = distributed.DistributedTrainer(params, name, {}, communicator=comm, shard_states=shard)
        rng = np.random.default_rng(comm.rank)
        for _ in range(3):
            for p in params:
                p.grad[...] = rng.standard_normal(p.shape)
            trainer.step(4)
        # the weights are not part of the optimizer states: go back to the shared start
        for p, q in zip(params, make_params(seed=42)):
            p.data[...] = q.data
        trainer.save_states(fname)
    run_ranks(size, rank_fn)
    return fname


def test_checkpoint_files(tmp_path):
    _checkpoint(tmp_path, 3, True)
    assert sorted(os.listdir(tmp_path)) == ["ck3s", "ck3s.0-of-3", "ck3s.1-of-3", "ck3s.2-of-3"]
    _checkpoint(tmp_path, 2, False)
    assert "ck2" in os.listdir(tmp_path) and not any(f.startswith("ck2.") for f in os.listdir(tmp_path))
    with pytest.raises(StateFormatError, match="holds 'distributed-manifest'"):
        mxo.Trainer(make_params(), "adam").load_states(str(tmp_path / "ck3s"))


@pytest.mark.parametrize("saved, loaded", [((3, True), (3, True)), ((3, True), (2, True)),
                                           ((3, True), (1, False)), ((2, False), (3, True)),
                                           ((1, True), (2, True))])
def test_checkpoint_restores_on_any_number_of_processes(tmp_path, saved, loaded):
    fname = _checkpoint(tmp_path, *saved)
    reference = _continue(saved[0], fname, 3, saved[1])
    got = _continue(loaded[0], fname, 3, loaded[1])
    assert_bitwise(got, reference)


def test_checkpoint_from_a_plain_trainer(tmp_path):
    params = make_params(seed=42)
    trainer = mxo.Trainer(params, "adam")
    for _ in range(2):
        for p in params:
            p.grad[...] = 0.25
        trainer.step(1)
    fname = str(tmp_path / "plain.states")
    trainer.save_states(fname)
    reference = _continue(1, fname, 2, False)
    assert_bitwise(_continue(2, fname, 2, True), reference)


def test_checkpoint_save_load_save_is_stable(tmp_path):
    fname = _checkpoint(tmp_path, 2, True)
    again = str(tmp_path / "again")
    _continue(3, fname, 0, True, save=again)
    assert_bitwise(_continue(3, again, 2, True), _continue(2, fname, 2, True))


def test_checkpoint_errors(tmp_path):
    fname = _checkpoint(tmp_path, 2, True)
    os.remove(fname + ".1-of-2")
    with pytest.raises(StateFormatError, match="missing"):
        _continue(2, fname, 0, True)
    with pytest.raises(StateFormatError, match="missing"):
        _continue(1, fname, 0, True)
    (tmp_path / "junk").write_bytes(b"not a checkpoint")
    with pytest.raises(StateFormatError, match="not an mxopt_numba state file"):
        _continue(2, str(tmp_path / "junk"), 0, True)

    def other_params(comm):
        params = make_params(seed=42)[:-1]
        trainer = distributed.DistributedTrainer(params, "adam", communicator=comm, shard_states=True)
        trainer.load_states(fname)
    fname = _checkpoint(tmp_path, 2, True)
    with pytest.raises(StateFormatError, match="other parameters"):
        run_ranks(2, other_params)


def test_mismatched_processes_are_refused():
    def rank_fn(comm):
        params = make_params(shapes=SHAPES if comm.rank == 0 else SHAPES[:-1])
        distributed.DistributedTrainer(params, "adam", communicator=comm)
    with pytest.raises(ValueError, match="process 1 has 5 parameters, process 0 has 6"):
        run_ranks(2, rank_fn)

    def shard_fn(comm):
        distributed.DistributedTrainer(make_params(), "adam", communicator=comm, shard_states=comm.rank == 0)
    with pytest.raises(ValueError, match="shard_states"):
        run_ranks(2, shard_fn)


def test_update_needs_the_reduced_gradient():
    params = make_params()
    trainer = distributed.DistributedTrainer(params, "adam", communicator=SINGLE, shard_states=True)
    for p in params:
        p.grad[...] = 1.0
    with pytest.raises(RuntimeError, match="allreduce_grads"):
        trainer.update(1)
    trainer.allreduce_grads()
    trainer.update(1)
    assert trainer.timings["steps"] == 1


# ---------------------------------------------------------------------- MPI (mpiexec -n 2)

MPIEXEC = Path(sys.executable).parent / "mpiexec"


def _mpi_env():
    env = dict(os.environ)
    env.update({"NUMBA_NUM_THREADS": "1", "OMP_WAIT_POLICY": "passive"})
    return env


class Launch:
    """An MPI job started in its own session; ``finish()`` waits at most ``limit``
    seconds, then kills the session, and records the processes of the job still alive
    (found by a marker in their environment) in ``left`` before killing those too."""

    def __init__(self, n, args, deadline, limit, python_args=()):
        self.marker = uuid.uuid4().hex
        env = _mpi_env()
        env.update({"MXOPT_DIST_TIMEOUT": str(deadline), "MXOPT_TEST_JOB": self.marker})
        self.limit = limit
        self.started = time.monotonic()
        self.proc = subprocess.Popen([str(MPIEXEC), "-n", str(n), sys.executable, *python_args, *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                     start_new_session=True)

    def finish(self):
        try:
            remaining = max(1.0, self.limit - (time.monotonic() - self.started))
            self.stdout, self.stderr = self.proc.communicate(timeout=remaining)
            self.returncode = self.proc.returncode
        except subprocess.TimeoutExpired:
            self.returncode = None              # still running at the limit
            self.stdout = self.stderr = ""
        finally:
            # the launcher has exited (or hit the limit): its processes may take a
            # moment to go, but none may stay
            until = time.monotonic() + 5.0
            self.left = _job_processes(self.marker)
            while self.left and time.monotonic() < until:
                time.sleep(0.1)
                self.left = _job_processes(self.marker)
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if self.returncode is None:
                self.stdout, self.stderr = self.proc.communicate()
            for pid in self.left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        return self


def launch(n, args, deadline, limit, python_args=()):
    return Launch(n, args, deadline, limit, python_args).finish()


def _job_processes(marker):
    """Pids of live processes whose environment holds ``MXOPT_TEST_JOB=marker``."""
    needle = ("MXOPT_TEST_JOB=%s" % marker).encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as f:
                if needle in f.read().split(b"\0"):
                    with open("/proc/%s/stat" % entry) as g:
                        if g.read().rsplit(")", 1)[1].split()[0] != "Z":
                            found.append(int(entry))
        except OSError:
            continue
    return found


def _need_mpi():
    pytest.importorskip("mpi4py")
    if not MPIEXEC.exists():
        pytest.skip("no mpiexec next to %s (pip install mpich)" % sys.executable)


@pytest.fixture(scope="module")
def worker_folder(tmp_path_factory):
    """One folder for the worker runs at every size, so each run finds the shards of
    the one before (saved for another number of processes) under its names."""
    return tmp_path_factory.mktemp("mpi")


@pytest.fixture(scope="module", params=[2, 3, 4])
def mpi_report(request, worker_folder):
    _need_mpi()
    out = launch(request.param, [str(HERE / "dist_worker.py"), str(worker_folder)], deadline=60, limit=240)
    assert "DONE" in out.stdout, "worker failed at %d processes (rc %s)\n%s\n%s" % (
        request.param, out.returncode, out.stdout, out.stderr[-4000:])
    assert not out.left, out.left
    return out


MPI_CHECKS = ["collectives", "elementwise_bitwise", "float64_and_mixed_dtypes", "multi_precision",
              "layerwise_params", "layerwise_elements", "broadcast_and_random_sync", "memory_halved",
              "stale_gradients", "checkpoint_same_n", "checkpoint_other_n", "checkpoint_errors",
              "checkpoint_stale_shards"]


@pytest.mark.parametrize("check", MPI_CHECKS)
def test_mpi(mpi_report, check):
    line = re.search(r"^(PASS|FAIL) %s\b.*$" % check, mpi_report.stdout, flags=re.M)
    assert line, "no result for %s:\n%s\n%s" % (check, mpi_report.stdout, mpi_report.stderr[-4000:])
    assert line.group(1) == "PASS", "%s\n%s" % (line.group(0), mpi_report.stderr[-4000:])


def test_mpi_worker_runs_every_check():
    import dist_worker
    assert sorted(dist_worker.CHECKS) == sorted(MPI_CHECKS)


def test_train_distributed_cli():
    _need_mpi()
    pytest.importorskip("sklearn")
    args = ["train", "--epochs", "2", "--no-progress", "--optimizer", "adam", "--lr", "0.003"]
    out = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, "-m", "mxopt_numba", *args,
                          "--distributed", "--shard-states", "--timeout", "60"],
                         capture_output=True, text=True, timeout=120, env=_mpi_env())
    assert out.returncode == 0, out.stderr[-4000:]
    assert "distributed: 2 processes" in out.stdout and "optimizer state sharded" in out.stdout
    assert len(re.findall(r"^test accuracy", out.stdout, flags=re.M)) == 1     # rank 0 prints
    acc = float(re.search(r"^test accuracy: ([0-9.]+)", out.stdout, flags=re.M).group(1))
    single = subprocess.run([sys.executable, "-m", "mxopt_numba", *args], capture_output=True, text=True,
                            timeout=120, env=_mpi_env())
    solo = float(re.search(r"^test accuracy: ([0-9.]+)", single.stdout, flags=re.M).group(1))
    assert acc > 0.85 and abs(acc - solo) < 0.03, (acc, solo)


def test_train_shard_states_needs_distributed(capsys):
    pytest.importorskip("sklearn")
    from mxopt_numba import __main__ as cli
    assert cli.main(["train", "--shard-states", "--epochs", "1"]) == 2
    assert "--shard-states needs --distributed" in capsys.readouterr().err
    assert cli.main(["train", "--timeout", "5", "--epochs", "1"]) == 2
    assert "--timeout needs --distributed" in capsys.readouterr().err


def test_timeout_setting(monkeypatch):
    monkeypatch.delenv("MXOPT_DIST_TIMEOUT", raising=False)
    assert distributed._resolve_timeout(None) == 300.0
    assert distributed._resolve_timeout(2) == 2.0
    monkeypatch.setenv("MXOPT_DIST_TIMEOUT", "12.5")
    assert distributed._resolve_timeout(None) == 12.5
    monkeypatch.setenv("MXOPT_DIST_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="MXOPT_DIST_TIMEOUT must be a number of seconds, got 'soon'"):
        distributed._resolve_timeout(None)
    for bad in (0, -1, float("nan"), True, "5"):
        with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
            distributed._resolve_timeout(bad)
    with pytest.raises(ValueError, match="timeout must be a positive"):
        distributed.DistributedTrainer(make_params(), "sgd", communicator=SINGLE, timeout=0)


def test_join_on_threads_matches_the_summed_reference():
    """Rank 1 runs out of data after 2 of 4 steps; inside join() it shadows the last two:
    every rank ends with the weights of one Trainer fed the sum of the gradients of the
    ranks that still had data (3 thread-ranks, sums in rank order: bitwise)."""
    size, steps = 3, 4
    rng = np.random.default_rng(11)
    grads = [[[rng.standard_normal(s).astype(np.float32) for _, s in SHAPES] for _ in range(steps)]
             for _ in range(size)]
    mine = {0: steps, 1: 2, 2: steps}
    ref = make_params()
    trainer = mxo.Trainer(ref, "adam", {"wd": 0.01})
    for k in range(steps):
        for j, p in enumerate(ref):
            acc = None
            for r in range(size):
                if k < mine[r]:
                    acc = grads[r][k][j] if acc is None else acc + grads[r][k][j]
            # a shadowing rank adds zeros, which leaves the rank-order sum unchanged
            p.grad[...] = acc
        trainer.step(6)

    def rank_fn(comm):
        params = make_params(seed=comm.rank)
        t = distributed.DistributedTrainer(params, "adam", {"wd": 0.01}, communicator=comm,
                                           shard_states=True)
        with t.join():
            for k in range(mine[comm.rank]):
                for p, g in zip(params, grads[comm.rank][k]):
                    p.grad[...] = g
                t.step(6)
        return [p.data.copy() for p in params]
    results = run_ranks(size, rank_fn)
    for got in results:
        assert_bitwise(got, [p.data for p in ref])


def test_skipped_step_without_join_is_refused_on_every_rank():
    """Steps counted differently (a rank called step() twice for one batch of the
    others): the agreement names the step counters, on every rank."""
    def rank_fn(comm):
        params = make_params()
        t = distributed.DistributedTrainer(params, "sgd", communicator=comm)
        for p in params:
            p.grad[...] = 1.0
        t.step(2)
        if comm.rank == 1:
            t._steps += 1           # as if it had stepped once alone
        for p in params:
            p.grad[...] = 1.0
        try:
            t.step(2)
        except distributed.DistributedError as exc:
            return str(exc)
        return None
    for text in run_ranks(2, rank_fn):
        assert text and "step counter differs: process 0 at step 2, process 1 at step 3" in text, text


# ---------------------------------------------------------------------- faults (mpiexec -n 2, 3)

#: the collective deadline of the faulty jobs (MXOPT_DIST_TIMEOUT)
DEADLINE = 10
#: what a job may take beyond the deadline: starting 2-3 interpreters that import numba on
#: a busy 2-core machine, the peers' answers, the abort
MARGIN = 20
FAULTS = ["exception", "exit", "stall", "uneven", "skip", "exception_sharded", "skip_sharded",
          "extra_collective", "kill"]
SIZES = [2, 3]


@pytest.fixture(scope="module")
def fault_runs():
    """Every faulty job at 2 and 3 processes: the stalled ones start first and wait out
    their deadline while the others run one after the other."""
    _need_mpi()
    jobs = {}
    script = str(HERE / "dist_faults.py")
    try:
        for n in SIZES:
            for name in ("stall", "other_collective"):
                jobs[name, n] = Launch(n, [script, name], DEADLINE, DEADLINE + MARGIN + 30)
        for name in FAULTS:
            for n in SIZES:
                if name not in ("stall", "other_collective"):
                    jobs[name, n] = Launch(n, [script, name], DEADLINE, DEADLINE + MARGIN).finish()
        jobs["mpi4py", 2] = Launch(2, [script, "exception"], DEADLINE, DEADLINE + MARGIN,
                                   python_args=("-m", "mpi4py")).finish()
    finally:
        for job in jobs.values():
            if not hasattr(job, "left"):
                job.finish()
    return jobs


def _lines(text, pattern):
    return re.findall(pattern, text, flags=re.M)


def _ended_with_error(job, what):
    assert job.returncode is not None, "%s: still running after %d s\n%s" % (what, job.limit, job.stderr[-3000:])
    assert job.returncode != 0, "%s: exit status 0\n%s" % (what, job.stderr[-3000:])
    assert not job.left, "%s: processes left behind: %s" % (what, job.left)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", ["exception", "exception_sharded"])
def test_uncaught_exception_aborts_the_job(fault_runs, name, n):
    job = fault_runs[name, n]
    _ended_with_error(job, name)
    assert "Traceback" in job.stderr and "ValueError: could not broadcast" in job.stderr
    # the others were waiting in step 5's agreement: one line each naming the faulty rank
    named = _lines(job.stderr, r"^mxopt_numba\.distributed \[rank (\d)\]: process %d failed .*ValueError" % (n - 1))
    assert named and set(named) <= {str(r) for r in range(n - 1)}, job.stderr[-3000:]
    assert "step 4" in job.stdout


def test_exception_under_python_m_mpi4py(fault_runs):
    """mpi4py's own excepthook (which aborts) is chained: the job still ends."""
    job = fault_runs["mpi4py", 2]
    _ended_with_error(job, "python -m mpi4py")
    assert "ValueError: could not broadcast" in job.stderr


@pytest.mark.parametrize("n", SIZES)
def test_sys_exit_on_one_rank_aborts_the_job(fault_runs, n):
    job = fault_runs["exit", n]
    _ended_with_error(job, "exit")
    assert _lines(job.stderr, r"^mxopt_numba\.distributed \[rank \d\]: process %d left the job .* while this "
                              r"process waits for it in step agreement \(allreduce\) of step 5" % (n - 1)), \
        job.stderr[-3000:]


@pytest.mark.parametrize("n", SIZES)
def test_killed_rank_ends_the_job(fault_runs, n):
    """SIGKILL: the launcher itself ends the job (nothing of ours runs in that process)."""
    _ended_with_error(fault_runs["kill", n], "kill")


@pytest.mark.parametrize("n", SIZES)
def test_stalled_rank_times_out_everywhere(fault_runs, n):
    job = fault_runs["stall", n]
    _ended_with_error(job, "stall")
    errors = _lines(job.stderr, r"^mxopt_numba\.distributed\.DistributedTimeoutError: (.*)$")
    assert len(errors) == n - 1, job.stderr[-3000:]           # every live rank raises
    for text in errors:
        assert text.startswith("step agreement (allreduce) of step 5 did not complete within %d s" % DEADLINE)
        assert "process(es) %d did not arrive (process %d did not answer)" % (n - 1, n - 1) in text


@pytest.mark.parametrize("n", SIZES)
def test_rank_in_another_collective_is_named(fault_runs, n):
    """The faulty rank calls a barrier the others never call while they wait in step
    5's agreement (its own channel, so the two never pair): at the deadline each side
    names the other and where it is."""
    job = fault_runs["other_collective", n]
    _ended_with_error(job, "other_collective")
    errors = _lines(job.stderr, r"^mxopt_numba\.distributed\.DistributedTimeoutError: (.*)$")
    assert len(errors) == n, job.stderr[-3000:]
    waiting = [e for e in errors if e.startswith("step agreement (allreduce) of step 5")]
    assert len(waiting) == n - 1, errors
    for text in waiting:
        assert "process(es) %d did not arrive (process %d is in barrier of step 4)" % (n - 1, n - 1) in text
    lone = [e for e in errors if e.startswith("barrier of step 4")]
    assert len(lone) == 1 and "did not arrive" in lone[0] and "step agreement (allreduce) of step 5" in lone[0]


@pytest.mark.parametrize("n", SIZES)
def test_collective_after_a_rank_left_is_an_error(fault_runs, n):
    """All ranks take the 10 steps; the faulty one exits, the others call one more
    collective: they report that it left instead of waiting for the deadline."""
    job = fault_runs["extra_collective", n]
    _ended_with_error(job, "extra_collective")
    assert _lines(job.stderr, r"^mxopt_numba\.distributed \[rank \d\]: process %d left the job .*barrier"
                  % (n - 1)), job.stderr[-3000:]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", ["uneven", "skip", "skip_sharded"])
def test_fewer_steps_on_one_rank_is_an_error(fault_runs, name, n):
    """One rank takes 9 steps (out of data, or it skipped one), the others 10."""
    job = fault_runs[name, n]
    _ended_with_error(job, name)
    assert _lines(job.stderr, r"^mxopt_numba\.distributed \[rank \d\]: process %d left the job \(exited after "
                              r"\d+ collectives, its last step 9\) while this process waits for it in step "
                              r"agreement \(allreduce\) of step 10" % (n - 1)), job.stderr[-3000:]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("shard", [False, True])
def test_join_handles_uneven_inputs(n, shard):
    """Inside join() the rank with 9 batches shadows the 10th step of the others: the
    job ends cleanly, every replica holds the same weights, and they are those of a
    single process fed, at every step, the sum of the gradients of the ranks that
    still had data."""
    _need_mpi()
    job = launch(n, [str(HERE / "dist_faults.py"), "join_sharded" if shard else "join"], DEADLINE,
                 DEADLINE + MARGIN)
    assert job.returncode == 0, job.stderr[-3000:]
    assert not job.left
    assert sorted(_lines(job.stdout, r"^finished (\d+) steps$")) == ["10"] * (n - 1) + ["9"]
    assert len(_lines(job.stdout, r"^joined run matches the reference$")) == n, job.stdout[-2000:]


@pytest.mark.parametrize("n", SIZES)
def test_settings_mismatch_is_named_on_every_rank(n):
    """learning_rate, beta1, wd, clip_gradient, rescale_grad differing at construction,
    and learning_rate, beta1, wd, clip_gradient, lr_mult, wd_mult and the batch size
    changed on one rank during the run: an error on every rank naming the field and
    the values, and the refused step changes no weight."""
    _need_mpi()
    job = launch(n, [str(HERE / "dist_faults.py"), "mismatch"], DEADLINE, DEADLINE + MARGIN + 20)
    assert job.returncode == 0 and not job.left, job.stderr[-3000:]
    assert len(_lines(job.stdout, r"^DONE$")) == n, job.stdout[-3000:]
    assert not _lines(job.stdout, r"^FAIL"), job.stdout
    import dist_faults
    expected = [f + " (construction)" for f, _, kw in dist_faults.MISMATCHES if kw is not None] + \
               [f + " (during the run)" for f, change, _ in dist_faults.MISMATCHES if change is not None]
    assert {"learning_rate", "beta1", "wd", "clip_gradient", "rescale_grad", "batch_size"} <= \
        {f for f, _, _ in dist_faults.MISMATCHES}
    for what in expected:
        for rank in range(n):
            line = _lines(job.stdout, r"^PASS %s \[rank %d\]: (.*)$" % (re.escape(what), rank))
            assert line, (what, rank, job.stdout[-3000:])
            field = what.split(" (")[0]
            assert re.search(r"%s differs: process 0: .*, process %d: " % (re.escape(field), n - 1), line[0]), line
