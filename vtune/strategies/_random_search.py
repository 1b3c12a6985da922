"""One-shot designs: random and quasi-random search, the baselines.

Every slot trains one sampled configuration for the whole search; nothing is
pruned. A diverged trial is the only exception: its slot starts the next
point of the same sequence, so no slot trains NaNs to the end.
"""

from __future__ import annotations

import numpy as np

from vtune.space import Space
from vtune.strategies.base import (SequenceState, Strategy, check_method, draw, factory,
                                   refill_diverged)


@factory
def random_search(method: str = "random") -> Strategy:
    """Samples every slot once and trains it to the end (refilling only diverged slots).

    Args:
      method: "random" (i.i.d. uniform in the unit cube), "sobol" or "halton"
        (scrambled quasi-random sequences, see :meth:`vtune.Space.sample`).

    Example:
        >>> s = vtune.strategies.random_search()
        >>> state = s.init(0, vtune.Space({"lr": vtune.loguniform(1e-4, 1.0)}), 4)
        >>> state, configs = s.ask(state)
        >>> state, dec = s.tell(state, np.array([0.1, np.nan, 0.3, 0.2]), configs)
        >>> dec.fresh.tolist(), dec.parent.tolist()
        ([False, True, False, False], [0, 1, 2, 3])
    """
    check_method("random_search", method)
    name = "random" if method == "random" else "quasi_random" if method == "sobol" \
        else f"quasi_random_{method}"

    def init(seed: int, space: Space, population_size: int) -> SequenceState:
        return SequenceState(space=space, size=population_size, seed=seed)

    def ask(state: SequenceState):
        return draw(state, state.size, method)

    def tell(state: SequenceState, scores: np.ndarray, configs: dict):
        return refill_diverged(state, scores, configs, method)

    return Strategy(init=init, ask=ask, tell=tell, name=name)


@factory
def quasi_random(method: str = "sobol") -> Strategy:
    """:func:`random_search` over a scrambled Sobol (or Halton) sequence.

    Example:
        >>> vtune.strategies.quasi_random().name
        'quasi_random'
    """
    if method not in ("sobol", "halton"):
        raise ValueError(f"quasi_random: unknown method {method!r}; use sobol or halton")
    return random_search(method)
