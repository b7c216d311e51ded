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


class Registry:
    """Maps lower-cased names to subclasses of ``base``."""

    def __init__(self, base, kind):
        self.base = base
        self.kind = kind
        self._classes = {}

    def register(self, cls, name=None):
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise TypeError("can only register subclasses of %s as %s, got %r"
                            % (self.base.__name__, self.kind, cls))
        key = (name or cls.__name__).lower()
        old = self._classes.get(key)
        if old is not None and old is not cls:
            warnings.warn("new %s %s.%s registered under the name %r overrides %s.%s"
                          % (self.kind, cls.__module__, cls.__name__, key,
                             old.__module__, old.__name__), UserWarning, stacklevel=3)
        self._classes[key] = cls
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
        return isinstance(name, str) and name.lower() in self._classes

    def get(self, name):
        if not isinstance(name, str):
            raise TypeError("%s name must be a str, got %r" % (self.kind, name))
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
