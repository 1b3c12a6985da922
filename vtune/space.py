"""Search spaces: named distributions mapped to and from the unit cube [0, 1]^D.

Every non-fixed parameter owns one coordinate u in [0, 1]; ``decode`` maps u to
a value and ``encode`` maps it back, so samplers and optimisers only see the cube.
"""

import abc
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
from scipy.stats import qmc

_METHODS = ("random", "sobol", "halton")


def _set(obj, name, value):
    object.__setattr__(obj, name, value)  # how a frozen dataclass normalises its own fields


def _real(kind, field, x):
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise TypeError(f"{kind}: {field} must be a number, got {x!r}")
    if not np.isfinite(x):
        raise ValueError(f"{kind}: {field} must be finite, got {float(x)}")
    return float(x)


def _int(what, x, minimum=None):
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise TypeError(f"{what} must be an int, got {x!r}")
    if minimum is not None and x < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {x}")
    return int(x)


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
        _set(self, "lo", _int("intuniform: lo", self.lo))
        _set(self, "hi", _int("intuniform: hi", self.hi))
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


_KINDS = {c._kind: c for c in (LogUniform, Uniform, IntUniform, Choice, Fixed)}


@dataclass(frozen=True, eq=False, repr=False)
class Space(Mapping):
    """An ordered, immutable mapping of parameter name -> Distribution.

    Configs are dicts ``{name: array[n]}``; unit-cube points are arrays [n, D]
    whose columns follow ``dims`` (the non-fixed names).

    Example:
        >>> space = Space({"lr": loguniform(1e-4, 1.0), "layers": intuniform(1, 3),
        ...                "act": fixed("relu")})
        >>> configs = space.sample(4, seed=0, method="sobol")
        >>> space.encode(configs).shape
        (4, 2)
        >>> Space.from_json(space.to_json()) == space
        True
    """

    dists: Mapping[str, Distribution]

    def __post_init__(self):
        if not isinstance(self.dists, Mapping):
            raise TypeError(f"space: expected a mapping name -> distribution, got {self.dists!r}")
        if not self.dists:
            raise ValueError(f"space: needs at least one parameter, got {dict(self.dists)!r}")
        for name, d in self.dists.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"space: names must be identifiers, got {name!r}")
            if not isinstance(d, Distribution):
                hint = f"vtune.{'choice' if isinstance(d, (list, tuple)) else 'fixed'}({d!r})"
                raise TypeError(f"space: {name!r} is {d!r}, not a distribution; use {hint} "
                                "(vtune.fixed(...) for a constant, vtune.choice(...) for options)")
        _set(self, "dists", MappingProxyType(dict(self.dists)))

    @classmethod
    def coerce(cls, x) -> "Space":
        """``x`` if it is a Space, else ``Space(x)``. Example: ``Space.coerce({"a": fixed(1)})``."""
        return x if isinstance(x, Space) else cls(x)

    names = property(lambda self: tuple(self.dists), doc="All names, in order.")
    dims = property(lambda self: tuple(k for k in self.dists if not isinstance(self[k], Fixed)),
                    doc="The non-fixed names, in order: the unit-cube columns.")

    def __getitem__(self, name):
        return self.dists[name]

    def __iter__(self):
        return iter(self.dists)

    def __len__(self):
        return len(self.dists)

    def __contains__(self, name):
        return name in self.dists

    def __eq__(self, other):
        if not isinstance(other, Space):
            return NotImplemented
        return list(self.dists.items()) == list(other.dists.items())

    def __hash__(self):
        return hash(tuple(self.dists.items()))

    def __repr__(self):
        return "Space(" + ", ".join(f"{k}={v!r}" for k, v in self.dists.items()) + ")"

    def decode(self, u: np.ndarray) -> dict:
        """Maps u [n, D] to ``{name: array[n]}``, fixed names included.

        Example:
            >>> Space({"x": uniform(0, 2), "y": fixed(1)}).decode(np.array([[0.5]]))
            {'x': array([1.]), 'y': array([1])}
        """
        u = np.asarray(u, dtype=np.float64)
        if u.ndim != 2 or u.shape[1] != len(self.dims):
            raise ValueError(f"space.decode: u must be [n, {len(self.dims)}], got shape {u.shape}")
        cols = dict(zip(self.dims, u.T))
        return {k: d.decode(cols.get(k, np.zeros(len(u)))) for k, d in self.dists.items()}

    def encode(self, configs: Mapping) -> np.ndarray:
        """Maps ``{name: array[n]}`` to u [n, D]; fixed names may be omitted.

        Example:
            >>> Space({"x": uniform(0, 2)}).encode({"x": [1.0]})
            array([[0.5]])
        """
        unknown = [k for k in configs if k not in self.dists]
        missing = [k for k in self.dims if k not in configs]
        if unknown or missing:
            raise ValueError(f"space.encode: unknown names {unknown}, missing names {missing}")
        arrays = {k: np.asarray(v) for k, v in configs.items()}
        shapes = {k: a.shape for k, a in arrays.items()}
        if any(len(s) != 1 for s in shapes.values()) or len(set(shapes.values())) > 1:
            raise ValueError(f"space.encode: values must be 1-D arrays of one length, got {shapes}")
        for k in arrays.keys() - set(self.dims):
            self.dists[k].encode(arrays[k])  # raises if a fixed name holds another value
        cols = [self.dists[k].encode(arrays[k]) for k in self.dims]
        n = next(iter(shapes.values()))[0] if shapes else 0
        return np.stack(cols, axis=1) if cols else np.empty((n, 0))

    @staticmethod
    def clip(u: np.ndarray) -> np.ndarray:
        """Clips u into the unit cube. Example: ``Space.clip([1.5])`` is ``array([1.])``."""
        return np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)

    def sample(self, n: int, seed: int, method: str = "random", skip: int = 0) -> dict:
        """Draws n configs, i.i.d. ("random") or scrambled quasi-random ("sobol", "halton").

        For "sobol"/"halton", ``skip`` fast-forwards the seeded sequence, so refills
        continue it; for "random", ``(seed, skip)`` seeds an independent stream.

        Example:
            >>> s = Space({"x": uniform(0, 1)})
            >>> a, b = s.sample(4, 0, "sobol"), s.sample(4, 0, "sobol", skip=4)
            >>> bool((np.r_[a["x"], b["x"]] == s.sample(8, 0, "sobol")["x"]).all())
            True
        """
        if method not in _METHODS:
            raise ValueError(f"sample: unknown method {method!r}, expected one of {_METHODS}")
        n, seed = _int("sample: n", n, 1), _int("sample: seed", seed, 0)
        skip, d = _int("sample: skip", skip, 0), len(self.dims)
        if method == "random":
            u = np.random.default_rng([seed, skip]).random((n, d))
        elif d == 0:
            u = np.empty((n, 0))
        else:
            engine = (qmc.Sobol if method == "sobol" else qmc.Halton)(d=d, scramble=True, rng=seed)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*balance properties.*")
                if skip:  # scipy's Sobol.fast_forward(0) overflows
                    engine.fast_forward(skip)
                u = engine.random(n)
        return self.decode(u)

    def grid(self, counts) -> dict:
        """The cartesian product (first dim slowest) of cell centres u = (i + 0.5) / k.

        ``counts`` is one int for every non-Choice dim, or a dict name -> int;
        Choice dims without an explicit count use all their options.

        Example:
            >>> Space({"x": uniform(0, 1), "c": choice([1, 2])}).grid(2)["x"]
            array([0.25, 0.25, 0.75, 0.75])
        """
        if isinstance(counts, Mapping):
            for k in counts:
                if k not in self.dims:
                    raise ValueError(f"grid: {k!r} is not a dimension, expected one of {self.dims}")
            per = dict(counts)
        else:
            counts = _int("grid: counts", counts, 1)
            per = {k: counts for k in self.dims if not isinstance(self.dists[k], Choice)}
        ks = []
        for k in self.dims:
            if k in per:
                ks.append(_int(f"grid: count for {k!r}", per[k], 1))
            elif isinstance(self.dists[k], Choice):
                ks.append(len(self.dists[k].options))
            else:
                raise ValueError(f"grid: no count given for dimension {k!r}")
        mesh = np.meshgrid(*[(np.arange(k) + 0.5) / k for k in ks], indexing="ij")
        u = np.stack([m.ravel() for m in mesh], axis=1) if ks else np.empty((1, 0))
        return self.decode(u)

    def to_json(self) -> dict:
        """A JSON-serialisable spec that ``Space.from_json`` inverts exactly.

        Example:
            >>> Space({"lr": loguniform(1e-4, 1.0)}).to_json()
            {'lr': {'type': 'loguniform', 'lo': 0.0001, 'hi': 1.0}}
        """
        out = {}
        for k, d in self.dists.items():
            vals = {f.name: getattr(d, f.name) for f in fields(d)}
            vals = {f: list(v) if isinstance(v, tuple) else v for f, v in vals.items()}
            out[k] = {"type": d._kind, **vals}
        return out

    @classmethod
    def from_json(cls, spec: Mapping) -> "Space":
        """Rebuilds a Space from ``to_json`` output (see the class example)."""
        if not isinstance(spec, Mapping):
            raise TypeError(f"from_json: expected a dict, got {spec!r}")
        dists = {}
        for k, s in spec.items():
            kind = s.get("type") if isinstance(s, Mapping) else None
            if kind not in _KINDS:
                raise ValueError(f"from_json: {k!r} has unknown type {kind!r}")
            dists[k] = _KINDS[kind](**{f: v for f, v in s.items() if f != "type"})
        return cls(dists)
