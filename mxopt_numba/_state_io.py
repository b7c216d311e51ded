"""A safe, versioned container for optimizer states and settings.

The bytes are an ``.npz`` archive: one entry ``__meta__`` with UTF-8 JSON describing the
structure, plus one array per state leaf.  Loading uses ``allow_pickle=False`` and plain
JSON, so a file can never run code; anything malformed raises :class:`StateFormatError`.
"""
import io
import json
import zipfile

import numpy as np

FORMAT = "mxopt_numba.states"
VERSION = 1


class StateFormatError(ValueError):
    """Saved optimizer state that is truncated, corrupted, or of another format/version."""


class _Writer:
    def __init__(self, encode_object=None):
        self.arrays = {}
        self.encode_object = encode_object

    def encode(self, value, where="value"):
        """JSON-ready tagged form of ``value``; arrays go to ``self.arrays``."""
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)):
            return float(value)
        if isinstance(value, np.ndarray):
            key = "a%d" % len(self.arrays)
            dtype = value.dtype
            if dtype.name == "bfloat16":
                self.arrays[key] = np.ascontiguousarray(value).view(np.uint16)
                return {"$array": key, "bf16": True}
            if dtype.hasobject or dtype.kind not in "biuf":
                raise TypeError("cannot save %s: arrays of dtype %s are not supported" % (where, dtype))
            self.arrays[key] = np.ascontiguousarray(value)
            return {"$array": key}
        if isinstance(value, tuple):
            return {"$tuple": [self.encode(v, where) for v in value]}
        if isinstance(value, list):
            return {"$list": [self.encode(v, where) for v in value]}
        if isinstance(value, dict):
            return {"$dict": [[self.encode(k, where), self.encode(v, "%s[%r]" % (where, k))]
                              for k, v in value.items()]}
        if self.encode_object is not None:
            path, state = self.encode_object(value, where)
            return {"$object": path, "state": self.encode(state, where)}
        raise TypeError("cannot save %s of type %s" % (where, type(value).__name__))


class _Reader:
    def __init__(self, archive, decode_object):
        self.archive = archive
        self.decode_object = decode_object

    def decode(self, value):
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, dict) and len(value) >= 1:
            if "$array" in value:
                key = value["$array"]
                if not isinstance(key, str) or key not in self.archive:
                    raise StateFormatError("missing array %r" % (key,))
                arr = np.array(self.archive[key])
                if value.get("bf16"):
                    import ml_dtypes
                    arr = arr.view(ml_dtypes.bfloat16)
                return arr
            if "$tuple" in value:
                return tuple(self.decode(v) for v in _list(value["$tuple"]))
            if "$list" in value:
                return [self.decode(v) for v in _list(value["$list"])]
            if "$dict" in value:
                out = {}
                for pair in _list(value["$dict"]):
                    if not (isinstance(pair, list) and len(pair) == 2):
                        raise StateFormatError("bad dict entry %r" % (pair,))
                    key = self.decode(pair[0])
                    if isinstance(key, list):
                        raise StateFormatError("unhashable dict key")
                    out[key] = self.decode(pair[1])
                return out
            if "$object" in value:
                path = value["$object"]
                if not isinstance(path, str):
                    raise StateFormatError("bad object class %r" % (path,))
                if ":" not in path and isinstance(value.get("module"), str):
                    path = "%s:%s" % (value["module"], path)    # files of version 1 before class paths
                if self.decode_object is None:
                    raise StateFormatError("cannot restore an object of class %r here" % path)
                return self.decode_object(path, self.decode(value.get("state")))
        raise StateFormatError("unexpected entry %r" % (value,)[:100])


def _list(x):
    if not isinstance(x, list):
        raise StateFormatError("expected a list, got %r" % (type(x).__name__,))
    return x


def dumps(kind, payload, encode_object=None):
    """Serialise ``payload`` (nested dict/list/tuple of numbers, strings and arrays) as
    bytes tagged with ``kind``.

    ``encode_object(value, where) -> ("module:QualName", state)`` handles any other
    value (or raises ``TypeError``); without it such values raise ``TypeError``.  All
    checks happen while encoding, before any byte is produced."""
    writer = _Writer(encode_object)
    meta = {"format": FORMAT, "version": VERSION, "kind": kind, "payload": writer.encode(payload, kind)}
    buf = io.BytesIO()
    text = json.dumps(meta, allow_nan=True)
    np.savez(buf, __meta__=np.frombuffer(text.encode("utf-8"), dtype=np.uint8), **writer.arrays)
    return buf.getvalue()


def loads(data, kind, decode_object=None):
    """Inverse of :func:`dumps`; ``decode_object(path, state) -> object`` rebuilds what
    ``encode_object`` stored (and raises :class:`StateFormatError` when it cannot)."""
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise TypeError("saved states must be bytes, got %s" % type(data).__name__)
    if data[:2] == b"\x80\x04" or data[:1] == b"\x80":
        raise StateFormatError("this looks like a pickle; mxopt_numba never loads pickles (untrusted "
                               "pickles can run code). Re-save the states with mxopt_numba.")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            files = set(archive.files)
            if "__meta__" not in files:
                raise StateFormatError("not an mxopt_numba state file (no __meta__ entry)")
            meta = json.loads(bytes(archive["__meta__"]).decode("utf-8"))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise StateFormatError("not an mxopt_numba state file")
            if meta.get("version") != VERSION:
                raise StateFormatError("state file version %r is not supported (this library reads %d)"
                                       % (meta.get("version"), VERSION))
            if meta.get("kind") != kind:
                raise StateFormatError("state file holds %r, expected %r" % (meta.get("kind"), kind))
            arrays = {name: archive[name] for name in files if name != "__meta__"}
            return _Reader(arrays, decode_object).decode(meta.get("payload"))
    except StateFormatError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, ValueError, UnicodeDecodeError,
            TypeError, RecursionError, zipfile.LargeZipFile, NotImplementedError) as exc:
        raise StateFormatError("corrupted or truncated state data: %s: %s" % (type(exc).__name__, exc)) from None
