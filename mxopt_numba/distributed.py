"""Data-parallel training over several processes, optionally with the optimizer state
sharded across them (ZeRO stage 1).

    # mpiexec -n 2 python train.py
    import mxopt_numba as mxo
    trainer = mxo.distributed.DistributedTrainer(params, "adam", {"learning_rate": 1e-3},
                                                 shard_states=True)
    for x, y in batches:                      # the same global batches on every process
        mine = slice(trainer.rank, None, trainer.size)
        write_gradients(params, x[mine], y[mine])     # summed over this process's samples
        trainer.step(len(x))                  # the GLOBAL batch size

Collectives go through a small :class:`Communicator` interface (``rank``, ``size``,
``allreduce``, ``reduce_scatter``, ``allgather``, ``broadcast``, ``barrier``) with two
implementations: :class:`MPICommunicator` (mpi4py; NumPy buffers passed without copies,
``MPI_IN_PLACE`` where the operation allows it, non-blocking operations waited for against
a deadline) and :class:`SingleProcessCommunicator`.
Another backend (torch.distributed, NCCL) is one more subclass; optimizers never see it.

Gradients are **summed** over the processes; :meth:`~mxopt_numba.Trainer.step` then
rescales them by ``1 / batch_size`` as usual, so pass the global batch size (the sum of
the per-process batches).  The update then equals a single-process update on the summed
gradient.

Layout.  At construction every trainable parameter's ``data`` and ``grad`` are moved into
flat buffers, one per (weight dtype, gradient dtype) group, in index order: the
:class:`~mxopt_numba.Parameter` objects keep working (``p.data``/``p.grad`` are views of
the buffers, values copied in), but arrays obtained from them *before* the trainer was
created are no longer their storage.  The weights are then broadcast from rank 0, and the
library's random stream (:mod:`mxopt_numba.random`, SGLD noise) is synchronised from
rank 0 so that the replicas draw the same numbers.

``shard_states=False`` (plain data parallelism): one in-place allreduce per buffer, then
every process runs the whole update (and keeps the whole optimizer state).

``shard_states=True`` (ZeRO-1): process ``r`` owns the contiguous range
``bounds[r]:bounds[r+1]`` of each flat buffer.  A step reduce-scatters the gradient
buffer (each process receives the sum of its own range only), runs the optimizer on its
range, and all-gathers the weights in place.  The optimizer sees *pieces*: the part of
each parameter inside the range, under the parameter's own index, so ``lr_mult``,
``wd_mult``, name rules and update counts (bias corrections) stay per original
parameter.  Every process passes every index (a piece outside its range is an empty
array), so all processes take the same code path and count the same updates.  Optimizer
states (and float32 master copies under multi-precision) exist for the pieces only: about
``1 / size`` of the single-process memory.

``partition`` chooses the ranges.  ``'elements'``: equal ranges, parameters may be cut
(needs an element-wise rule, or a layer-wise one whose per-tensor sums go through the
``norm_reducer`` hook, see below; the library's element-wise rules are known, another
optimizer class declares itself with a class attribute ``elementwise = True``).
``'params'``: ranges end at parameter boundaries, every parameter lives whole on one
process (works for any rule whose update of a tensor depends on that tensor only, e.g.
GroupAdaGrad's row statistics; ranges are less even).  ``'auto'`` takes ``'elements'``
where it is exact, else ``'params'``.  SGLD is refused: its noise comes per tensor from
one process-wide stream, which shards would replay.

Layer-wise rules (LARS, LAMB, LANS, LBSGD; ``layerwise = True`` on the class) need norms
of whole tensors.  Their fused path computes per-tensor sums of squares in one call
(``launch_sums`` in ``optimizer/_shared.py``), which passes them through the optimizer
attribute ``norm_reducer``: a callable that receives that ``(n_tensors, k)`` float64
array of this process's partial sums (rows in the order of the update call's indices)
and returns the sums over all processes.  The trainer sets it on the optimizer (an
allreduce) under sharding, so ``'auto'`` cuts these rules at arbitrary elements too.
Only the fused path goes through it: with ``use_fused_step=False`` they use
``'params'``.

Exactness.  The sum of two processes' gradients is ``a + b`` (commutative), so with 2
processes every element-wise rule gives bitwise the single-process result on ``g0 + g1``
(float32 and float64; float16/bfloat16 gradients are summed in float32 and rounded once,
like NumPy's ``g0 + g1``).  With more processes the order of the sum is the
communicator's (MPI's own, or the pairwise order of :class:`MPICommunicator`): results
agree with a single-process run to the rounding of a float sum (a few ulp), and every
process still holds the same bits.  With ``'elements'``, a layer-wise rule's norm is the
sum of per-shard float64 partial sums: relative differences of about 1e-16 in the norms,
which can move a float32 weight by one ulp now and then (tests allow 1e-6 relative; they
have seen none); with ``'params'`` nothing changes.

Failures.  A failure on one process ends the whole job within seconds, under a plain
``mpiexec -n N python script.py`` (see :func:`install_abort_handler`, installed when an
:class:`MPICommunicator` is created): an uncaught exception prints its traceback and
calls ``MPI_Abort``; the peers print one line naming the failed process.  Every collective
has a deadline (``timeout=``, ``MXOPT_DIST_TIMEOUT``, default 300 s): when it passes,
every live process raises :class:`DistributedTimeoutError` naming the operation, the
step and the processes that did not arrive, and the job aborts.  Each step starts with
one small max-allreduce (the "step agreement", which existed before for the freshness
of the gradients) that also carries the step counter, a digest of the optimizer's
settings (class, learning rate, betas, wd, clip_gradient, rescale_grad, multipliers,
scheduler) and the gradient rescale: a difference raises :class:`DistributedError` on
every process naming the field and each process's value (gathering the values is a
second collective on that path only), before any weight changes.  A process that stops
early (``sys.exit``, the end of its data, a skipped step) is reported by the others
when they wait for it; for uneven data, step inside :meth:`DistributedTrainer.join`.

Oversubscription.  Each process runs Numba's thread pool; with as many processes as cores
use one thread per process (``NUMBA_NUM_THREADS=1``, and ``OMP_WAIT_POLICY=passive`` so
idle OpenMP threads sleep).  :func:`init` lowers the thread count itself when the
processes on a node would outnumber its cores.

Checkpoints (:meth:`DistributedTrainer.save_states`): with sharding every process writes
its own file ``<fname>.<rank>-of-<size>`` (atomically), then rank 0 writes ``fname``, a
small manifest naming the shards and the layout, so a checkpoint whose manifest exists is
complete; shards that an earlier save under the same name left for another number of
processes are deleted once the new manifest is in place.  A symbolic link as ``fname``
stays a link: the manifest replaces its target and the shards go beside the target.
:meth:`~DistributedTrainer.load_states` on the same number of processes reads
its own shard; on another number (or without sharding, or from a single-process
:meth:`Trainer.save_states` file) it reads every shard and cuts the states again, which
works for states shaped like their weight (every element-wise rule) and otherwise stops
with a clear error.  Every process must be able to read every file (a shared
filesystem).
"""
import atexit
import contextlib
import hashlib
import io
import json
import math
import numbers
import os
import pickle
import re
import sys
import time
import traceback
import uuid
import warnings
import zipfile

import numpy as np

from . import _namespace
from . import _state_io
from . import random as _random
from .optimizer.optimizer import map_state, state_leaves
from .optimizer.updater import Updater
from .trainer import Trainer, _atomic_write, _compare_state

__all__ = ["Communicator", "SingleProcessCommunicator", "MPICommunicator", "init",
           "DistributedTrainer", "DistributedError", "DistributedTimeoutError",
           "install_abort_handler", "MANIFEST_KIND", "SHARD_KIND", "StateFormatError"]

StateFormatError = _state_io.StateFormatError

#: ``kind`` tags of the checkpoint files (see :mod:`mxopt_numba._state_io`)
MANIFEST_KIND = "distributed-manifest"
SHARD_KIND = "distributed-shard"

_OPS = ("sum", "max", "min")


# ====================================================================== communicators

class Communicator:
    """Collective operations on NumPy arrays, in place, over ``size`` processes.

    Subclasses implement the methods below; arrays are C-contiguous and writeable.
    Sums of float16/bfloat16 data are taken in float32 and rounded once.
    """

    rank = 0
    size = 1

    def allreduce(self, arrays, op="sum"):
        """Replace every array (one array or a list) by its element-wise ``op``
        (``'sum'``, ``'max'``, ``'min'``) over all processes."""
        raise NotImplementedError

    def reduce_scatter(self, send, recv, counts):
        """Sum ``send`` (same size everywhere, ``sum(counts)`` elements) over all
        processes; this process receives the block ``counts[rank]`` of the sum (in
        process order) in ``recv``."""
        raise NotImplementedError

    def allgather(self, buf, counts):
        """In place: process ``r`` contributes the block ``r`` of ``buf`` (blocks of
        ``counts`` elements in process order); afterwards every process holds all blocks."""
        raise NotImplementedError

    def broadcast(self, arrays, root=0):
        """Copy every array (one array or a list) of process ``root`` to the others."""
        raise NotImplementedError

    def barrier(self):
        raise NotImplementedError

    def set_context(self, step=None, phase=None):
        """The training step in progress and the phase of it (``'step agreement'``,
        ``'gradient reduction'``, ...) to name in error messages; may be ignored."""

    def allgather_object(self, obj):
        """A list of every process's ``obj`` (small, picklable metadata only)."""
        raise NotImplementedError

    def broadcast_object(self, obj, root=0):
        """Process ``root``'s ``obj`` on every process (small, picklable metadata only)."""
        raise NotImplementedError

    def __repr__(self):
        return "%s(rank=%d, size=%d)" % (type(self).__name__, self.rank, self.size)


