"""In-kernel random numbers against their ceilings, in one process, from the asv
benchmark classes: SGLD (float32, float16 multi-precision) against the copy that moves
the same bytes, and 16-bit SGD-momentum / Adam with stochastic rounding and Kahan
compensation against the float32-master path.  Every case is timed once per round, the
rounds interleaved, so that a busy machine slows all of them alike; min and median over
the rounds are reported.  Run from the repository root:

    python asv_benchmarks/rng_ratios.py [--rounds N] [--threads T]
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmarks import bench_low_precision as blp  # noqa: E402
from benchmarks import bench_sgld as bs  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0, help="numba threads (0: all)")
    args = ap.parse_args()
    if args.threads:
        import numba
        numba.set_num_threads(args.threads)
    cases = {}
    b = bs.SGLDOneTensorCeiling(); b.setup()
    cases["copy_r2w1"] = b.time_copy
    for dtype in bs.DTYPES:
        b = bs.SGLDOneTensor(); b.setup(dtype)
        cases["sgld " + dtype] = (lambda b=b, d=dtype: b.time_step(d))
    for opt in ["sgd", "adam"]:
        for dtype in ["bfloat16", "float16"]:
            for mode in ["master", "kahan", "stochastic"]:
                b = blp.LowPrecisionOneTensor(); b.setup(opt, dtype, mode)
                cases["%s %s %s" % (opt, dtype, mode)] = (lambda b=b, a=(opt, dtype, mode): b.time_step(*a))
    times = {k: [] for k in cases}
    for _ in range(args.rounds):
        for k, fn in cases.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    res = {k: (min(v) * 1e3, float(np.median(v)) * 1e3) for k, v in times.items()}
    for k, (lo, med) in res.items():
        print("%-26s min %7.2f ms  median %7.2f ms" % (k, lo, med))
    print()
    copy = res["copy_r2w1"]
    for dtype in bs.DTYPES:
        s = res["sgld " + dtype]
        print("sgld %-10s / copy: min %.2f  median %.2f  (goal <= 1.25)" % (dtype, s[0] / copy[0], s[1] / copy[1]))
    for opt in ["sgd", "adam"]:
        for dtype in ["bfloat16", "float16"]:
            m = res["%s %s master" % (opt, dtype)]
            for mode in ["stochastic", "kahan"]:
                r = res["%s %s %s" % (opt, dtype, mode)]
                print("%s %-8s %-10s / master: min %.2f  median %.2f" % (opt, dtype, mode, r[0] / m[0], r[1] / m[1]))


if __name__ == "__main__":
    main()
