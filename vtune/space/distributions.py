"""Distributions of one parameter, each mapped to and from the unit interval [0, 1].

``decode`` maps u in [0, 1] to a value and ``encode`` maps it back, so samplers
and optimisers only see the cube.
"""

import abc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from vtune.checks import integer

def _set(obj, name, value):
    object.__setattr__(obj, name, value)  # how a frozen dataclass normalises its own fields


def _real(kind, field, x):
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise TypeError(f"{kind}: {field} must be a number, got {x!r}")
    if not np.isfinite(x):
        raise ValueError(f"{kind}: {field} must be finite, got {float(x)}")
    return float(x)


def _scalar(kind, x):
    x = x.item() if isinstance(x, np.generic) else x
    if not isinstance(x, (str, bool, int, float)):
        raise TypeError(f"{kind}: values must be str, bool, int or float, got {x!r}")
    if isinstance(x, float) and np.isnan(x):
        raise ValueError(f"{kind}: values must not be nan, got {x!r}")
    return x


def _unit(u):
    u = np.asarray(u, dtype=np.float64)
    bad = ~((u >= 0.0) & (u <= 1.0))  # also catches nan
    if bad.any():
        raise ValueError(f"decode: u must lie in [0, 1], got {float(u[bad].flat[0])}")
    return u


def _in_range(kind, values, lo, hi):
    v = np.asarray(values, dtype=np.float64)
    bad = ~((v >= lo) & (v <= hi))
    if bad.any():
        raise ValueError(f"{kind}: value {float(v[bad].flat[0])} outside [{lo}, {hi}]")
    return v


class Distribution(abc.ABC):
    """Base class of one parameter: ``decode`` u in [0, 1] to values, ``encode`` back."""

    _kind: ClassVar[str]
    is_log = property(lambda self: False, doc="Whether the dimension is uniform in log space.")

    @abc.abstractmethod
    def decode(self, u: np.ndarray) -> np.ndarray: ...

    @abc.abstractmethod
    def encode(self, values) -> np.ndarray: ...


@dataclass(frozen=True)
class _Interval(Distribution):
    lo: float
    hi: float

    def __post_init__(self):
        lo, hi = _real(self._kind, "lo", self.lo), _real(self._kind, "hi", self.hi)
        if self.is_log and lo <= 0:
            raise ValueError(f"{self._kind}: lo must be > 0, got {lo}")
        if hi <= lo:
            raise ValueError(f"{self._kind}: hi must be > lo, got lo={lo}, hi={hi}")
        _set(self, "lo", lo)
        _set(self, "hi", hi)

    def _warp(self, x):
        return np.log(x) if self.is_log else x

    def decode(self, u):
        a, b = self._warp(self.lo), self._warp(self.hi)
        x = a + _unit(u) * (b - a)
        return np.clip(np.exp(x) if self.is_log else x, self.lo, self.hi)

    def encode(self, values):
        v = _in_range(self._kind, values, self.lo, self.hi)
        a, b = self._warp(self.lo), self._warp(self.hi)
        return np.clip((self._warp(v) - a) / (b - a), 0.0, 1.0)


@dataclass(frozen=True)
class Uniform(_Interval):
    """Floats uniform on [lo, hi].

    Example:
        >>> Uniform(0.0, 10.0).decode(np.array([0.25]))
        array([2.5])
    """

    _kind = "uniform"


@dataclass(frozen=True)
class LogUniform(_Interval):
    """Floats uniform in log space on [lo, hi], 0 < lo.

    Example:
        >>> LogUniform(1e-4, 1.0).encode(np.array([1e-2])).round(6)
        array([0.5])
    """

    _kind = "loguniform"
    is_log = property(lambda self: True)