class SingleProcessCommunicator(Communicator):
    """One process: every collective is the identity."""

    rank = 0
    size = 1

    def allreduce(self, arrays, op="sum"):
        _check_op(op)
        for a in _array_list(arrays):
            _check_buffer(a)

    def reduce_scatter(self, send, recv, counts):
        counts = _check_counts(counts, send.size, 1)
        if recv.size != counts[0]:
            raise ValueError("recv has %d elements, expected %d" % (recv.size, counts[0]))
        np.copyto(recv.reshape(-1), send.reshape(-1), casting="unsafe")

    def allgather(self, buf, counts):
        _check_counts(counts, buf.size, 1)

    def broadcast(self, arrays, root=0):
        _check_root(root, 1)

    def barrier(self):
        pass

    def allgather_object(self, obj):
        return [obj]

    def broadcast_object(self, obj, root=0):
        _check_root(root, 1)
        return obj


class MPICommunicator(Communicator):
    """Collectives through mpi4py on ``comm`` (default ``MPI.COMM_WORLD``), each with a
    deadline.

    Every collective is MPI's non-blocking form (``Iallreduce``, ``Ireduce_scatter``,
    ``Iallgather``, ``Ibcast``), polled with ``Test``: a short spin, then sleeps that
    grow up to a few milliseconds, so a process waiting for a slow peer does not hold a
    core.  While it waits it reads the notices of its peers (below).  When ``timeout``
    seconds pass (default: ``MXOPT_DIST_TIMEOUT`` or 300), it asks every peer where it
    is, and raises :class:`DistributedTimeoutError` naming the operation, the step and
    the processes that did not arrive; the communicator is unusable afterwards.

    Buffers go to MPI as they are (no copies); allreduce and allgather run in place.
    float16/bfloat16 sums go through a float32 scratch buffer (kept between calls).

    Sums of at least ``pairwise_above`` elements (None: never) use a pairwise exchange
    instead of MPI's reduce-scatter: in round ``k = 1 .. size-1`` each process sends
    process ``rank+k`` its block and adds the block received from ``rank-k`` to its
    own; an allreduce is then that reduce-scatter followed by an allgather.  Every
    element is added up by its owner only, so all processes receive the same bits; the
    order of the sum for block ``r`` is ``g_r + g_(r-1) + ...`` (exactly ``a + b`` for
    two processes).  It stays the default for large sums because it is faster than
    MPICH's tuned reductions on one node: ``tests/dist_worker.py --bench-collectives``
    measured 17 ms against 55-60 ms for an allreduce or reduce-scatter of the ResNet-50
    gradient (25.6 M float32) on 2 processes.  Allgathers and small sums are MPI's own.

    Creating one installs the job's failure handling (see :func:`install_abort_handler`).
    """

    _TAG = 0x6D78
    #: elements per message of the pairwise exchange (4 MiB of float32)
    PAIRWISE_CHUNK = 1 << 20

    def __init__(self, comm=None, pairwise_above=1 << 16, timeout=None):
        MPI = _mpi()
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.pairwise_above = pairwise_above
        self._ops = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}
        self._scratch = {}
        self._control = _Control.of(self.comm)
        self._duplicate = None
        self.timeout = timeout
        install_abort_handler()

    @property
    def timeout(self):
        """Seconds a collective may wait (also the deadline of the exit handshake)."""
        return self._timeout

    @timeout.setter
    def timeout(self, value):
        self._timeout = _resolve_timeout(value)
        self._control.timeout = self._timeout
        if getattr(self, "_duplicate", None) is not None:
            self._duplicate.timeout = self._timeout

    def duplicate(self):
        """A communicator on the same processes whose collectives never pair with this
        one's (``MPI_Comm_dup`` at the first call, which every process must make; later
        calls return the same one, so trainers built one after another do not use up
        MPI's communicator ids)."""
        if self._duplicate is None:
            self._duplicate = MPICommunicator(self.comm.Dup(), self.pairwise_above, self.timeout)
        return self._duplicate

    # ------------------------------------------------------------------ context
    def set_context(self, step=None, phase=None):
        """The training step and its phase, named in timeout and failure messages."""
        self._control.step = step
        self._control.phase = phase

    @property
    def broken(self):
        """Why the communicator cannot be used any more (a collective timed out), or None."""
        return self._control.broken

    def abort(self, code=1):
        self._control.abort(code)

    # ------------------------------------------------------------------ helpers
    def _type(self, dtype):
        """The predefined MPI datatype of ``dtype`` (reductions need predefined types)."""
        return self.MPI.Datatype.fromcode(np.dtype(dtype).char)

    def _buffer(self, a):
        """``[flat array, MPI datatype]`` for arithmetic (float32/64, integers)."""
        flat = a.reshape(-1)
        return [flat, self._type(flat.dtype)]

    def _raw(self, a):
        """The array as unsigned integers of its item size (data movement only)."""
        flat = a.reshape(-1)
        raw = flat.view(np.dtype("u%d" % flat.dtype.itemsize)) if flat.dtype.itemsize in (1, 2, 4, 8) \
            else flat.view(np.uint8)
        return raw, self._type(raw.dtype)

    def _scratch_of(self, key, dtype, n):
        """A reusable buffer of ``n`` elements (one per ``key`` and dtype)."""
        key = (key, np.dtype(dtype).str)
        buf = self._scratch.get(key)
        if buf is None or buf.size < n:
            buf = np.empty(max(n, 1), dtype=dtype)
            self._scratch[key] = buf
        return buf[:n]

    def _pairwise(self, n):
        return self.size > 1 and self.pairwise_above is not None and n >= self.pairwise_above

    #: False: wait in ``MPI_Waitall`` without a deadline or notices (benchmarks only: the
    #: cost of the checks is the difference)
    _poll = True

    def _run(self, op, start):
        """Start a non-blocking operation (``start()`` returns its request or requests)
        and wait for it against the deadline."""
        control = self._control
        control.enter(op)
        try:
            reqs = start()
            self._wait(reqs if isinstance(reqs, list) else [reqs])
        finally:
            control.leave()

    def _wait(self, reqs):
        if self._poll:
            self._control.wait(reqs, self.timeout)
        else:
            self.MPI.Request.Waitall(reqs)

    def _pairwise_reduce(self, flat, counts, out):
        """``out`` (may be ``flat``'s own block) <- block ``rank`` of the sum of ``flat``.

        Blocks travel in chunks of ``PAIRWISE_CHUNK`` elements, received into two
        alternating scratch buffers (the next chunk arrives while this one is added), so
        the scratch memory stays two chunks whatever the model size."""
        displs = _displacements(counts)
        rank, size = self.rank, self.size
        lo, n = displs[rank], counts[rank]
        if out is not None:
            np.copyto(out, flat[lo:lo + n])
        else:
            out = flat[lo:lo + n]
        chunk = self.PAIRWISE_CHUNK          # the same on every process: sender and receiver cut alike
        spare = [self._scratch_of("pairwise%d" % j, flat.dtype, min(chunk, n)) for j in range(2)]
        mtype = self._type(flat.dtype)
        control, comm, tag = self._control, self.comm, self._TAG
        starts = range(0, n, chunk)
        for k in range(1, size):
            dest, src = (rank + k) % size, (rank - k) % size
            d = displs[dest]
            control.enter("reduce-scatter (pairwise round %d)" % k)
            try:
                m = counts[dest]            # the block dest owns: its n, chunked the same way
                sends = [comm.Isend([flat[d + j:d + min(j + chunk, m)], mtype], dest=dest, tag=tag)
                         for j in range(0, m, chunk)]
                recv = None
                for i, j in enumerate(starts):
                    if recv is None:
                        recv = comm.Irecv([spare[0][:min(chunk, n - j)], mtype], source=src, tag=tag)
                    self._wait([recv])
                    nxt = j + chunk
                    recv = None if nxt >= n else comm.Irecv(
                        [spare[(i + 1) % 2][:min(chunk, n - nxt)], mtype], source=src, tag=tag)
                    got = spare[i % 2][:min(chunk, n - j)]
                    np.add(out[j:j + got.size], got, out=out[j:j + got.size])
                self._wait(sends)
            finally:
                control.leave()

    # ------------------------------------------------------------------ collectives
    def allreduce(self, arrays, op="sum"):
        mpi_op = self._ops[_check_op(op)]
        for a in _array_list(arrays):
            _check_buffer(a)
            if a.size == 0:
                continue
            native = _native(a.dtype)
            if native and not (op == "sum" and self._pairwise(a.size)):
                self._run("allreduce", lambda: self.comm.Iallreduce(self.MPI.IN_PLACE, self._buffer(a),
                                                                    op=mpi_op))
                continue
            flat = a.reshape(-1)
            if not native:
                flat = self._scratch_of("reduce", np.float32, a.size)
                np.copyto(flat, a.reshape(-1), casting="unsafe")
            if op == "sum" and self._pairwise(a.size):
                counts = _even_counts(a.size, self.size)
                self._pairwise_reduce(flat, counts, None)
                self.allgather(flat, counts)
            else:
                self._run("allreduce", lambda: self.comm.Iallreduce(
                    self.MPI.IN_PLACE, [flat, self.MPI.FLOAT], op=mpi_op))
            if not native:
                np.copyto(a.reshape(-1), flat, casting="unsafe")

    def reduce_scatter(self, send, recv, counts):
        _check_buffer(send)
        _check_buffer(recv)
        counts = _check_counts(counts, send.size, self.size)
        if recv.size != counts[self.rank]:
            raise ValueError("recv has %d elements, expected counts[%d] = %d"
                             % (recv.size, self.rank, counts[self.rank]))
        if send.dtype != recv.dtype:
            raise TypeError("send and recv dtypes differ: %s, %s" % (send.dtype, recv.dtype))
        native = _native(send.dtype)
        if native:
            s, r = send.reshape(-1), recv.reshape(-1)
        else:
            s = self._scratch_of("send", np.float32, send.size)
            np.copyto(s, send.reshape(-1), casting="unsafe")
            r = self._scratch_of("recv", np.float32, recv.size)
        if self._pairwise(send.size):
            self._pairwise_reduce(s, counts, r)
        elif all(c == counts[0] for c in counts):
            self._run("reduce-scatter", lambda: self.comm.Ireduce_scatter_block(
                self._buffer(s), self._buffer(r), op=self.MPI.SUM))
        else:
            self._run("reduce-scatter", lambda: self.comm.Ireduce_scatter(
                self._buffer(s), self._buffer(r), counts, op=self.MPI.SUM))
        if not native:
            np.copyto(recv.reshape(-1), r, casting="unsafe")

    def allgather(self, buf, counts):
        _check_buffer(buf)
        counts = _check_counts(counts, buf.size, self.size)
        raw, mtype = self._raw(buf)
        scale = raw.size // max(buf.size, 1)
        counts = [c * scale for c in counts]
        if all(c == counts[0] for c in counts):
            self._run("allgather", lambda: self.comm.Iallgather(self.MPI.IN_PLACE, [raw, mtype]))
        else:
            self._run("allgather", lambda: self.comm.Iallgatherv(
                self.MPI.IN_PLACE, [raw, counts, _displacements(counts), mtype]))

    def broadcast(self, arrays, root=0):
        _check_root(root, self.size)
        for a in _array_list(arrays):
            _check_buffer(a)
            if a.size:
                raw, mtype = self._raw(a)
                self._run("broadcast", lambda: self.comm.Ibcast([raw, mtype], root=root))

    def barrier(self):
        self._run("barrier", lambda: self.comm.Ibarrier())

    def allgather_object(self, obj):
        data = np.frombuffer(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), dtype=np.uint8)
        sizes = np.zeros(self.size, dtype=np.int64)
        sizes[self.rank] = data.size
        self.allgather(sizes, [1] * self.size)
        counts = [int(n) for n in sizes]
        buf = np.empty(sum(counts), dtype=np.uint8)
        lo = sum(counts[:self.rank])
        buf[lo:lo + data.size] = data
        self.allgather(buf, counts)
        out, lo = [], 0
        for n in counts:
            out.append(pickle.loads(buf[lo:lo + n].tobytes()))
            lo += n
        return out

    def broadcast_object(self, obj, root=0):
        _check_root(root, self.size)
        data = np.frombuffer(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), dtype=np.uint8) \
            if self.rank == root else None
        size = np.array([0 if data is None else data.size], dtype=np.int64)
        self.broadcast(size, root)
        buf = data.copy() if data is not None else np.empty(int(size[0]), dtype=np.uint8)
        self.broadcast(buf, root)
        return obj if self.rank == root else pickle.loads(buf.tobytes())


