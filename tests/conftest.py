import os

import numpy as np
import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "passive")


@pytest.fixture
def rng():
    return np.random.default_rng(20261121)
