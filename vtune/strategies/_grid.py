"""Grid search: the cartesian product of evenly spaced values, the oldest baseline.

The grid fills as many slots as it can; a population larger than the grid
gets scrambled Sobol points in the remaining slots (and in the slots of
diverged trials), a grid larger than the population a seeded subset.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from vtune.space import Choice, IntUniform, Space
from vtune.strategies.base import SequenceState, Strategy, check_int, draw, factory, refill_diverged


def grid_counts(space: Space, size: int) -> dict[str, int]:
    """Points per dimension of the largest balanced grid with at most ``size`` points.

    Choices take all their options; numeric dimensions grow one count at a
    time in turn while the product stays within ``size`` (an int dimension
    never gets more counts than it has values).

    Example:
        >>> space = vtune.Space({"lr": vtune.loguniform(1e-4, 1.0), "d": vtune.uniform(0, 1),
        ...                      "init": vtune.choice(["he_normal", "zeros"])})
        >>> vtune.strategies.grid_counts(space, 32)
        {'lr': 4, 'd': 4, 'init': 2}
    """
    counts = {k: len(space[k].options) if isinstance(space[k], Choice) else 1
              for k in space.dims}
    numeric = [k for k in space.dims if not isinstance(space[k], Choice)]
    cap = {k: space[k].hi - space[k].lo + 1 if isinstance(space[k], IntUniform) else math.inf
           for k in numeric}
    grew = True
    while grew:
        grew = False
        for k in numeric:
            total = math.prod(counts.values())
            if counts[k] < cap[k] and total // counts[k] * (counts[k] + 1) <= size:
                counts[k] += 1
                grew = True
    return counts


@factory
def grid(counts: int | Mapping[str, int] | None = None,
         points: Mapping[str, object] | None = None) -> Strategy:
    """Trains a grid of configurations, one per slot, to the end.

    Args:
      counts: points per dimension, as for :meth:`vtune.Space.grid`; default
        the largest balanced grid that fits the population (:func:`grid_counts`).
      points: an explicit design instead, ``{name: values}`` for every
        dimension of the space (at most one point per slot).

    Example:
        >>> s = vtune.strategies.grid()
        >>> state = s.init(0, vtune.Space({"x": vtune.uniform(0, 1)}), 4)
        >>> s.ask(state)[1]["x"].tolist()
        [0.125, 0.375, 0.625, 0.875]
    """
    if counts is not None and points is not None:
        raise ValueError("grid: give counts or points, not both")
    if counts is not None and not isinstance(counts, Mapping):
        check_int("grid", "counts", counts, 1)
    if points is not None and not isinstance(points, Mapping):
        raise ValueError(f"grid: points must be a mapping name -> values, got {points!r}")

    def design(space: Space, size: int, seed: int) -> dict:
        if points is not None:
            missing = [k for k in space.dims if k not in points]
            unknown = [k for k in points if k not in space]
            if missing or unknown:
                raise ValueError(f"grid: points miss dimensions {missing} and name unknown "
                                 f"ones {unknown}")
            space.encode(points)  # raises on values outside the space
            n = len(np.asarray(next(iter(points.values())))) if points else 1
            like = space.decode(np.full((n, len(space.dims)), 0.5))  # dtypes, fixed values
            return {k: np.asarray(points[k], dtype=like[k].dtype) if k in points else like[k]
                    for k in space.names}
        return space.grid(grid_counts(space, size) if counts is None else counts)

    def init(seed: int, space: Space, population_size: int) -> SequenceState:
        n = len(next(iter(design(space, population_size, seed).values())))
        if points is not None and n > population_size:
            raise ValueError(f"grid: {n} points do not fit a population of {population_size}")
        return SequenceState(space=space, size=population_size, seed=seed)

    def ask(state: SequenceState):
        configs = design(state.space, state.size, state.seed)
        n = len(next(iter(configs.values())))
        if n > state.size:  # a seeded subset, in grid order
            keep = np.sort(np.random.default_rng(state.seed).choice(n, state.size, replace=False))
            return state, {k: v[keep] for k, v in configs.items()}
        if n < state.size:
            state, fill = draw(state, state.size - n, "sobol")
            configs = {k: np.concatenate([v, fill[k]]) for k, v in configs.items()}
        return state, configs

    def tell(state: SequenceState, scores: np.ndarray, configs: dict):
        return refill_diverged(state, scores, configs, "sobol")

    return Strategy(init=init, ask=ask, tell=tell, name="grid")
