"""The population: every trial's state on a leading axis, and where it lives.

* :mod:`vtune.population.population`: the :class:`Population` pytree and the
  per-slot gather/select helpers;
* :mod:`vtune.population.sharding`: the 1-D device mesh the population axis
  is sharded over (one machine or many hosts);
* :mod:`vtune.population.devices`: splitting the CPU into one device per core.
"""

from vtune.population import devices, sharding
from vtune.population.population import Population, take, where

__all__ = ["Population", "devices", "sharding", "take", "where"]
