"""Sphinx configuration of the API reference (built from the docstrings)."""
import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import mxopt_numba  # noqa: E402

project = "mxopt-numba"
author = "the mxopt-numba authors"
release = mxopt_numba.__version__
version = release

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
napoleon_numpy_docstring = True
napoleon_google_docstring = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "fully-qualified"
# optional dependencies the reference mentions but the docs build does not need
autodoc_mock_imports = ["torch"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
