"""CUDA twins of the rule kernels: ``gpu/<rule>.py`` holds ``multi_<rule>_..._gpu`` for
every ``multi_<rule>_..._cpu`` of ``<rule>.py``, calling the same scalar rule functions.

Importing this package imports ``numba.cuda`` (NVIDIA's numba-cuda when installed, else
Numba's built-in target, or its simulator under ``NUMBA_ENABLE_CUDASIM=1``) and compiles
nothing; kernels compile on their first launch.  See ``_common.py`` for the addressing
scheme shared by all of them.
"""
