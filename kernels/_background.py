"""Compiling kernels away from the training loop.

A kernel that is neither compiled in this process nor in the disk cache costs about a
second to compile with threads (``parallel=True``) and a third of that without.  Rather
than stall the first step for the parallel version, the launch layer asks
:func:`ready`: when the answer is no, the step runs the kernel's single-threaded twin
(same loop, same scalar rule, same bits) and the parallel version is compiled by a
helper process, which leaves it in the disk cache; the first launch after that loads it
(milliseconds) and runs threaded.  Compiled helpers with a slower pure-Python path (the
header checks of reused plans) use it the same way.

Why a process and not a thread: Numba's type inference enters and leaves
``warnings.catch_warnings`` for every constraint it solves, and that context manager
swaps module-wide state (``warnings.filters``, ``warnings.showwarning``).  A compiling
thread therefore made warnings raised meanwhile on the user's thread disappear or land
in the wrong place (a ``pytest.warns`` block saw nothing, and an unlucky interleaving
left a dead recorder installed for the rest of the process).  A process shares only the
disk cache.  It also never holds this process's compiler lock, so ``fork`` and cache
loads need no care.

What makes this safe:

* a kernel and its twin compute identical results (``tests/test_background_compile.py``
  checks every rule), so when the switch happens never changes a trajectory;
* the helper compiles only dispatchers it finds under the same module and name as here,
  with the signature this process would compile, from the same source files; what it
  cannot reach (``__main__``, nested functions, no disk cache) compiles on the launching
  thread as in plain Numba;
* a compile that fails in the helper is reported once as a warning (with the warnings
  the compile raised, re-raised here) and the launch keeps the twin; a helper that cannot
  start or stops leaves every waiting kernel to compile on the launching thread;
* interpreter exit waits (two minutes at most) for the helper to finish what it was
  given (the next process then starts warm); a forked child closes its copies of the
  pipes and compiles on its own thread.

``MXOPT_NUMBA_BACKGROUND_COMPILE=0`` turns this off: every kernel then compiles on the
calling thread at its first launch, as plain Numba would.  So do processes without POSIX
pipes and those whose ``sys.executable`` is not a Python interpreter (frozen or embedding
applications, which starting would start again).
"""
import os
import sys
import threading

import numpy as np

_READY, _PENDING, _STORED, _FAILED = "ready", "pending", "stored", "failed"

_states = {}                 # (dispatcher, argument kinds) -> one of the four above
_jobs = {}                   # job number -> (key, dispatcher, signature), until answered
_stored = {}                 # key -> signature, compiled by the helper and not loaded yet
_queued = []                 # (key, dispatcher, signature, where), for the helper at the next flush
_lock = threading.Lock()
_helper = None               # the helper's Popen, once started
_to_helper = _from_helper = None     # pipe ends (file descriptors) while it runs
_replies = b""
_next_job = 0
_unavailable = False         # the helper could not start or stopped: compile here
_forked = False
_notices = []                # warnings to raise on a caller's thread, outside the lock


def enabled():
    return (os.environ.get("MXOPT_NUMBA_BACKGROUND_COMPILE", "1").strip().lower() not in ("0", "false", "no", "off")
            and os.name == "posix" and not _forked and _python_executable())


def _python_executable():
    # a frozen application's or an embedding program's executable is not an interpreter
    # that runs ``-c``: starting it would start that program again
    if getattr(sys, "frozen", False) or not sys.executable:
        return False
    name = os.path.basename(sys.executable).lower()
    return name.startswith("python") or name.startswith("pypy")


def _kinds(args):
    # what decides the compiled signature here: the dtype and rank of each array, the
    # Python type of everything else (every launch passes C-contiguous arrays)
    return tuple([a.dtype.num * 64 + a.ndim if type(a) is np.ndarray else type(a) for a in args])


def ready(dispatcher, args):
    """True when ``dispatcher(*args)`` runs without a long compile on this thread: it is
    compiled already, or the disk cache holds it (then it is loaded here, in
    milliseconds).  Otherwise its compilation goes to the helper process and the answer
    is False until the helper has stored it."""
    key = (dispatcher, _kinds(args))
    state = _states.get(key)
    if state is _READY:
        return True
    if state is None:
        state = _first_sight(key, dispatcher, args)
    elif state is _PENDING:
        _collect(0.0)
        state = _states.get(key, _READY)
    if state is _STORED:
        _stored.pop(key, None)
        _states[key] = state = _READY      # the call loads it from the cache
    _raise_notices()
    return state is _READY


def _first_sight(key, dispatcher, args):
    if not hasattr(dispatcher, "compile") or not enabled() or _unavailable:
        _states[key] = _READY                 # plain Python (NUMBA_DISABLE_JIT), or compile here
        return _READY
    signature = tuple(dispatcher.typeof_pyval(a) for a in args)
    if signature in dispatcher.overloads or _on_disk(dispatcher, signature) is not False:
        # compiled, or loading from the cache takes milliseconds (an unreadable cache
        # index leaves the decision to Numba, as without this module)
        _states[key] = _READY
        return _READY
    where = _importable(dispatcher)
    with _lock:
        if key in _states:
            return _states[key]
        if where is None:
            _states[key] = _READY
        else:
            _states[key] = _PENDING
            _queued.append((key, dispatcher, signature, where))
        return _states[key]