# ====================================================================== failure handling

class DistributedError(RuntimeError):
    """A fault of the distributed job (a mismatch between processes, a process that left
    or failed).  ``everywhere`` is true when every live process raises it too."""

    def __init__(self, message, everywhere=True):
        super().__init__(message)
        self.everywhere = everywhere


class DistributedTimeoutError(DistributedError):
    """A collective did not complete within the deadline.  Attributes: ``operation``,
    ``step`` (None outside a training step), ``missing`` (ranks that did not arrive)."""

    def __init__(self, message, operation, step, missing):
        super().__init__(message)
        self.operation, self.step, self.missing = operation, step, list(missing)


_NOTICE = 0x6D79
_DEFAULT_TIMEOUT = 300.0
#: how long a process keeps listening for its peers' answers after a deadline passed
_ASK_SECONDS = 2.0


def _resolve_timeout(timeout):
    """``timeout`` (seconds) or ``MXOPT_DIST_TIMEOUT`` or 300, checked."""
    source = "timeout"
    if timeout is None:
        text = os.environ.get("MXOPT_DIST_TIMEOUT")
        if text is None or not text.strip():
            return _DEFAULT_TIMEOUT
        source = "MXOPT_DIST_TIMEOUT"
        try:
            timeout = float(text)
        except ValueError:
            raise ValueError("MXOPT_DIST_TIMEOUT must be a number of seconds, got %r" % text) from None
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not math.isfinite(timeout) \
            or timeout <= 0:
        raise ValueError("%s must be a positive number of seconds, got %r" % (source, timeout))
    return float(timeout)


def _describe_op(op, step):
    return "%s%s" % (op, "" if step is None else " of step %d" % step)


class _Control:
    """The side channel of one process group: a duplicate of its communicator on which
    processes send each other short notices (failed, exiting, where are you, here I
    am), read while they wait in a collective.  One per group, shared by every
    MPICommunicator on it; ``seq`` counts the collectives started on the group, so
    processes compare positions without any extra message in the normal case."""

    _all = []

    @classmethod
    def of(cls, comm):
        MPI = _mpi()
        for control in cls._all:
            if comm.Compare(control.base) in (MPI.IDENT, MPI.CONGRUENT):
                return control
        control = cls(comm)
        cls._all.append(control)
        return control

    def __init__(self, comm):
        self.MPI = _mpi()
        self.base = comm
        self.ctl = comm.Dup()
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.seq = 0
        self.op = None
        self.step = None
        self.phase = None
        self.broken = None
        self.exits = {}             # rank -> its seq when it left
        self.answers = {}           # rank -> (seq, op, step) while asking
        self.sends = []
        self.closed = False
        self.timeout = None         # the deadline of the exit handshake (None: the default)

    # -------------------------------------------------------------- notices
    def send_all(self, message):
        for r in range(self.size):
            if r != self.rank:
                try:
                    self.sends.append(self.ctl.isend(message, dest=r, tag=_NOTICE))
                except Exception:       # best effort: the job is going down anyway
                    pass
        self.sends = [s for s in self.sends if not s.Test()]

    def read_notices(self, exiting=False):
        status = self.MPI.Status()
        while self.ctl.iprobe(source=self.MPI.ANY_SOURCE, tag=_NOTICE, status=status):
            source = status.Get_source()
            message = self.ctl.recv(source=source, tag=_NOTICE)
            kind = message[0]
            if kind == "failed":
                self.fatal("process %d failed%s: %s" % (source, _during(message[2]), message[1]))
            elif kind == "exit":
                self.exits[source] = message[1]
                if not exiting and self.op is not None and message[1] < self.seq:
                    self.fatal("process %d left the job (exited after %d collectives, %s) while "
                               "this process waits for it in %s"
                               % (source, message[1], "before any step" if message[2] is None
                                  else "its last step %d" % message[2], _describe_op(self.op, self.step)))
            elif kind == "where":
                self.send_to(source, ("here", self.seq if self.op is not None else None,
                                      self.op, self.step))
            elif kind == "here":
                self.answers[source] = message[1:]

    def send_to(self, rank, message):
        try:
            self.sends.append(self.ctl.isend(message, dest=rank, tag=_NOTICE))
        except Exception:
            pass

    def fatal(self, line):
        """One line on stderr, then the whole job ends."""
        sys.stdout.flush()
        sys.stderr.write("mxopt_numba.distributed [rank %d]: %s; aborting the job\n" % (self.rank, line))
        sys.stderr.flush()
        # the launcher forwards output asynchronously and drops what it holds at an
        # abort: let the line get through first
        time.sleep(0.3)
        self.abort(1)

    def abort(self, code=1):
        self.closed = True
        self.base.Abort(code)

    # -------------------------------------------------------------- waiting
    def enter(self, op):
        if self.broken:
            raise DistributedError("the communicator is unusable: %s" % self.broken, everywhere=False)
        self.seq += 1
        self.op = op if self.phase is None else "%s (%s)" % (self.phase, op)
        if self.size > 1:
            gone = [r for r, seq in self.exits.items() if seq < self.seq]
            if gone:        # left after a collective this process finished later
                self.fatal("process %d left the job after %d collectives; this process enters %s"
                           % (gone[0], self.exits[gone[0]], _describe_op(self.op, self.step)))
            self.read_notices()

    def leave(self):
        self.op = None

    def wait(self, reqs, timeout):
        Test = self.MPI.Request.Testall
        if Test(reqs):
            return
        start = time.monotonic()
        deadline = start + timeout
        delay = 0.0
        while not Test(reqs):
            now = time.monotonic()
            waited = now - start
            if waited < 100e-6:      # a fast collective: keep driving MPI's progress
                continue
            if now >= deadline:
                self.timed_out(timeout)
            self.read_notices()
            # transfers progress only inside Test, so sleep little while a peer is
            # probably just a moment late; back off once the wait looks long
            cap = 200e-6 if waited < 0.1 else 0.002 if waited < 1.0 else 0.02
            delay = min(max(delay * 1.5, 20e-6), cap)
            time.sleep(delay)

    def timed_out(self, timeout):
        """Ask every peer where it is, name those that are not here, raise."""
        op, step, seq = self.op, self.step, self.seq
        self.answers = {}
        self.send_all(("where",))
        until = time.monotonic() + min(_ASK_SECONDS, max(0.5, timeout / 4))
        while time.monotonic() < until and len(self.answers) < self.size - 1:
            self.read_notices()
            time.sleep(0.01)
        missing, notes = [], []
        for r in range(self.size):
            if r == self.rank:
                continue
            answer = self.answers.get(r)
            if answer is None:
                missing.append(r)
                notes.append("process %d did not answer" % r)
            elif answer[0] != seq or answer[1] != op:       # elsewhere, or in another collective
                missing.append(r)
                notes.append("process %d is %s" % (r, "outside any collective" if answer[1] is None
                                                   else "in %s" % _describe_op(answer[1], answer[2])))
        what = _describe_op(op, step)
        message = ("%s did not complete within %g s: process(es) %s did not arrive (%s)"
                   % (what, timeout, ", ".join(map(str, missing)) or "none", "; ".join(notes))
                   if missing else
                   "%s did not complete within %g s although every process arrived" % (what, timeout))
        self.broken = "%s timed out" % what
        raise DistributedTimeoutError(message, op, step, missing)

    # -------------------------------------------------------------- exit
    def farewell(self, timeout):
        """At interpreter exit: tell the peers, wait until every peer left after the same
        number of collectives (else end the job with a message)."""
        if self.closed or self.size == 1:
            return
        if self.broken:
            self.fatal("exiting after %s" % self.broken)
        self.send_all(("exit", self.seq, self.step))
        deadline = time.monotonic() + timeout
        delay = 0.0
        while len(self.exits) < self.size - 1:
            self.read_notices(exiting=True)
            if time.monotonic() >= deadline:
                waiting = sorted(set(range(self.size)) - set(self.exits) - {self.rank})
                self.fatal("process(es) %s did not finish within %g s of this process's exit"
                           % (", ".join(map(str, waiting)), timeout))
            delay = min(max(delay * 1.5, 1e-4), 0.02)
            time.sleep(delay)
        early = {r: n for r, n in self.exits.items() if n != self.seq}
        if early:
            self.fatal("processes left after different numbers of collectives (this one after %d; %s): "
                       "a process skipped or added a step" % (self.seq, ", ".join(
                           "process %d after %d" % kv for kv in sorted(early.items()))))
        self.closed = True
        for s in self.sends:
            s.Test()


