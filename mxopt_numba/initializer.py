"""Weight initializers with the behaviour of ``mxnet.initializer`` (MXNet 2.0.0b1).

An initializer is called as ``init(desc, arr)`` and fills ``arr`` (a numpy array of any
floating dtype, ``ml_dtypes.bfloat16`` included) **in place**:

* ``desc`` is an :class:`InitDesc` (a ``str`` carrying ``attrs`` and ``global_init``): if
  ``desc.attrs['__init__']`` names an initializer, that initializer's ``_init_weight``
  fills the array whatever the name is.  Otherwise the name's suffix picks the method:

  ==================  ===========================================
  suffix              action
  ==================  ===========================================
  ``weight``          ``_init_weight`` (what the subclass defines)
  ``bias``            0
  ``gamma``           1
  ``beta``            0
  ``min``             0
  ``max``             1
  ``weight_quantize`` one random integer ``k`` in ``[-127, 127)``, everywhere
  ``bias_quantize``   0
  anything else       ``ValueError`` (unknown initialization pattern)
  ==================  ===========================================

  So ``Constant(5)`` applied to ``"fc_bias"`` gives zeros, exactly as in MXNet; use the
  ``__init__`` attribute to apply an initializer to a bias.

* ``desc`` is a plain string (the deprecated legacy form; a ``DeprecationWarning`` is
  issued): first match wins in ``upsampling*`` -> bilinear, ``stn_loc*weight`` -> 0,
  ``stn_loc*bias`` -> ``[1, 0, 0, 0, 1, 0]``, ``*bias`` -> 0, ``*gamma`` -> 1, ``*beta``
  -> 0, ``*weight`` -> ``_init_weight``, ``*moving_mean`` -> 0, ``*moving_var`` -> 1,
  ``*moving_inv_var`` -> 0, ``*moving_avg`` -> 0, ``*min`` -> 0, ``*max`` -> 1, else
  ``ValueError``.

Values are computed in float64 (float32 for :class:`Bilinear`, as MXNet does) and then
assigned, which rounds them once to the array's own dtype.

Random initializers draw from :func:`mxopt_numba.random.generator`: seed the library with
``mxopt_numba.random.seed(n)``, or give the initializer its own stream with the ``rng=``
keyword (a ``numpy.random.Generator`` or a seed).  ``rng`` is not part of ``dumps()``.

Differences from MXNet, all of them fixes of plain bugs or clearer errors:

* ``Constant`` built from an array ``dumps`` the value as a nested list and
  ``create(init.dumps())`` gives the initializer back (MXNet raised ``AttributeError``);
  numpy scalars in any initializer's arguments are written as plain JSON numbers.
* ``Mixed`` formats the parameter name into its "did not match any pattern" error.
* ``RNNFused.set_initializer(init)`` keeps the per-slice initializers that were given and
  fills only the missing ones with ``init`` (MXNet's version is inverted).
* Shapes an initializer cannot fill (``Xavier``/``Orthogonal`` on fewer than 2 axes,
  ``Bilinear`` on anything but 4 axes, RNN parameter vectors of an impossible length),
  unknown ``rnd_type``/``factor_type``/``rand_type``/``mode`` raise ``ValueError`` naming
  the parameter and what was expected; MXNet raised ``NameError``, ``KeyError``,
  ``IndexError`` or ``AssertionError`` in some of these places.
* ``FusedRNN`` (MXNet 1.x) is kept, and registered so that ``create(fused.dumps())`` works.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import warnings
from typing import Any, Callable, Union

import numpy as np

from . import _namespace
from . import random as _random
from .registry import Registry

__all__ = [
    "InitDesc", "Initializer", "register", "alias", "create", "Load", "Mixed",
    "Zero", "One", "Constant", "Uniform", "Normal", "Orthogonal", "Xavier", "MSRAPrelu",
    "Bilinear", "LSTMBias", "FusedRNN", "RNNFused",
]

_log = logging.getLogger(__name__)

#: what ``rng=`` accepts: a Generator, a seed, or None for the library's stream
RngLike = Union[np.random.Generator, int, None]


# ----------------------------------------------------------------------------- helpers
def _json_default(obj):
    """JSON fallback for ``dumps``: numpy scalars/arrays and initializers."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Initializer):
        return obj.dumps()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError("initializer argument %r of type %s is not JSON serializable"
                    % (obj, type(obj).__name__))


def _plain(value):
    """The JSON view of ``value`` (used by ``__eq__`` so that arrays compare by content)."""
    return json.loads(json.dumps(value, default=_json_default))


def _check_array(arr, who):
    if not (hasattr(arr, "shape") and hasattr(arr, "dtype") and hasattr(arr, "__setitem__")):
        raise TypeError("%s: the array to initialize must be a numpy array, got %s"
                        % (who, type(arr).__name__))


def _fill(arr, values):
    """Assign ``values`` (scalar or array, broadcast) into ``arr`` in place, in ``arr``'s dtype."""
    arr[...] = values


