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


def test_gpu_kernels_do_not_import_the_package():
    pattern = re.compile(r"^\s*(import|from)\s+mxopt_numba\b|^\s*from\s+\.\.\.", re.M)
    offenders = [p.name for p in (ROOT / "kernels" / "gpu").glob("*.py") if pattern.search(p.read_text())]
    assert not offenders


def _package_imports():
    """module -> modules of the package it imports anywhere in its source (function-level
    imports included)."""
    import ast
    modules = {}
    for path in list((ROOT / "mxopt_numba").rglob("*.py")) + list((ROOT / "kernels").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[0] == "kernels":
            parts = ["mxopt_numba"] + parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = (base + "." + node.module if node.module else base) if node.level else node.module
                targets = [base] + [base + "." + a.name for a in node.names]
            found.update(t for t in targets if t in modules and t != name)
        graph[name] = found
    return graph


def test_no_import_cycles_in_the_package():
    graph = _package_imports()
    # a package importing its own submodules (``__init__``) is not a cycle worth reporting
    edges = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2
    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    assert not cycles, "import cycles: %s" % [" -> ".join(c) for c in cycles[:5]]
