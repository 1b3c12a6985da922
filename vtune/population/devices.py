"""Device set-up on one machine: split the CPU into one JAX device per core.

XLA:CPU keeps about one core busy per device, so a population sharded over one
CPU device per core trains 1.5-1.8x faster on 2 cores
(``benchmarks/results/scaling-cpu.json``). The split must happen before JAX's
backend starts (before the first array is made).

Example:
    >>> import vtune
    >>> vtune.population.devices.split_cpu(2) in (1, 2)  # 1 once the backend runs
    True
"""

from __future__ import annotations

import os

import jax


def split_cpu(n: int) -> int:
    """Splits the CPU into ``n`` JAX devices, if JAX's backend has not started yet.

    Returns the number of CPU devices JAX will use: ``n``, or 1 if the backend
    had started or ``JAX_NUM_CPU_DEVICES`` is set (which then wins).
    """
    if "JAX_NUM_CPU_DEVICES" in os.environ:
        return 1
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # JAX refuses once its backends are initialised
        return 1
    return n


def cpu_devices(population_size: int) -> int:
    """Splits the CPU into one JAX device per core, as far as the population divides.

    See :func:`split_cpu`; returns the number of devices JAX will use.
    """
    return split_cpu(max(d for d in range(1, (os.cpu_count() or 1) + 1)
                         if population_size % d == 0))
