"""Checks of mxopt_numba.distributed run on several processes:

    mpiexec -n 2 python tests/dist_worker.py TMPDIR [CHECK ...]

Every process runs every check; rank 0 prints one line per check, ``PASS name`` or
``FAIL name: what failed on which process``, then ``DONE``.  The reference of every
comparison is a single-process Trainer fed the summed gradient of all processes, computed
locally on each process (all gradients come from one seeded generator).

What is compared follows the module's promise: on 2 processes a sum is ``a + b`` and the
results are bitwise those of the reference; on more processes the communicator adds in
its own order, so results agree with the reference to the rounding of that sum
(``SUM_ORDER_ULPS``), and every process must still hold exactly the same bits.

    mpiexec -n 2 python tests/dist_worker.py --bench [--modes zero1|dp] [--optimizer adam] [--steps 10]
    mpiexec -n 2 python tests/dist_worker.py --bench-collectives

times DistributedTrainer steps on the ResNet-50 shapes with the checks on and off, and
reports the memory per process (see ``bench``); the second compares MPI's reductions
with the pairwise exchange (see ``bench_collectives``).
"""
import argparse
import os
import sys
import time
import traceback

import ml_dtypes
import numpy as np

import mxopt_numba as mxo
from mxopt_numba import distributed
from mxopt_numba._state_io import StateFormatError
from mxopt_numba.optimizer.optimizer import state_leaves

BF16 = np.dtype(ml_dtypes.bfloat16)

#: shapes whose sizes do not divide evenly, so the element ranges cut parameters
SHAPES = [("conv_weight", (4, 3, 3, 3)), ("conv_bias", (4,)), ("fc_weight", (7, 5)),
          ("bn_gamma", (9,)), ("bn_beta", (9,)), ("out_weight", (3, 13)), ("out_bias", (3,))]

ELEMENTWISE = [("sgd", {"momentum": 0.9, "wd": 1e-3}), ("nag", {"momentum": 0.8}),
               ("signum", {"momentum": 0.9, "wd_lh": 0.01}), ("adam", {"wd": 1e-3, "clip_gradient": 0.5}),
               ("adamw", {"wd": 0.01}), ("adabelief", {}), ("adamax", {}), ("nadam", {}),
               ("adadelta", {}), ("adagrad", {}), ("rmsprop", {"centered": True}), ("ftrl", {}),
               ("ftml", {}), ("dcasgd", {"momentum": 0.5}), ("test", {}), ("sgd", {"lr_scheduler": "f"})]


#: on more than 2 processes: largest |result - reference| / max(1, |reference|), in units
#: of the weight dtype's epsilon (rounding of a float sum taken in another order, carried
#: through a few optimizer steps)
SUM_ORDER_ULPS = 8


def exact(comm):
    """Bitwise comparisons with the rank-order reference hold (2 processes: a + b)."""
    return comm.size <= 2


def close(a, b, dtype=None):
    """``a`` stands for ``b``: bitwise, or within SUM_ORDER_ULPS (see ``exact``)."""
    dtype = np.dtype(dtype or b.dtype)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    eps = float(ml_dtypes.finfo(dtype).eps)
    return bool(np.all(np.abs(a64 - b64) <= SUM_ORDER_ULPS * eps * np.maximum(1.0, np.abs(b64))))


def same_everywhere(comm, arrays):
    """Every process holds the same bits in ``arrays`` (a collective)."""
    mine = b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)
    every = comm.allgather_object(mine)
    return all(e == every[0] for e in every)