def _size(shape):
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _is_set(init):
    """Whether an RNN slice initializer was given (MXNet treats '' and None as unset)."""
    return init is not None and not (isinstance(init, str) and init == "")


def _as_generator(rng):
    return None if rng is None else _random.generator(rng)


# ----------------------------------------------------------------------------- InitDesc
class InitDesc(str):
    """Name of the array to initialize, plus ``attrs`` and ``global_init``.

    Parameters
    ----------
    name : str
        Name of the parameter; its suffix selects the initialization method.
    attrs : dict, optional
        Attributes of the parameter.  ``attrs['__init__']`` (an initializer name, a
        ``dumps()`` string or an :class:`Initializer`) overrides the name dispatch.
    global_init : Initializer, optional
        The initializer to fall back to (set to the first initializer that sees this
        descriptor when left as None).
    """

    def __new__(cls, name, attrs=None, global_init=None):
        obj = super().__new__(cls, name)
        obj.attrs = attrs or {}
        obj.global_init = global_init
        return obj


# ----------------------------------------------------------------------------- base class
class Initializer:
    """Base class of the initializers.

    ``Initializer(**kwargs)`` stores ``kwargs`` verbatim for :meth:`dumps` and ``==``.
    Subclasses override ``_init_weight(name, arr)`` (and optionally ``_init_bias``,
    ``_init_gamma``, ``_init_beta``); see the module docstring for the dispatch.
    """

    _kwargs = {}
    _verbose = False
    _print_func = None
    _rng = None

    def __init__(self, **kwargs):
        self._kwargs = kwargs
        self._verbose = False
        self._print_func = None

    # -- configuration -------------------------------------------------------------------
    def set_verbosity(self, verbose: bool = False, print_func: Callable[[np.ndarray], str] | None = None) -> Initializer:
        """Switch logging of every initialized array on or off; returns ``self``.

        ``print_func(arr) -> str`` computes the logged statistic; the default is the root
        mean square ``||x||_2 / sqrt(x.size)``.  Messages go to the ``logging`` module at
        INFO level: ``Initialized <name> as <pattern>: <statistic>``.
        """
        self._verbose = verbose
        if print_func is None:
            def print_func(x):
                x = np.asarray(x, dtype=np.float64)
                return str(float(np.linalg.norm(x.ravel()) / math.sqrt(max(x.size, 1))))
        self._print_func = print_func
        return self

    def _verbose_print(self, desc, pattern, arr):
        if self._verbose and self._print_func:
            _log.info("Initialized %s as %s: %s", desc, pattern, self._print_func(arr))

    def _generator(self):
        """The generator random draws come from: ``rng=`` if given, else the library's."""
        return _random.generator(self._rng)

    # -- serialization -------------------------------------------------------------------
    def dumps(self) -> str:
        """JSON text ``[lower-cased class name, kwargs]``; ``create`` reads it back."""
        return json.dumps([self.__class__.__name__.lower(), self._kwargs], default=_json_default)

    def __eq__(self, other):
        if not isinstance(other, Initializer):
            return NotImplemented
        if type(self) is not type(other):
            return False
        try:
            return _plain(self._kwargs) == _plain(other._kwargs)
        except TypeError:
            return self._kwargs is other._kwargs

    __hash__ = None

    def __repr__(self):
        args = ", ".join("%s=%r" % kv for kv in self._kwargs.items())
        return "%s(%s)" % (type(self).__name__, args)

    # -- dispatch ------------------------------------------------------------------------
    def __call__(self, desc: str, arr: np.ndarray) -> None:
        """Initialize ``arr`` in place according to ``desc`` (see the module docstring)."""
        if not isinstance(desc, InitDesc):
            self._legacy_init(desc, arr)
            return
        _check_array(arr, type(self).__name__)
        if desc.global_init is None:
            desc.global_init = self
        override = desc.attrs.get("__init__", "")
        if override:
            create(override)._init_weight(desc, arr)
            self._verbose_print(desc, override, arr)
            return
        if desc.endswith("weight"):
            self._init_weight(desc, arr)
            self._verbose_print(desc, "weight", arr)
        elif desc.endswith("bias"):
            self._init_bias(desc, arr)
            self._verbose_print(desc, "bias", arr)
        elif desc.endswith("gamma"):
            self._init_gamma(desc, arr)
            self._verbose_print(desc, "gamma", arr)
        elif desc.endswith("beta"):
            self._init_beta(desc, arr)
            self._verbose_print(desc, "beta", arr)
        elif desc.endswith("min"):
            self._init_zero(desc, arr)
            self._verbose_print(desc, "min", arr)
        elif desc.endswith("max"):
            self._init_one(desc, arr)
            self._verbose_print(desc, "max", arr)
        elif desc.endswith("weight_quantize"):
            self._init_quantized_weight(desc, arr)
            self._verbose_print(desc, "weight_quantize", arr)
        elif desc.endswith("bias_quantize"):
            self._init_quantized_bias(desc, arr)
            self._verbose_print(desc, "bias_quantize", arr)
        else:
            self._init_default(desc, arr)

    def _legacy_init(self, name, arr):
        """``init(name, arr)`` with a plain string name (deprecated in MXNet)."""
        warnings.warn("Calling an initializer as init(str, array) is deprecated; "
                      "use init(InitDesc(name), array) instead.", DeprecationWarning, stacklevel=3)
        if not isinstance(name, str):
            raise TypeError("%s: name must be a str or an InitDesc, got %s"
                            % (type(self).__name__, type(name).__name__))
        _check_array(arr, type(self).__name__)
        if name.startswith("upsampling"):
            self._init_bilinear(name, arr)
        elif name.startswith("stn_loc") and name.endswith("weight"):
            self._init_zero(name, arr)
        elif name.startswith("stn_loc") and name.endswith("bias"):
            self._init_loc_bias(name, arr)
        elif name.endswith("bias"):
            self._init_bias(name, arr)
        elif name.endswith("gamma"):
            self._init_gamma(name, arr)
        elif name.endswith("beta"):
            self._init_beta(name, arr)
        elif name.endswith("weight"):
            self._init_weight(name, arr)
        elif name.endswith("moving_mean"):
            self._init_zero(name, arr)
        elif name.endswith("moving_var"):
            self._init_one(name, arr)
        elif name.endswith("moving_inv_var"):
            self._init_zero(name, arr)
        elif name.endswith("moving_avg"):
            self._init_zero(name, arr)
        elif name.endswith("min"):
            self._init_zero(name, arr)
        elif name.endswith("max"):
            self._init_one(name, arr)
        else:
            self._init_default(name, arr)

    # -- the fixed patterns ----------------------------------------------------------------
    def _init_bilinear(self, name, arr):
        """Bilinear up-sampling kernel (see :class:`Bilinear`)."""
        _fill(arr, _bilinear_kernel(arr.shape, name))

    def _init_loc_bias(self, name, arr):
        """Identity affine transform ``[1, 0, 0, 0, 1, 0]`` for a spatial transformer."""
        if len(arr.shape) == 0 or arr.shape[0] != 6:
            raise ValueError("%s: a stn_loc bias must have 6 entries (identity affine "
                             "transform), got shape %s" % (name, tuple(arr.shape)))
        _fill(arr, np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))

    def _init_zero(self, _, arr):
        _fill(arr, 0.0)

    def _init_one(self, _, arr):
        _fill(arr, 1.0)

    def _init_bias(self, _, arr):
        _fill(arr, 0.0)

    def _init_gamma(self, _, arr):
        _fill(arr, 1.0)

    def _init_beta(self, _, arr):
        _fill(arr, 0.0)

    def _init_quantized_bias(self, _, arr):
        _fill(arr, 0)

    def _init_quantized_weight(self, _, arr):
        """One integer ``k ~ U{-127, ..., 126}`` assigned to every element (as MXNet)."""
        _fill(arr, int(self._generator().integers(-127, 127)))

    def _init_weight(self, name, arr):
        raise NotImplementedError("%s does not define _init_weight (needed for %r)"
                                  % (type(self).__name__, str(name)))

    def _init_default(self, name, _):
        raise ValueError(
            "Unknown initialization pattern for %r. Initialization by name is limited to "
            "names ending in 'weight', 'bias', 'gamma' (1.0), 'beta' (0.0), 'min' (0.0), "
            "'max' (1.0), 'weight_quantize' and 'bias_quantize'; give the parameter an "
            "explicit initializer (InitDesc(name, attrs={'__init__': init.dumps()}))" % str(name))