def _during(step):
    return "" if step is None else " (its last step: %d)" % step


_HANDLER = {"installed": False, "previous": None}


def install_abort_handler():
    """Make a failure on one process end the whole MPI job within seconds.

    Called when an :class:`MPICommunicator` (and so a :class:`DistributedTrainer` over
    MPI) is created; works under a plain ``mpiexec -n N python script.py``.

    * An uncaught exception: the process prints its traceback (through the previous
      ``sys.excepthook``), tells its peers, and calls ``MPI_Abort``.  A peer waiting in
      a collective prints one line naming the failed process and aborts too.
    * Interpreter exit (``sys.exit`` with any status, or the end of the script): the
      process tells its peers how many collectives it took part in and waits for theirs.
      A peer still waiting in a later collective prints that the process left and
      aborts; equal counts everywhere are a clean exit.
    """
    if _HANDLER["installed"]:
        return
    _HANDLER["installed"] = True
    _HANDLER["previous"] = sys.excepthook
    sys.excepthook = _excepthook
    atexit.register(_at_exit)


#: seconds a process that raised an error every process raises (a timeout) waits before
#: ending the job, so that the others' own errors get printed
_SHARED_ERROR_GRACE = 5.0


def _excepthook(etype, value, tb):
    previous = _HANDLER["previous"] or sys.__excepthook__
    controls = [c for c in _Control._all if not c.closed and c.size > 1]
    if not controls:
        return previous(etype, value, tb)
    # every live process raises a DistributedError of its own: no notice needed
    shared = isinstance(value, DistributedError) and value.everywhere
    step = controls[0].step
    notice = ("failed", "".join(traceback.format_exception_only(etype, value)).strip()[:2000], step)
    if previous is sys.__excepthook__:
        previous(etype, value, tb)
        sys.stderr.flush()
        if not shared:
            for c in controls:
                c.send_all(notice)
    else:                   # another handler (mpi4py's own) may abort right away
        if not shared:
            for c in controls:
                c.send_all(notice)
        previous(etype, value, tb)
        sys.stderr.flush()
    # give the peers a moment to print their line (they abort the job themselves); after
    # a timeout every peer raises its own error at its own deadline, which may come a
    # step's time after this one's, so wait longer before the abort cuts them off
    until = time.monotonic() + (_SHARED_ERROR_GRACE if shared else 1.0)
    while time.monotonic() < until:
        for c in controls:
            c.sends = [s for s in c.sends if not s.Test()]
        time.sleep(0.02)
    controls[0].abort(1)


def _at_exit():
    for control in [c for c in _Control._all if not c.closed]:
        control.farewell(_resolve_timeout(None) if control.timeout is None else control.timeout)


def _displacements(counts):
    out, total = [], 0
    for c in counts:
        out.append(total)
        total += c
    return out


def _even_counts(total, size):
    bounds = _element_bounds(total, size)
    return [bounds[r + 1] - bounds[r] for r in range(size)]


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError("distributed training over MPI needs mpi4py and an MPI library: "
                          "pip install mpi4py mpich (or the 'mpi' extra: pip install "
                          "'mxopt-numba[mpi]' with your cluster's MPI)  [%s]" % exc) from None
    return MPI


def _native(dtype):
    """MPI can do arithmetic on this dtype directly."""
    dtype = np.dtype(dtype)
    return dtype in (np.float32, np.float64) or dtype.kind in "iu"


def _array_list(arrays):
    return [arrays] if isinstance(arrays, np.ndarray) else list(arrays)


def _check_buffer(a):
    if not isinstance(a, np.ndarray):
        raise TypeError("collectives take numpy arrays, got %s" % type(a).__name__)
    if not a.flags.c_contiguous or not a.flags.writeable:
        raise ValueError("collective buffers must be writeable C-contiguous arrays")


def _check_op(op):
    if op not in _OPS:
        raise ValueError("op must be one of %s, got %r" % (", ".join(map(repr, _OPS)), op))
    return op


def _check_root(root, size):
    if isinstance(root, bool) or not isinstance(root, int) or not 0 <= root < size:
        raise ValueError("root must be a process rank in 0..%d, got %r" % (size - 1, root))


def _check_counts(counts, total, size):
    counts = [int(c) for c in counts]
    if len(counts) != size or any(c < 0 for c in counts) or sum(counts) != total:
        raise ValueError("counts must be %d non-negative numbers adding up to %d, got %r"
                         % (size, total, counts[:8]))
    return counts


_LAUNCH_VARS = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS",
                "HYDRA_CONTROL_FD", "MV2_COMM_WORLD_SIZE", "SLURM_PROCID")


def init(backend="auto", comm=None, limit_threads=True, timeout=None):
    """The communicator of this process.

    ``backend``: ``'mpi'`` (mpi4py, ``comm`` or ``MPI.COMM_WORLD``), ``'single'`` (one
    process), or ``'auto'``: MPI when the process was started by an MPI launcher and
    mpi4py is installed, else single.  ``timeout``: the collectives' deadline in seconds
    (default ``MXOPT_DIST_TIMEOUT`` or 300).  With ``limit_threads``, when this node's processes
    times Numba's threads exceed its cores, each process gets ``cores // processes``
    threads (at least 1).
    """
    if backend not in ("auto", "mpi", "single"):
        raise ValueError("backend must be 'auto', 'mpi' or 'single', got %r" % (backend,))
    if backend == "single":
        return SingleProcessCommunicator()
    if backend == "auto" and comm is None and not any(v in os.environ for v in _LAUNCH_VARS):
        return SingleProcessCommunicator()
    if backend == "auto":
        try:
            _mpi()
        except ImportError:
            warnings.warn("started by an MPI launcher but mpi4py is not installed: running as "
                          "one process (pip install mpi4py)", RuntimeWarning, stacklevel=2)
            return SingleProcessCommunicator()
    communicator = MPICommunicator(comm, timeout=timeout)
    if limit_threads:
        _limit_threads(communicator)
    return communicator


