"""The strategy protocol: pure functions over a state, in the style of optax.

A strategy decides, from one objective value per slot, what each slot of the
population holds next. It never sees params: its decisions are small host
arrays that the driver applies on device (a gather along the population axis
and a select for fresh slots), so the population shape and the compiled
program never change.

* ``init(seed, space, population_size) -> state``
* ``ask(state) -> (state, configs)``: configs for every slot of the first generation;
* ``tell(state, scores, configs) -> (state, Decisions)``: ``scores`` are one
  float per slot, lower is better, NaN for a diverged trial (always worst and
  never a parent); ``configs`` are the slots' current hyperparameter values.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np


class Decisions(NamedTuple):
    """What every slot holds next.

    Attributes:
      parent: ``int[P]``, the slot whose trial (params and optimizer state)
        slot ``i`` continues; ``i`` itself to keep its trial.
      fresh: ``bool[P]``, slot ``i`` starts a new trial from scratch.
      configs: ``{name: [P]}`` hyperparameter values of every slot afterwards.

    Slot ``i`` holds a new trial (a new trial id) when ``fresh[i]`` or
    ``parent[i] != i``; a clone records its parent in the lineage.
    """

    parent: np.ndarray
    fresh: np.ndarray
    configs: dict[str, np.ndarray]


class Strategy(NamedTuple):
    """A population strategy: ``init``, ``ask`` and ``tell`` (see module docstring)."""

    init: Callable[..., Any]
    ask: Callable[[Any], tuple[Any, dict]]
    tell: Callable[[Any, np.ndarray, dict], tuple[Any, Decisions]]
    name: str


def rank(scores: np.ndarray) -> np.ndarray:
    """Slots ordered best first; NaN (diverged) last; ties by slot (stable)."""
    nan = np.isnan(scores)
    return np.lexsort((np.arange(len(scores)), np.where(nan, np.inf, scores), nan))


def replace_rows(configs: dict, slots: np.ndarray, new: dict) -> dict:
    """``configs`` with rows ``slots`` replaced by the rows of ``new``."""
    out = {}
    for name, values in configs.items():
        v = np.array(values, copy=True)
        if len(slots):
            v[slots] = new[name]
        out[name] = v
    return out