# ----------------------------------------------------------------------------- registry
_registry = Registry(Initializer, "initializer")


def register(klass: type[Initializer], name: str | None = None) -> type[Initializer]:
    """Register an :class:`Initializer` subclass under its lower-cased class name
    (or ``name``); usable as a class decorator.  A second registration of a name warns
    (``UserWarning``) and wins."""
    return _registry.register(klass, name)


def alias(*names: str) -> Callable[[type[Initializer]], type[Initializer]]:
    """Class decorator registering an initializer under the extra ``names``."""
    return _registry.alias(*names)


def create(*args: Any, **kwargs: Any) -> Initializer:
    """Build an initializer.

    ``create(x, *args, **kwargs)`` where ``x`` is an :class:`Initializer` (returned as is;
    no extra arguments allowed), a registered name (case-insensitive), a ``dumps()``
    string ``'["name", {kwargs}]'``, a JSON object ``'{"initializer": name, ...}'`` or a
    dict of the same.  ``create(initializer=x, **kwargs)`` works too.
    """
    if args:
        spec, args = args[0], args[1:]
    else:
        spec = kwargs.pop("initializer", None)
    if spec is None:
        raise TypeError("create() needs an initializer: a registered name (one of %s), an "
                        "Initializer instance, a dict or a dumps() JSON string; got None"
                        % ", ".join(_registry.names()))
    return _registry.create(spec, *args, **kwargs)