def make_params(dtypes=(np.float32,), seed=0, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    out = []
    for k, (name, shape) in enumerate(shapes):
        dtype = dtypes[k % len(dtypes)]
        p = mxo.Parameter(name, rng.standard_normal(shape).astype(dtype))
        p.lr_mult = (1.0, 0.5, 2.0)[k % 3]
        p.wd_mult = (1.0, 0.0, 3.0)[k % 3]
        out.append(p)
    return out


def opt_kwargs(kwargs):
    kwargs = dict(kwargs)
    if kwargs.get("lr_scheduler") == "f":
        kwargs["lr_scheduler"] = mxo.lr_scheduler.FactorScheduler(step=2, factor=0.5, base_lr=0.1)
    return kwargs


class Pair:
    """A DistributedTrainer and its single-process reference on copies of the same
    parameters; ``step()`` feeds both from the same generator."""

    def __init__(self, comm, name, kwargs, dtypes=(np.float32,), shapes=SHAPES, seed=0, **dist_kw):
        self.comm = comm
        self.dist_params = make_params(dtypes, seed + 100 * comm.rank, shapes)   # broadcast fixes this
        self.ref_params = make_params(dtypes, seed, shapes)
        self.dist = distributed.DistributedTrainer(self.dist_params, name, opt_kwargs(kwargs),
                                                   communicator=comm, **dist_kw)
        self.ref = mxo.Trainer(self.ref_params, name, opt_kwargs(kwargs))
        self.rng = np.random.default_rng(seed + 1)

    def grads(self):
        """Per-process gradients of one step: ``out[r][k]`` (in each parameter's grad dtype)."""
        return [[self.rng.standard_normal(p.shape).astype(p.grad.dtype) for p in self.ref_params]
                for _ in range(self.comm.size)]

    def step(self, n=1, batch=8):
        for _ in range(n):
            per_rank = self.grads()
            for k, (dp, rp) in enumerate(zip(self.dist_params, self.ref_params)):
                dp.grad[...] = per_rank[self.comm.rank][k]
                total = per_rank[0][k]
                for r in range(1, self.comm.size):
                    total = total + per_rank[r][k]
                rp.grad[...] = total
            self.dist.step(batch)
            self.ref.step(batch)
        assert same_everywhere(self.comm, [p.data for p in self.dist_params]), "replicas differ"

    def max_diff(self):
        """Largest |dist - ref| / max(1, |ref|) over every weight."""
        worst = 0.0
        for dp, rp in zip(self.dist_params, self.ref_params):
            a, b = dp.data.astype(np.float64), rp.data.astype(np.float64)
            worst = max(worst, float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b)))))
        return worst

    def mismatch(self):
        """Names of the parameters whose weights do not stand for the reference's: not
        bitwise equal on 2 processes, not within SUM_ORDER_ULPS on more."""
        if exact(self.comm):
            return [dp.name for dp, rp in zip(self.dist_params, self.ref_params)
                    if dp.data.tobytes() != rp.data.tobytes()]
        return [dp.name for dp, rp in zip(self.dist_params, self.ref_params) if not close(dp.data, rp.data)]


# ---------------------------------------------------------------------- checks

def pairwise(comm):
    """The same processes, every sum through the pairwise exchange (tiny buffers too)."""
    return distributed.MPICommunicator(comm.comm, pairwise_above=1)


