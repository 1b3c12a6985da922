"""Population strategies: the outer loop that prunes and refills slots.

Each strategy lives in its own module; :data:`REGISTRY` maps names to
factories so ``population_search(strategy="truncation")`` and the conformance
tests find them all.
"""

from __future__ import annotations

from vtune.strategies.base import Decisions, Strategy, rank
from vtune.strategies.truncation import truncation

REGISTRY = {"truncation": truncation}
DEFAULT = "truncation"


def get(strategy: str | Strategy | None) -> Strategy:
    """A strategy from its registry name, or the object itself."""
    if strategy is None:
        strategy = DEFAULT
    if isinstance(strategy, Strategy):
        return strategy
    if isinstance(strategy, str) and strategy in REGISTRY:
        return REGISTRY[strategy]()
    raise ValueError(f"unknown strategy {strategy!r}; use one of {sorted(REGISTRY)} "
                     "or a vtune.strategies.Strategy")


__all__ = ["Decisions", "Strategy", "REGISTRY", "DEFAULT", "get", "rank", "truncation"]
