"""The library after os.fork() and from several Python threads at once."""
import os
import threading

import numpy as np
import pytest

import mxopt_numba as mxo

N = 1 << 17     # large enough for the multi-threaded kernels


def _train(name, seed, steps=5):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(N).astype(np.float32)
    opt = mxo.optimizer.create(name, momentum=0.9) if name == "sgd" else mxo.optimizer.create(name)
    u = mxo.optimizer.get_updater(opt)
    for _ in range(steps):
        u(0, rng.standard_normal(N).astype(np.float32), w)
    return w


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_updates_work_in_a_forked_child():
    expected = _train("sgd", 0)              # the parent has used the parallel kernels
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                             # child
        try:
            os.write(write, _train("sgd", 0).tobytes())
        finally:
            os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 1 << 20):
        data += chunk
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    np.testing.assert_array_equal(np.frombuffer(data, np.float32), expected)


def test_threads_with_different_optimizers():
    names = ["sgd", "sgd", "adam" if "adam" in mxo.optimizer.Optimizer.opt_registry else "sgd"]
    expected = [_train(n, s) for s, n in enumerate(names)]
    results = [None] * len(names)
    errors = []

    def work(k):
        try:
            results[k] = _train(names[k], k)
        except Exception as exc:      # pragma: no cover - reported below
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(names))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)
