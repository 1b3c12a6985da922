"""Coarse-to-fine search with multi-fidelity stages, as a careful person tunes by hand.

The search runs in stages. A stage samples configurations (scrambled Sobol)
inside a box of the unit cube — so log-scaled dimensions shrink in log
space — and trains them on a seeded subsample of the training data
(``train_fraction``), fewer generations early, all of it late. At the end of
a stage every numeric dimension's range shrinks by ``shrink`` around the
top-k trials (never narrower than they spread), a choice keeps only the
options the top-k use; the top-k trials carry on (on the next stage's data
share), every other slot starts a new sample in the narrowed box. Diverged
trials are refilled inside the current box.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from vtune.space import Choice, Space
from vtune.strategies.base import (Decisions, Strategy, check_method, factory, finite_scores,
                                   keep_all, rank, replace_rows, unit)
from vtune.strategies.tpe import options


@dataclasses.dataclass(frozen=True)
class CoarseToFineState:
    """State of :func:`coarse_to_fine`.

    Attributes:
      space: the search space.
      size: the population size.
      seed: seeds the sample sequence.
      generation: tells so far.
      stage: the current stage.
      drawn: points of the quasi-random sequence used so far.
      lo, hi: ``float64[D]``, the current box in the unit cube.
      allowed: ``bool[sum of option counts]``, the options each choice keeps
        (the choices' options concatenated in dimension order).
    """

    space: Space
    size: int
    seed: int
    lo: np.ndarray
    hi: np.ndarray
    allowed: np.ndarray
    generation: int = 0
    stage: int = 0
    drawn: int = 0


@factory
def coarse_to_fine(stage_generations: Sequence[int] = (2, 2),
                   train_fractions: Sequence[float] = (0.25, 0.5, 1.0), top_k: float = 0.25,
                   shrink: float = 0.5, carry: bool = True, method: str = "sobol") -> Strategy:
    """Wide ranges on little data first, then narrower ranges on all of it.

    Args:
      stage_generations: generations of every stage but the last, which runs
        to the end of the search.
      train_fractions: the ``train_fraction`` of each stage (one more than
        ``stage_generations``), in (0, 1]; the last is usually 1.
      top_k: the trials a stage's box is fit to: a share of the healthy
        trials in (0, 1), or a count >= 1.
      shrink: each numeric dimension's new width, as a share of the old one,
        in (0, 1] (at least the spread of the top-k).
      carry: whether the top-k trials continue into the next stage.
      method: the sequence samples come from: "sobol", "halton", "random".

    Example:
        >>> s = vtune.strategies.coarse_to_fine(stage_generations=(1,), train_fractions=(0.5, 1.0))
        >>> state = s.init(0, vtune.Space({"lr": vtune.loguniform(1e-4, 1.0)}), 4)
        >>> state, configs = s.ask(state)
        >>> configs["train_fraction"].tolist()
        [0.5, 0.5, 0.5, 0.5]
        >>> state, dec = s.tell(state, np.array([0.1, 0.4, 0.3, 0.2]), configs)
        >>> dec.configs["train_fraction"].tolist(), dec.fresh.tolist()
        ([1.0, 1.0, 1.0, 1.0], [False, True, True, True])
    """
    stage_generations = tuple(stage_generations)
    train_fractions = tuple(train_fractions)
    if not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1
               for n in stage_generations):
        raise ValueError(f"coarse_to_fine: stage_generations must be positive ints, "
                         f"got {stage_generations!r}")
    if len(train_fractions) != len(stage_generations) + 1:
        raise ValueError(f"coarse_to_fine: train_fractions needs one value per stage "
                         f"({len(stage_generations) + 1}), got {train_fractions!r}")
    if not all(isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f <= 1
               for f in train_fractions):
        raise ValueError(f"coarse_to_fine: train_fractions must lie in (0, 1], "
                         f"got {train_fractions!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, float)) or top_k <= 0 or \
            (top_k >= 1 and top_k != int(top_k)):
        raise ValueError(f"coarse_to_fine: top_k must be a share in (0, 1) or a count >= 1, "
                         f"got {top_k!r}")
    if isinstance(shrink, bool) or not isinstance(shrink, (int, float)) or not 0 < shrink <= 1:
        raise ValueError(f"coarse_to_fine: shrink must be in (0, 1], got {shrink!r}")
    check_method("coarse_to_fine", method)
    ends = np.cumsum(stage_generations).tolist()  # tells after which a stage ends

    def init(seed: int, space: Space, population_size: int) -> CoarseToFineState:
        if "train_fraction" in space:
            raise ValueError("coarse_to_fine sets train_fraction itself; remove it from the space")
        d = len(space.dims)
        return CoarseToFineState(space=space, size=population_size, seed=seed,
                                 lo=np.zeros(d), hi=np.ones(d),
                                 allowed=np.ones(int(options(space).sum()), dtype=bool))

    def sample(state: CoarseToFineState, n: int) -> dict:
        """``n`` points of the sequence mapped into the current box."""
        space = state.space
        u = space.encode(space.sample(n, state.seed, method=method, skip=state.drawn))
        u = Space.clip(state.lo + u * (state.hi - state.lo))
        k, offset = options(space), np.concatenate([[0], np.cumsum(options(space))])
        for d in np.flatnonzero(k):  # a choice: the i-th of its allowed options
            ok = np.flatnonzero(state.allowed[offset[d]:offset[d + 1]])
            pick = ok[np.minimum((u[:, d] * len(ok)).astype(int), len(ok) - 1)]
            u[:, d] = (pick + 0.5) / k[d]
        configs = space.decode(u)
        configs["train_fraction"] = np.full(n, float(train_fractions[state.stage]))
        return configs

    def ask(state: CoarseToFineState):
        configs = sample(state, state.size)
        return dataclasses.replace(state, drawn=state.drawn + state.size), configs

    def tell(state: CoarseToFineState, scores: np.ndarray, configs: dict):
        size, g = state.size, state.generation + 1
        s = finite_scores(scores)
        parent, fresh = keep_all(size)
        refill = np.isnan(s)
        if g in ends:  # the stage ends: shrink the box around the top-k, refill the rest
            healthy = rank(s)[:int(np.isfinite(s).sum())]
            n_top = min(len(healthy), max(1, math.ceil(top_k * len(healthy)) if top_k < 1
                                          else int(top_k)))
            top = healthy[:n_top]
            if len(top):
                state = _shrink(state, unit(state.space, configs)[top], shrink)
            refill = np.ones(size, dtype=bool)
            if carry:
                refill[top] = False
            state = dataclasses.replace(state, stage=state.stage + 1)
        slots = np.flatnonzero(refill)
        fresh[slots] = True
        new = sample(state, len(slots)) if len(slots) else {}
        configs = replace_rows(configs, slots, new)
        configs["train_fraction"] = np.full(size, float(train_fractions[state.stage]))
        state = dataclasses.replace(state, generation=g, drawn=state.drawn + len(slots))
        return state, Decisions(parent, fresh, configs)

    return Strategy(init=init, ask=ask, tell=tell, name="coarse_to_fine")


def _shrink(state: CoarseToFineState, top: np.ndarray, shrink: float) -> CoarseToFineState:
    """The state with its box fit around the unit-cube points ``top``."""
    lo, hi, allowed = state.lo.copy(), state.hi.copy(), state.allowed.copy()
    k = options(state.space)
    offset = np.concatenate([[0], np.cumsum(k)])
    for d, name in enumerate(state.space.dims):
        if isinstance(state.space[name], Choice):
            used = np.zeros(k[d], dtype=bool)
            used[np.clip((top[:, d] * k[d]).astype(int), 0, k[d] - 1)] = True
            allowed[offset[d]:offset[d + 1]] = used
            continue
        a, b = top[:, d].min(), top[:, d].max()
        width = min(1.0, max(b - a, shrink * (hi[d] - lo[d])))
        centre = (a + b) / 2
        lo[d] = min(max(centre - width / 2, 0.0), 1.0 - width)
        hi[d] = lo[d] + width
    return dataclasses.replace(state, lo=lo, hi=hi, allowed=allowed)
