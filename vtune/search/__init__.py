"""The search: its specification (validated once) and the driver loop.

* :mod:`vtune.search.spec`: :class:`SearchSpec`, the checked keywords of a
  search and the checkpoint fingerprint they make;
* :mod:`vtune.search.driver`: :func:`population_search`, generation by
  generation: train, evaluate, decide, apply on device, checkpoint.
"""

from vtune.search.driver import population_search, run
from vtune.search.spec import CONFIG_FIELDS, SearchSpec

__all__ = ["CONFIG_FIELDS", "SearchSpec", "population_search", "run"]
