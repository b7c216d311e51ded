"""Faulty distributed runs, one scenario per launch (see tests/test_distributed.py):

    MXOPT_DIST_TIMEOUT=10 mpiexec -n 3 python tests/dist_faults.py SCENARIO

The last rank (the "faulty" one) misbehaves at step 5 of 10; every rank prints
``step k`` lines to stdout.  ``mismatch`` is not a fault of the job: it changes one
setting at a time on the faulty rank, expects an error naming it on every rank, and
prints ``PASS field`` / ``FAIL field: why`` lines, then ``DONE``.
"""
import os
import signal
import sys
import time

import numpy as np

import mxopt_numba as mxo
from mxopt_numba import distributed

SHAPES = [("conv_weight", (8, 3, 3, 3)), ("conv_bias", (8,)), ("fc_weight", (33, 17)), ("fc_bias", (33,))]
STEPS = 10
FAULT_AT = 5


def say(line):
    """One line in one write: the launcher merges the processes' output."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def make_params(seed=0):
    rng = np.random.default_rng(seed)
    return [mxo.Parameter(n, rng.standard_normal(s).astype(np.float32)) for n, s in SHAPES]


def write_grads(params, rng):
    for p in params:
        p.grad[...] = rng.standard_normal(p.shape)


def train(comm, scenario):
    faulty = comm.rank == comm.size - 1
    params = make_params()
    trainer = distributed.DistributedTrainer(params, "adam", {"learning_rate": 1e-3}, communicator=comm,
                                             shard_states=scenario.endswith("_sharded"))
    rng = np.random.default_rng(comm.rank)
    steps = STEPS - 1 if faulty and scenario.startswith(("uneven", "join")) else STEPS
    context = trainer.join() if scenario.startswith("join") else _nothing()
    with context:
        for step in range(1, steps + 1):
            write_grads(params, rng)
            if faulty and step == FAULT_AT:
                if scenario == "other_collective":
                    comm.barrier()                          # a collective the others never call
                if scenario.startswith("exception"):
                    params[0].grad[...] = np.ones((3, 8))          # wrong gradient shape
                elif scenario.startswith("exit"):
                    sys.exit(1)
                elif scenario == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                elif scenario.startswith("stall"):
                    time.sleep(600)
                elif scenario.startswith("skip"):
                    try:
                        params[0].grad[...] = np.ones((3, 8))
                    except ValueError:
                        continue
            trainer.step(8 * comm.size)
            say("step %d" % step)
    if scenario == "extra_collective" and not faulty:
        comm.barrier()                                      # the faulty rank has left
    if scenario.startswith("join"):
        every = comm.allgather_object([p.data.tobytes() for p in params])
        assert all(e == every[0] for e in every), "replicas differ"
        worst = _joined_reference_diff(comm, params)
        say("joined run matches the reference" if worst <= 8 * np.finfo(np.float32).eps else
            "joined run differs from the reference by %g" % worst)
    say("finished %d steps" % steps)


def _joined_reference_diff(comm, params):
    """Largest |weight - reference| / max(1, |reference|), the reference being one
    Trainer fed at each step the sum of the gradients of the ranks that still had data
    (the same generators, replayed; on 2 processes the sum is a + b, on more its order
    is the communicator's, hence a tolerance of a few ulp in the caller)."""
    ref = make_params()
    trainer = mxo.Trainer(ref, "adam", {"learning_rate": 1e-3})
    rngs = [np.random.default_rng(r) for r in range(comm.size)]
    scratch = make_params()
    for step in range(1, STEPS + 1):
        total = [np.zeros(p.shape, np.float32) for p in ref]
        for r, rng in enumerate(rngs):
            if r == comm.size - 1 and step == STEPS:
                continue                # the faulty rank ran out of data
            write_grads(scratch, rng)
            for t, p in zip(total, scratch):
                t += p.grad
        for p, t in zip(ref, total):
            p.grad[...] = t
        trainer.step(8 * comm.size)
    return max(float(np.max(np.abs(p.data.astype(np.float64) - q.data) / np.maximum(1.0, np.abs(q.data))))
               for p, q in zip(params, ref))


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


#: (field, how the faulty rank changes it during the run, optimizer_params at construction)
MISMATCHES = [
    ("learning_rate", lambda t: t.set_learning_rate(0.5), {"learning_rate": 0.5}),
    ("beta1", lambda t: setattr(t.optimizer, "beta1", 0.8), {"beta1": 0.8}),
    ("wd", lambda t: setattr(t.optimizer, "wd", 0.1), {"wd": 0.1}),
    ("clip_gradient", lambda t: setattr(t.optimizer, "clip_gradient", 1.0), {"clip_gradient": 1.0}),
    ("rescale_grad", None, {"rescale_grad": 2.0}),
    ("parameter lr_mult", lambda t: setattr(t.params[1], "lr_mult", 3.0), None),
    ("optimizer wd_mult", lambda t: t.optimizer.set_wd_mult({"fc_bias": 0.0}), None),
    ("batch_size", "batch", None),
]


def mismatch(comm):
    faulty = comm.rank == comm.size - 1
    rng = np.random.default_rng(comm.rank)
    for k, (field, change, kwargs) in enumerate(MISMATCHES):
        shard = k % 2 == 1
        if kwargs is not None:          # different settings at construction
            opt = {"learning_rate": 1e-3, **(kwargs if faulty else {})}
            _expect(comm, field + " (construction)", ValueError, field,
                    lambda: distributed.DistributedTrainer(make_params(), "adam", opt, communicator=comm,
                                                           shard_states=shard))
        if change is None:
            continue
        params = make_params()
        trainer = distributed.DistributedTrainer(params, "adam", {"learning_rate": 1e-3},
                                                 communicator=comm, shard_states=shard)
        for _ in range(2):
            write_grads(params, rng)
            trainer.step(8)
        batch = 8
        if faulty:
            if change == "batch":
                batch = 7
            else:
                change(trainer)
        before = [p.data.copy() for p in params]
        write_grads(params, rng)
        _expect(comm, field + " (during the run)", distributed.DistributedError, field,
                lambda: trainer.step(batch))
        if not all(np.array_equal(a, p.data) for a, p in zip(before, params)):
            say("FAIL %s: weights changed by the refused step" % field)
    say("DONE")


def _expect(comm, what, error, field, fn):
    try:
        fn()
    except error as exc:
        text = str(exc)
        if field in text and "process %d" % (comm.size - 1) in text:
            say("PASS %s [rank %d]: %s" % (what, comm.rank, text.splitlines()[0][:300]))
        else:
            say("FAIL %s [rank %d]: message does not name the field: %s" % (what, comm.rank, text))
    else:
        say("FAIL %s [rank %d]: no error" % (what, comm.rank))


def main(argv):
    scenario = argv[0]
    comm = distributed.init("mpi")
    if scenario == "mismatch":
        mismatch(comm)
    else:
        train(comm, scenario)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