def flush():
    """Hand what was queued to the helper.  Called after the launch that queued it, so
    that starting the helper does not compete with that launch's own compile of the
    single-threaded twin."""
    if not _queued:
        return
    with _lock:
        while _queued:
            key, dispatcher, signature, where = _queued.pop(0)
            if not _send(key, dispatcher, signature, where):
                _states[key] = _READY
    _raise_notices()


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


def _importable(dispatcher):
    """``(module, qualified name, source file)`` under which the helper finds this very
    dispatcher, or None: it must be a module attribute here, with a disk cache to hand
    the result over."""
    if not getattr(getattr(dispatcher, "_cache", None), "_enabled", False):
        return None
    func = getattr(dispatcher, "py_func", None)
    module_name = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", "")
    if module_name in (None, "__main__") or "<" in qualname:
        return None
    found = _attribute(sys.modules.get(module_name), qualname)
    filename = getattr(getattr(func, "__code__", None), "co_filename", None)
    return (module_name, qualname, filename) if found is dispatcher else None


# --------------------------------------------------------------------------- this side

def _send(key, dispatcher, signature, where):
    """Give the helper one job (starting it if need be); False if it cannot take it.
    Called with the lock held."""
    global _next_job
    import base64
    import json
    import pickle
    if _unavailable or (_helper is None and not _start_helper()):
        return False
    try:
        payload = base64.b64encode(pickle.dumps(signature)).decode("ascii")
    except Exception:          # noqa: BLE001 - a signature that does not pickle compiles here
        return False
    _next_job += 1
    line = json.dumps({"job": _next_job, "module": where[0], "qualname": where[1], "file": where[2],
                       "signature": payload})
    try:
        _write_all(_to_helper, (line + "\n").encode())
    except OSError:
        _helper_gone()
        return False
    _jobs[_next_job] = (key, dispatcher, signature)
    return True


def _close(*fds):
    for fd in fds:
        if fd is not None:
            try:
                os.close(fd)
            except OSError:        # closed behind our back (a daemonising library, say)
                pass


def _write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]


def _start_helper():
    global _helper, _to_helper, _from_helper, _unavailable
    import atexit
    import json
    import subprocess
    env = dict(os.environ, MXOPT_NUMBA_BACKGROUND_COMPILE="0")
    boot = "import sys, json; sys.path[:] = json.loads(sys.argv[1]); import %s as m; m._serve()" % __name__
    # the helper looks modules up where this process would now: relative entries
    # resolved against the current folder, entries that are not paths left out
    path = [os.path.abspath(os.fspath(p)) for p in sys.path if isinstance(p, (str, os.PathLike))]
    fds = []
    try:
        job_read, job_write = os.pipe()
        fds += [job_read, job_write]
        reply_read, reply_write = os.pipe()
        fds += [reply_read, reply_write]
        _helper = subprocess.Popen([sys.executable, "-c", boot, json.dumps(path)], stdin=job_read,
                                   stdout=reply_write, stderr=subprocess.DEVNULL, env=env, close_fds=True)
    except Exception as exc:       # noqa: BLE001 - no helper (no fork, no fds, no interpreter...)
        _close(*fds)
        _helper = None
        _unavailable = True
        _notices.append(("mxopt_numba could not start its kernel compile process (%s: %s); kernels "
                         "compile on the launching thread instead" % (type(exc).__name__, exc), RuntimeWarning))
        return False
    os.close(job_read)
    os.close(reply_write)
    _to_helper, _from_helper = job_write, reply_read
    atexit.register(_finish)
    return True


def _collect(timeout):
    """Read the helper's answers, waiting up to ``timeout`` seconds for the first."""
    global _replies
    import select
    with _lock:
        fd = _from_helper
    if fd is None:
        return
    try:
        readable = select.select([fd], [], [], timeout)[0]
    except (OSError, ValueError):
        readable = [fd]
    if not readable:
        return
    with _lock:
        if _from_helper != fd:
            return
        try:
            data = os.read(fd, 1 << 16)
        except OSError:
            data = b""
        if not data:
            _helper_gone()
            return
        _replies += data
        *lines, _replies = _replies.split(b"\n")
        for line in lines:
            _answer(line)