def check_collectives(comm, tmp):
    """Every collective against sums computed locally, through MPI's own reductions and
    the pairwise exchange (whole blocks, and blocks in chunks of 3 elements), for every
    dtype, even and uneven blocks."""
    size, rank = comm.size, comm.rank
    chunked = pairwise(comm)
    chunked.PAIRWISE_CHUNK = 3          # blocks cut into many messages, the last one short
    for c in (comm, pairwise(comm), chunked):
        for dtype in (np.float32, np.float64, np.float16, BF16):
            for n in (1, 7, 1000):
                data = [np.random.default_rng(r).standard_normal(n).astype(dtype) for r in range(size)]
                want = data[0].astype(np.float32) if dtype in (np.float16, BF16) else data[0].copy()
                for d in data[1:]:
                    want = want + d
                want = want.astype(dtype)
                a = data[rank].copy()
                c.allreduce(a)
                assert a.tobytes() == want.tobytes() if exact(comm) else close(a, want), ("allreduce", dtype, n)
                assert same_everywhere(comm, [a]), ("allreduce differs between processes", dtype, n)
                for counts in (distributed._even_counts(n, size), [n] + [0] * (size - 1)):
                    lo = sum(counts[:rank])
                    recv = np.empty(counts[rank], dtype)
                    c.reduce_scatter(data[rank], recv, counts)
                    block = want[lo:lo + counts[rank]]
                    assert recv.tobytes() == block.tobytes() if exact(comm) else close(recv, block), \
                        ("reduce_scatter", dtype, counts)
                    buf = np.zeros(n, dtype)
                    buf[lo:lo + counts[rank]] = data[rank][lo:lo + counts[rank]]
                    c.allgather(buf, counts)
                    expect = np.concatenate([data[r][sum(counts[:r]):sum(counts[:r + 1])]
                                             for r in range(size)])
                    assert buf.tobytes() == expect.tobytes(), ("allgather", dtype, counts)
                b = data[rank].copy()
                c.broadcast([b], root=size - 1)
                assert b.tobytes() == data[size - 1].tobytes()
        flags = np.array([rank, -rank], dtype=np.int32)
        c.allreduce(flags, op="max")
        assert flags.tolist() == [size - 1, 0]
    assert comm.allgather_object(rank) == list(range(size))
    assert comm.broadcast_object("x%d" % rank, root=1) == "x1"
    comm.barrier()


def check_elementwise_bitwise(comm, tmp):
    """Every element-wise rule, float32, with and without sharding: bitwise equal on 2
    processes, within the sum's rounding on more (the first four also through the
    pairwise exchange)."""
    bad = []
    runs = [(name, kwargs, shard, comm) for name, kwargs in ELEMENTWISE for shard in (False, True)]
    exchange = pairwise(comm)
    runs += [(name, kwargs, shard, exchange) for name, kwargs in ELEMENTWISE[:4] for shard in (False, True)]
    for name, kwargs, shard, c in runs:
        pair = Pair(c, name, kwargs, shard_states=shard)
        if shard and pair.dist.partition != "elements":
            bad.append("%s partition %s" % (name, pair.dist.partition))
        pair.step(3)
        if pair.mismatch():
            bad.append("%s shard=%s %s: %s (max rel diff %.3g)" % (
                name, shard, type(c).__name__, pair.mismatch(), pair.max_diff()))
    assert not bad, "; ".join(bad)


def check_float64_and_mixed_dtypes(comm, tmp):
    """float32 and float64 parameters in one model: two flat buffers, still bitwise."""
    for shard in (False, True):
        pair = Pair(comm, "adam", {"wd": 0.01}, dtypes=(np.float32, np.float64), shard_states=shard)
        assert len(pair.dist.bounds or {0: 0, 1: 1}) == 2
        pair.step(3)
        assert not pair.mismatch(), pair.mismatch()


def check_multi_precision(comm, tmp):
    """float16 and bfloat16 weights with float32 master shards: bitwise equal, and the
    master copies exist only for the pieces."""
    for dtype in (np.float16, BF16):
        for name in ("adam", "sgd"):
            kwargs = {"multi_precision": True}
            if name == "sgd":
                kwargs["momentum"] = 0.9
            pair = Pair(comm, name, kwargs, dtypes=(dtype,), shard_states=True)
            pair.step(3)
            assert not pair.mismatch(), (dtype, name, pair.mismatch())
            total = sum(comm.allgather_object(pair.dist.optimizer_state_nbytes()))
            assert total == state_nbytes(pair.ref), (total, state_nbytes(pair.ref))
    # float16 without multi_precision (float16 states), unsharded and sharded
    for shard in (False, True):
        pair = Pair(comm, "adam", {}, dtypes=(np.float16,), shard_states=shard)
        pair.step(2)
        assert not pair.mismatch(), pair.mismatch()


