"""Learning-rate schedules of MXNet 1.x: MXNet 1.9.1's ``lr_scheduler`` module and 2.x's
are the same code, so this is :mod:`mxopt_numba.lr_scheduler` under the 1.x name."""
from ..lr_scheduler import *  # noqa: F401,F403
from ..lr_scheduler import __all__  # noqa: F401
