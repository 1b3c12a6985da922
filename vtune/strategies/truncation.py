"""Truncation selection with refill: the simplest real prune/refill loop.

Every generation the worst ``fraction`` of the population (and every diverged
trial) is dropped and its slots start fresh samples from the space; the rest
keep training. Samples continue one random or quasi-random sequence, so a
search never draws the same point twice.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from vtune.space import Space
from vtune.strategies.base import Decisions, Strategy, finite_scores, rank, replace_rows


@dataclasses.dataclass(frozen=True)
class TruncationState:
    space: Space
    size: int
    seed: int
    drawn: int = 0  # points of the sample sequence used so far


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
    if method not in ("random", "sobol", "halton"):
        raise ValueError(f"truncation: unknown method {method!r}; use random, sobol or halton")

    def init(seed: int, space: Space, population_size: int) -> TruncationState:
        return TruncationState(space=space, size=population_size, seed=seed)

    def ask(state: TruncationState):
        configs = state.space.sample(state.size, state.seed, method=method, skip=state.drawn)
        return dataclasses.replace(state, drawn=state.drawn + state.size), configs

    def tell(state: TruncationState, scores: np.ndarray, configs: dict):
        order = rank(scores)
        n_drop = int(state.size * fraction) if state.size > 1 else 0
        dead = np.flatnonzero(np.isnan(finite_scores(scores)))
        drop = np.union1d(order[state.size - n_drop:], dead)
        fresh = np.zeros(state.size, bool)
        fresh[drop] = True
        new = state.space.sample(max(len(drop), 1), state.seed, method=method, skip=state.drawn)
        decisions = Decisions(parent=np.arange(state.size, dtype=np.int32), fresh=fresh,
                              configs=replace_rows(configs, drop, new))
        return dataclasses.replace(state, drawn=state.drawn + len(drop)), decisions

    return Strategy(init=init, ask=ask, tell=tell, name="truncation")
