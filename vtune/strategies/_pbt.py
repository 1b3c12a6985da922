"""Population Based Training (Jaderberg et al. 2017), synchronous, Ray Tune's defaults.

Every ``ready`` generations (after ``burn_in``), the bottom ``quantile`` of the
population **exploits**: each of those slots becomes a clone of a random
top-``quantile`` trial, params and optimizer state included, and then
**explores**: every hyperparameter of the copied configuration is either
resampled from the space (probability ``resample_probability``) or perturbed:
a numeric value is multiplied by a random one of ``factors`` (rounded for
ints) and clipped to its range, a choice moves to a neighbouring option.
Diverged trials are replaced the same way at every generation.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np

from vtune.trial.hparams import INIT_ONLY
from vtune.space import Choice, Fixed, IntUniform, Space
from vtune.strategies.base import (Decisions, Strategy, check_int, draw, factory, finite_scores,
                                   keep_all, rank, replace_rows, rng)

_EXPLORE, _PARENT = 1, 2  # rng salts


@dataclasses.dataclass(frozen=True)
class PBTState:
    """State of :func:`pbt`.

    Attributes:
      space: the search space.
      size: the population size.
      seed: seeds sampling and every exploit/explore draw.
      generation: tells so far.
      drawn: points of the sample sequence used so far.
    """

    space: Space
    size: int
    seed: int
    generation: int = 0
    drawn: int = 0


def explore(space: Space, configs: dict, generator: np.random.Generator,
            resample_probability: float = 0.25, factors: Sequence[float] = (0.8, 1.2)) -> dict:
    """Ray Tune's explore step, applied to every row of ``configs``.

    Args:
      space: the search space; values stay inside it.
      configs: ``{name: [n]}`` values to perturb (names outside the space, and
        :data:`vtune.trial.hparams.INIT_ONLY` ones, which a clone's inherited weights
        make moot, are copied unchanged).
      generator: the source of randomness.
      resample_probability: chance that a value is redrawn from its distribution.
      factors: a numeric value not redrawn is multiplied by one of these, chosen
        uniformly, then rounded (ints) and clipped to the range.

    Example:
        >>> space = vtune.Space({"lr": vtune.loguniform(1e-4, 1.0)})
        >>> new = vtune.strategies.explore(space, {"lr": np.array([0.5, 1.0])},
        ...                                    np.random.default_rng(0), 0.0, (2.0,))
        >>> new["lr"].tolist()
        [1.0, 1.0]
    """
    n = len(next(iter(configs.values())))
    out = {k: np.array(v, copy=True) for k, v in configs.items()}
    for name in space.names:
        dist = space[name]
        if isinstance(dist, Fixed) or name in INIT_ONLY:
            continue
        redraw = generator.random(n) < resample_probability
        sample = dist.decode(generator.random(n))
        old = out[name]
        if isinstance(dist, Choice):
            idx = np.round(dist.encode(old) * len(dist.options) - 0.5).astype(int)
            shift = generator.choice([-1, 1], n)
            moved = dist.decode((np.clip(idx + shift, 0, len(dist.options) - 1) + 0.5)
                                / len(dist.options))
        else:
            factor = np.asarray(factors, dtype=np.float64)[generator.integers(len(factors), size=n)]
            moved = np.asarray(old, dtype=np.float64) * factor
            if isinstance(dist, IntUniform):
                moved = np.round(moved)
            moved = np.clip(moved, dist.lo, dist.hi).astype(np.asarray(sample).dtype)
        out[name] = np.where(redraw, sample, moved).astype(old.dtype)
    return out


@factory
def pbt(quantile: float = 0.25, resample_probability: float = 0.25,
        factors: Sequence[float] = (0.8, 1.2), burn_in: int = 1, ready: int = 1,
        method: str = "random", initial: Mapping[str, object] | None = None) -> Strategy:
    """Population Based Training: exploit the top quantile, explore around it.

    Args:
      quantile: share of the population in the bottom (replaced) and top
        (parents) groups; rounded up, at most half the population (Ray Tune:
        0.25).
      resample_probability: per hyperparameter, the chance that explore draws
        a fresh value instead of perturbing (Ray Tune: 0.25).
      factors: multipliers for numeric values (Ray Tune: 0.8, 1.2).
      burn_in: generations before the first exploit.
      ready: generations between exploits (Ray Tune's perturbation interval).
      method: how the first generation is sampled: "random", "sobol", "halton".
      initial: configurations of the first generation instead of samples,
        ``{name: values}`` with one value per slot.

    Example:
        >>> s = vtune.strategies.pbt(quantile=0.5)
        >>> state = s.init(0, vtune.Space({"lr": vtune.loguniform(1e-4, 1.0)}), 4)
        >>> state, configs = s.ask(state)
        >>> state, dec = s.tell(state, np.array([0.1, 0.9, 0.2, 0.8]), configs)
        >>> sorted(dec.parent[[1, 3]].tolist()) in ([0, 0], [0, 2], [2, 2])  # bottom clones top
        True
    """
    if isinstance(quantile, bool) or not isinstance(quantile, (int, float)) \
            or not 0.0 < quantile <= 0.5:
        raise ValueError(f"pbt: quantile must be in (0, 0.5], got {quantile!r}")
    p = resample_probability
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"pbt: resample_probability must be in [0, 1], "
                         f"got {resample_probability!r}")
    if isinstance(factors, (str, bytes)) or not isinstance(factors, Sequence) or not factors or \
            not all(isinstance(f, (int, float)) and not isinstance(f, bool) and f > 0
                    for f in factors):
        raise ValueError(f"pbt: factors must be a non-empty sequence of positive numbers, "
                         f"got {factors!r}")
    factors = tuple(float(f) for f in factors)
    burn_in = check_int("pbt", "burn_in", burn_in, 0)
    ready = check_int("pbt", "ready", ready, 1)
    if method not in ("random", "sobol", "halton"):
        raise ValueError(f"pbt: unknown method {method!r}; use random, sobol or halton")

    def init(seed: int, space: Space, population_size: int) -> PBTState:
        if initial is not None:
            _initial(space, population_size)
        return PBTState(space=space, size=population_size, seed=seed)

    def _initial(space, size):
        missing = [k for k in space.dims if k not in initial]
        unknown = [k for k in initial if k not in space]
        lengths = {k: len(np.asarray(v)) for k, v in initial.items()}
        if missing or unknown or set(lengths.values()) != {size}:
            raise ValueError(f"pbt: initial must give every dimension {list(space.dims)} one "
                             f"value per slot ({size}); got lengths {lengths}")
        space.encode(initial)  # raises on values outside the space
        like = space.decode(np.full((size, len(space.dims)), 0.5))
        return {k: np.asarray(initial[k], dtype=like[k].dtype) if k in initial else like[k]
                for k in space.names}

    def ask(state: PBTState):
        if initial is not None:
            return state, _initial(state.space, state.size)
        return draw(state, state.size, method)

    def tell(state: PBTState, scores: np.ndarray, configs: dict):
        size, g = state.size, state.generation + 1
        s = finite_scores(scores)
        order = rank(s)
        n_q = min(math.ceil(quantile * size), size // 2)
        losers = set(np.flatnonzero(np.isnan(s)).tolist())
        if g >= burn_in and (g - burn_in) % ready == 0:
            losers |= set(order[size - n_q:].tolist())
        losers = np.array(sorted(losers), dtype=np.intp)
        parents = [int(i) for i in order[:n_q] if np.isfinite(s[i])]
        parent, fresh = keep_all(size)
        drawn = state.drawn
        if len(losers) and parents:
            chosen = rng(state.seed, g, _PARENT).choice(parents, len(losers))
            parent[losers] = chosen
            picked = {k: np.asarray(v)[chosen] for k, v in configs.items()}
            new = explore(state.space, picked, rng(state.seed, g, _EXPLORE),
                          resample_probability, factors)
        elif len(losers):  # nothing healthy to copy: start over
            fresh[losers] = True
            new = state.space.sample(len(losers), state.seed, method=method, skip=drawn)
            drawn += len(losers)
        else:
            new = {}
        return (dataclasses.replace(state, generation=g, drawn=drawn),
                Decisions(parent, fresh, replace_rows(configs, losers, new)))

    return Strategy(init=init, ask=ask, tell=tell, name="pbt")