def _answer(line):
    import json
    try:
        reply = json.loads(line)
        key, dispatcher, signature = _jobs.pop(reply["job"])
    except (ValueError, TypeError, KeyError):
        _helper_gone()             # not what the helper writes: stop trusting it
        return
    for module_name, name, message in reply.get("warnings", ()):
        _notices.append((message, _warning_class(module_name, name)))
    if reply["ok"]:
        _states[key] = _STORED
        _stored[key] = signature
    elif not reply.get("found", True):
        _states[key] = _READY          # the helper could not reach it (say, a path added since)
    else:
        _states[key] = _FAILED
        name = getattr(getattr(dispatcher, "py_func", None), "__qualname__", repr(dispatcher))
        _notices.append(("mxopt_numba could not compile %s in the background (%s); its launches keep "
                         "the single-threaded version" % (name, reply["error"]), RuntimeWarning))


def _attribute(module, dotted):
    """``module.a.b`` for ``dotted`` = "a.b", None where a name is missing."""
    for part in dotted.split("."):
        module = getattr(module, part, None)
    return module


def _warning_class(module_name, name):
    found = _attribute(sys.modules.get(module_name), name)
    return found if isinstance(found, type) and issubclass(found, Warning) else RuntimeWarning


def _helper_gone():
    """The helper stopped (or its pipe broke): what it was given compiles here."""
    global _helper, _to_helper, _from_helper, _unavailable
    _unavailable = True
    code = _helper.poll() if _helper is not None else None
    _close(_to_helper, _from_helper)
    _to_helper = _from_helper = None
    if _jobs:
        _notices.append(("mxopt_numba's kernel compile process stopped (exit code %s); kernels compile on "
                         "the launching thread instead" % code, RuntimeWarning))
    for key, _, _ in _jobs.values():
        _states[key] = _READY
    _jobs.clear()


def _raise_notices():
    if _notices:
        import warnings
        with _lock:
            notices = _notices[:]
            del _notices[:]
        for message, category in notices:
            warnings.warn(message, category, stacklevel=3)


def wait(timeout=None):
    """Block until every kernel given to the helper is compiled, and load them; True if
    that was within ``timeout`` seconds (None: no limit)."""
    import time
    flush()
    deadline = None if timeout is None else time.monotonic() + timeout
    while _jobs:
        left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
        if left <= 0:
            _raise_notices()
            return False
        _collect(left)
    with _lock:
        stored = [(key, _stored.pop(key)) for key in list(_stored)]
    for (dispatcher, _), signature in stored:
        if signature not in dispatcher.overloads:
            dispatcher.compile(signature)      # from the cache: milliseconds
    for key, _ in stored:
        _states[key] = _READY
    _raise_notices()
    return True


def pending():
    """Number of compilations queued for the helper or running there."""
    _collect(0.0)
    return len(_jobs) + len(_queued)


#: seconds interpreter exit waits for the helper, at most (a stuck compile must not hold
#: a failing job's exit)
_EXIT_WAIT = 120


def _finish():
    """At exit: let the helper finish what it was given (so the next process starts warm)."""
    global _to_helper
    helper, fd = _helper, _to_helper
    if helper is None:
        return
    if fd is not None:
        _to_helper = None
        _close(fd)                   # end of jobs: the helper exits after the last one
    import subprocess
    try:
        helper.wait(timeout=_EXIT_WAIT)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        pass                         # it finishes alone (it has seen the end of jobs)


def _after_fork_in_child():
    # the helper belongs to the parent; the child closes its copies of the pipes (else
    # the helper would not see the parent's end of jobs) and compiles on its own thread
    global _lock, _helper, _to_helper, _from_helper, _forked, _replies
    _lock = threading.Lock()
    _close(_to_helper, _from_helper)
    _helper = _to_helper = _from_helper = None
    _replies = b""
    _forked = True
    _jobs.clear()
    _stored.clear()
    _queued.clear()
    _notices.clear()
    for key in [k for k, state in _states.items() if state in (_PENDING, _STORED)]:
        del _states[key]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------- the helper

def _serve():
    """The helper's loop: one job per line on stdin, one answer per line on stdout."""
    import base64
    import importlib
    import json
    import pickle
    import signal
    import warnings
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is for the training process
    try:
        os.nice(5)                                # compiling yields to the training loop
    except OSError:
        pass
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)                                     # stray prints must not reach the answers
    for line in sys.stdin:
        job = json.loads(line)
        reply = {"job": job["job"], "ok": False, "found": False}
        try:
            dispatcher = _attribute(importlib.import_module(job["module"]), job["qualname"])
            signature = pickle.loads(base64.b64decode(job["signature"]))
            # another file of the same name would fill a cache this process never reads
            code = getattr(getattr(dispatcher, "py_func", None), "__code__", None)
            reply["found"] = code is not None and _same_file(code.co_filename, job["file"])
            if not reply["found"]:
                raise LookupError("%s is missing here or defined in another file" % job["qualname"])
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                dispatcher.compile(signature)
            reply["warnings"] = [[w.category.__module__, w.category.__qualname__, str(w.message)]
                                 for w in caught]
            reply["ok"] = True
        except Exception as exc:        # noqa: BLE001 - reported to the launching process
            reply["error"] = "%s: %s" % (type(exc).__name__, exc)
        answers.write(json.dumps(reply) + "\n")


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except (OSError, TypeError, ValueError):
        return a == b