# ----------------------------------------------------------------------------- Load, Mixed
class Load:
    """Initialize parameters from saved arrays, falling back to ``default_init``.

    Parameters
    ----------
    param : str, os.PathLike or dict of str -> array
        A ``.npz`` file (``numpy.savez``) or a dict.  Keys starting with ``arg:`` or
        ``aux:`` are stored without that prefix.
    default_init : Initializer, optional
        Called as ``default_init(name, arr)`` for names not found in ``param``.
    verbose : bool
        Log (INFO) where each parameter came from.

    ``load(name, arr)`` copies ``param[name]`` into ``arr`` (shapes must be equal).
    """

    def __init__(self, param, default_init=None, verbose=False):
        if isinstance(param, (str, os.PathLike)):
            path = os.fspath(param)
            try:
                data = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise ValueError("Load: cannot read parameters from %r (expected a .npz "
                                 "file written by numpy.savez): %s" % (path, e)) from e
            if not hasattr(data, "files"):
                raise ValueError("Load: %r holds a single array; expected a .npz archive of "
                                 "named arrays (numpy.savez)" % path)
            with data:
                param = {k: np.array(data[k]) for k in data.files}
        if not isinstance(param, dict):
            raise TypeError("Load: param must be a file name or a dict of name -> array, got %s"
                            % type(param).__name__)
        self.param = {}
        for name, arr in param.items():
            if name.startswith("arg:") or name.startswith("aux:"):
                name = name[4:]
            self.param[name] = arr
        self.default_init = default_init
        self.verbose = verbose

    def __call__(self, name: str, arr: np.ndarray) -> None:
        if name in self.param:
            src = np.asarray(self.param[name])
            if tuple(arr.shape) != tuple(src.shape):
                raise ValueError("Load: parameter %r cannot be initialized from the loaded "
                                 "array: shape mismatch, target %s vs loaded %s"
                                 % (str(name), tuple(arr.shape), tuple(src.shape)))
            _fill(arr, src)
            if self.verbose:
                _log.info("Initialized %s by loading", name)
        else:
            if self.default_init is None:
                raise ValueError("Load: cannot initialize %r: not found in the loaded "
                                 "parameters and no default_init was given" % str(name))
            self.default_init(name, arr)
            if self.verbose:
                _log.info("Initialized %s by default", name)


class Mixed:
    """Pick the initializer by regular expression on the parameter name.

    ``Mixed(patterns, initializers)``: for ``mixed(name, arr)`` the first pattern that
    matches at the start of ``name`` (``re.match``) selects the initializer, which is
    called as ``init(name, arr)``.  No match raises ``ValueError``; end the list with
    ``".*"`` for a default.
    """

    def __init__(self, patterns, initializers):
        patterns, initializers = list(patterns), list(initializers)
        if len(patterns) != len(initializers):
            raise ValueError("Mixed: %d patterns but %d initializers; they must pair up"
                             % (len(patterns), len(initializers)))
        self.map = list(zip([re.compile(p) for p in patterns], initializers))

    def __call__(self, name: str, arr: np.ndarray) -> None:
        for prog, init in self.map:
            if prog.match(name):
                init(name, arr)
                return
        raise ValueError("Parameter name %s did not match any pattern (%s). Consider adding "
                         "a \".*\" pattern at the end with a default Initializer."
                         % (str(name), ", ".join(repr(p.pattern) for p, _ in self.map)))


# ----------------------------------------------------------------------------- simple ones
@register
@alias("zeros")
class Zero(Initializer):
    """Weights = 0 (registered as ``zero`` and ``zeros``)."""

    def __init__(self):
        super().__init__()

    def _init_weight(self, _, arr):
        _fill(arr, 0.0)


@register
@alias("ones")
class One(Initializer):
    """Weights = 1 (registered as ``one`` and ``ones``)."""

    def __init__(self):
        super().__init__()

    def _init_weight(self, _, arr):
        _fill(arr, 1.0)


@register
class Constant(Initializer):
    """Weights = ``value``, a scalar or an array broadcast to the weight's shape.

    ``dumps()`` writes an array value as a nested list, and ``create(dumps())`` builds an
    equal initializer from it.
    """

    def __init__(self, value: float | np.ndarray) -> None:
        super().__init__(value=value)
        self.value = value

    def _init_weight(self, name, arr):
        value = self.value
        if not np.isscalar(value):
            value = np.asarray(value)
        try:
            _fill(arr, value)
        except ValueError as e:
            raise ValueError("Constant: value of shape %s cannot fill %r of shape %s (%s)"
                             % (np.shape(value), str(name), tuple(arr.shape), e)) from e


@register
class Uniform(Initializer):
    """Weights ~ U(-scale, scale) (float64 draws, rounded to the array's dtype).

    Parameters
    ----------
    scale : float, default 0.07
    rng : numpy.random.Generator or int, optional
        Own random stream (default: :func:`mxopt_numba.random.generator`); not dumped.
    """

    def __init__(self, scale: float = 0.07, rng: RngLike = None) -> None:
        super().__init__(scale=scale)
        self.scale = scale
        self._rng = _as_generator(rng)

    def _init_weight(self, _, arr):
        if _size(arr.shape) == 0:
            return
        c = float(self.scale)
        _fill(arr, self._generator().uniform(-c, c, size=tuple(arr.shape)))