def check_layerwise_params(comm, tmp):
    """LARS/LAMB/LANS/LBSGD with whole tensors per process: bitwise equal (a tensor's sums
    do not depend on which tensors share its launch)."""
    cases = [("lamb", {"wd": 0.01}), ("lars", {"momentum": 0.9, "wd": 1e-4}), ("lans", {}),
             ("lbsgd", {"warmup_strategy": "lars", "momentum": 0.9}), ("groupadagrad", {})]
    for name, kwargs in cases:
        shapes = [s for s in SHAPES if len(s[1]) == 2] if name == "groupadagrad" else SHAPES
        for shard in (False, True):
            pair = Pair(comm, name, kwargs, shapes=shapes, shard_states=shard, partition="params")
            pair.step(3)
            assert not pair.mismatch(), (name, shard, pair.mismatch(), pair.max_diff())
        # every tensor on exactly one process
        owned = comm.allgather_object([p.index for p in pair.dist._pieces if p.weight.size])
        assert sorted(sum(owned, [])) == list(range(len(shapes))), owned


#: norm-based rules on cut tensors: the norms are sums of per-process float64 partial
#: sums, so a weight may move by an ulp or so now and then
LAYERWISE_RTOL = 1e-6


def check_layerwise_elements(comm, tmp):
    """LARS/LAMB/LANS/LBSGD on element ranges (tensors cut between processes) through the
    norm_reducer hook: within LAYERWISE_RTOL of the single-process run."""
    big = SHAPES + [("big_weight", (300, 257))]      # several blocks of the sum kernels, cut
    cases = [("lamb", {"wd": 0.01}), ("lars", {"momentum": 0.9, "wd": 1e-4}), ("lans", {}),
             ("lbsgd", {"warmup_strategy": "lars", "momentum": 0.9}),
             ("lamb", {"multi_precision": True, "dtypes": (np.float16,)}),
             ("lamb", {"shapes": big}), ("lans", {"shapes": big})]
    for name, kwargs in cases:
        kwargs = dict(kwargs)
        dtypes = kwargs.pop("dtypes", (np.float32,))
        shapes = kwargs.pop("shapes", SHAPES)
        pair = Pair(comm, name, kwargs, dtypes=dtypes, shapes=shapes, shard_states=True)
        assert pair.dist.partition == "elements"
        cut = [p.index for p in pair.dist._pieces if 0 < p.weight.size < pair.dist_params[p.index].data.size]
        assert cut, "no parameter is cut"
        pair.step(3)
        tol = LAYERWISE_RTOL if dtypes[0] == np.float32 else 2e-3     # one float16 ulp
        assert pair.max_diff() <= tol, (name, pair.max_diff())
        assert pair.dist.timings["norms"] > 0
    return "norms summed across processes by launch_sums"


def check_broadcast_and_random_sync(comm, tmp):
    """Different initial weights per process: rank 0's win; SGLD replicas draw the same
    noise without sharding; SGLD refuses sharding."""
    mxo.random.seed(1000 + comm.rank)
    params = make_params(seed=comm.rank)
    trainer = distributed.DistributedTrainer(params, "sgld", {"learning_rate": 0.01}, communicator=comm)
    ref = make_params(seed=0)
    assert all(np.array_equal(p.data, q.data) for p, q in zip(params, ref))
    for p in params:
        p.grad[...] = 1.0
    trainer.step(4)
    every = comm.allgather_object([p.data.tobytes() for p in params])
    assert all(e == every[0] for e in every), "SGLD replicas diverged"
    try:
        distributed.DistributedTrainer(make_params(), "sgld", communicator=comm, shard_states=True)
    except ValueError as exc:
        assert "noise" in str(exc)
    else:
        raise AssertionError("SGLD with shard_states did not raise")


def check_memory_halved(comm, tmp):
    """Adam's state per process is 1/size of the single-process state (within one
    parameter's worth for partition='params')."""
    for partition in ("elements", "params"):
        pair = Pair(comm, "adam", {}, shard_states=True, partition=partition)
        pair.step(1)
        single = state_nbytes(pair.ref)
        every = comm.allgather_object(pair.dist.optimizer_state_nbytes())
        assert sum(every) == single, (every, single)
        if partition == "elements":
            assert max(every) <= single / comm.size + 8 * 2, (every, single)


