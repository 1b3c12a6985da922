"""The learning-rate schedule of a trial, computed inside the step from its hyperparameters.

``schedule`` (a code into :data:`SCHEDULES`), ``warmup``, ``decay_rate`` and
``decay_every`` are per-trial arrays like every hyperparameter; the schedule
is a function of the step and the trial's horizon, so a new value never recompiles.

Example:
    >>> import jax.numpy as jnp
    >>> hp = {"schedule": jnp.int32(SCHEDULES.index("step")), "warmup": jnp.float32(0),
    ...       "decay_rate": jnp.float32(0.5), "decay_every": jnp.float32(0.25)}
    >>> [float(lr_factor(hp, jnp.int32(s), jnp.int32(100))) for s in (0, 25, 50)]
    [1.0, 0.5, 0.25]
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

SCHEDULES = ("constant", "cosine", "step")


def lr_factor(hp: Mapping[str, jax.Array], step: jax.Array, horizon: jax.Array) -> jax.Array:
    """Multiplier of the base learning rate at ``step`` of a ``horizon``-step run.

    ``constant`` is 1, ``cosine`` decays to 0 at the horizon, ``step``
    multiplies by ``decay_rate`` every ``P = max(1, round(decay_every *
    horizon))`` steps (step ``s`` has had ``s // P`` decays, counted in
    integers so no boundary fires late).

    Warm-up: with ``W = warmup * horizon > 0``, step ``s`` (from 0) is further
    multiplied by ``min(1, (s + 1) / W)``, so the first step already trains at
    ``lr / W`` (``optax.linear_schedule`` would start at 0).
    """
    dtype = hp["warmup"].dtype
    horizon_i = jnp.maximum(horizon, 1).astype(jnp.int32)
    step_i = jnp.clip(step.astype(jnp.int32), 0, horizon_i)
    horizon = horizon_i.astype(dtype)
    step = step.astype(dtype)
    progress = jnp.clip(step / horizon, 0.0, 1.0)
    period = jnp.maximum(1, jnp.round(hp["decay_every"] * horizon).astype(jnp.int32))
    factors = jnp.stack([
        jnp.ones((), dtype),
        0.5 * (1.0 + jnp.cos(jnp.pi * progress)),
        hp["decay_rate"] ** (step_i // period).astype(dtype),
    ])
    warm_steps = hp["warmup"] * horizon
    warm = jnp.where(warm_steps > 0, jnp.minimum(1.0, (step + 1) / jnp.maximum(warm_steps, 1)), 1.0)
    return factors[hp["schedule"]] * warm