@register
class Normal(Initializer):
    """Weights ~ N(0, sigma^2) (float64 draws, rounded to the array's dtype).

    Parameters
    ----------
    sigma : float, default 0.01
        Standard deviation.
    rng : numpy.random.Generator or int, optional
        Own random stream; not dumped.
    """

    def __init__(self, sigma: float = 0.01, rng: RngLike = None) -> None:
        super().__init__(sigma=sigma)
        self.sigma = sigma
        self._rng = _as_generator(rng)

    def _init_weight(self, _, arr):
        if _size(arr.shape) == 0:
            return
        _fill(arr, self._generator().normal(0.0, float(self.sigma), size=tuple(arr.shape)))


_ORTHO_RAND = ("uniform", "normal")


@register
class Orthogonal(Initializer):
    """Orthogonal weights (Saxe et al., https://arxiv.org/abs/1312.6120).

    With ``nout = shape[0]`` and ``nin = prod(shape[1:])``, draw ``A`` of shape
    ``(nout, nin)`` from U(-1, 1) (``rand_type='uniform'``) or N(0, 1) (``'normal'``),
    take the thin SVD ``A = U S V`` and use ``U`` when it has ``A``'s shape (``nout >=
    nin``), else ``V``; the weight is ``scale * Q`` reshaped, so
    ``Q Q^T = I`` (wide) or ``Q^T Q = I`` (tall) up to ``scale^2``.

    Parameters
    ----------
    scale : float, default 1.414
    rand_type : {'uniform', 'normal'}, default 'uniform'
    rng : numpy.random.Generator or int, optional
        Own random stream; not dumped.
    """

    def __init__(self, scale: float = 1.414, rand_type: str = "uniform", rng: RngLike = None) -> None:
        super().__init__(scale=scale, rand_type=rand_type)
        self.scale = scale
        self.rand_type = rand_type
        self._rng = _as_generator(rng)
        self._check_rand_type()

    def _check_rand_type(self):
        if self.rand_type not in _ORTHO_RAND:
            raise ValueError("Orthogonal: rand_type must be 'uniform' or 'normal', got %r"
                             % (self.rand_type,))

    def _init_weight(self, name, arr):
        self._check_rand_type()
        shape = tuple(arr.shape)
        if len(shape) < 2:
            raise ValueError("Orthogonal: cannot initialize %r of shape %s; it needs an "
                             "array with at least 2 dimensions" % (str(name), shape))
        nout, nin = shape[0], _size(shape[1:])
        if nout * nin == 0:
            return
        gen = self._generator()
        if self.rand_type == "uniform":
            tmp = gen.uniform(-1.0, 1.0, size=(nout, nin))
        else:
            tmp = gen.normal(0.0, 1.0, size=(nout, nin))
        u, _, v = np.linalg.svd(tmp, full_matrices=False)
        q = u if u.shape == tmp.shape else v
        _fill(arr, float(self.scale) * q.reshape(shape))


_XAVIER_RND = ("uniform", "gaussian")
_XAVIER_FACTOR = ("avg", "in", "out")


def _fans(shape):
    """``(fan_in, fan_out)`` of a dense ``(out, in)`` or conv ``(out, in, *kernel)`` shape."""
    hw = float(_size(shape[2:])) if len(shape) > 2 else 1.0
    return float(shape[1]) * hw, float(shape[0]) * hw


