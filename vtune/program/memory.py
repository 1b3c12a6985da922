"""How many trials fit on a device, measured from the compiled program.

The generation program's memory grows linearly with the population: a fixed
part (data, code) and a per-trial part (params, optimizer state, one step's
activations). Compiling it for 1 and 2 trials (XLA's ``memory_analysis``, no
training) gives both, and so the largest population that fits a budget.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Mapping

import jax
import numpy as np

from vtune.population import sharding
from vtune.program.build import build
from vtune.space import Space
from vtune.trial.task import Task


def program_bytes(task: Task, space: Space | Mapping[str, Any], population_size: int, *,
                  steps_per_generation: int = 100, device: jax.Device | None = None) -> int:
    """Bytes the generation program needs on ``device`` for ``population_size`` trials.

    Arguments, outputs and temporaries of the compiled ``train`` program, with
    donated (aliased) buffers counted once.
    """
    space = Space.coerce(space)
    mesh = sharding.make_mesh([device or jax.devices()[0]])
    built = build(task, space, steps_per_generation, mesh)
    program, table = built.program, built.table
    ids = np.arange(population_size, dtype=np.int32)
    hp = table.encode(table.complete(space.sample(population_size, 0), population_size))
    pop = jax.eval_shape(program.init, np.uint32(0), ids, hp)
    data = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), task.host_data())
    stats = program.train.lower(pop, data, np.uint32(0), np.int32(1)).compile().memory_analysis()
    return int(stats.argument_size_in_bytes + stats.output_size_in_bytes
               - stats.alias_size_in_bytes + stats.temp_size_in_bytes)


def device_budget(device: jax.Device | None = None, fraction: float = 0.8) -> int:
    """``fraction`` of the device's memory (host RAM for a CPU device)."""
    device = device or jax.devices()[0]
    stats = device.memory_stats() or {}
    total = stats.get("bytes_limit") or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(total * fraction)


def max_population(task: Task, space: Space | Mapping[str, Any], *,
                   steps_per_generation: int = 100, device: jax.Device | None = None,
                   budget_bytes: int | None = None) -> int:
    """The largest population whose generation program fits in ``budget_bytes``.

    Args:
      task, space: as for :func:`vtune.population_search`.
      steps_per_generation: the program's scan length.
      device: the device to fit (default: the first).
      budget_bytes: default 80% of the device's memory.

    Example:
        >>> task = vtune.tasks.mlp_classifier(vtune.datasets.synthetic(), hidden_sizes=(8,))
        >>> space = {"learning_rate": vtune.loguniform(1e-3, 1e-1)}
        >>> vtune.memory.max_population(task, space, budget_bytes=2**30) > 1000
        True
    """
    measure = functools.partial(program_bytes, task, space,
                                steps_per_generation=steps_per_generation, device=device)
    one, two = measure(1), measure(2)
    per_trial = max(two - one, 1)
    budget = device_budget(device) if budget_bytes is None else budget_bytes
    fits = max(0, (budget - (one - per_trial)) // per_trial)
    # XLA's layout is only nearly linear (a few hundred bytes either way): check the
    # next size up, so a budget measured at exactly n trials admits n.
    return fits + 1 if measure(fits + 1) <= budget else fits
