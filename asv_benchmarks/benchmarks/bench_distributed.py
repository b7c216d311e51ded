"""DistributedTrainer on the ResNet-50 shapes at 2 processes (``mpiexec -n 2``).

Each benchmark launches ``tests/dist_worker.py --bench`` (one mode per launch, so the
memory high-water mark belongs to that mode) and reads its JSON lines:

* ``track_step_ms``: median step with every check on (deadline-polled collectives, the
  settings digest in the step agreement);
* ``track_checks_overhead_percent``: that against steps with the checks off (blocking
  ``MPI_Waitall``, no digest), alternated within the same run (goal: <= 2 %);
* ``track_extra_memory_over_state``: (peak RSS - RSS after the JIT warm-up - weights and
  gradients) / optimizer state, per process: under ``zero1`` what the trainer adds beyond
  the flat buffers is its state, its 1/N gradient shard and two 4 MiB chunks, so the
  ratio stays about 1.6-1.7 whatever N (1.64 measured at N=2, 1.69 at N=4).

Skipped without mpi4py / mpiexec next to the interpreter.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

WORKER = Path(__file__).resolve().parents[2] / "tests" / "dist_worker.py"
MPIEXEC = Path(sys.executable).parent / "mpiexec"


def _launch(mode, steps=20):
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_WAIT_POLICY="passive")
    out = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, str(WORKER), "--bench", "--modes", mode,
                          "--steps", str(steps)], capture_output=True, text=True, timeout=500, env=env)
    if out.returncode != 0:
        raise RuntimeError("dist_worker --bench failed:\n%s" % out.stderr[-2000:])
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


class DistributedStepResNet50:
    params = [["zero1", "dp"]]
    param_names = ["mode"]
    timeout = 600

    def setup_cache(self):
        if not (MPIEXEC.exists() and WORKER.exists()):
            raise NotImplementedError("needs mpiexec next to the interpreter and tests/dist_worker.py")
        return {mode: _launch(mode) for mode in self.params[0]}

    def track_step_ms(self, rows, mode):
        return max(r["on_ms"] for r in rows[mode])
    track_step_ms.unit = "ms"

    def track_checks_overhead_percent(self, rows, mode):
        return max(r["overhead_pct"] for r in rows[mode])
    track_checks_overhead_percent.unit = "%"

    def track_extra_memory_over_state(self, rows, mode):
        return max(r["extra_over_state"] for r in rows[mode])
    track_extra_memory_over_state.unit = "ratio"
