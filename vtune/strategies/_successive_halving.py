"""Successive halving with refill (ASHA / Hyperband style), in generations.

A trial's *age* is the number of generations it has trained. Rungs sit at
ages ``grace * eta**r``. When trials reach a rung, their scores join every
score recorded at that rung so far; a trial continues only if it is in the
top ``1/eta`` of them (at or below their ``1/eta`` quantile, as Ray Tune's
ASHA cuts), else it is pruned. Pruned and diverged slots are refilled at
once, so the population stays full: a share ``refine`` of them with fresh
trials of configurations near a surviving trial's (Gaussian steps in the unit
cube), the rest with new points of a quasi-random sequence.

``brackets > 1`` splits the slots into Hyperband brackets (slot ``i`` in
bracket ``i % brackets``); bracket ``b`` starts at ``grace * eta**b``, so some
slots prune early and aggressively and others late and gently. A refill can
also come from a model: ``model="tpe"`` proposes the new configurations with a
tree-structured Parzen estimator (see :mod:`vtune.strategies.tpe`) fit to
every trial at the furthest rung it reached, ranked by that rung first and its
score there second, so the model learns from the long-trained trials as soon
as there are any and from the first rung until then (fidelity-aware, as BOHB's
model is and as Optuna's TPE ranks pruned trials).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from vtune.space import Space
from vtune.strategies import optuna_model
from vtune.strategies import tpe as tpe_lib
from vtune.strategies.base import (Decisions, Strategy, check_int, check_method, draw, factory,
                                   finite_scores, keep_all, near, replace_rows, rng, unit)

MAX_RUNGS = 8
#: The models a refill can come from: vtune's TPE, or an Optuna sampler (optional).
MODELS = (None, "tpe", *(f"optuna_{s}" for s in optuna_model.SAMPLERS))
_PARENT, _NEAR, _MODEL = 1, 2, 3  # rng salts


@dataclasses.dataclass(frozen=True)
class HalvingState:
    """State of :func:`successive_halving`.

    Attributes:
      space: the search space.
      size: the population size.
      seed: seeds sampling and refinements.
      generation: tells so far.
      drawn: points of the quasi-random sequence used so far.
      age: ``int64[P]``, generations trained by each slot's trial.
      records: ``float64[brackets, MAX_RUNGS, capacity]``, the best scores
        recorded at each rung, best first, ``inf`` where empty.
      counts: ``int64[brackets, MAX_RUNGS]``, scores recorded at each rung.
      observed: ``float64[capacity, D]``, unit-cube points of the most recent
        trials to reach their first rung (for ``model="tpe"``; NaN where empty).
      observed_scores: ``float64[capacity]``, each one's score at the furthest
        rung it reached.
      observed_levels: ``int64[capacity]``, that rung's fidelity level (bracket
        plus rung: the rung at age ``grace * eta**level``).
      observed_ids: ``int64[capacity]``, the trial each observation belongs to
        (``birth generation * P + slot``; -1 where empty).
    """

    space: Space
    size: int
    seed: int
    age: np.ndarray
    records: np.ndarray
    counts: np.ndarray
    observed: np.ndarray
    observed_scores: np.ndarray
    observed_levels: np.ndarray
    observed_ids: np.ndarray
    generation: int = 0
    drawn: int = 0


@factory
def successive_halving(eta: int = 3, grace: int = 1, brackets: int = 1, refine: float = 0.5,
                       radius: float = 0.1, model: str | None = None,
                       method: str = "sobol", capacity: int = 4) -> Strategy:
    """Prunes at geometric rungs, keeping the top ``1/eta``; refills every pruned slot.

    Args:
      eta: the reduction factor (Hyperband: 3; Ray Tune's ASHA: 4).
      grace: the age in generations of the first rung (the grace period).
      brackets: Hyperband brackets; bracket ``b``'s first rung is at
        ``grace * eta**b``.
      refine: share of refilled slots that get a configuration near a
        surviving trial's instead of a new sample, in [0, 1].
      radius: standard deviation of a refinement's step in the unit cube (a
        choice switches option with probability ``2 * radius``).
      model: ``None``, or ``"tpe"`` to propose two thirds of the refills that
        are not refinements with a tree-structured Parzen estimator fit to each
        trial's score at the furthest rung it reached (the rest stay
        quasi-random, as in BOHB); or ``"optuna_tpe"``, ``"optuna_gp"``,
        ``"optuna_cmaes"`` for the same with an Optuna sampler as the model
        (:mod:`vtune.strategies.optuna_model`; needs ``optuna``).
      method: the sequence new samples come from: "sobol", "halton", "random".
      capacity: scores kept per rung, as a multiple of the population size.
        With more records than ``eta * capacity * P`` the cut is the
        ``capacity * P``-th best score (slightly stricter than ``1/eta``).

    Example:
        >>> s = vtune.strategies.successive_halving(eta=2, refine=0.0)
        >>> state = s.init(0, vtune.Space({"lr": vtune.loguniform(1e-4, 1.0)}), 4)
        >>> state, configs = s.ask(state)
        >>> state, dec = s.tell(state, np.array([0.4, 0.1, 0.3, 0.2]), configs)
        >>> dec.fresh.tolist()  # the top half of rung 0 (ages 1) continue
        [True, False, True, False]
    """
    eta = check_int("successive_halving", "eta", eta, 2)
    grace = check_int("successive_halving", "grace", grace, 1)
    brackets = check_int("successive_halving", "brackets", brackets, 1)
    capacity = check_int("successive_halving", "capacity", capacity, 1)
    if isinstance(refine, bool) or not isinstance(refine, (int, float)) or not 0 <= refine <= 1:
        raise ValueError(f"successive_halving: refine must be in [0, 1], got {refine!r}")
    if isinstance(radius, bool) or not isinstance(radius, (int, float)) or not 0 < radius <= 1:
        raise ValueError(f"successive_halving: radius must be in (0, 1], got {radius!r}")
    if model not in MODELS:
        raise ValueError(f"successive_halving: unknown model {model!r}; use one of {MODELS}")
    if model is not None and model.startswith("optuna") and optuna_model.missing():
        raise ImportError(f"successive_halving(model={model!r}): {optuna_model.missing()}")
    check_method("successive_halving", method)
    if brackets >= MAX_RUNGS:
        raise ValueError(f"successive_halving: brackets must be < {MAX_RUNGS}, got {brackets}")
    name = "bohb" if model else "hyperband" if brackets > 1 else "successive_halving"

    def init(seed: int, space: Space, population_size: int) -> HalvingState:
        cap = capacity * population_size
        return HalvingState(
            space=space, size=population_size, seed=seed,
            age=np.zeros(population_size, np.int64),
            records=np.full((brackets, MAX_RUNGS, cap), np.inf),
            counts=np.zeros((brackets, MAX_RUNGS), np.int64),
            observed=np.full((cap, len(space.dims)), np.nan),
            observed_scores=np.full(cap, np.nan),
            observed_levels=np.zeros(cap, np.int64),
            observed_ids=np.full(cap, -1, np.int64))

    def ask(state: HalvingState):
        return draw(state, state.size, method)

    def rung_of(age: np.ndarray, bracket: np.ndarray) -> np.ndarray:
        """The rung a trial of this age just reached, or -1."""
        out = np.full(age.shape, -1)
        for r in range(MAX_RUNGS):
            out = np.where(age == grace * eta ** (bracket + r), r, out)
        return out

    def tell(state: HalvingState, scores: np.ndarray, configs: dict):
        size, g = state.size, state.generation + 1
        s = finite_scores(scores)
        age = state.age + 1
        bracket = np.arange(size) % brackets
        rung = rung_of(age, bracket)
        records, counts = state.records.copy(), state.counts.copy()
        arrived = np.flatnonzero((rung >= 0) & np.isfinite(s))
        for b, r in {(int(bracket[i]), int(rung[i])) for i in arrived}:
            mine = [i for i in arrived if bracket[i] == b and rung[i] == r]
            records[b, r] = np.sort(np.concatenate([records[b, r], s[mine]]))[:records.shape[2]]
            counts[b, r] += len(mine)
        pruned = np.isnan(s)
        for i in arrived:
            pruned[i] = s[i] > _cut(records[bracket[i], rung[i]], counts[bracket[i], rung[i]], eta)
        observed = _observe(state, s, configs, arrived, rung[arrived], bracket[arrived])

        slots = np.flatnonzero(pruned)
        parent, fresh = keep_all(size)
        fresh[slots] = True
        age[slots] = 0
        new, drawn = _refill(state, g, slots, ~pruned, s, age, configs, observed)
        state = dataclasses.replace(state, generation=g, drawn=drawn, age=age, records=records,
                                    counts=counts, **observed)
        return state, Decisions(parent, fresh, replace_rows(configs, slots, new))

    def _refill(state, g, slots, alive, s, age, configs, observed):
        n, drawn = len(slots), state.drawn
        if not n:
            return {}, drawn
        survivors = np.flatnonzero(alive & np.isfinite(s))
        n_near = int(round(refine * n)) if len(survivors) else 0
        parts = []
        if n_near:
            # Parents: the survivors that got furthest (oldest), best first.
            order = survivors[np.lexsort((s[survivors], -age[survivors]))]
            top = order[:max(1, math.ceil(len(order) / eta))]
            chosen = rng(state.seed, g, _PARENT).choice(top, n_near)
            u = unit(state.space, configs)[chosen]
            parts.append(near(state.space, u, rng(state.seed, g, _NEAR), radius, 2 * radius))
        rest = n - n_near
        scores = observed["observed_scores"]
        if rest > 1 and model and tpe_lib.ready(scores, len(state.space.dims)):
            n_model = rest - rest // 3  # a third stays random, as in BOHB
            args = (observed["observed"], scores, n_model, rng(state.seed, g, _MODEL),
                    tpe_lib.options(state.space))
            u = (tpe_lib.propose(*args, levels=observed["observed_levels"]) if model == "tpe"
                 else optuna_model.propose(*args, levels=observed["observed_levels"],
                                           sampler=model.split("_", 1)[1]))
            parts.append(state.space.decode(u))
            rest -= n_model
        if rest:
            parts.append(state.space.sample(rest, state.seed, method=method, skip=drawn))
            drawn += rest
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, drawn

    return Strategy(init=init, ask=ask, tell=tell, name=name)


@factory
def hyperband(eta: int = 3, grace: int = 1, brackets: int = 3, **kwargs) -> Strategy:
    """:func:`successive_halving` with Hyperband brackets (default 3).

    Example:
        >>> vtune.strategies.hyperband().name
        'hyperband'
    """
    return successive_halving(eta=eta, grace=grace, brackets=brackets, **kwargs)


@factory
def bohb(eta: int = 3, grace: int = 1, refine: float = 0.25, model: str = "tpe",
         **kwargs) -> Strategy:
    """:func:`successive_halving` whose refills come from a TPE model (BOHB-style).

    Example:
        >>> vtune.strategies.bohb().name
        'bohb'
    """
    if model is None:
        raise ValueError("bohb: model must name a model; successive_halving has none")
    return successive_halving(eta=eta, grace=grace, refine=refine, model=model, **kwargs)


def _cut(records: np.ndarray, count: int, eta: int) -> float:
    """The ``1/eta`` quantile (linear interpolation) of ``count`` recorded scores
    of which ``records`` holds the best, sorted (beyond it: its last, stricter)."""
    pos = (count - 1) / eta
    i = int(math.floor(pos))
    if i >= len(records) - 1:
        return float(records[-1])
    frac = pos - i
    return float(records[i] + frac * (records[i + 1] - records[i])) if frac else float(records[i])


def _observe(state, s, configs, arrived, rung, bracket) -> dict:
    """The observation ring after this tell: a trial at its first rung adds its point and
    score; one at a later rung updates its own entry, if the ring still holds it."""
    points, scores = state.observed.copy(), state.observed_scores.copy()
    levels, ids = state.observed_levels.copy(), state.observed_ids.copy()
    trial = (state.generation - state.age[arrived]) * state.size + arrived  # birth * P + slot
    new = rung == 0
    if new.any():
        cap = len(scores)
        start = int(state.counts[:, 0].sum())  # first-rung arrivals before this tell
        at = (start + np.arange(int(new.sum()))) % cap
        slots = arrived[new]
        points[at] = unit(state.space, {k: np.asarray(v)[slots] for k, v in configs.items()})
        scores[at], levels[at], ids[at] = s[slots], bracket[new], trial[new]
    for i in np.flatnonzero(~new):
        hit = ids == trial[i]
        scores[hit], levels[hit] = s[arrived[i]], bracket[i] + rung[i]
    return {"observed": points, "observed_scores": scores, "observed_levels": levels,
            "observed_ids": ids}
