"""Truncation selection with refill: the simplest real prune/refill loop.

Every generation the worst ``fraction`` of the population (and every diverged
trial) is dropped and its slots start fresh samples from the space; the rest
keep training. Samples continue one random or quasi-random sequence, so a
search never draws the same point twice.
"""

from __future__ import annotations

import numpy as np

from vtune.space import Space
from vtune.strategies.base import (Decisions, SequenceState, Strategy, check_method, draw, factory,
                                   finite_scores, rank, replace_rows)


@factory
def truncation(fraction: float = 0.5, method: str = "random") -> Strategy:
    """Drop the worst ``fraction`` each generation; refill with fresh samples.

    Args:
      fraction: share of slots pruned per generation, in (0, 1).
      method: how fresh configs are drawn: "random", "sobol" or "halton".

    Example:
        >>> strategy = vtune.strategies.truncation(fraction=0.25, method="sobol")
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"truncation: fraction must be in (0, 1), got {fraction!r}")
    check_method("truncation", method)

    def init(seed: int, space: Space, population_size: int) -> SequenceState:
        return SequenceState(space=space, size=population_size, seed=seed)

    def ask(state: SequenceState):
        return draw(state, state.size, method)

    def tell(state: SequenceState, scores: np.ndarray, configs: dict):
        order = rank(scores)
        n_drop = int(state.size * fraction) if state.size > 1 else 0
        dead = np.flatnonzero(np.isnan(finite_scores(scores)))
        drop = np.union1d(order[state.size - n_drop:], dead)
        fresh = np.zeros(state.size, bool)
        fresh[drop] = True
        state, new = draw(state, len(drop), method)
        return state, Decisions(parent=np.arange(state.size, dtype=np.int32), fresh=fresh,
                                configs=replace_rows(configs, drop, new))

    return Strategy(init=init, ask=ask, tell=tell, name="truncation")
