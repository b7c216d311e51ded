"""The optimizer catalog: one ``tests/opt_cases/opt_<name>.py`` per optimizer declares
an :class:`OptCase`; generic tests in test_optimizers.py run every case."""
import dataclasses
import importlib.util
from pathlib import Path


@dataclasses.dataclass
class OptCase:
    #: registry name
    name: str
    #: described configurations: description -> constructor kwargs
    configs: dict
    #: invalid constructor kwargs -> (exception type, regex the message must match)
    errors: list = dataclasses.field(default_factory=list)
    #: weight shapes (odd sizes; one tensor spans several kernel blocks)
    shapes: tuple = ((7,), (3, 5), (181, 201))
    steps: int = 4
    #: the rule is discontinuous (signs): compare float32 kernels with the float32 step,
    #: not with float64
    reference_float32: bool = False
    #: weights are drawn positive (rules that need it)
    positive_weights: bool = False
    #: the update is random (SGLD): values are compared under a reseeded generator
    stochastic: bool = False
    #: fused-vs-float64 tolerance, as multiples of the default
    tolerance_factor: float = 1.0
    #: supports weights and states of every dtype without multi_precision
    float16_plain: bool = True
    float64: bool = True

    def params(self):
        return [(self, desc, kwargs) for desc, kwargs in self.configs.items()]


def load_cases():
    cases = []
    for path in sorted((Path(__file__).parent / "opt_cases").glob("opt_*.py")):
        spec = importlib.util.spec_from_file_location("opt_cases_" + path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        cases.extend(getattr(module, "CASES", [getattr(module, "CASE", None)]))
    return [c for c in cases if c is not None]


CASES = load_cases()


def config_params():
    import pytest
    return [pytest.param(case, kwargs, id="%s-%s" % (case.name, desc))
            for case in CASES for desc, kwargs in case.configs.items()]


def error_params():
    import pytest
    return [pytest.param(case, kwargs, exc, match, id="%s-%s" % (case.name, "-".join(sorted(kwargs))))
            for case in CASES for kwargs, exc, match in case.errors]
