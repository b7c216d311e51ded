"""Layout rules: kernels/ is installed as mxopt_numba.kernels only, nothing imports a
top-level ``kernels``, the kernels never import the package, no compilation at import."""
import re
import subprocess
import sys
from pathlib import Path

import mxopt_numba

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [p for d in ("kernels", "mxopt_numba", "tests", "asv_benchmarks") for p in (ROOT / d).rglob("*.py")]


def test_kernels_package_is_the_top_level_folder():
    from mxopt_numba import kernels
    assert Path(kernels.__file__).resolve().parent == ROOT / "kernels"


def test_nothing_imports_a_top_level_kernels_module():
    bad = re.compile(r"^\s*(import kernels\b|from kernels\b)", re.M)
    offenders = [str(p.relative_to(ROOT)) for p in SOURCES if bad.search(p.read_text())]
    assert not offenders


def test_kernels_do_not_import_the_package():
    pattern = re.compile(r"^\s*(import|from)\s+mxopt_numba\b|^\s*from\s+\.\.", re.M)
    offenders = [p.name for p in (ROOT / "kernels").glob("*.py") if pattern.search(p.read_text())]
    assert not offenders


def test_import_compiles_nothing():
    code = ("import mxopt_numba, mxopt_numba.optimizer as o, numba\n"
            "from numba.core.registry import CPUDispatcher\n"
            "import gc\n"
            "compiled = [d for d in gc.get_objects() if isinstance(d, CPUDispatcher) and d.signatures]\n"
            "print(len(compiled))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


def test_every_registered_optimizer_has_a_test_case():
    from cases import CASES
    covered = {c.name for c in CASES}
    registered = set(mxopt_numba.optimizer.Optimizer.opt_registry) - {"ccsgd"}
    assert registered <= covered, "no tests/opt_cases entry for %s" % sorted(registered - covered)
