"""The thread pool in the default environment: the library lets Numba's OpenMP workers
sleep between launches (so they leave the cores to NumPy's BLAS threads) unless the
user has chosen a wait policy."""
import os
import subprocess
import sys

import pytest

CHILD = """
import os, numpy as np, mxopt_numba as mxo
opt = mxo.optimizer.create("adam", aggregate_num=np.inf)
w = [np.ones(1 << 17, np.float32)]          # above the serial threshold: a parallel launch
before = os.environ.get("OMP_WAIT_POLICY")
opt.update([0], w, [np.full(w[0].shape, 0.1, np.float32)], [opt.create_state(0, w[0])])
import numba
print(before, os.environ.get("OMP_WAIT_POLICY"), numba.threading_layer())
"""


def _child(env_update):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(env_update)
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_first_parallel_launch_sets_a_passive_wait_policy():
    before, after, layer = _child({})
    if layer != "omp":
        pytest.skip("threading layer %s has no wait policy" % layer)
    assert before == "None" and after == "PASSIVE"


def test_a_users_wait_policy_is_kept():
    before, after, _ = _child({"OMP_WAIT_POLICY": "ACTIVE"})
    assert before == after == "ACTIVE"
