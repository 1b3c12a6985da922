"""The one JSON codec for what vtune writes: numpy values and non-finite floats.

Two forms, one rule for each value:

* :func:`plain` / :func:`unplain`: strict JSON for people and other tools
  (``result.json``, ``diagnosis.json``, the checkpoint spec). numpy scalars
  and arrays become numbers and lists; non-finite floats become the strings
  ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (protobuf's JSON mapping).
* :func:`encode` / :func:`decode`: an exact round trip of host state for
  checkpoints: arrays keep dtype and shape, tuples stay tuples, dataclasses
  are rebuilt into a template (never imported by a stored name), a
  :class:`vtune.Space` is stored as its JSON. No pickle anywhere.

Example:
    >>> import numpy as np
    >>> plain({"loss": np.float32(0.5), "best": float("nan")})
    {'loss': 0.5, 'best': 'NaN'}
    >>> x = {"ids": np.arange(3, dtype=np.int32), "pair": (1, float("inf"))}
    >>> y = decode(encode(x))
    >>> y["ids"].dtype, y["pair"]
    (dtype('int32'), (1, inf))
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

from vtune.space import Space

#: Non-finite floats as strict-JSON strings.
NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _nonfinite_name(x: float) -> str:
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def plain(obj: Any) -> Any:
    """``obj`` as strict-JSON data: numpy values as Python ones, non-finite floats as strings."""
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist())
    if isinstance(obj, np.generic):
        return plain(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return _nonfinite_name(obj)
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def unplain(obj: Any) -> Any:
    """Inverse of :func:`plain` for non-finite floats (the strings become floats again)."""
    if isinstance(obj, str) and obj in NONFINITE:
        return NONFINITE[obj]
    if isinstance(obj, dict):
        return {k: unplain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unplain(v) for v in obj]
    return obj


def dumps(obj: Any, **kwargs) -> str:
    """:func:`plain` then strict ``json.dumps`` (``allow_nan=False``)."""
    return json.dumps(plain(obj), allow_nan=False, **kwargs)


def loads(text: str) -> Any:
    """``json.loads`` then :func:`unplain`."""
    return unplain(json.loads(text))


def encode(obj: Any) -> Any:
    """Host state to JSON data; :func:`decode` inverts it exactly."""
    if isinstance(obj, Space):
        return {"__space__": obj.to_json()}
    if isinstance(obj, np.ndarray):
        kind = "object" if obj.dtype == object else obj.dtype.str
        return {"__array__": [encode(v) for v in obj.tolist()], "dtype": kind,
                "shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return {"__scalar__": encode(obj.item()), "dtype": obj.dtype.str}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"__fields__": {f.name: encode(getattr(obj, f.name))
                               for f in dataclasses.fields(obj)}}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v) for v in obj]}
    if isinstance(obj, list):
        return [encode(v) for v in obj]
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError(f"cannot checkpoint a dict with non-string keys: {list(obj)[:3]}")
        return {k: encode(v) for k, v in obj.items()}
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": _nonfinite_name(obj)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a value of type {type(obj).__name__}: {obj!r}")


def decode(data: Any, template: Any = None) -> Any:
    """Inverse of :func:`encode`.

    Dataclasses are rebuilt by replacing the fields of ``template`` (an
    instance of the same type). Bare non-finite floats (as checkpoints of
    vtune 0.1 stored them) read as floats too.
    """
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if "__float__" in data:
        return NONFINITE[data["__float__"]]
    if "__space__" in data:
        return Space.from_json(data["__space__"])
    if "__array__" in data:
        values = decode(data["__array__"])
        if data["dtype"] == "object":
            out = np.empty(len(values), dtype=object)
            out[:] = values
            return out.reshape(data["shape"])
        return np.array(values, dtype=np.dtype(data["dtype"])).reshape(data["shape"])
    if "__scalar__" in data:
        return np.dtype(data["dtype"]).type(decode(data["__scalar__"]))
    if "__tuple__" in data:
        return tuple(decode(v) for v in data["__tuple__"])
    if "__fields__" in data:
        if template is None or not dataclasses.is_dataclass(template):
            raise ValueError("a checkpointed dataclass needs a template to restore into")
        fields = {f.name: getattr(template, f.name) for f in dataclasses.fields(template)}
        return dataclasses.replace(template, **{
            k: decode(v, fields.get(k)) for k, v in data["__fields__"].items()})
    return {k: decode(v) for k, v in data.items()}
