"""Where the population lives: a 1-D mesh over devices, the population axis sharded.

One machine: a mesh over its devices. Many hosts: call
``jax.distributed.initialize()`` first; ``jax.devices()`` then lists every
process's devices and the same program runs on all of them (JAX's
multi-controller runtime is the distributed engine). Every array vtune places
is a global array, built from host data that every process holds in full.

Example:
    >>> import numpy as np
    >>> mesh = make_mesh()
    >>> x = place(np.arange(2 * len(mesh.devices), dtype=np.float32), population(mesh))
    >>> fetch(x).shape == (2 * len(mesh.devices),)
    True
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "pop"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named ``pop`` over ``devices`` (default: all devices of all processes)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices must name at least one device")
    return Mesh(np.array(devices), (AXIS,))


def check_divisible(population_size: int, mesh: Mesh) -> None:
    n = mesh.devices.size
    if population_size % n:
        lo, hi = population_size // n * n, (population_size // n + 1) * n
        raise ValueError(f"population_size {population_size} is not a multiple of the {n} "
                         f"devices it is sharded over; use {hi}" + (f" or {lo}" if lo else ""))
    devices = list(mesh.devices.flat)
    if len(set(devices)) != len(devices):
        raise ValueError(f"devices lists a device more than once: {devices}")


def population(mesh: Mesh) -> NamedSharding:
    """Leading (population) axis split over the mesh."""
    return NamedSharding(mesh, PartitionSpec(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def place(tree, sharding: NamedSharding):
    """Host arrays (identical on every process) as global arrays on ``sharding``."""
    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    return jax.tree.map(put, tree)


def fetch(tree):
    """Global arrays to host numpy on every process (an all-gather across hosts)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)