@register
class Xavier(Initializer):
    """Xavier/Glorot-style scaling.

    ``hw = prod(shape[2:])`` (1 for 2-D), ``fan_in = shape[1] * hw``, ``fan_out =
    shape[0] * hw``; ``factor`` is ``(fan_in + fan_out) / 2`` (``'avg'``), ``fan_in``
    (``'in'``) or ``fan_out`` (``'out'``); ``c = sqrt(magnitude / factor)``.  Weights are
    drawn from U(-c, c) (``rnd_type='uniform'``) or N(0, c^2) (``'gaussian'``).
    The default (uniform, avg, 3) is Glorot uniform.  Needs at least 2 dimensions.

    Parameters
    ----------
    rnd_type : {'uniform', 'gaussian'}, default 'uniform'
    factor_type : {'avg', 'in', 'out'}, default 'avg'
    magnitude : float, default 3
    rng : numpy.random.Generator or int, optional
        Own random stream; not dumped.
    """

    def __init__(self, rnd_type: str = "uniform", factor_type: str = "avg", magnitude: float = 3,
                 rng: RngLike = None) -> None:
        super().__init__(rnd_type=rnd_type, factor_type=factor_type, magnitude=magnitude)
        self.rnd_type = rnd_type
        self.factor_type = factor_type
        self.magnitude = float(magnitude)
        self._rng = _as_generator(rng)
        self._check_types()

    def _check_types(self):
        if self.factor_type not in _XAVIER_FACTOR:
            raise ValueError("%s: factor_type must be 'avg', 'in' or 'out', got %r"
                             % (type(self).__name__, self.factor_type))
        if self.rnd_type not in _XAVIER_RND:
            raise ValueError("%s: rnd_type must be 'uniform' or 'gaussian', got %r"
                             % (type(self).__name__, self.rnd_type))

    def _scale(self, name, shape):
        """``c = sqrt(magnitude / factor)`` for an array of this shape."""
        if len(shape) < 2:
            raise ValueError("%s: cannot initialize %r of shape %s; it needs an array with at "
                             "least 2 dimensions (out, in, *kernel) to compute fan-in/fan-out"
                             % (type(self).__name__, str(name), tuple(shape)))
        fan_in, fan_out = _fans(shape)
        factor = {"avg": (fan_in + fan_out) / 2.0, "in": fan_in, "out": fan_out}[self.factor_type]
        return math.sqrt(self.magnitude / factor)

    def _init_weight(self, name, arr):
        self._check_types()
        shape = tuple(arr.shape)
        if len(shape) >= 2 and _size(shape) == 0:
            return
        c = self._scale(name, shape)
        gen = self._generator()
        if self.rnd_type == "uniform":
            _fill(arr, gen.uniform(-c, c, size=shape))
        else:
            _fill(arr, gen.normal(0.0, c, size=shape))


@register
class MSRAPrelu(Xavier):
    """He/MSRA initialization for PReLU networks: Gaussian :class:`Xavier` with
    ``magnitude = 2 / (1 + slope^2)``, i.e. ``std = sqrt(2 / ((1 + slope^2) * factor))``.

    Parameters
    ----------
    factor_type : {'avg', 'in', 'out'}, default 'avg' (He et al. use 'in')
    slope : float, default 0.25
        Negative slope of the PReLU.
    rng : numpy.random.Generator or int, optional
        Own random stream; not dumped.
    """

    def __init__(self, factor_type: str = "avg", slope: float = 0.25, rng: RngLike = None) -> None:
        magnitude = 2.0 / (1 + slope ** 2)
        super().__init__("gaussian", factor_type, magnitude, rng=rng)
        self._kwargs = {"factor_type": factor_type, "slope": slope}


