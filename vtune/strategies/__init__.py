"""Population strategies: the outer loop that prunes and refills slots.

Each strategy family lives in its own private module and is reached from here
(``vtune.strategies.pbt`` is the factory, ``vtune.strategies.PBTState`` its
state); :data:`REGISTRY` maps names to
factories (called without arguments for the defaults), so
``population_search(strategy="pbt")`` and the conformance tests find them
all. Pass a configured object for other settings:
``population_search(..., strategy=vtune.strategies.pbt(quantile=0.2))``.

Example:
    >>> sorted(vtune.strategies.REGISTRY)[:3]
    ['bohb', 'coarse_to_fine', 'grid']
    >>> vtune.strategies.get("pbt").name
    'pbt'
"""

from __future__ import annotations

from vtune.strategies import base, optuna_model, tpe
from vtune.strategies._coarse_to_fine import CoarseToFineState, coarse_to_fine
from vtune.strategies._grid import grid, grid_counts
from vtune.strategies._pbt import PBTState, explore, pbt
from vtune.strategies._random_search import quasi_random, random_search
from vtune.strategies._successive_halving import (HalvingState, bohb, hyperband,
                                                  successive_halving)
from vtune.strategies._truncation import truncation
from vtune.strategies.base import Decisions, SequenceState, Strategy, rank

#: Every built-in strategy, by name: a factory taking only keyword settings.
REGISTRY = {
    "random": random_search,
    "quasi_random": quasi_random,
    "grid": grid,
    "truncation": truncation,
    "successive_halving": successive_halving,
    "hyperband": hyperband,
    "pbt": pbt,
    "coarse_to_fine": coarse_to_fine,
    "bohb": bohb,
}

#: The strategy ``population_search`` uses when none is given: the winner at equal wall
#: time against Optuna in ``benchmarks/search_quality.py`` (see the README's Strategies
#: section).
DEFAULT = "bohb"


def get(strategy: str | Strategy | None) -> Strategy:
    """A strategy from its registry name, or the object itself."""
    if strategy is None:
        strategy = DEFAULT
    if isinstance(strategy, Strategy):
        missing = [f for f in ("init", "ask", "tell") if not callable(getattr(strategy, f))]
        if missing or not isinstance(strategy.name, str):
            raise TypeError(f"strategy {strategy.name!r}: {missing or ['name']} must be "
                            f"{'callable' if missing else 'a str'} (see vtune.strategies.base)")
        return strategy
    if isinstance(strategy, str) and strategy in REGISTRY:
        return REGISTRY[strategy]()
    raise ValueError(f"unknown strategy {strategy!r}; use one of {sorted(REGISTRY)} "
                     "or a vtune.strategies.Strategy")


__all__ = ["CoarseToFineState", "DEFAULT", "Decisions", "HalvingState", "PBTState", "REGISTRY",
           "SequenceState", "Strategy", "base", "bohb", "coarse_to_fine", "explore", "get", "grid",
           "grid_counts", "hyperband", "pbt", "quasi_random", "random_search", "rank",
           "optuna_model", "successive_halving", "tpe", "truncation"]