@dataclass(frozen=True)
class IntUniform(Distribution):
    """Integers in [lo, hi], each equally likely (or uniform in log space if ``log``).

    Example:
        >>> IntUniform(1, 4).decode(np.array([0.0, 0.3, 0.99, 1.0]))
        array([1, 2, 4, 4])
    """

    lo: int
    hi: int
    log: bool = False
    _kind = "intuniform"
    is_log = property(lambda self: self.log)

    def __post_init__(self):
        _set(self, "lo", integer("intuniform: lo", self.lo))
        _set(self, "hi", integer("intuniform: hi", self.hi))
        if not isinstance(self.log, (bool, np.bool_)):
            raise TypeError(f"intuniform: log must be a bool, got {self.log!r}")
        _set(self, "log", bool(self.log))
        if self.hi < self.lo:
            raise ValueError(f"intuniform: hi must be >= lo, got lo={self.lo}, hi={self.hi}")
        if self.log and self.lo < 1:
            raise ValueError(f"intuniform: log=True requires lo >= 1, got lo={self.lo}")

    def _edges(self):
        # Integer v owns the cell [v, v + 1) on the linear or log scale.
        return (np.log(self.lo), np.log(self.hi + 1.0)) if self.log else (self.lo, self.hi + 1.0)

    def decode(self, u):
        a, b = self._edges()
        x = a + _unit(u) * (b - a)
        return np.clip(np.floor(np.exp(x) if self.log else x), self.lo, self.hi).astype(np.int64)

    def encode(self, values):
        v = _in_range("intuniform", values, self.lo, self.hi)
        if np.any(v != np.round(v)):
            raise ValueError(f"intuniform: value {float(v[v != np.round(v)][0])} is not an integer")
        a, b = self._edges()
        mid = (np.log(v) + np.log(v + 1.0)) / 2 if self.log else v + 0.5
        return np.clip((mid - a) / (b - a), 0.0, 1.0)


@dataclass(frozen=True)
class Choice(Distribution):
    """One of a tuple of str/bool/int/float options, each equally likely.

    Example:
        >>> Choice(("adam", "sgd")).decode(np.array([0.1, 0.6]))
        array(['adam', 'sgd'], dtype=object)
    """

    options: tuple
    _kind = "choice"

    def __post_init__(self):
        opts = self.options
        unordered = (str, bytes, set, frozenset, Mapping)
        if isinstance(opts, unordered) or not isinstance(opts, Iterable):
            raise TypeError(f"choice: options must be a sequence, got {opts!r}")
        opts = tuple(_scalar("choice", o) for o in opts)
        if not opts:
            raise ValueError(f"choice: options must be non-empty, got {opts!r}")
        seen = {}
        for o in opts:  # dict keys, so 1, 1.0 and True count as the same option
            if o in seen:
                raise ValueError(f"choice: duplicate option {o!r} (equals {seen[o]!r})")
            seen[o] = o
        _set(self, "options", opts)

    def decode(self, u):
        n = len(self.options)
        idx = np.minimum(np.floor(_unit(u) * n), n - 1).astype(np.intp)
        strs = any(isinstance(o, str) for o in self.options)
        return np.asarray(self.options, dtype=object if strs else None)[idx]

    def encode(self, values):
        index = {o: i for i, o in enumerate(self.options)}
        vals = np.asarray(values, dtype=object)
        out = np.empty(vals.shape)
        for pos, v in np.ndenumerate(vals):
            v = v.item() if isinstance(v, np.generic) else v
            try:
                out[pos] = index[v]
            except (KeyError, TypeError):
                raise ValueError(f"choice: {v!r} is not one of {self.options}") from None
        return (out + 0.5) / len(self.options)


@dataclass(frozen=True)
class Fixed(Distribution):
    """A constant; no unit-cube dimension (``decode`` ignores u, ``encode`` gives 0.5).

    Example:
        >>> Fixed(3).decode(np.zeros(2))
        array([3, 3])
    """

    value: Any
    _kind = "fixed"

    def __post_init__(self):
        _set(self, "value", _scalar("fixed", self.value))

    def decode(self, u):
        dtype = object if isinstance(self.value, str) else None
        return np.full(np.shape(u), self.value, dtype=dtype)

    def encode(self, values):
        vals = np.asarray(values, dtype=object)
        for v in vals.flat:
            if v != self.value:
                raise ValueError(f"fixed: got {v!r}, expected the fixed value {self.value!r}")
        return np.full(vals.shape, 0.5)  # the centre of a one-option cell, as for Choice


def loguniform(lo: float, hi: float) -> LogUniform:
    """Log-uniform on [lo, hi]. Example: ``loguniform(1e-4, 1.0).is_log`` is True."""
    return LogUniform(lo, hi)


def uniform(lo: float, hi: float) -> Uniform:
    """Uniform on [lo, hi]. Example: ``uniform(0, 1).lo`` is 0.0."""
    return Uniform(lo, hi)


def intuniform(lo: int, hi: int, log: bool = False) -> IntUniform:
    """Integers in [lo, hi]. Example: ``intuniform(1, 512, log=True).is_log`` is True."""
    return IntUniform(lo, hi, log)


def choice(options) -> Choice:
    """One of a sequence of options. Example: ``choice(["a", "b"]).options == ("a", "b")``."""
    return Choice(options)


def fixed(value) -> Fixed:
    """A constant. Example: ``fixed("adam").value == "adam"``."""
    return Fixed(value)


#: Distribution classes by their JSON kind.
KINDS = {c._kind: c for c in (LogUniform, Uniform, IntUniform, Choice, Fixed)}
