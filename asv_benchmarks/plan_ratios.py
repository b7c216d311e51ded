"""The launch-plan layer's ratios in one process, from the asv benchmark classes: fresh
against reused gradients, 6000 against 4096 single-tensor calls, Adam's bookkeeping on
2000 x 512 against the flat copy, and fresh gradients against torch's fused optimizers
when torch is installed.  Run from the repository root:

    python asv_benchmarks/plan_ratios.py
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmarks import bench_adam as ba  # noqa: E402
from benchmarks import bench_plan as bp  # noqa: E402

def timeit(fn, *args, reps=30):
    """(median, min) milliseconds of ``fn(*args)``."""
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t)
    return np.median(times) * 1e3, min(times) * 1e3


def main():
    out = {}
    for wl in ["small2000x512", "resnet50"]:
        for opt in ["sgd-momentum", "adam"]:
            for g in ["reused", "fresh"]:
                b = bp.FreshGradients(); b.setup(wl, opt, g)
                out[(wl, opt, g)] = timeit(b.time_step, wl, opt, g, reps=30 if wl.startswith("small") else 10)
                print(wl, opt, g, "median %.3f ms  min %.3f ms" % out[(wl, opt, g)], flush=True)
    for n in [4096, 6000]:
        b = bp.ManyTensorsOneEach(); b.setup(n)
        out[n] = timeit(b.time_step, n, reps=10)
        print("aggregate_num=1", n, "median %.2f ms min %.2f ms" % out[n], flush=True)
    b = bp.Bookkeeping(); b.setup(); bk = timeit(b.time_step, reps=50)
    c = ba.AdamCeiling(); c.setup("small2000x512"); cp = timeit(c.time_copy, "small2000x512", reps=50)
    print("bookkeeping adam 2000x512 median %.3f ms (min %.3f); flat copy median %.3f ms (min %.3f); ratio copy/ours (median) %.2f" % (bk + cp + (cp[0] / bk[0],)))
    for wl in ["small2000x512", "resnet50"]:
        for opt in ["sgd-momentum", "adam"]:
            print("fresh/reused", wl, opt, "%.2f" % (out[(wl, opt, "fresh")][0] / out[(wl, opt, "reused")][0]))
    print("6000/4096 %.2f" % (out[6000][0] / out[4096][0]))
    try:
        import torch
        shapes = [(512,)] * 2000
        for kind, cls, kw in (("sgd-momentum", torch.optim.SGD, {"lr": 1e-3, "momentum": 0.9}), ("adam", torch.optim.Adam, {"lr": 1e-3})):
            ps = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
            gs = [[torch.randn(s) * 0.1 for s in shapes] for _ in range(4)]
            o = cls(ps, fused=True, **kw)
            turn = [0]
            def st():
                turn[0] = (turn[0] + 1) % 4
                for p, g in zip(ps, gs[turn[0]]):
                    p.grad = g
                o.step()
            for _ in range(3): st()
            tt = timeit(st, reps=30)
            ours = out[("small2000x512", kind, "fresh")]
            print("torch fused %s fresh 2000x512 median %.3f ms; ours/torch %.2f" % (kind, tt[0], ours[0] / tt[0]))
    except ImportError:
        print("torch not installed")


if __name__ == "__main__":
    main()
