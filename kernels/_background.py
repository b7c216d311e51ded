"""Compiling kernels off the training loop's thread.

A kernel that is neither compiled in this process nor in the disk cache costs about a
second to compile with threads (``parallel=True``) and a third of that without.  Rather
than stall the first step for the parallel version, the launch layer asks
:func:`ready`: when the answer is no, the step runs the kernel's single-threaded twin
(same loop, same scalar rule, same bits) and the parallel version compiles in a
background thread, to be used from the first launch after it is done.  Compiled helpers
with a slower pure-Python path (the header checks of reused plans) use it the same way.

What makes this safe:

* a kernel and its twin compute identical results (``tests/test_background_compile.py``
  checks every rule), so when the switch happens never changes a trajectory;
* the worker is not a daemon: interpreter exit waits for the compile it is running (and
  the result reaches the disk cache, so the next process starts warm);
* ``fork`` waits for the worker to go idle first: a child must not inherit Numba's
  compiler lock held by a thread that does not exist in it;
* only the worker compiles what it was given; a launch whose types it has never seen
  asks again, so a second dtype or rule is queued the same way;
* a compile that fails in the worker is reported once as a warning and the launch keeps
  the fallback.

``MXOPT_NUMBA_BACKGROUND_COMPILE=0`` turns this off: every kernel then compiles on the
calling thread at its first launch, as plain Numba would.
"""
import os
import threading

import numpy as np

_READY, _PENDING, _FAILED = "ready", "pending", "failed"

_states = {}                 # (dispatcher, argument kinds) -> _READY / _PENDING / _FAILED
_jobs = []                   # [(key, dispatcher, signature)], compiled in order
_lock = threading.Lock()
_idle = threading.Condition(_lock)
_worker = None
_busy = False


def enabled():
    return os.environ.get("MXOPT_NUMBA_BACKGROUND_COMPILE", "1").strip().lower() not in ("0", "false", "no", "off")


def _kinds(args):
    # what decides the compiled signature here: the dtype and rank of each array, the
    # Python type of everything else (every launch passes C-contiguous arrays)
    return tuple([a.dtype.num * 64 + a.ndim if type(a) is np.ndarray else type(a) for a in args])


def ready(dispatcher, args):
    """True when ``dispatcher(*args)`` runs without compiling on this thread: it is
    compiled already, or its disk cache holds it (then it is loaded here, in
    milliseconds).  Otherwise its compilation is queued for the worker (see
    :func:`start`) and the answer is False until that is done."""
    key = (dispatcher, _kinds(args))
    state = _states.get(key)
    if state is _READY:
        return True
    if state is None:
        state = _first_sight(key, dispatcher, args)
    return state is _READY


def _first_sight(key, dispatcher, args):
    if not hasattr(dispatcher, "compile") or not enabled():
        _states[key] = _READY                 # plain Python (NUMBA_DISABLE_JIT) or turned off
        return _READY
    signature = tuple(dispatcher.typeof_pyval(a) for a in args)
    if signature in dispatcher.overloads:
        _states[key] = _READY
        return _READY
    cached = _on_disk(dispatcher, signature)
    with _lock:
        if key in _states:
            return _states[key]
        if cached is not False and _worker is None:
            # loading from the cache takes milliseconds (an unreadable cache index leaves
            # the decision to Numba, as without this module)
            _states[key] = _READY
        else:
            # while the worker compiles it holds Numba's compiler lock, which loading from
            # the cache needs too: queue the load ahead of the compiles, keep the fallback
            _states[key] = _PENDING
            _jobs.insert(0 if cached else len(_jobs), (key, dispatcher, signature))
    return _states[key]


def _on_disk(dispatcher, signature):
    """Whether the dispatcher's disk cache holds ``signature`` for this machine and this
    source; None when that cannot be told (Numba's cache internals differ)."""
    try:
        cache = dispatcher._cache
        if not getattr(cache, "_enabled", False):
            return False
        index = cache._cache_file._load_index()
        return cache._index_key(signature, dispatcher.targetctx.codegen()) in index
    except Exception:          # noqa: BLE001 - any surprise means "let Numba decide"
        return None


def start():
    """Start the worker if compilations are queued and it is not running.  Called after
    the launch that queued them, so that the worker does not take Numba's compiler lock
    while that launch still compiles its single-threaded twin."""
    global _worker
    with _lock:
        if not _jobs or _worker is not None:
            return
        _worker = threading.Thread(target=_drain, name="mxopt-numba-compile", daemon=False)
        _worker.start()


def _drain():
    global _worker, _busy
    while True:
        with _lock:
            if not _jobs:
                _worker = None
                _busy = False
                _idle.notify_all()
                return
            key, dispatcher, signature = _jobs.pop(0)
            _busy = True
        try:
            dispatcher.compile(signature)
        except BaseException as exc:           # noqa: BLE001 - reported, the fallback stays
            _states[key] = _FAILED
            _warn_failed(dispatcher, exc)
        else:
            _states[key] = _READY


def _warn_failed(dispatcher, exc):
    import warnings
    name = getattr(getattr(dispatcher, "py_func", None), "__qualname__", repr(dispatcher))
    warnings.warn("mxopt_numba could not compile %s in the background (%s: %s); its launches keep "
                  "the single-threaded version" % (name, type(exc).__name__, exc), RuntimeWarning)


def wait(timeout=None):
    """Compile everything queued and block until that is done; True if it was within
    ``timeout`` seconds (None: no limit)."""
    start()
    with _lock:
        return _idle.wait_for(lambda: not _jobs and _worker is None, timeout)


def pending():
    """Number of compilations queued or running."""
    with _lock:
        return len(_jobs) + (1 if _busy else 0)


def _before_fork():
    if threading.current_thread() is not _worker:
        with _lock:
            _idle.wait_for(lambda: _worker is None)


def _after_fork_in_child():
    # what was queued but not started is decided again in the child, by its own launches
    global _lock, _idle, _busy
    _lock = threading.Lock()
    _idle = threading.Condition(_lock)
    _busy = False
    _jobs.clear()
    for key in [k for k, state in _states.items() if state is _PENDING]:
        del _states[key]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
