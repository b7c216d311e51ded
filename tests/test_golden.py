"""Every optimizer trace recorded from MXNet 2.0.0b1 (and LBSGD from 1.9.1), replayed
through the public API and compared step by step."""
import math

import numpy as np
import pytest

import mxopt_numba as mxo
from replay import GOLDEN, deviation_for, load_manifest, run_case, seed_of, weight_error

MANIFESTS = [("opt_manifest.json", GOLDEN, False), ("lbsgd/manifest.json", GOLDEN / "lbsgd", True)]


def _cases():
    for name, root, legacy in MANIFESTS:
        for case in load_manifest(name)["cases"]:
            yield pytest.param(case, root, legacy, id=case["id"])


def _skip_reason(case):
    if case["status"] != "ok":
        return "MXNet itself raised here: %s" % (case.get("error") or "")[:80]
    if (case.get("sparse") or {}).get("weight_stype", "default") != "default":
        return "row_sparse weights are out of scope"
    if case["name"] not in mxo.optimizer.Optimizer.opt_registry:
        return "optimizer %r not implemented" % case["name"]
    why = deviation_for(case["id"])
    if why:
        return "intended deviation from MXNet: " + why
    return None


@pytest.mark.parametrize("case, root, legacy", list(_cases()))
def test_optimizer_trace(case, root, legacy):
    reason = _skip_reason(case)
    if reason:
        pytest.skip(reason)
    arrays = np.load(root / case["file"])
    mxo.random.seed(seed_of(case))
    if case["name"] == "sgld":
        return _check_sgld(case, arrays, legacy)
    for t, weights, num_update in run_case(case, arrays, legacy):
        for i, w in enumerate(weights):
            score = weight_error(w, arrays["w%d_%d" % (t, i)], arrays["w%d_%d" % (t - 1, i)],
                                 arrays["w0_%d" % i], case["dtype"], case["multi_precision"])
            assert score <= 1.0, "step %d tensor %d: error %.3g x tolerance" % (t, i, score)
        if "num_update" in arrays.files:
            assert num_update == int(arrays["num_update"][t - 1]), "num_update after step %d" % t


def _check_sgld(case, arrays, legacy):
    """SGLD adds Gaussian noise: compare the update distributions, not the values."""
    n = len(case["shapes"])
    prev = [arrays["w0_%d" % i].astype(np.float64) for i in range(n)]
    ours, theirs, grads, olds = [], [], [], []
    for t, weights, _ in run_case(case, arrays, legacy):
        for i, w in enumerate(weights):
            ours.append(w.astype(np.float64).ravel() - prev[i].ravel())
            theirs.append((arrays["w%d_%d" % (t, i)].astype(np.float64) - arrays["w%d_%d" % (t - 1, i)]).ravel())
            grads.append(arrays["g%d_%d" % (t, i)].astype(np.float64).ravel())
            olds.append(arrays["w%d_%d" % (t - 1, i)].astype(np.float64).ravel())
            prev[i] = w.astype(np.float64)
    uo, ut, g, w = (np.concatenate(x) for x in (ours, theirs, grads, olds))
    m, d = uo.size, uo - ut
    assert abs(d.mean()) / (d.std() / math.sqrt(m)) <= 5, "noise mean differs"
    assert abs(np.corrcoef(d, g)[0, 1]) * math.sqrt(m) <= 5, "difference correlates with the gradient"
    assert abs(np.corrcoef(d, w)[0, 1]) * math.sqrt(m) <= 5, "difference correlates with the weight"
    assert abs(math.log(uo.var() / ut.var())) / math.sqrt(4.0 / m) <= 5, "update variance differs"