def _limit_threads(communicator):
    if "NUMBA_NUM_THREADS" in os.environ or communicator.size == 1:
        return
    MPI = communicator.MPI
    node = communicator.comm.Split_type(MPI.COMM_TYPE_SHARED, key=communicator.rank)
    try:
        local = node.Get_size()
    finally:
        node.Free()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    import numba
    if local * numba.get_num_threads() > cores:
        numba.set_num_threads(max(1, cores // local))


# ====================================================================== rule classification

def _rule_kind(opt):
    """'elementwise', 'norms' (per-tensor sums through launch_sums), 'random' or 'other',
    from the class attributes every rule declares (``elementwise``, ``layerwise``,
    ``draws_noise``)."""
    cls = type(opt)
    if _declared(cls, "draws_noise"):
        return "random"
    if _declared(cls, "elementwise"):
        return "elementwise"
    if _declared(cls, "layerwise"):
        return "norms"
    return "other"


def _declared(cls, attr):
    """``cls``'s declaration of ``attr``, inherited only through subclasses that keep the
    rule (a class that redefines ``step``, ``fused_step`` or ``update`` without declaring
    it again is not assumed to keep its base's property)."""
    for klass in cls.__mro__:
        if attr in klass.__dict__:
            return bool(klass.__dict__[attr])
        if any(m in klass.__dict__ for m in ("step", "fused_step", "update")):
            return False
    return False


def _partition_for(opt, requested):
    if requested not in ("auto", "elements", "params"):
        raise ValueError("partition must be 'auto', 'elements' or 'params', got %r" % (requested,))
    kind = _rule_kind(opt)
    name = type(opt).__name__
    if kind == "random":
        raise ValueError("%s cannot shard its states: it draws noise per tensor from one "
                         "process-wide stream, so shards would draw correlated noise; use "
                         "shard_states=False" % name)
    if requested == "params" or kind == "elementwise":
        return requested if requested != "auto" else "elements"
    if kind == "norms":
        if opt.use_fused_step:
            return "elements"      # launch_sums adds the pieces' partial sums across processes
        if requested == "elements":
            raise ValueError("%s needs whole-tensor norms and cannot be cut at arbitrary "
                             "elements: its NumPy step() (use_fused_step=False) takes norms of "
                             "the pieces it sees; use partition='params' (or 'auto')" % name)
        return "params"
    if requested == "elements":
        raise ValueError("%s is not known to be element-wise (set the class attribute "
                         "elementwise = True if it is); use partition='params' (or 'auto')" % name)
    return "params"


# ====================================================================== layout

class _Bucket:
    """The trainable parameters of one (weight dtype, grad dtype) group, flattened."""

    __slots__ = ("dtype", "grad_dtype", "members", "offsets", "sizes", "total", "weight", "grad",
                 "bounds", "counts", "grad_shard")

    def describe(self, params):
        return {"dtype": _dtype_name(self.dtype), "grad_dtype": _dtype_name(self.grad_dtype),
                "members": [int(k) for k in self.members],
                "names": [params[k].name for k in self.members],
                "sizes": [int(s) for s in self.sizes],
                "bounds": None if self.bounds is None else [int(b) for b in self.bounds]}


def _dtype_name(dtype):
    return np.dtype(dtype).name


def _element_bounds(total, size):
    return [(r * total) // size for r in range(size + 1)]


def _param_bounds(offsets, sizes, total, size):
    """Cut points at parameter boundaries, each the one nearest to ``r * total / size``."""
    edges = np.concatenate([np.asarray(offsets, dtype=np.int64), [total]])
    out = [0]
    for r in range(1, size):
        target = r * total / size
        k = int(np.argmin(np.abs(edges - target)))
        out.append(max(out[-1], int(edges[k])))
    out.append(total)
    return out


class _Piece:
    """The part ``start:stop`` (flat elements) of parameter ``index`` that this process
    updates: views of the weight buffer and of the gradient shard, in the parameter's
    shape when ``whole``, else 1-D (empty outside the range)."""

    __slots__ = ("index", "weight", "grad", "start", "stop", "whole")


# ====================================================================== trainer

class DistributedTrainer(Trainer):
    """A :class:`~mxopt_numba.Trainer` for data-parallel runs (see the module docstring).

    Parameters
    ----------
    params, optimizer, optimizer_params :
        As for :class:`~mxopt_numba.Trainer`; the same parameters (names, shapes,
        dtypes, grad_req) and optimizer on every process (checked).
    communicator : Communicator, optional
        Default: :func:`init` (MPI under an MPI launcher, else one process).
    shard_states : bool
        ZeRO-1: each process keeps the optimizer state of its range of the flattened
        parameters only, and updates only that range.
    partition : {'auto', 'elements', 'params'}
        How the ranges are cut under ``shard_states`` (see the module docstring).
    root : int
        The process whose initial weights (and random stream) everyone starts from.
    timeout : float, optional
        Seconds a collective may wait for the other processes (sets the
        communicator's ``timeout``; default ``MXOPT_DIST_TIMEOUT`` or 300).

    ``step(batch_size)`` takes the global batch size.  :meth:`allreduce_grads` sums the
    gradients (under ``shard_states``: reduce-scatters them, so each process holds the
    summed gradient of its own range only; ``p.grad`` keeps the local gradient).
    Attributes ``rank``, ``size``, ``communicator``, ``bounds``, ``timings``.
    """

    #: False: the step agreement carries no settings digest (benchmarks only)
    _checks = True

    def __init__(self, params, optimizer, optimizer_params=None, *, communicator=None,
                 shard_states=False, partition="auto", root=0, timeout=None):
        super().__init__(params, optimizer, optimizer_params)
        timeout = None if timeout is None else _resolve_timeout(timeout)
        comm = init(timeout=timeout) if communicator is None else communicator
        missing = [m for m in ("rank", "size", "allreduce", "reduce_scatter", "allgather", "broadcast",
                               "barrier", "allgather_object", "broadcast_object") if not hasattr(comm, m)]
        if missing:
            raise TypeError("communicator %r lacks %s (see mxopt_numba.distributed.Communicator)"
                            % (comm, ", ".join(missing)))
        _check_root(root, comm.size)
        if timeout is not None and hasattr(comm, "timeout"):
            comm.timeout = timeout
        self._comm = comm
        self._root = root
        self._shard = bool(shard_states)
        self._partition = None
        self._reduced = False
        self._synced = None
        self._steps = 0
        self._batch = None
        self._ignore_hint = False
        self._config = (None, None)
        self.timings = _new_timings()
        self._check_same_everywhere(partition)
        if self._shard:
            self._partition = _partition_for(self.optimizer, partition)
        elif partition not in ("auto", "elements", "params"):
            raise ValueError("partition must be 'auto', 'elements' or 'params', got %r" % (partition,))
        self._build_buckets()
        self._broadcast_initial()
        if self._shard:
            self._build_pieces()
        self._install_reducer(self.optimizer)
        self._sync_buf = np.empty(2 * len(self._trainable) + 8, dtype=np.int64)
        # the per-step agreement gets a channel of its own: a process that left the loop
        # early and calls some other collective then waits instead of pairing with it
        duplicate = getattr(comm, "duplicate", None)
        self._sync_comm = duplicate() if duplicate is not None else comm

    # ------------------------------------------------------------------ attributes
    @property
    def rank(self):
        return self._comm.rank

    @property
    def size(self):
        return self._comm.size

    @property
    def communicator(self):
        return self._comm

    @property
    def shard_states(self):
        return self._shard

    @property
    def partition(self):
        """'elements' or 'params' under shard_states, else None."""
        return self._partition

    @property
    def bounds(self):
        """``{(weight dtype, grad dtype): [b_0, ..., b_size]}``: process ``r`` owns the
        elements ``b_r:b_(r+1)`` of that flat buffer (None without sharding)."""
        if not self._shard:
            return None
        return {(_dtype_name(b.dtype), _dtype_name(b.grad_dtype)): list(b.bounds) for b in self._buckets}

    def optimizer_state_nbytes(self):
        """Bytes held by this process's optimizer states (float32 master copies included)."""
        return int(sum(leaf.nbytes for state in self._updater.states.values()
                       for leaf in state_leaves(state)))

    def reset_timings(self):
        self.timings = _new_timings()

    # ------------------------------------------------------------------ construction
    def _signature(self, partition):
        opt = self.optimizer
        params = [(p.name, tuple(p.shape), _dtype_name(p.dtype),
                   None if p._grad is None else _dtype_name(p._grad.dtype), p.grad_req)
                  for p in self._params]
        return {"params": params, "optimizer": type(opt).__name__,
                "multi_precision": opt.multi_precision, "fused": bool(opt.use_fused_step),
                "shard_states": self._shard, "partition": partition, "settings": self._settings()}

    def _check_same_everywhere(self, partition):
        mine = self._signature(partition)
        every = self._comm.allgather_object(mine)
        ref = every[self._root]
        for rank, sig in enumerate(every):
            if sig == ref:
                continue
            for key in ("optimizer", "multi_precision", "fused", "shard_states", "partition"):
                if sig[key] != ref[key]:
                    raise ValueError("process %d has %s=%r but process %d has %r: every process must "
                                     "build the same DistributedTrainer"
                                     % (rank, key, sig[key], self._root, ref[key]))
            if len(sig["params"]) != len(ref["params"]):
                raise ValueError("process %d has %d parameters, process %d has %d"
                                 % (rank, len(sig["params"]), self._root, len(ref["params"])))
            for k, (a, b) in enumerate(zip(sig["params"], ref["params"])):
                if a != b:
                    raise ValueError("parameter %d differs between processes: %r on process %d, %r on "
                                     "process %d (name, shape, dtype, grad dtype, grad_req)"
                                     % (k, a, rank, b, self._root))
        differ = _differences([sig["settings"] for sig in every])
        if differ:
            raise ValueError("every process must build the same DistributedTrainer: %s" % differ)

    def _build_buckets(self):
        groups = {}
        for k, p in enumerate(self._params):
            if p._grad is None:
                continue
            groups.setdefault((p._data.dtype, p._grad.dtype), []).append(k)
        self._buckets = []
        self._trainable = []
        for (dtype, grad_dtype), members in groups.items():
            b = _Bucket()
            b.dtype, b.grad_dtype, b.members = dtype, grad_dtype, members
            b.sizes = [self._params[k]._data.size for k in members]
            b.offsets = _displacements(b.sizes)
            b.total = int(sum(b.sizes))
            b.weight = np.empty(b.total, dtype=dtype)
            b.grad = np.empty(b.total, dtype=grad_dtype)
            for k, off, n in zip(members, b.offsets, b.sizes):
                p = self._params[k]
                wv = b.weight[off:off + n].reshape(p.shape)
                gv = b.grad[off:off + n].reshape(p.shape)
                wv[...] = p._data
                gv[...] = p._grad
                p._data, p._grad = wv, gv
            b.bounds = b.counts = b.grad_shard = None
            self._buckets.append(b)
            self._trainable.extend(members)
        self._trainable.sort()
        self._views = {k: (self._params[k]._data, self._params[k]._grad) for k in self._trainable}
        self._frozen = [k for k, p in enumerate(self._params) if p._grad is None]
        self._lists = None

    def _broadcast_initial(self):
        comm, root = self._comm, self._root
        comm.broadcast([b.weight for b in self._buckets], root=root)
        comm.broadcast([p._data for p in self._params if p._grad is None], root=root)
        gen = _random.generator()
        state = comm.broadcast_object(gen.bit_generator.state, root=root)
        if comm.rank != root:
            gen.bit_generator.state = state

    def _build_pieces(self):
        size, rank = self._comm.size, self._comm.rank
        pieces = {}
        for b in self._buckets:
            if self._partition == "elements":
                b.bounds = _element_bounds(b.total, size)
            else:
                b.bounds = _param_bounds(b.offsets, b.sizes, b.total, size)
            b.counts = [b.bounds[r + 1] - b.bounds[r] for r in range(size)]
            lo, hi = b.bounds[rank], b.bounds[rank + 1]
            b.grad_shard = np.zeros(hi - lo, dtype=b.grad_dtype)
            for k, off, n in zip(b.members, b.offsets, b.sizes):
                shape = self._params[k].shape
                start, stop = max(off, lo), min(off + n, hi)
                if stop <= start:                   # outside this process's range
                    start = stop = min(max(off, lo), hi)
                piece = _Piece()
                piece.index = k
                piece.start, piece.stop = (start - off, stop - off) if stop > start else (0, 0)
                piece.whole = stop - start == n
                w = b.weight[start:stop]
                g = b.grad_shard[start - lo:stop - lo]
                if piece.whole:
                    w, g = w.reshape(shape), g.reshape(shape)
                elif stop == start and len(shape) >= 1:
                    w, g = w.reshape((0,) + tuple(shape[1:])), g.reshape((0,) + tuple(shape[1:]))
                piece.weight, piece.grad = w, g
                pieces[k] = piece
        self._pieces = [pieces[k] for k in self._trainable]
        self._piece_lists = ([p.index for p in self._pieces], [p.weight for p in self._pieces],
                             [p.grad for p in self._pieces])

    def _install_reducer(self, opt):
        if getattr(opt.__dict__.get("norm_reducer"), "_distributed_trainer", False):
            del opt.norm_reducer        # left by an earlier DistributedTrainer
        if not self._shard or _rule_kind(opt) != "norms" or self._partition != "elements":
            return
        comm = self._comm

        def reduce_norms(sums):
            """Per-tensor partial sums of this process -> sums over every process."""
            t0 = time.perf_counter()
            sums = np.ascontiguousarray(sums, dtype=np.float64)
            comm.allreduce(sums)
            self.timings["norms"] += time.perf_counter() - t0
            return sums
        reduce_norms._distributed_trainer = True
        opt.norm_reducer = reduce_norms

    # ------------------------------------------------------------------ training
    def _check_views(self):
        params = self._params
        for k, (d, g) in self._views.items():
            p = params[k]
            if p._data is not d or p._grad is not g:
                raise RuntimeError("parameter %r changed its arrays or grad_req after the "
                                   "DistributedTrainer was created; create a new trainer" % p.name)
        for k in self._frozen:
            if params[k]._grad is not None:
                raise RuntimeError("parameter %r had grad_req='null' when the DistributedTrainer was "
                                   "created and has a gradient now; create a new trainer" % params[k].name)

    # ------------------------------------------------------------------ agreement
    def _settings(self):
        """Everything every process must agree on at each step, the batch size aside:
        the optimizer's class and public scalar settings (learning rate, betas, wd,
        clip_gradient, ...), its multiplier dicts and scheduler, each parameter's
        lr_mult/wd_mult and the gradient rescale set at construction."""
        opt = self.optimizer
        out = {"optimizer": type(opt).__name__, "rescale_grad": self._scale}
        for key, value in vars(opt).items():
            if not key.startswith("_") and key != "rescale_grad" and _is_scalar(value):
                out["learning_rate" if key == "lr" else key] = value
        for key in ("lr_mult", "wd_mult"):
            out["optimizer " + key] = tuple(sorted((getattr(opt, key, None) or {}).items(), key=repr))
        sched = getattr(opt, "lr_scheduler", None)
        if sched is not None:
            out["lr_scheduler"] = type(sched).__name__
            for key, value in vars(sched).items():
                if not key.startswith("_") and _is_scalar(value):
                    out["lr_scheduler." + key] = value
        out["parameter lr_mult"] = tuple(p.lr_mult for p in self._params)
        out["parameter wd_mult"] = tuple(p.wd_mult for p in self._params)
        return out

    def _settings_hash(self):
        """A 62-bit digest of :meth:`_settings`, recomputed only when they changed."""
        settings = self._settings()
        if settings != self._config[0]:
            digest = hashlib.blake2b(repr(sorted(settings.items())).encode(), digest_size=8).digest()
            self._config = (settings, int.from_bytes(digest, "little") >> 2)
        return self._config[1]

    def _sync(self, active=True):
        """The one small collective of every step (a max-allreduce of int64): freshness
        of each gradient, and - as pairs ``(x, -x)`` whose maxima give max and min - the
        step counter, the settings digest and the gradient rescale, so any difference
        between processes shows up without another collective.  A process inside
        :meth:`join` that ran out of data takes part with neutral values
        (``active=False``)."""
        t0 = time.perf_counter()
        n = len(self._trainable)
        buf = self._sync_buf
        tail = 2 * n
        if active:
            self._steps += 1
            flags = np.fromiter((self._params[k]._fresh for k in self._trainable), dtype=np.int64, count=n)
            buf[:n] = flags
            np.negative(flags, out=buf[n:tail])
            rescale = int(np.float64(self.optimizer.rescale_grad).view(np.int64))
            buf[tail:] = (1, int(self._ignore_hint), self._steps, -self._steps, 0, 0, rescale, -rescale)
        else:
            buf[:] = _NEUTRAL
            buf[tail] = 0
        digest = self._settings_hash() if self._checks else 0
        buf[tail + 4], buf[tail + 5] = digest, -digest
        self._context("step agreement")
        self._sync_comm.allreduce(buf, op="max")
        self.timings["sync"] += time.perf_counter() - t0
        t = [int(v) for v in buf[tail:]]
        any_active = t[0] == 1
        if t[4] != -t[5] or (any_active and (t[2] != -t[3] or t[6] != -t[7])):
            self._explain_mismatch(active)
        result = _Sync()
        result.any_active = any_active
        result.ignore = bool(t[1] == 1)
        result.rescale = float(np.int64(t[6]).view(np.float64)) if any_active else None
        hi, lo = buf[:n], -buf[n:tail]
        mixed = [self._params[k].name for k, a, b in zip(self._trainable, hi, lo) if a != b]
        if mixed and any_active:
            raise DistributedError("the gradient of %s was written on some processes but not on "
                                   "others since the last step; every process must write the same "
                                   "gradients" % ", ".join(repr(m) for m in mixed[:8]))
        result.fresh = hi == 1
        return result

    def _explain_mismatch(self, active):
        """The processes disagree: gather what each one has (the only extra collective,
        on this path alone) and raise on every process, naming fields and values."""
        mine = {"active": active, "settings": self._config[0],
                "step": self._steps if active else None,
                "batch_size": self._batch if active else None}
        self._context("comparing settings")
        every = self._sync_comm.allgather_object(mine)
        live = [(r, e) for r, e in enumerate(every) if e["active"]]
        problems = []
        steps = {e["step"] for _, e in live}
        if len(steps) > 1:
            problems.append("step counter differs: %s (a process skipped a step, or stepped more "
                            "often; use trainer.join() for uneven data)"
                            % ", ".join("process %d at step %s" % (r, e["step"]) for r, e in live))
        differ = _differences([e["settings"] for e in every])
        if differ:
            problems.append(differ)
        batches = {repr(e["batch_size"]) for _, e in live}
        if len(batches) > 1:
            problems.append("batch_size differs: %s" % ", ".join(
                "process %d: %r" % (r, e["batch_size"]) for r, e in live))
        if not problems:
            problems.append("the gradient rescale differs")
        raise DistributedError("the processes disagree at step %d: %s" % (self._steps, "; ".join(problems)))

    # ------------------------------------------------------------------ training
    def step(self, batch_size, ignore_stale_grad=False):
        """One step (see :meth:`Trainer.step`): agree (one small collective, which also
        checks that every process has the same settings, batch size and step count),
        reduce the gradients, update, and under ``shard_states`` gather the weights."""
        self._set_rescale(batch_size)
        self._ignore_hint = bool(ignore_stale_grad)
        try:
            self.allreduce_grads()
        finally:
            self._ignore_hint = False
        self._update(ignore_stale_grad)

    def _set_rescale(self, batch_size):
        super()._set_rescale(batch_size)
        self._batch = batch_size

    def allreduce_grads(self):
        """Sum the gradients over all processes (in place); under ``shard_states``,
        reduce-scatter them: each process gets the sum of its own range.

        Starts the step with the agreement collective (see :meth:`step`); called alone,
        before :meth:`update`, the batch size checked is the one of the previous step."""
        self._check_views()
        if self._synced is None:
            self._synced = self._sync(True)
        self._reduce()

    def _context(self, phase):
        set_context = getattr(self._comm, "set_context", None)
        if set_context is not None:
            set_context(self._steps, phase)

    def _reduce(self):
        self._context("gradient reduction")
        t0 = time.perf_counter()
        if self._shard:
            for b in self._buckets:
                self._comm.reduce_scatter(b.grad, b.grad_shard, b.counts)
        else:
            self._comm.allreduce([b.grad for b in self._buckets])
        self.timings["reduce"] += time.perf_counter() - t0
        self._reduced = True

    @contextlib.contextmanager
    def join(self):
        """For uneven inputs: a process that leaves this context early (it ran out of
        data) shadows the steps of the processes still inside - it takes part in their
        collectives with zero gradients and applies the same update, so replicas and
        shards stay consistent - until every process has left it::

            with trainer.join():
                for x, y in my_batches:            # not the same count everywhere
                    write_gradients(params, x, y)
                    trainer.step(global_batch_size)

        Outside this context a process that skips a step or stops early is an error on
        every process (step counters differ, or a process left the job)."""
        yield self
        self._shadow()

    def _shadow(self):
        while True:
            sync = self._sync(active=False)
            if not sync.any_active:
                return
            self._steps += 1
            for b in self._buckets:
                b.grad[...] = 0
            self.optimizer.rescale_grad = sync.rescale
            self._synced = sync
            self._reduce()
            self._update(sync.ignore)

    def _update(self, ignore_stale_grad):
        try:
            self._update_step(ignore_stale_grad)
        finally:
            self._context(None)

    def _update_step(self, ignore_stale_grad):
        self._check_views()
        sync, self._synced = self._synced, None
        if sync is None:
            sync = self._sync(True)
        fresh = sync.fresh
        params = self._params
        for k, f in zip(self._trainable, fresh):
            params[k]._fresh = bool(f)
        t0 = time.perf_counter()
        if not self._shard:
            try:
                super()._update(ignore_stale_grad)
            finally:
                self._reduced = False
                self.timings["update"] += time.perf_counter() - t0
                self.timings["steps"] += 1
            return
        if not self._reduced:
            raise RuntimeError("with shard_states, call allreduce_grads() before update() (or use "
                               "step()): the update reads the reduce-scattered gradient")
        self._reduced = False
        indices, weights, grads = self._piece_lists
        if not fresh.all():
            stale = [params[k].name for k, f in zip(self._trainable, fresh) if not f]
            if not ignore_stale_grad:
                shown = ", ".join(repr(n) for n in stale[:8]) + (", ..." if len(stale) > 8 else "")
                raise UserWarning(
                    "Gradient of %d parameter(s) (%s) was not written since the last step. A "
                    "gradient counts as written once param.grad was read or assigned, or "
                    "param.set_grad()/param.mark_fresh() was called. If the model uses only some "
                    "parameters on purpose, call step(..., ignore_stale_grad=True) to skip the "
                    "stale ones." % (len(stale), shown))
            keep = np.flatnonzero(fresh).tolist()
            indices = [indices[j] for j in keep]
            weights = [weights[j] for j in keep]
            grads = [grads[j] for j in keep]
        if indices:
            self._updater(indices, grads, weights)
        t1 = time.perf_counter()
        self.timings["update"] += t1 - t0
        if indices:
            self._context("weight gathering")
            for b in self._buckets:
                self._comm.allgather(b.weight, b.counts)
        self.timings["gather"] += time.perf_counter() - t1
        self.timings["steps"] += 1
        for k in self._trainable:
            params[k]._fresh = False

    # ------------------------------------------------------------------ save / load
    def _updater_bytes(self, updater):
        opt = updater.optimizer
        reducer = opt.__dict__.pop("norm_reducer", None)
        try:
            return updater.get_states(dump_optimizer=True)
        finally:
            if reducer is not None:
                opt.norm_reducer = reducer

    def _layout(self):
        return {"params": [[p.name, list(p.shape), _dtype_name(p.dtype)] for p in self._params],
                "buckets": [b.describe(self._params) for b in self._buckets]}

    def _agree(self, error, what):
        """Raise on every process if any process failed."""
        errors = self._comm.allgather_object(error)
        failed = [(r, e) for r, e in enumerate(errors) if e is not None]
        if failed:
            raise RuntimeError("%s failed on %s" % (what, "; ".join("process %d: %s" % f for f in failed)))

    def save_states(self, fname):
        """Save the optimizer states (and settings, update counts, scheduler).

        Without sharding, rank 0 writes ``fname`` exactly as :meth:`Trainer.save_states`.
        With sharding, every process writes ``<fname>.<rank>-of-<size>`` and then rank 0
        writes the manifest ``fname``; all files are written atomically and every process
        raises if any of them failed.  The manifest's rename is the moment the new
        checkpoint replaces the old one; rank 0 then deletes the shards an earlier save
        under this name left for another number of processes (``<fname>.<k>-of-<M>``).
        """
        fname = os.fspath(fname)
        comm = self._comm
        self._context("saving %s" % os.path.basename(fname))
        try:
            self._save(fname, comm)
        finally:
            self._context(None)

    def _save(self, fname, comm):
        if not self._shard:
            error = None
            if comm.rank == self._root:
                try:
                    _atomic_write(fname, self._updater_bytes(self._updater))
                    _remove_stale_shards(fname, None)
                except Exception as exc:    # reported on every process below
                    error = "%s: %s" % (type(exc).__name__, exc)
            self._agree(error, "saving %s" % fname)
            return
        token = comm.broadcast_object(uuid.uuid4().hex if comm.rank == self._root else None, self._root)
        layout = self._layout()
        # shards go beside the manifest's real file, where load_states looks for them
        # (fname may be a symbolic link to another folder)
        real = os.path.realpath(fname)
        shards = [_shard_name(real, r, comm.size) for r in range(comm.size)]
        error = None
        try:
            payload = {"token": token, "rank": comm.rank, "size": comm.size, "partition": self._partition,
                       "layout": json.dumps(layout),
                       "updater": np.frombuffer(self._updater_bytes(self._updater), dtype=np.uint8)}
            _atomic_write(shards[comm.rank], _state_io.dumps(SHARD_KIND, payload))
        except Exception as exc:
            error = "%s: %s" % (type(exc).__name__, exc)
        self._agree(error, "saving the optimizer-state shards of %s" % fname)
        error = None
        if comm.rank == self._root:
            try:
                manifest = {"token": token, "size": comm.size, "partition": self._partition,
                            "layout": json.dumps(layout),
                            "shards": [os.path.basename(s) for s in shards]}
                _atomic_write(fname, _state_io.dumps(MANIFEST_KIND, manifest))
                _remove_stale_shards(fname, comm.size)
            except Exception as exc:
                error = "%s: %s" % (type(exc).__name__, exc)
        self._agree(error, "writing the manifest %s" % fname)

    def load_states(self, fname):
        """Restore what :meth:`save_states` (of a DistributedTrainer on any number of
        processes, or of a single-process Trainer) wrote; the saved optimizer replaces
        the current one, as in :meth:`Trainer.load_states`.

        Raises :class:`~mxopt_numba._state_io.StateFormatError` (on every process) for a
        missing, corrupted or incomplete checkpoint, one for other parameters, or states
        that cannot be cut for this layout; the trainer is unchanged then.
        """
        fname = os.fspath(fname)
        error, result = None, None
        try:
            result = self._read_checkpoint(fname)
        except (StateFormatError, OSError) as exc:
            error = "%s: %s" % (type(exc).__name__, exc)
        errors = self._comm.allgather_object(error)
        failed = [(r, e) for r, e in enumerate(errors) if e is not None]
        if failed:
            raise StateFormatError("cannot load %s: %s" % (fname, "; ".join(
                "process %d: %s" % f for f in failed)))
        optimizer, states = result
        if self._shard:
            partition = _partition_for(optimizer, self._partition)
            if partition != self._partition:
                raise StateFormatError("%s: the saved %s needs partition=%r, this trainer was built "
                                       "with %r" % (fname, type(optimizer).__name__, partition,
                                                    self._partition))
        updater = Updater(optimizer)
        updater.states = states
        updater.states_synced = dict.fromkeys(states, False)
        self._attach(optimizer)
        self._install_reducer(optimizer)
        self._updater = updater

    # ------------------------------------------------------------------ checkpoint reading
    def _targets(self):
        """(index, weight-or-piece, start, stop, whole) of every trainable parameter."""
        if self._shard:
            return [(p.index, p.weight, p.start, p.stop, p.whole) for p in self._pieces]
        return [(k, self._params[k]._data, 0, self._params[k]._data.size, True) for k in self._trainable]

    def _read_checkpoint(self, fname):
        with open(fname, "rb") as f:
            data = f.read()
        kind = _peek_kind(data)
        if kind == "updater":
            optimizer, states = _load_updater(data, self.optimizer)
            sources = [states]
            manifest = None
        elif kind == MANIFEST_KIND:
            manifest = _state_io.loads(data, MANIFEST_KIND)
            if not isinstance(manifest, dict) or not {"token", "size", "layout", "shards"} <= set(manifest):
                raise StateFormatError("%s: incomplete manifest" % fname)
            if json.loads(manifest["layout"])["params"] != self._layout()["params"]:
                raise StateFormatError("%s was saved for other parameters (names, shapes or dtypes "
                                       "differ)" % fname)
            same = (self._shard and manifest["size"] == self._comm.size
                    and json.loads(manifest["layout"]) == self._layout()
                    and manifest.get("partition") == self._partition)
            folder = os.path.dirname(os.path.realpath(fname))
            paths = [os.path.join(folder, s) for s in manifest["shards"]]
            if len(paths) != manifest["size"]:
                raise StateFormatError("%s lists %d shards for %d processes"
                                       % (fname, len(paths), manifest["size"]))
            if same:
                optimizer, states = self._read_shard(paths[self._comm.rank], manifest, self._comm.rank)
                return optimizer, self._checked_states(optimizer, states, fname)
            sources = []
            optimizer = None
            for r, path in enumerate(paths):
                opt_r, states_r = self._read_shard(path, manifest, r)
                optimizer = opt_r if optimizer is None else optimizer
                sources.append(states_r)
        else:
            raise StateFormatError("%s holds %r, expected optimizer states (a manifest of "
                                   "DistributedTrainer.save_states or a Trainer.save_states file)"
                                   % (fname, kind))
        return optimizer, self._recut(optimizer, sources, fname)

    def _read_shard(self, path, manifest, rank):
        try:
            with open(path, "rb") as f:
                payload = _state_io.loads(f.read(), SHARD_KIND)
        except FileNotFoundError:
            raise StateFormatError("shard %s of the checkpoint is missing" % path) from None
        except StateFormatError as exc:
            raise StateFormatError("shard %s: %s" % (path, exc)) from None
        if not isinstance(payload, dict) or payload.get("token") != manifest["token"]:
            raise StateFormatError("shard %s does not belong to this checkpoint (another save "
                                   "overwrote it or was interrupted)" % path)
        if payload.get("rank") != rank or payload.get("size") != manifest["size"]:
            raise StateFormatError("shard %s is for process %r of %r" % (path, payload.get("rank"),
                                                                           payload.get("size")))
        blob = payload.get("updater")
        if not isinstance(blob, np.ndarray) or blob.dtype != np.uint8:
            raise StateFormatError("shard %s holds no optimizer states" % path)
        return _load_updater(blob.tobytes(), self.optimizer)

    def _checked_states(self, optimizer, states, fname):
        targets = {t[0]: t for t in self._targets()}
        for index, state in states.items():
            if index not in targets:
                raise StateFormatError("%s holds states for parameter index %r, which this trainer "
                                       "does not train" % (fname, index))
            _, piece, _, _, _ = targets[index]
            problem = _compare_state(state, _template(optimizer, index, piece))
            if problem:
                raise StateFormatError("%s: optimizer state of parameter %d (%r) does not fit: %s"
                                       % (fname, index, self._params[index].name, problem))
        return states

    def _recut(self, optimizer, sources, fname):
        """States for this layout from the states of another one (``sources``: the
        per-process state dicts of the saved run, in process order)."""
        out = {}
        for index, piece, start, stop, whole in self._targets():
            parts = [src[index] for src in sources if index in src]
            if not parts:
                continue
            if len(parts) != len(sources):
                raise StateFormatError("%s: the states of parameter %d are missing on some shards"
                                       % (fname, index))
            full = [np.concatenate([leaf.reshape(-1) for leaf in group])
                    for group in zip(*[state_leaves(s) for s in parts])] if parts else []
            if any(len(state_leaves(s)) != len(full) for s in parts):
                raise StateFormatError("%s: the shards hold differently structured states for "
                                       "parameter %d" % (fname, index))
            template = _template(optimizer, index, piece)
            leaves = state_leaves(template)
            if len(leaves) != len(full):
                raise StateFormatError("%s: parameter %d has %d state arrays, %s expects %d"
                                       % (fname, index, len(full), type(optimizer).__name__, len(leaves)))
            n = self._params[index]._data.size
            cut = []
            for leaf, f in zip(leaves, full):
                if f.dtype != leaf.dtype:
                    raise StateFormatError("%s: state of parameter %d has dtype %s, expected %s"
                                           % (fname, index, f.dtype, leaf.dtype))
                if f.size == n and leaf.size == stop - start:
                    part = f[start:stop]
                elif whole and f.size == leaf.size:
                    part = f
                elif leaf.size == 0:
                    part = f[:0]
                else:
                    raise StateFormatError(
                        "%s: cannot cut the states of parameter %d (%r) for this layout: a state "
                        "array of %d elements for a weight of %d is not element-wise; load on "
                        "the same number of processes with the same partition"
                        % (fname, index, self._params[index].name, f.size, n))
                cut.append(np.array(part.reshape(leaf.shape), copy=True))
            it = iter(cut)
            out[index] = map_state(template, lambda _: next(it))
        return out


# ---------------------------------------------------------------------- helpers

def _new_timings():
    """Seconds spent per phase (cumulative): ``reduce`` (allreduce / reduce-scatter of the
    gradients), ``sync`` (agreeing on fresh gradients), ``update`` (the optimizer, norm
    reductions included), ``norms`` (allreduce of layer-wise sums, part of ``update``),
    ``gather`` (allgather of the weights)."""
    return {"steps": 0, "reduce": 0.0, "sync": 0.0, "update": 0.0, "norms": 0.0, "gather": 0.0}


#: the neutral contribution to a max-allreduce
_NEUTRAL = np.iinfo(np.int64).min


class _Sync:
    """What the processes agreed on at the start of a step."""

    __slots__ = ("any_active", "ignore", "rescale", "fresh")


def _is_scalar(value):
    return value is None or isinstance(value, (bool, int, float, str, np.generic))


def _differences(settings):
    """``'learning_rate differs: process 0: 0.1, process 1: 0.2; ...'`` for the fields of
    the per-process dicts ``settings`` that are not equal everywhere ('' if none)."""
    keys = []
    for s in settings:
        for key in s or {}:
            if key not in keys:
                keys.append(key)
    out = []
    for key in keys:
        values = [(s or {}).get(key, "<missing>") for s in settings]
        if any(repr(v) != repr(values[0]) for v in values[1:]):
            shown = [repr(v) if len(repr(v)) <= 80 else repr(v)[:77] + "..." for v in values]
            out.append("%s differs: %s" % (key, ", ".join("process %d: %s" % rv for rv in enumerate(shown))))
    return "; ".join(out)


def _shard_name(fname, rank, size):
    return "%s.%d-of-%d" % (fname, rank, size)


def _remove_stale_shards(fname, size):
    """Delete ``<fname>.<k>-of-<M>`` for every ``M != size`` (all of them for None)."""
    folder, base = os.path.split(os.path.abspath(fname))
    pattern = re.compile(re.escape(base) + r"\.(\d+)-of-(\d+)\Z")
    for entry in os.listdir(folder):
        match = pattern.match(entry)
        if match and (size is None or int(match.group(2)) != size):
            try:
                os.remove(os.path.join(folder, entry))
            except FileNotFoundError:
                pass


def _template(optimizer, index, piece):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optimizer.create_state_multi_precision(index, piece)


def _peek_kind(data):
    """The ``kind`` of a state file (without decoding its arrays)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            with archive.open("__meta__.npy") as f:
                meta = np.lib.format.read_array(f, allow_pickle=False)
        meta = json.loads(bytes(meta).decode("utf-8"))
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, UnicodeDecodeError, EOFError):
        raise StateFormatError("not an mxopt_numba state file (corrupted or truncated?)") from None
    if not isinstance(meta, dict) or meta.get("format") != _state_io.FORMAT:
        raise StateFormatError("not an mxopt_numba state file")
    return meta.get("kind")


def _load_updater(data, current):
    updater = Updater(current)
    updater.set_states(data)
    return updater.optimizer, updater.states


__dir__ = _namespace.public_dir(__name__)