def _bilinear_kernel(shape, name="weight"):
    """The bilinear up-sampling kernel, computed in float32 as MXNet does."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4:
        raise ValueError("Bilinear: cannot initialize %r of shape %s; it needs a 4-D "
                         "(out, in, height, width) array" % (str(name), shape))
    n = _size(shape)
    height, width = shape[2], shape[3]
    f = math.ceil(width / 2.0)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    i = np.arange(n, dtype=np.int64)
    x = (i % width).astype(np.float64)
    y = ((i // width) % height).astype(np.float64)
    w = (1 - np.abs(x / f - c)) * (1 - np.abs(y / f - c))
    return w.astype(np.float32).reshape(shape)


@register
class Bilinear(Initializer):
    """Bilinear up-sampling kernel for a deconvolution weight ``(out, in, H, W)``.

    For flat index ``i``: ``x = i mod W``, ``y = floor(i / W) mod H``, ``f = ceil(W/2)``,
    ``c = (2f - 1 - (f mod 2)) / (2f)`` and the value is
    ``(1 - |x/f - c|) * (1 - |y/f - c|)`` (``f`` and ``c`` come from the width for both
    axes, as in MXNet).  A (1, 1, 4, 4) kernel is the outer product of
    ``[1/4, 3/4, 3/4, 1/4]`` with itself.  Values are rounded to float32 first.
    """

    def __init__(self):
        super().__init__()

    def _init_weight(self, name, arr):
        self._init_bilinear(name, arr)


@register
class LSTMBias(Initializer):
    """LSTM bias: zeros, then ``arr[H:2H] = forget_bias`` with ``H = shape[0] // 4``
    (gate order i, f, c, o).

    Only through the ``__init__`` attribute (or by calling ``_init_weight``): by a name
    ending in ``bias`` the generic dispatch gives zeros, as in MXNet.
    """

    def __init__(self, forget_bias: float = 1.0) -> None:
        super().__init__(forget_bias=forget_bias)
        self.forget_bias = forget_bias

    def _init_weight(self, name, arr):
        if len(arr.shape) == 0:
            raise ValueError("LSTMBias: cannot initialize %r, a 0-d array; it needs the "
                             "4*H gate biases along the first axis" % str(name))
        _fill(arr, 0.0)
        h = int(arr.shape[0] / 4)
        arr[h:2 * h] = self.forget_bias


# ----------------------------------------------------------------------------- RNN layouts
_GATES = {"rnn_relu": 1, "rnn_tanh": 1, "lstm": 4, "gru": 3}
_GATE_NAMES = {"rnn_relu": [""], "rnn_tanh": [""], "lstm": ["_i", "_f", "_c", "_o"],
               "gru": ["_r", "_z", "_o"]}


def _check_mode(who, mode):
    if mode not in _GATES:
        raise ValueError("%s: mode must be one of %s, got %r" % (who, ", ".join(_GATES), mode))


def _init_spec(value):
    """What an initializer argument looks like in ``dumps()`` (instances become JSON)."""
    return value.dumps() if isinstance(value, Initializer) else value


@register
class FusedRNN(Initializer):
    """Initializer for the flat parameter vector of MXNet 1.x ``FusedRNNCell``.

    Layout (``H = num_hidden``, ``L = num_layers``, directions ``l`` [``r``], gates
    ``i f c o`` (lstm), ``r z o`` (gru) or one (rnn)): first all weights, for each layer,
    direction: every gate's ``i2h`` weight ``(H, in)`` (``in`` = input size for layer 0,
    ``D*H`` above), then every gate's ``h2h`` weight ``(H, H)``; then all biases in the
    same order (``i2h`` gates, ``h2h`` gates, ``H`` each).  The input size is inferred:
    ``input = N // D // H // G - (L-1)(H + D*H + 2) - H - 2``.

    Slices are named like ``l0_i2h_f_weight`` and initialized with ``init`` (through the
    name dispatch, so biases get 0), or with ``desc.global_init`` when ``init`` is None;
    LSTM forget-gate biases (``*_f_bias``, both i2h and h2h) get ``forget_bias``.

    Parameters
    ----------
    init : Initializer, name or dumps() string, or None
    num_hidden, num_layers : int
    mode : {'lstm', 'gru', 'rnn_tanh', 'rnn_relu'}
    bidirectional : bool, default False
    forget_bias : float, default 1.0
    """

    def __init__(self, init, num_hidden, num_layers, mode, bidirectional=False, forget_bias=1.0):
        _check_mode("FusedRNN", mode)
        if init is not None and not isinstance(init, Initializer):
            init = create(init)
        super().__init__(init=init.dumps() if init is not None else None,
                         num_hidden=num_hidden, num_layers=num_layers, mode=mode,
                         bidirectional=bidirectional, forget_bias=forget_bias)
        self._init = init
        self._num_hidden = int(num_hidden)
        self._num_layers = int(num_layers)
        self._mode = mode
        self._bidirectional = bool(bidirectional)
        self._forget_bias = forget_bias

    def _slices(self, buf, name):
        """``[(slice name, view of buf)]`` in the fused layout."""
        h, nl, n = self._num_hidden, self._num_layers, buf.size
        gates = _GATE_NAMES[self._mode]
        dirs = ["l", "r"] if self._bidirectional else ["l"]
        d, g = len(dirs), len(gates)
        num_input = n // d // h // g - (nl - 1) * (h + d * h + 2) - h - 2
        total = (num_input + h + 2) * h * g * d + (nl - 1) * g * h * (h + d * h + 2) * d
        if num_input <= 0 or total != n:
            raise ValueError("FusedRNN: %r has %d elements, which is no valid parameter "
                             "vector for mode=%r, num_hidden=%d, num_layers=%d, "
                             "bidirectional=%s (expected (input + H + 2)*H*G*D + (L-1)*G*H*"
                             "(H + D*H + 2)*D for some input size >= 1)"
                             % (str(name), n, self._mode, h, nl, self._bidirectional))
        out, p = [], 0
        for layer in range(nl):
            width = num_input if layer == 0 else d * h
            for dr in dirs:
                for gate in gates:
                    out.append(("%s%d_i2h%s_weight" % (dr, layer, gate),
                                buf[p:p + h * width].reshape(h, width)))
                    p += h * width
                for gate in gates:
                    out.append(("%s%d_h2h%s_weight" % (dr, layer, gate),
                                buf[p:p + h * h].reshape(h, h)))
                    p += h * h
        for layer in range(nl):
            for dr in dirs:
                for conn in ("i2h", "h2h"):
                    for gate in gates:
                        out.append(("%s%d_%s%s_bias" % (dr, layer, conn, gate), buf[p:p + h]))
                        p += h
        return out

    def _init_weight(self, desc, arr):
        buf = np.empty(_size(arr.shape), dtype=arr.dtype)
        global_init = getattr(desc, "global_init", None)
        for name, view in self._slices(buf, desc):
            sub = InitDesc(name, global_init=global_init)
            if self._mode == "lstm" and name.endswith("_f_bias"):
                _fill(view, self._forget_bias)
            elif self._init is not None:
                self._init(sub, view)
            else:
                if global_init is None or global_init is self:
                    raise ValueError("FusedRNN: init=None needs a global initializer "
                                     "(InitDesc.global_init) other than the FusedRNN itself")
                global_init(sub, view)
        _fill(arr, buf.reshape(arr.shape))


@register
class RNNFused(Initializer):
    """Initializer for the flat parameter vector of MXNet 2.x fused RNN layers.

    ``G`` = gates (rnn_relu/rnn_tanh 1, lstm 4, gru 3), ``D`` = 2 if bidirectional else 1,
    ``H = state_size``, ``L = num_layers``, ``P = projection_size``.  From the vector length
    ``N`` the input size is inferred: with ``S = H*D*G``,
    ``input = (N - (L-1)*(H*D + H + 2)*S) // S - 2 - H`` without projection and
    ``input = (N - P*H*L*D - (L-1)*(P*D + P + 2)*S) // S - 2 - P`` with it.

    Layout: all weights, then all biases; within each, layer -> direction -> ``i2h``,
    ``h2h`` (and ``h2r`` for weights with projection).  Weight blocks hold ``G*H`` rows of
    width input (layer 0) or ``H*D`` / ``P*D`` (above) for ``i2h``, ``H`` / ``P`` for
    ``h2h``; ``h2r`` is ``P*H``; biases are ``G*H`` long.  Each block is filled, as a flat
    1-D slice, by ``create(<connect>_<param>_initializer)._init_weight``.  All five
    initializers (four without projection) must be set, here or by
    :meth:`set_initializer`.
    """

    def __init__(self, mode, num_layers, state_size, bidirectional=False,
                 projection_size=None, i2h_weight_initializer=None,
                 h2h_weight_initializer=None, i2h_bias_initializer=None,
                 h2h_bias_initializer=None, h2r_weight_initializer=None):
        _check_mode("RNNFused", mode)
        super().__init__(mode=mode, num_layers=num_layers, state_size=state_size,
                         bidirectional=bidirectional, projection_size=projection_size,
                         i2h_weight_initializer=_init_spec(i2h_weight_initializer),
                         h2h_weight_initializer=_init_spec(h2h_weight_initializer),
                         i2h_bias_initializer=_init_spec(i2h_bias_initializer),
                         h2h_bias_initializer=_init_spec(h2h_bias_initializer),
                         h2r_weight_initializer=_init_spec(h2r_weight_initializer))
        self.gates = _GATES[mode]
        self.num_layers = int(num_layers)
        self.num_hidden = int(state_size)
        self.dir = 2 if bidirectional else 1
        self.projection_size = projection_size
        self._i2h_weight_initializer = i2h_weight_initializer
        self._h2h_weight_initializer = h2h_weight_initializer
        self._i2h_bias_initializer = i2h_bias_initializer
        self._h2h_bias_initializer = h2h_bias_initializer
        self._h2r_weight_initializer = h2r_weight_initializer

    def _blocks(self, n, name):
        """``[(param, connect, start, length)]`` for a vector of ``n`` elements."""
        h, nl, d, g, p = self.num_hidden, self.num_layers, self.dir, self.gates, self.projection_size
        size = h * d * g
        if not p:
            size2 = (h * d + h + 2) * size
            input_size = (n - (nl - 1) * size2) // size - 2 - h
        else:
            size2 = (p * d + p + 2) * size
            input_size = (n - p * h * nl * d - (nl - 1) * size2) // size - 2 - p
        connects = ("i2h", "h2h", "h2r") if p else ("i2h", "h2h")
        blocks, begin = [], 0
        for param in ("weight", "bias"):
            for layer in range(nl):
                for _ in range(d):
                    for conn in connects:
                        if param == "bias" and conn == "h2r":
                            continue
                        if conn == "h2r":
                            length = p * h
                        elif param == "bias":
                            length = g * h
                        elif conn == "h2h":
                            length = g * h * (p or h)
                        else:
                            width = input_size if layer == 0 else (p or h) * d
                            length = g * h * width
                        blocks.append((param, conn, begin, length))
                        begin += length
        if input_size <= 0 or begin != n:
            raise ValueError("RNNFused: %r has %d elements, which is no valid parameter vector "
                             "for mode=%r, num_layers=%d, state_size=%d, bidirectional=%s, "
                             "projection_size=%s" % (str(name), n, self._kwargs["mode"], nl, h,
                                                     d == 2, p))
        return blocks

    def _init_weight(self, name, arr):
        buf = np.empty(_size(arr.shape), dtype=arr.dtype)
        for param, conn, begin, length in self._blocks(buf.size, name):
            self._init_util(param, conn, buf[begin:begin + length])
        _fill(arr, buf.reshape(arr.shape))

    def _init_util(self, param, connect, arr):
        attr = "_%s_%s_initializer" % (connect, param)
        spec = getattr(self, attr)
        if not _is_set(spec):
            raise ValueError("RNNFused: %s_%s_initializer is not set; pass it to the "
                             "constructor or call set_initializer(init)" % (connect, param))
        init = create(spec)
        init(InitDesc(attr, attrs={"__init__": init}), arr)

    def set_initializer(self, init):
        """Use ``init`` for every per-slice initializer that was not given (the ones given
        are kept); the change shows in ``dumps()``."""
        for key in ("i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias", "h2r_weight"):
            attr = "_%s_initializer" % key
            if not _is_set(getattr(self, attr)):
                setattr(self, attr, init)
                self._kwargs["%s_initializer" % key] = _init_spec(init)


__dir__ = _namespace.public_dir(__name__)
