"""Search spaces: named distributions mapped to and from the unit cube [0, 1]^D.

Every non-fixed parameter owns one coordinate u in [0, 1]; ``decode`` maps u to
a value and ``encode`` maps it back, so samplers and optimisers only see the cube.
"""

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType

import numpy as np
from scipy.stats import qmc

from vtune.checks import integer
from vtune.space.distributions import KINDS, Choice, Distribution, Fixed
from vtune.space.distributions import (  # noqa: F401 (the doctests use the factories)
    choice, fixed, intuniform, loguniform, uniform)

#: Sampling methods of :meth:`Space.sample`.
METHODS = ("random", "sobol", "halton")


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
        object.__setattr__(self, "dists", MappingProxyType(dict(self.dists)))

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
        if method not in METHODS:
            raise ValueError(f"sample: unknown method {method!r}, expected one of {METHODS}")
        n, seed = integer("sample: n", n, 1), integer("sample: seed", seed, 0)
        skip, d = integer("sample: skip", skip, 0), len(self.dims)
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
            counts = integer("grid: counts", counts, 1)
            per = {k: counts for k in self.dims if not isinstance(self.dists[k], Choice)}
        ks = []
        for k in self.dims:
            if k in per:
                ks.append(integer(f"grid: count for {k!r}", per[k], 1))
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
            if kind not in KINDS:
                raise ValueError(f"from_json: {k!r} has unknown type {kind!r}")
            dists[k] = KINDS[kind](**{f: v for f, v in s.items() if f != "type"})
        return cls(dists)