def check_stale_gradients(comm, tmp):
    """Stale gradients: the usual error, skipping with ignore_stale_grad, and an error on
    every process when only some processes wrote a gradient."""
    for shard in (False, True):
        pair = Pair(comm, "adam", {}, shard_states=shard)
        pair.step(1)
        try:
            pair.dist.step(8)
        except UserWarning as exc:
            assert "not written" in str(exc)
        else:
            raise AssertionError("stale step did not raise")
        before = [p.data.copy() for p in pair.dist_params]
        for p in pair.dist_params[1:]:
            p.grad[...] = 0.5
        pair.dist.step(8, ignore_stale_grad=True)
        assert np.array_equal(pair.dist_params[0].data, before[0])
        assert not np.array_equal(pair.dist_params[1].data, before[1])
        if comm.rank == 0:
            pair.dist_params[0].grad[...] = 1.0
        for p in pair.dist_params[1:]:
            p.grad[...] = 1.0
        try:
            pair.dist.step(8)
        except RuntimeError as exc:
            assert "some processes" in str(exc)
        else:
            raise AssertionError("mixed freshness did not raise")


def state_nbytes(trainer):
    """Optimizer-state bytes of a (single-process) Trainer."""
    return sum(leaf.nbytes for s in trainer._updater.states.values() for leaf in state_leaves(s))


def check_checkpoint_same_n(comm, tmp):
    """Save after 3 steps, run 2 more; a new trainer from the saved weights and states
    runs the same 2 steps bitwise identically (Adam fp32, Adam fp16 multi-precision,
    LARS with a scheduler)."""
    cases = [("adam", {}, (np.float32,), "elements"),
             ("adam", {"multi_precision": True}, (np.float16,), "elements"),
             ("lars", {"momentum": 0.9, "lr_scheduler": "f"}, (np.float32,), "params")]
    for k, (name, kwargs, dtypes, partition) in enumerate(cases):
        pair = Pair(comm, name, kwargs, dtypes=dtypes, shard_states=True, partition=partition)
        pair.step(3)
        fname = os.path.join(tmp, "same%d.states" % k)
        pair.dist.save_states(fname)
        # one process looks, every process checks: no process may raise alone while the
        # others go on to the next collective
        files = comm.broadcast_object(listing(tmp, "same%d" % k) if comm.rank == 0 else None)
        assert files == ["same%d.states" % k] + ["same%d.states.%d-of-%d" % (k, r, comm.size)
                                                 for r in range(comm.size)], files
        weights = [p.data.copy() for p in pair.dist_params]
        rng_state = pair.rng.bit_generator.state
        pair.step(2)
        after = [p.data.copy() for p in pair.dist_params]
        other = Pair(comm, name, kwargs, dtypes=dtypes, shard_states=True, partition=partition)
        for p, w in zip(other.dist_params, weights):
            p.data[...] = w
        other.dist.load_states(fname)
        other.rng.bit_generator.state = rng_state
        other.step(2)
        for p, w in zip(other.dist_params, after):    # the same sums in the same order
            assert p.data.tobytes() == w.tobytes(), (name, p.name)


def listing(folder, prefix):
    return sorted(f for f in os.listdir(folder) if f.startswith(prefix))


