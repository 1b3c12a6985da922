"""The Population: every trial's state stacked on a leading axis.

Example:
    >>> import jax.numpy as jnp
    >>> params = {"w": jnp.arange(6.0).reshape(3, 2)}          # 3 trials
    >>> take(params, 1)["w"].tolist()
    [2.0, 3.0]
    >>> where(jnp.array([True, False, True]), params, {"w": jnp.zeros((3, 2))})["w"][:, 0].tolist()
    [0.0, 0.0, 4.0]
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Population:
    """All trials of a search, each array with the population axis first.

    Attributes:
      params: trainable parameters, leaves ``[P, ...]``.
      state: other model state (batch statistics...), leaves ``[P, ...]``.
      opt_state: optimizer state, leaves ``[P, ...]``.
      hparams: ``{name: [P]}`` hyperparameter values (float, or int32 codes).
      trial_id: ``int32[P]``, the trial each slot holds; keys derive from it.
      step: ``int32[P]``, training steps each trial has taken.
      plateau: ``None`` unless the space tunes plateau decay; then
        ``{"best": [P], "since": int32[P], "scale": [P]}``: each trial's best
        signed objective so far (lower is better), evaluations since it
        improved, and its learning-rate scale. ``None`` is no pytree node at
        all, so a population without plateau decay has the six children (and
        checkpoints) it always had.
    """

    params: Any
    state: Any
    opt_state: Any
    hparams: dict[str, jax.Array]
    trial_id: jax.Array
    step: jax.Array
    plateau: dict[str, jax.Array] | None = None

    @property
    def size(self) -> int:
        return self.trial_id.shape[0]


_FIELDS = ("params", "state", "opt_state", "hparams", "trial_id", "step", "plateau")


def _flatten(pop: Population):
    names = tuple(f for f in _FIELDS if not (f == "plateau" and pop.plateau is None))
    return [(jax.tree_util.GetAttrKey(f), getattr(pop, f)) for f in names], names


jax.tree_util.register_pytree_with_keys(
    Population, _flatten, lambda names, children: Population(**dict(zip(names, children))))


def take(tree, slot):
    """The unbatched pytree of one slot (e.g. one trial's params)."""
    return jax.tree.map(lambda x: x[slot], tree)


def where(mask: jax.Array, a, b):
    """Per-slot select between two batched pytrees: ``a`` where ``mask``."""

    def pick(x, y):
        return jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - 1)), x, y)

    return jax.tree.map(pick, a, b)
