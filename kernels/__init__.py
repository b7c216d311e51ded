"""Numeric core of mxopt_numba: element-wise update rules and the loops that apply them.

Contract (see README.md in this folder):

* each rule module holds one scalar function per rule (``<rule>_step``) written on plain
  floats, then its CPU kernels (``@njit(parallel=True)``) and, where present, GPU twins;
* kernels see only flat data addresses, formats and compute-dtype scalars: no classes,
  no defaults, no schedules, nothing from ``mxopt_numba``;
* importing a module compiles nothing: kernels compile on first call.
"""