def check_checkpoint_stale_shards(comm, tmp):
    """Saving under a name that holds the shards of a save on another number of
    processes (and a plain file's name) leaves exactly the new checkpoint's files, which
    load; a sharded save over a plain one and back again too."""
    fname = os.path.join(tmp, "stale.states")
    if comm.rank == 0:          # what a save on size + 1 and on 1 process left behind
        for n in (comm.size + 1, 1):
            for r in range(n):
                with open("%s.%d-of-%d" % (fname, r, n), "wb") as f:
                    f.write(b"old shard")
        with open(fname + ".1-of-2x", "wb") as f:          # not a shard name: kept
            f.write(b"other")
    comm.barrier()
    pair = Pair(comm, "adam", {}, shard_states=True)
    pair.step(2)
    pair.dist.save_states(fname)
    files = comm.broadcast_object(listing(tmp, "stale.") if comm.rank == 0 else None)
    want = ["stale.states"] + ["stale.states.%d-of-%d" % (r, comm.size) for r in range(comm.size)] \
        + ["stale.states.1-of-2x"]
    assert files == sorted(want), files
    states = dict(pair.dist._updater.states)
    other = Pair(comm, "adam", {}, shard_states=True)
    other.dist.load_states(fname)
    assert sorted(other.dist._updater.states) == sorted(states)
    # the same name without sharding: one plain file, no shards left
    plain = Pair(comm, "adam", {}, shard_states=False)
    plain.step(1)
    plain.dist.save_states(fname)
    files = comm.broadcast_object(listing(tmp, "stale.") if comm.rank == 0 else None)
    assert files == ["stale.states", "stale.states.1-of-2x"], files


def check_checkpoint_other_n(comm, tmp):
    """A checkpoint of all processes continues on 1 process (sharded and not) like the
    run on all of them (bitwise on 2 processes, see ``exact``); a 1-process checkpoint and
    a plain Trainer file load on all processes."""
    pair = Pair(comm, "adam", {"wd": 1e-3}, shard_states=True)
    pair.step(3)
    fname = os.path.join(tmp, "two.states")
    pair.dist.save_states(fname)
    weights = [p.data.copy() for p in pair.dist_params]
    rng_state = pair.rng.bit_generator.state
    pair.step(2)
    after = [p.data.copy() for p in pair.dist_params]
    single = distributed.SingleProcessCommunicator()
    for shard in (True, False):
        params = make_params()
        for p, w in zip(params, weights):
            p.data[...] = w
        solo = distributed.DistributedTrainer(params, "adam", {"wd": 1e-3}, communicator=single,
                                              shard_states=shard)
        solo.load_states(fname)
        rng = np.random.default_rng()
        rng.bit_generator.state = rng_state
        for _ in range(2):
            per_rank = [[rng.standard_normal(p.shape).astype(np.float32) for p in params]
                        for _ in range(comm.size)]
            for k, p in enumerate(params):
                total = per_rank[0][k]
                for r in range(1, comm.size):
                    total = total + per_rank[r][k]
                p.grad[...] = total
            solo.step(8)
        for p, w in zip(params, after):
            assert p.data.tobytes() == w.tobytes() if exact(comm) else close(p.data, w), \
                ("1 process, shard=%s" % shard, p.name)
    # the other way: one process saves (sharded, and a plain Trainer), every process loads
    for kind in ("solo", "plain"):
        fname = os.path.join(tmp, "%s.states" % kind)
        ref = Pair(comm, "adam", {}, shard_states=True)
        ref.step(2)
        if comm.rank == 0:
            if kind == "plain":
                ref.ref.save_states(fname)
            else:
                # a 1-process sharded trainer holding the reference's states saves them
                params = [mxo.Parameter(p.name, p.data.copy()) for p in ref.ref_params]
                solo = distributed.DistributedTrainer(params, "adam", {}, communicator=single,
                                                      shard_states=True)
                ref.ref.save_states(fname + ".plain")
                solo.load_states(fname + ".plain")
                solo.save_states(fname)
        comm.barrier()
        ref.dist.load_states(fname)
        ref.step(2)
        assert not ref.mismatch(), (kind, ref.mismatch())


