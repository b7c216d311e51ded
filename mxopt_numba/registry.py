"""One generic name -> class registry, instantiated for optimizers and initializers.

Names are case-insensitive (stored lower-cased).  Registering a name twice warns and the
newer class wins, as in MXNet.  ``create`` accepts a registered name, an instance of the
base class (returned as is), a dict ``{"name": ..., **kwargs}``, or a JSON string written
by ``dumps`` (``'["name", {kwargs}]'`` or ``'{"name": ..., ...}'``).
"""
import difflib
import json
import warnings

from . import _namespace

__all__ = ["Registry"]


class _Classes(dict):
    """The name -> class mapping.  With a loader, the built-in classes are imported on
    first use, one module per name looked up; reading the mapping as a whole (iterating,
    ``in``, ``len``, item access) imports all of them first."""

    def __init__(self, loader=None):
        super().__init__()
        self.loader = loader
        self.complete = loader is None

    def load(self, name):
        """Import the built-in module that registers ``name``, if there is one."""
        if not self.complete:
            self.loader(name)

    def load_all(self):
        if not self.complete:
            self.complete = True
            self.loader(None)


def _reading(method):
    def read(self, *args, **kwargs):
        self.load_all()
        return method(self, *args, **kwargs)
    read.__name__ = method.__name__
    return read


for _name in ("__iter__", "__len__", "__contains__", "__getitem__", "__repr__", "__eq__", "keys", "values",
              "items", "get", "pop", "copy", "setdefault", "popitem"):
    setattr(_Classes, _name, _reading(getattr(dict, _name)))


class Registry:
    """Maps lower-cased names to subclasses of ``base``.  ``loader(name)``, if given,
    imports the built-in module registering ``name`` (all of them for None): built-in
    classes then load on first use, and a user class registered under a built-in name
    still overrides it."""

    def __init__(self, base, kind, loader=None):
        self.base = base
        self.kind = kind
        self._classes = _Classes(loader)

    def _lookup(self, key):
        cls = dict.get(self._classes, key)
        if cls is None and not self._classes.complete:
            self._classes.load(key)
            cls = dict.get(self._classes, key)
        return cls

    def register(self, cls, name=None):
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise TypeError("can only register subclasses of %s as %s, got %r"
                            % (self.base.__name__, self.kind, cls))
        key = (name or cls.__name__).lower()
        old = self._lookup(key)          # a built-in of that name registers first, as if eager
        if old is not None and old is not cls:
            warnings.warn("new %s %s.%s registered under the name %r overrides %s.%s"
                          % (self.kind, cls.__module__, cls.__name__, key,
                             old.__module__, old.__name__), UserWarning, stacklevel=3)
        dict.__setitem__(self._classes, key, cls)
        return cls

    def alias(self, *names):
        """Decorator registering ``cls`` under extra names."""
        def wrap(cls):
            for name in names:
                self.register(cls, name)
            return cls
        return wrap

    def names(self):
        return sorted(self._classes)

    def __contains__(self, name):
        return isinstance(name, str) and (self._lookup(name.lower()) is not None or name.lower() in self._classes)

    def get(self, name):
        if not isinstance(name, str):
            raise TypeError("%s name must be a str, got %r" % (self.kind, name))
        cls = self._lookup(name.lower())
        if cls is not None:
            return cls
        try:
            return self._classes[name.lower()]
        except KeyError:
            close = difflib.get_close_matches(name.lower(), self._classes, n=3)
            hint = (" Did you mean %s?" % " or ".join(repr(c) for c in close)) if close else ""
            raise ValueError("cannot find %s %r; registered: %s.%s"
                             % (self.kind, name, ", ".join(self.names()), hint)) from None

    def create(self, spec, *args, **kwargs):
        if isinstance(spec, self.base):
            if args or kwargs:
                raise ValueError("%s instance %r given together with extra arguments"
                                 % (self.kind, spec))
            return spec
        if isinstance(spec, dict):
            spec = dict(spec)
            name = spec.pop("name", None) or spec.pop(self.kind, None)
            if name is None:
                raise ValueError("%s spec dict needs a 'name' key, got %r" % (self.kind, spec))
            spec.update(kwargs)
            return self.create(name, *args, **spec)
        if isinstance(spec, str):
            text = spec.strip()
            if text.startswith("["):
                name, saved = json.loads(text)
                saved = dict(saved)
                saved.update(kwargs)
                return self.get(name)(*args, **saved)
            if text.startswith("{"):
                return self.create(json.loads(text), *args, **kwargs)
            return self.get(text)(*args, **kwargs)
        raise TypeError("%s must be a name, a %s instance, a dict or a JSON string, got %r"
                        % (self.kind, self.base.__name__, spec))


__dir__ = _namespace.public_dir(__name__)
