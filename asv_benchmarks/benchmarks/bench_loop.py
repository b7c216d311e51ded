"""Training loops as users run them (issue: the default environment must be fast).

* ``MatmulStepLoop``: the forward and backward products of a 64-512-512-10 MLP on a batch
  of 8 (NumPy) plus ``Trainer.step`` (Adam), in the default environment against the
  hand-tuned one (BLAS on one thread).  Goal: default within 1.2x of tuned.
* ``FirstStep``: import to the first finished Adam step in a fresh process, float32 and
  float16 with a master copy, cold (an empty kernel cache) and warm (the cache filled by
  the cold run).  Goals: 1.0 s cold, 0.3 s warm, and no compile pause in the steps after
  (``track_slowest_of_next_five_steps``).
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

import mxopt_numba as mxo

from .common import warm_up


class MatmulStepLoop:
    params = [["default", "blas-1-thread"]]
    param_names = ["environment"]
    timeout = 300

    def setup(self, environment):
        rng = np.random.default_rng(0)
        sizes = [64, 512, 512, 10]
        params = {}
        self.layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            w = mxo.Parameter("fc%d_weight" % i, (rng.standard_normal((a, b)) * 0.05).astype(np.float32))
            bias = mxo.Parameter("fc%d_bias" % i, np.zeros(b, np.float32))
            params[w.name], params[bias.name] = w, bias
            self.layers.append((w, bias))
        self.trainer = mxo.Trainer(params, "adam", {"learning_rate": 1e-3})
        self.x = rng.standard_normal((8, 64)).astype(np.float32)
        self.limit = None
        if environment == "blas-1-thread":
            from threadpoolctl import threadpool_limits
            self.limit = threadpool_limits(limits=1, user_api="blas")
        warm_up(self.time_steps, environment, times=3)

    def teardown(self, environment):
        if self.limit is not None:
            self.limit.restore_original_limits()

    def time_steps(self, environment):
        """Ten training steps."""
        for _ in range(10):
            h = [self.x]
            for w, b in self.layers:
                h.append(np.maximum(h[-1] @ w.data + b.data, 0))
            d = np.ones_like(h[-1]) / 8
            for i in reversed(range(len(self.layers))):
                w, b = self.layers[i]
                w.grad[...] = h[i].T @ d
                b.grad[...] = d.sum(0)
                d = (d @ w.data.T) * (h[i] > 0)
            self.trainer.step(8)


_FIRST_STEP = """
import time
t0 = time.perf_counter()
import numpy as np
import mxopt_numba as mxo
mp = {mp}
dtype = np.float16 if mp else np.float32
opt = mxo.optimizer.create("adam", multi_precision=mp, aggregate_num=np.inf)
updater = mxo.optimizer.get_updater(opt)
weights = [np.ones(1 << 18, dtype) for _ in range(4)]
grads = [np.full(1 << 18, 0.01, dtype) for _ in weights]
updater(list(range(4)), grads, weights)
first = time.perf_counter() - t0
later = []
for _ in range(5):
    t1 = time.perf_counter()
    updater(list(range(4)), grads, weights)
    later.append(time.perf_counter() - t1)
print(first, max(later))
"""


class FirstStep:
    """Seconds from ``import mxopt_numba`` to the end of the first step, in a new process."""
    params = [["float32", "float16-mp"], ["cold", "warm"]]
    param_names = ["dtype", "cache"]
    timeout = 600
    number = 1
    repeat = 1

    def setup(self, dtype, cache):
        self.cache_dir = tempfile.mkdtemp(prefix="mxopt-nbcache-")
        if cache == "warm":
            self._run(dtype)

    def _run(self, dtype):
        env = dict(os.environ, NUMBA_CACHE_DIR=self.cache_dir)
        code = _FIRST_STEP.format(mp=dtype == "float16-mp")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        return [float(x) for x in out.stdout.split()[-2:]]

    def track_first_step(self, dtype, cache):
        return self._run(dtype)[0]

    track_first_step.unit = "seconds"

    def track_slowest_of_next_five_steps(self, dtype, cache):
        """No step after the first pauses to compile (a cold cache compiles the threaded
        kernel in the background meanwhile)."""
        return self._run(dtype)[1]

    track_slowest_of_next_five_steps.unit = "seconds"