def check_checkpoint_errors(comm, tmp):
    """A missing or foreign shard is an error on every process; the trainer is unchanged."""
    pair = Pair(comm, "adam", {}, shard_states=True)
    pair.step(1)
    fname = os.path.join(tmp, "err.states")
    pair.dist.save_states(fname)
    other = os.path.join(tmp, "err2.states")
    pair.dist.save_states(other)
    comm.barrier()
    if comm.rank == 0:
        os.replace(other + ".1-of-%d" % comm.size, fname + ".1-of-%d" % comm.size)
    comm.barrier()
    updater = pair.dist._updater
    try:
        pair.dist.load_states(fname)
    except StateFormatError as exc:
        assert "does not belong" in str(exc), str(exc)
    else:
        raise AssertionError("foreign shard accepted")
    assert pair.dist._updater is updater
    if comm.rank == 0:
        os.remove(fname + ".1-of-%d" % comm.size)
    comm.barrier()
    try:
        pair.dist.load_states(fname)
    except StateFormatError as exc:
        assert "missing" in str(exc), str(exc)
    else:
        raise AssertionError("missing shard accepted")
    try:
        pair.dist.load_states(os.path.join(tmp, "no-such-file"))
    except StateFormatError as exc:
        assert "No such file" in str(exc), str(exc)
    else:
        raise AssertionError("missing manifest accepted")


CHECKS = {name[len("check_"):]: fn for name, fn in sorted(globals().items()) if name.startswith("check_")}


def main(argv):
    tmp = argv[0]
    names = argv[1:] or list(CHECKS)
    comm = distributed.init("mpi")
    for name in names:
        t0 = time.perf_counter()
        error, note = None, None
        try:
            note = CHECKS[name](comm, tmp)
        except Exception as exc:
            error = "%s: %s" % (type(exc).__name__, exc)
            sys.stderr.write("[rank %d] %s\n%s" % (comm.rank, name, traceback.format_exc()))
            sys.stderr.flush()
        errors = comm.allgather_object(error)
        if comm.rank == 0:
            failed = ["process %d: %s" % (r, e) for r, e in enumerate(errors) if e is not None]
            if failed:
                print("FAIL %s: %s" % (name, "; ".join(failed)))
            else:
                print("PASS %s (%.1f s)%s" % (name, time.perf_counter() - t0,
                                              " [%s]" % note if note else ""))
            sys.stdout.flush()
    if comm.rank == 0:
        print("DONE")
    return 0


# ---------------------------------------------------------------------- benchmark

def bench(argv):
    """Step time and memory of DistributedTrainer on the ResNet-50 shapes.

    Time: steps alternate between the checks on (deadline-polled collectives, the
    settings digest in the step agreement) and off (MPI_Waitall, no digest), so both
    see the same machine load; ``overhead_pct`` compares their medians.  The step is
    split into agreement (sync), reduce, update and gather.

    Memory (per process, MiB): ``baseline`` after the JIT is warm (a tiny model
    trained first), ``peak`` the high-water mark after the steps, ``weights_grads`` the
    flat buffers, ``state`` the optimizer state; ``extra = peak - baseline -
    weights_grads`` is what the trainer adds.  The high-water mark covers the whole
    process, so only the first mode of a launch has memory figures: run one mode per
    launch to compare modes."""
    p = argparse.ArgumentParser()
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--modes", default="zero1")
    args = p.parse_args(argv)
    import json
    import resource
    from mxopt_numba import workloads

    def rss_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20

    def peak_mib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    comm = distributed.init("mpi")
    tiny = make_params()
    warm = distributed.DistributedTrainer(tiny, args.optimizer, {"aggregate_num": np.inf}, communicator=comm,
                                          shard_states=True)
    for _ in range(2):
        for q in tiny:
            q.grad[...] = 0.5
        warm.step(4)
    del warm, tiny
    baseline = rss_mib()
    shapes = workloads.resnet50()
    rows = []
    for number, mode in enumerate(args.modes.split(",")):
        params = [mxo.Parameter(n, np.full(s, 0.01, np.float32)) for n, s in shapes]
        trainer = distributed.DistributedTrainer(params, args.optimizer, {"aggregate_num": np.inf},
                                                 communicator=comm, shard_states=mode == "zero1")
        sync_comm = trainer._sync_comm
        times = {True: [], False: []}
        phases = {True: distributed._new_timings(), False: distributed._new_timings()}
        for step in range(args.warmup + 2 * args.steps):
            checks = step % 2 == 0
            trainer._checks = checks
            for c in {comm, sync_comm}:
                c._poll = checks
            for k, q in enumerate(params):
                q.grad.fill(1e-3 * (k % 7 + step % 3))       # no gradient copies held
            if step == args.warmup:
                mxo.utils.wait_for_compilation()     # time the multi-threaded kernels only
            comm.barrier()
            trainer.reset_timings()
            t0 = time.perf_counter()
            trainer.step(256)
            elapsed = time.perf_counter() - t0
            if step >= args.warmup:
                times[checks].append(elapsed)
                for key, value in trainer.timings.items():
                    phases[checks][key] += value
        on, off = (float(np.median(times[c])) * 1e3 for c in (True, False))
        info = {"mode": mode, "rank": comm.rank, "size": comm.size, "on_ms": on, "off_ms": off,
                "overhead_pct": 100.0 * (on - off) / off}
        for key in ("sync", "reduce", "update", "gather"):
            info[key + "_ms"] = phases[True][key] / args.steps * 1e3
        if number == 0:
            buffers = sum(b.weight.nbytes + b.grad.nbytes for b in trainer._buckets) / 2 ** 20
            state = trainer.optimizer_state_nbytes() / 2 ** 20
            peak = peak_mib()
            info.update({"baseline_MiB": baseline, "weights_grads_MiB": buffers, "state_MiB": state,
                         "peak_MiB": peak, "extra_MiB": peak - baseline - buffers,
                         "extra_over_state": (peak - baseline - buffers) / state})
        rows.append(info)
        del trainer, params
    every = comm.allgather_object(rows)
    if comm.rank == 0:
        for rs in every:
            for row in rs:
                print(json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}))
    return 0


