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
``MPI_IN_PLACE`` where the operation allows it) and :class:`SingleProcessCommunicator`.
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

Oversubscription.  Each process runs Numba's thread pool; with as many processes as cores
use one thread per process (``NUMBA_NUM_THREADS=1``, and ``OMP_WAIT_POLICY=passive`` so
idle OpenMP threads sleep).  :func:`init` lowers the thread count itself when the
processes on a node would outnumber its cores.

Checkpoints (:meth:`DistributedTrainer.save_states`): with sharding every process writes
its own file ``<fname>.<rank>-of-<size>`` (atomically), then rank 0 writes ``fname``, a
small manifest naming the shards and the layout, so a checkpoint whose manifest exists is
complete.  :meth:`~DistributedTrainer.load_states` on the same number of processes reads
its own shard; on another number (or without sharding, or from a single-process
:meth:`Trainer.save_states` file) it reads every shard and cuts the states again, which
works for states shaped like their weight (every element-wise rule) and otherwise stops
with a clear error.  Every process must be able to read every file (a shared
filesystem).
"""
import functools
import io
import json
import math
import os
import time
import uuid
import warnings
import zipfile

import numpy as np

from . import _state_io
from . import random as _random
from .optimizer.optimizer import map_state, state_leaves
from .optimizer.updater import Updater
from .trainer import Trainer, _atomic_write, _compare_state

__all__ = ["Communicator", "SingleProcessCommunicator", "MPICommunicator", "init",
           "DistributedTrainer", "MANIFEST_KIND", "SHARD_KIND"]

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
    """Collectives through mpi4py on ``comm`` (default ``MPI.COMM_WORLD``).

    Buffers go to MPI as they are (no copies); allreduce and allgather run in place.
    float16/bfloat16 sums go through a float32 scratch buffer (kept between calls).

    Sums of at least ``pairwise_above`` elements (None: never) use a pairwise exchange
    instead of MPI's own reduce-scatter: in round ``k = 1 .. size-1`` each process sends
    process ``rank+k`` its block and adds the block received from ``rank-k`` to its own.
    An allreduce is that reduce-scatter followed by an in-place allgather.  On one node
    this is several times faster than MPICH's ``MPI_Reduce_scatter_block`` and
    ``MPI_Allreduce`` for large buffers (measured: 100 MB on 2 processes, 17 ms against
    70 ms), needs one block of scratch memory, and every element is added up by its
    owner only, so all processes receive the same bits.  Order of the sum for block
    ``r``: ``g_r + g_(r-1) + g_(r-2) + ...`` (exactly ``a + b`` for two processes).
    """

    _TAG = 0x6D78

    def __init__(self, comm=None, pairwise_above=1 << 16):
        MPI = _mpi()
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.pairwise_above = pairwise_above
        self._ops = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}
        self._scratch = {}

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

    def _pairwise_reduce(self, flat, counts, out):
        """``out`` (may be ``flat``'s own block) <- block ``rank`` of the sum of ``flat``."""
        displs = _displacements(counts)
        rank, size = self.rank, self.size
        lo, n = displs[rank], counts[rank]
        if out is not None:
            np.copyto(out, flat[lo:lo + n])
        else:
            out = flat[lo:lo + n]
        tmp = self._scratch_of("pairwise", flat.dtype, n)
        mtype = self._type(flat.dtype)
        for k in range(1, size):
            dest, src = (rank + k) % size, (rank - k) % size
            d = displs[dest]
            self.comm.Sendrecv([flat[d:d + counts[dest]], mtype], dest=dest, sendtag=self._TAG,
                               recvbuf=[tmp, mtype], source=src, recvtag=self._TAG)
            np.add(out, tmp, out=out)

    # ------------------------------------------------------------------ collectives
    def allreduce(self, arrays, op="sum"):
        mpi_op = self._ops[_check_op(op)]
        for a in _array_list(arrays):
            _check_buffer(a)
            if a.size == 0:
                continue
            native = _native(a.dtype)
            if native and not (op == "sum" and self._pairwise(a.size)):
                self.comm.Allreduce(self.MPI.IN_PLACE, self._buffer(a), op=mpi_op)
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
                self.comm.Allreduce(self.MPI.IN_PLACE, [flat, self.MPI.FLOAT], op=mpi_op)
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
            self.comm.Reduce_scatter_block(self._buffer(s), self._buffer(r), op=self.MPI.SUM)
        else:
            self.comm.Reduce_scatter(self._buffer(s), self._buffer(r), counts, op=self.MPI.SUM)
        if not native:
            np.copyto(recv.reshape(-1), r, casting="unsafe")

    def allgather(self, buf, counts):
        _check_buffer(buf)
        counts = _check_counts(counts, buf.size, self.size)
        raw, mtype = self._raw(buf)
        scale = raw.size // max(buf.size, 1)
        counts = [c * scale for c in counts]
        if all(c == counts[0] for c in counts):
            self.comm.Allgather(self.MPI.IN_PLACE, [raw, mtype])
        else:
            self.comm.Allgatherv(self.MPI.IN_PLACE, [raw, counts, _displacements(counts), mtype])

    def broadcast(self, arrays, root=0):
        _check_root(root, self.size)
        for a in _array_list(arrays):
            _check_buffer(a)
            if a.size:
                raw, mtype = self._raw(a)
                self.comm.Bcast([raw, mtype], root=root)

    def barrier(self):
        self.comm.Barrier()

    def allgather_object(self, obj):
        return self.comm.allgather(obj)

    def broadcast_object(self, obj, root=0):
        _check_root(root, self.size)
        return self.comm.bcast(obj, root=root)


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


def init(backend="auto", comm=None, limit_threads=True):
    """The communicator of this process.

    ``backend``: ``'mpi'`` (mpi4py, ``comm`` or ``MPI.COMM_WORLD``), ``'single'`` (one
    process), or ``'auto'``: MPI when the process was started by an MPI launcher and
    mpi4py is installed, else single.  With ``limit_threads``, when this node's processes
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
    communicator = MPICommunicator(comm)
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


@functools.lru_cache(maxsize=None)
def norm_hook_available():
    """True when the layer-wise rules pass their per-tensor sums through
    ``opt.norm_reducer`` (probed once on a tiny LAMB update)."""
    from .optimizer.lamb import LAMB
    probe = LAMB(aggregate_num=math.inf)
    calls = []

    def record(sums):
        calls.append(sums.shape)
        return sums
    probe.norm_reducer = record
    w = np.ones(2, dtype=np.float32)
    probe.update([0], [w], [np.ones(2, dtype=np.float32)], [probe.create_state(0, w)])
    return bool(calls)


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
        if opt.use_fused_step and norm_hook_available():
            return "elements"
        if requested == "elements":
            why = ("its NumPy step() (use_fused_step=False) takes norms of the pieces it sees"
                   if not opt.use_fused_step else
                   "launch_sums does not apply opt.norm_reducer yet, so the per-tensor norms "
                   "would be norms of the pieces")
            raise ValueError("%s needs whole-tensor norms and cannot be cut at arbitrary "
                             "elements: %s; use partition='params' (or 'auto')" % (name, why))
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

    ``step(batch_size)`` takes the global batch size.  :meth:`allreduce_grads` sums the
    gradients (under ``shard_states``: reduce-scatters them, so each process holds the
    summed gradient of its own range only; ``p.grad`` keeps the local gradient).
    Attributes ``rank``, ``size``, ``communicator``, ``bounds``, ``timings``.
    """

    def __init__(self, params, optimizer, optimizer_params=None, *, communicator=None,
                 shard_states=False, partition="auto", root=0):
        super().__init__(params, optimizer, optimizer_params)
        comm = init() if communicator is None else communicator
        missing = [m for m in ("rank", "size", "allreduce", "reduce_scatter", "allgather", "broadcast",
                               "barrier", "allgather_object", "broadcast_object") if not hasattr(comm, m)]
        if missing:
            raise TypeError("communicator %r lacks %s (see mxopt_numba.distributed.Communicator)"
                            % (comm, ", ".join(missing)))
        _check_root(root, comm.size)
        self._comm = comm
        self._root = root
        self._shard = bool(shard_states)
        self._partition = None
        self._reduced = False
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
                "shard_states": self._shard, "partition": partition}

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

    def allreduce_grads(self):
        """Sum the gradients over all processes (in place); under ``shard_states``,
        reduce-scatter them: each process gets the sum of its own range."""
        self._check_views()
        t0 = time.perf_counter()
        if self._shard:
            for b in self._buckets:
                self._comm.reduce_scatter(b.grad, b.grad_shard, b.counts)
        else:
            self._comm.allreduce([b.grad for b in self._buckets])
        self.timings["reduce"] += time.perf_counter() - t0
        self._reduced = True

    def _global_fresh(self):
        """Freshness of each trainable parameter, agreed by all processes."""
        t0 = time.perf_counter()
        params = self._params
        flags = np.fromiter((params[k]._fresh for k in self._trainable), dtype=np.int32,
                            count=len(self._trainable))
        self._comm.allreduce(flags)
        self.timings["sync"] += time.perf_counter() - t0
        size = self._comm.size
        mixed = [params[k].name for k, f in zip(self._trainable, flags) if 0 < f < size]
        if mixed:
            raise RuntimeError("the gradient of %s was written on some processes but not on others "
                               "since the last step; every process must write the same gradients"
                               % ", ".join(repr(n) for n in mixed[:8]))
        return flags == size

    def _update(self, ignore_stale_grad):
        self._check_views()
        fresh = self._global_fresh()
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
        raises if any of them failed.
        """
        fname = os.fspath(fname)
        comm = self._comm
        if not self._shard:
            error = None
            if comm.rank == self._root:
                try:
                    _atomic_write(fname, self._updater_bytes(self._updater))
                except Exception as exc:    # reported on every process below
                    error = "%s: %s" % (type(exc).__name__, exc)
            self._agree(error, "saving %s" % fname)
            return
        token = comm.broadcast_object(uuid.uuid4().hex if comm.rank == self._root else None, self._root)
        layout = self._layout()
        shards = [_shard_name(fname, r, comm.size) for r in range(comm.size)]
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
            folder = os.path.dirname(os.path.abspath(fname))
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


def _shard_name(fname, rank, size):
    return "%s.%d-of-%d" % (fname, rank, size)


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