def bench_collectives(argv):
    """Median milliseconds of a sum over all processes of the ResNet-50 gradient (25.6 M
    float32): MPI's Iallreduce / Ireduce_scatter against the pairwise exchange, both
    through MPICommunicator (deadline-polled), and MPI's blocking calls."""
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=9)
    args = p.parse_args(argv)
    import json
    from mxopt_numba import workloads
    comm = distributed.init("mpi")
    mpi = comm.comm
    n = sum(int(np.prod(s)) for _, s in workloads.resnet50())
    a = np.full(n, 0.5, np.float32)
    counts = distributed._even_counts(n, comm.size)
    recv = np.empty(counts[comm.rank], np.float32)
    tuned = distributed.MPICommunicator(mpi, pairwise_above=None)
    pair = distributed.MPICommunicator(mpi, pairwise_above=1)
    cases = {"allreduce MPI blocking": lambda: mpi.Allreduce(distributed._mpi().IN_PLACE, a),
             "allreduce MPI (polled)": lambda: tuned.allreduce(a),
             "allreduce pairwise": lambda: pair.allreduce(a),
             "reduce_scatter MPI blocking": lambda: mpi.Reduce_scatter(a, recv, counts),
             "reduce_scatter MPI (polled)": lambda: tuned.reduce_scatter(a, recv, counts),
             "reduce_scatter pairwise": lambda: pair.reduce_scatter(a, recv, counts)}
    times = {k: [] for k in cases}
    for rep in range(args.repeat + 1):
        for name, fn in cases.items():          # interleaved: the same load for each
            a.fill(0.5)
            mpi.Barrier()
            t0 = time.perf_counter()
            fn()
            if rep:
                times[name].append(time.perf_counter() - t0)
    if comm.rank == 0:
        for name, ts in times.items():
            print(json.dumps({"case": name, "size": comm.size, "elements": n,
                              "median_ms": round(float(np.median(ts)) * 1e3, 1)}))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--bench"]:
        sys.exit(bench(sys.argv[2:]))
    if sys.argv[1:2] == ["--bench-collectives"]:
        sys.exit(bench_collectives(sys.argv[2:]))
    sys.exit(main(sys.argv[1:]))
